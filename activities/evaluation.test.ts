/**
 * `evaluateCheckpoint` with `evaluation.benchmarks` on the onnx engine, in a mock activity context (no server): the
 * run's own policy (Sophia's tiny model) answers a generated ChartQA copy with every prompt adapted to what it reads
 * (engine/onnx-prompts.ts `fitPromptToModel`), its rows answered or skipped by name, the whole result stored.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { afterAll, describe, expect, it } from 'vitest';
import type { BenchmarkResult } from '../benchmarks/evaluate';
import { BENCHMARKS } from '../benchmarks/index';
import { chartQaParquet, chartQaRows } from '../benchmarks/testing/fixtures';
import { mergeConfig, modelSpecOf, parseRunConfig, RUN_PRESETS } from '../config/run-config';
import { createEngine } from '../engine/factory';
import { CheckpointStore } from '../storage/checkpoints';
import { getJson } from '../storage/json';
import { LocalStorage } from '../storage/local';
import { createDataActivities } from './data';
import { saveEngineCheckpoint } from './engine-checkpoints';
import { EnginePool } from './engine-pool';
import { type EvaluateInput, type EvaluateOutput, createEvaluationActivities } from './evaluation';
import { RunData } from './run-data';

describe('evaluateCheckpoint: evaluation.benchmarks on the onnx engine', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sophia-eval-bench-'));
  const storage = new LocalStorage(path.join(dir, 'storage'));
  const store = new CheckpointStore(storage);
  const activityEnv = () => new MockActivityEnvironment(undefined, { logger: new DefaultLogger('WARN') });
  afterAll(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers every showable row with prompts adapted to Sophia\'s model, and stores the whole result', async () => {
    mkdirSync(path.join(dir, 'chartqa'));
    writeFileSync(path.join(dir, 'chartqa', 'test-00000-of-00001.parquet'), chartQaParquet(chartQaRows()));
    const config = parseRunConfig(
      mergeConfig(RUN_PRESETS.ci, {
        model: { layers: 1, width: 32, heads: 2, mlpRatio: 2 },
        data: { perFamily: { train: 4, test: 1, ood: 1 }, validationPerFamily: 1 },
        evaluation: { k: 0, maxTokens: 16, promptsPerBatch: 4, benchmarks: { chartqa: { data: path.join(dir, 'chartqa'), maxTokens: 24 } } },
      }),
      'test',
    );
    const runId = 'onnx-bench';
    const data = new RunData(storage);
    await activityEnv().run(createDataActivities({ data }).prepareData, { runId, config, storage: storage.location });
    const policy = createEngine({ kind: 'onnx', threads: 1 });
    await policy.init(modelSpecOf(config, 'policy'), 3);
    const checkpoint = await saveEngineCheckpoint(store, policy, { runId, stage: 'init', configHash: 'h' });
    await policy.dispose();

    const engines = new EnginePool(() => createEngine({ kind: 'onnx', threads: 1 }));
    const acts = createEvaluationActivities({ store, data, engines });
    const out = await activityEnv().run<[EvaluateInput], EvaluateOutput, typeof acts.evaluateCheckpoint>(acts.evaluateCheckpoint, { runId, config, storage: storage.location, label: 'initial', checkpointKey: checkpoint.key });
    await engines.dispose();

    const chartqa = out.benchmarks?.chartqa;
    expect(chartqa).toMatchObject({ overall: { examples: 2 }, skippedRows: 1 });
    expect(chartqa!.overall.accuracy).toBeGreaterThanOrEqual(0);
    expect(chartqa!.overall.accuracy).toBeLessThanOrEqual(1);
    const stored = await getJson<BenchmarkResult>(storage, chartqa!.resultsKey);
    expect(stored.skipped.byField).toEqual({ image: 1 });
    expect(stored.predictions.map((p) => p.index)).toEqual([0, 1]);
    const rows = chartQaRows();
    for (const p of stored.predictions) {
      expect(p.tokens).toBeGreaterThan(0);
      expect(p.tokens).toBeLessThanOrEqual(24);
      expect(BENCHMARKS.chartqa.read(rows[p.index]!).score(p.response)).toMatchObject({ correct: p.correct, extracted: p.extracted });
    }
  }, 120_000);
});
