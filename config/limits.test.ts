/**
 * The run estimates and the deployment limits: the presets fit the defaults; the configs the hardening review
 * submitted (a 1.6e9-parameter model, a billion SFT steps, a billion examples per family) are refused with the field,
 * the estimate and the limit; the estimates grow with what they count.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../common/errors';
import { DEFAULT_RUN_LIMITS, RUN_LIMIT_VARS, assertWithinLimits, estimateRun, loadRunLimits } from './limits';
import { RUN_PRESETS, mergeConfig, parseRunConfig } from './run-config';

const ci = parseRunConfig(RUN_PRESETS.ci, 'ci');
const tiny = parseRunConfig(RUN_PRESETS.tiny, 'tiny');
const ciWith = (overrides: Record<string, unknown>) => parseRunConfig(mergeConfig(RUN_PRESETS.ci, overrides), 'test');

describe('run estimates and limits', () => {
  it('lets the presets through the default limits, with estimates of their size', () => {
    for (const config of [ci, tiny]) expect(() => assertWithinLimits(config, DEFAULT_RUN_LIMITS)).not.toThrow();
    const e = estimateRun(tiny);
    expect(e.parameters).toBeGreaterThan(400_000); // the tiny policy: 437,632 parameters (sophia sft prints it)
    expect(e.parameters).toBeLessThan(500_000);
    expect(e.trainingSteps).toBe(2000 + 400 + 150);
    expect(e.engineMemoryBytes).toBeGreaterThan(4 * 16 * e.parameters);
    expect(e.storageBytes).toBeGreaterThan(0);
  });

  it('refuses a model too large for the workers, naming model, the estimate and the limit', () => {
    const huge = ciWith({ model: { width: 16384, layers: 128, heads: 128 } });
    expect(() => assertWithinLimits(huge, DEFAULT_RUN_LIMITS)).toThrow(ConfigError);
    expect(() => assertWithinLimits(huge, DEFAULT_RUN_LIMITS)).toThrow(/^model: the run's engines need about [\d.]+ GiB \([\d,]+ parameters\); this deployment allows 16\.0 GiB \(SOPHIA_MAX_RUN_MEMORY_GB\)/);
  });

  it('refuses a billion steps, naming the stage that asks for them', () => {
    expect(() => assertWithinLimits(ciWith({ sft: { steps: 1e9, chunkSteps: 50 } }), DEFAULT_RUN_LIMITS)).toThrow(/^sft\.steps: the run would take 1,000,000,\d+ optimizer steps; this deployment allows 1,000,000 \(SOPHIA_MAX_RUN_STEPS\)/);
  });

  it('refuses a dataset that would fill the store, naming data.perFamily', () => {
    expect(() => assertWithinLimits(ciWith({ data: { perFamily: { train: 1e9, test: 20, ood: 20 } } }), DEFAULT_RUN_LIMITS)).toThrow(/^data\.perFamily: the run would store about [\d.]+ GiB .* allows 100\.0 GiB \(SOPHIA_MAX_RUN_STORAGE_GB\)/);
  });

  it('estimates grow with what they count', () => {
    const base = estimateRun(ci);
    expect(estimateRun(ciWith({ model: { width: 256, heads: 8 } })).engineMemoryBytes).toBeGreaterThan(base.engineMemoryBytes);
    expect(estimateRun(ciWith({ checkpoints: { keepLast: 10 } })).storageBytes).toBeGreaterThan(base.storageBytes);
    expect(estimateRun(ciWith({ rl: { steps: 60 } })).storageBytes).toBeGreaterThan(base.storageBytes);
  });

  it('reads limits from the environment, naming a bad variable', () => {
    expect(loadRunLimits({ SOPHIA_MAX_RUN_MEMORY_GB: '0.5', SOPHIA_MAX_RUN_STEPS: '10' })).toEqual({ ...DEFAULT_RUN_LIMITS, maxEngineMemoryBytes: 0.5 * 1024 ** 3, maxTrainingSteps: 10 });
    expect(() => assertWithinLimits(ci, loadRunLimits({ SOPHIA_MAX_RUN_STEPS: '10' }))).toThrow(/sft\.steps/);
    expect(() => loadRunLimits({ SOPHIA_MAX_RUN_STORAGE_GB: 'lots' })).toThrow(/SOPHIA_MAX_RUN_STORAGE_GB: "lots" is not a positive number/);
  });

  it('documents every limit variable, and the worker memory variable, in the README', () => {
    const readme = readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');
    expect([...RUN_LIMIT_VARS.map((v) => v.name), 'SOPHIA_WORKER_MEMORY_GB'].filter((name) => !readme.includes(`\`${name}\``))).toEqual([]);
  });
});

