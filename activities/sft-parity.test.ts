/**
 * One SFT loop: `sophia sft` (in-process `runSft`) and the pipeline's resumable chunks (`runSftChunk`, here in
 * two chunks with the engine reloaded from storage in between) take the same steps on the same run config — every
 * step's loss and gradient norm, and every validation loss, are bit-identical.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { mergeConfig, modelConfig, parseRunConfig, RUN_PRESETS, sftSettings } from '../config/run-config';
import { createEngine } from '../engine/factory';
import { CheckpointStore } from '../storage/checkpoints';
import { LocalStorage } from '../storage/local';
import { readMetrics } from '../storage/metrics-log';
import { runSft } from '../training/sft';
import { createDataActivities } from './data';
import { EnginePool } from './engine-pool';
import { RunData } from './run-data';
import { createTrainingActivities } from './training';

const config = parseRunConfig(
  mergeConfig(RUN_PRESETS.ci, {
    model: { layers: 1, width: 32, heads: 2, mlpRatio: 2 },
    data: { perFamily: { train: 20, test: 2, ood: 2 }, validationPerFamily: 1 },
    sft: { steps: 12, batchSize: 8, warmupSteps: 3, evalEvery: 4, chunkSteps: 4 },
  }),
  'test',
);

describe('runSft and runSftChunk', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sophia-sft-parity-'));
  const storage = new LocalStorage(dir);
  const store = new CheckpointStore(storage);
  afterAll(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('train the same steps on the same run config', async () => {
    const data = new RunData(storage);
    await new MockActivityEnvironment().run(createDataActivities({ data }).prepareData, { runId: 'r', config, storage: storage.location });
    for (const untilStep of [8, 12]) {
      const engines = new EnginePool(() => createEngine({ kind: 'onnx' })); // a fresh worker per chunk: the second resumes from storage
      const acts = createTrainingActivities({ store, data, engines, workerQueue: 'q', identity: 'w' });
      await new MockActivityEnvironment().run(acts.runSftChunk, { runId: 'r', config, configHash: 'h', storage: storage.location, untilStep });
      await engines.dispose();
    }
    const metrics = (await readMetrics(storage, 'r')).filter((m) => m.stage === 'sft');

    const engine = createEngine({ kind: 'onnx' });
    const model = modelConfig(config, data.tokenizer.vocabSize);
    await engine.init(model, config.seed);
    const result = await runSft(engine, await data.split('r', 'train'), data.validation(config, model.image.size), sftSettings(config));
    await engine.dispose();

    const steps = metrics.filter((m) => m.kind === 'step');
    expect(steps.map((m) => [m.step, m.loss, m.gradNorm, m.lr])).toEqual(result.history.map((h) => [h.step, h.loss, h.gradNorm, h.lr]));
    expect(metrics.filter((m) => m.kind === 'validation').map((m) => [m.step, m.valLoss])).toEqual(result.validations.map((v) => [v.step, v.valLoss]));
    expect(result.history).toHaveLength(12);
  });
});
