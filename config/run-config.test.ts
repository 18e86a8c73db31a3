import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../common/errors';
import { loadRunConfig } from './load';
import { RUN_PRESETS, assertRunnable, mergeConfig, modelConfig, parseRunConfig, resolveRunConfig } from './run-config';

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('run config', () => {
  it('validates every preset, with defaults filled in', () => {
    for (const name of Object.keys(RUN_PRESETS)) {
      const config = resolveRunConfig(name, name);
      expect(config.checkpoints.keepLast).toBeGreaterThan(0);
    }
    const ci = resolveRunConfig('ci', 'ci');
    expect(ci.engine).toEqual({ kind: 'onnx', executionProvider: 'cpu', threads: 0 });
    expect(ci.data.shardSize).toBe(2000);
    expect(resolveRunConfig('paper', 'paper').rl).toMatchObject({ groupSize: 8, alpha: 0.3, clipEps: 0.2, klCoef: 0.04, maxGradNorm: 4, weightDecay: 0.01 });
  });

  it('uses the paper\'s AdamW settings in every preset: weight decay 0.01, gradients clipped at global norm 4', () => {
    for (const name of Object.keys(RUN_PRESETS)) {
      const config = resolveRunConfig(name, name);
      for (const section of [config.sft, config.rewardModel!, config.rl!]) expect(section).toMatchObject({ weightDecay: 0.01, maxGradNorm: 4 });
    }
  });

  it('splits the reward model\'s held-out prompts in half between validation and test unless told otherwise', () => {
    expect(resolveRunConfig('tiny', 'tiny').rewardModel?.data).toMatchObject({ heldOutShare: 0.15, heldOutTestShare: 0.5 });
    const err = configError(() => parseRunConfig(mergeConfig(RUN_PRESETS.ci, { rewardModel: { data: { heldOutTestShare: 1 } } }), 'run.yaml'));
    expect(err.message).toMatch(/rewardModel\.data\.heldOutTestShare: Too big/);
  });

  it('rejects unknown fields and bad values, naming every path and reason', () => {
    const raw = mergeConfig(RUN_PRESETS.ci, { sft: { lr: -1, stepz: 3 }, data: { perFamily: { train: 0 } }, colour: 'blue' });
    const err = configError(() => parseRunConfig(raw, 'run.yaml'));
    expect(err.message).toMatch(/sft\.lr: Too small: expected number to be >0/);
    expect(err.message).toMatch(/sft\.stepz: unknown field/);
    expect(err.message).toMatch(/data\.perFamily\.train: Too small/);
    expect(err.message).toMatch(/colour: unknown field/);
    expect(err.field).toMatch(/^run\.yaml /);
  });

  it('merges a `__proto__` key as a field (then rejected as unknown), never as the result\'s prototype', () => {
    // JSON.parse (an HTTP body) and YAML make `__proto__` an own key; assigned with `out[k] = v` it replaced the
    // merged object's prototype, so the strict schema saw no unknown key and the run started with the override ignored.
    const override = JSON.parse('{"__proto__": {"sft": {"steps": 3}}, "sft": {"constructor": 1}}') as unknown;
    const merged = mergeConfig(RUN_PRESETS.ci, override) as Record<string, unknown>;
    expect(Object.getPrototypeOf(merged)).toBe(Object.prototype);
    expect(Object.hasOwn(merged, '__proto__')).toBe(true);
    const err = configError(() => parseRunConfig(merged, 'run.yaml'));
    expect(err.message).toMatch(/__proto__: unknown field/);
    expect(err.message).toMatch(/sft\.constructor: unknown field/);
    expect(({} as Record<string, unknown>).sft).toBeUndefined();
  });

  it("refuses a judge's endpoint or key variable in a run config: judges are configured on the workers and named", () => {
    const withAnnotator = (annotator: unknown) => () => parseRunConfig(mergeConfig(RUN_PRESETS.ci, { rewardModel: { annotator } }), 'test');
    const exfiltrate = configError(withAnnotator({ kind: 'openai', baseUrl: 'http://listener.example/v1', model: 'm', apiKeyEnv: 'SOPHIA_S3_SECRET_ACCESS_KEY' }));
    expect(exfiltrate.message).toMatch(/rewardModel\.annotator\.kind: kind openai is gone/);
    expect(exfiltrate.message).toMatch(/rewardModel\.annotator\.baseUrl: a run config may not set a judge's baseUrl; configure the judge on the workers \(SOPHIA_JUDGES/);
    expect(exfiltrate.message).toMatch(/rewardModel\.annotator\.apiKeyEnv: a run config may not set/);
    expect(configError(withAnnotator({ kind: 'judge', name: 'gpt-judge', baseUrl: 'http://listener.example/v1' })).message).toMatch(/rewardModel\.annotator\.baseUrl: a run config may not/);
    expect(configError(withAnnotator({ kind: 'judge', name: 'gpt-judge', apiKeyEnv: 'AWS_SECRET_ACCESS_KEY' })).message).toMatch(/rewardModel\.annotator\.apiKeyEnv: a run config may not/);
    expect(configError(withAnnotator({ kind: 'judge', name: '../x' })).message).toMatch(/rewardModel\.annotator\.name: a judge name is/);
    expect(withAnnotator({ kind: 'judge', name: 'gpt-judge' })().rewardModel!.annotator).toEqual({ kind: 'judge', name: 'gpt-judge' });
    expect(resolveRunConfig('paper', 'paper').rewardModel!.annotator).toEqual({ kind: 'judge', name: 'qwen2.5-vl-72b' });
  });

  it('checks relations between fields', () => {
    const err = configError(() => parseRunConfig(mergeConfig(RUN_PRESETS.ci, { sft: { chunkSteps: 70 } }), 'x'));
    expect(err.message).toMatch(/sft\.chunkSteps: must be a multiple of sft\.evalEvery/);
    expect(() => parseRunConfig(mergeConfig(RUN_PRESETS.ci, { stages: [] }), 'x')).toThrow(/stages: Too small/);
    expect(() => parseRunConfig(mergeConfig(RUN_PRESETS.ci, { stages: ['bogus'] }), 'x')).toThrow(/stages\[0\]/);
    const { rewardModel: _rm, ...withoutRm } = RUN_PRESETS.ci as Record<string, unknown>;
    expect(() => parseRunConfig({ ...withoutRm, stages: ['prepareData', 'rewardModel'] }, 'x')).toThrow(/stages\[1\]: rewardModel needs a rewardModel section/);
    expect(() => parseRunConfig(withoutRm, 'x')).toThrow(/rl\.variant: trust-grpo needs a reward model/);
    expect(() => parseRunConfig(mergeConfig(withoutRm, { rl: { variant: 'grpo' } }), 'x')).not.toThrow();
    expect(() => parseRunConfig(mergeConfig(RUN_PRESETS.ci, { rl: { evalEvery: 4 } }), 'x')).toThrow(/rl\.evalEvery: must be a multiple of rl\.checkpointEvery/);
  });

  it('refuses configs it cannot run here, with the fix', () => {
    expect(() => assertRunnable(resolveRunConfig('paper', 'paper'))).toThrow(/engine\.kind: "pytorch".*Use engine\.kind: onnx/);
    expect(() => assertRunnable(resolveRunConfig('tiny', 'tiny'))).not.toThrow();
  });

  it('maps the model section onto the engine model config', () => {
    const m = modelConfig(resolveRunConfig({ extends: 'ci', model: { preset: 'tiny', layers: 3, imageSize: 24 } }, 'x'), 64);
    expect(m).toMatchObject({ kind: 'policy', vocabSize: 64, layers: 3, width: 128, image: { size: 24, patch: 4, channels: 3 } });
  });

  it('loads YAML and JSON files that extend a preset', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sophia-config-'));
    try {
      writeFileSync(path.join(dir, 'run.yaml'), 'extends: ci\nseed: 7\nsft:\n  steps: 100\n');
      const yaml = loadRunConfig(path.join(dir, 'run.yaml'));
      expect(yaml).toMatchObject({ seed: 7, sft: { steps: 100, batchSize: 32 } });
      writeFileSync(path.join(dir, 'run.json'), JSON.stringify({ extends: 'tiny', evaluation: { k: 0 } }));
      expect(loadRunConfig(path.join(dir, 'run.json')).evaluation.k).toBe(0);
      writeFileSync(path.join(dir, 'bad.yaml'), 'extends: huge\n');
      expect(() => loadRunConfig(path.join(dir, 'bad.yaml'))).toThrow(/extends: "huge" is not a preset/);
      writeFileSync(path.join(dir, 'list.yaml'), '- 1\n- 2\n');
      expect(() => loadRunConfig(path.join(dir, 'list.yaml'))).toThrow(/must contain a mapping/);
      writeFileSync(path.join(dir, 'broken.yaml'), 'a: [1, 2\n');
      expect(() => loadRunConfig(path.join(dir, 'broken.yaml'))).toThrow(/is not valid YAML\/JSON/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
