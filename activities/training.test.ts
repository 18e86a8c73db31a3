/**
 * The SFT chunk activity in a mock activity context (no server): heartbeats, resume from the latest committed
 * checkpoint after an attempt died, and cancellation that commits the current step first; and the shared chunk's
 * validation of its initial weights (a likelihood judge's).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mergeConfig, modelConfig, parseRunConfig, RUN_PRESETS } from '../config/run-config';
import { createEngine } from '../engine/factory';
import { Tokenizer } from '../engine/model/tokenizer';
import { DEFAULT_ADAMW } from '../engine/types';
import { CheckpointStore } from '../storage/checkpoints';
import { LocalStorage } from '../storage/local';
import { readMetrics } from '../storage/metrics-log';
import { sha256Hex } from '../storage/hashing';
import { generateSplit } from '../tasks/dataset';
import { promptsOf } from '../tasks/prompt';
import { type ChunkOutput, runTrainingChunk } from './chunk';
import { createDataActivities } from './data';
import { EnginePool } from './engine-pool';
import { RunData } from './run-data';
import { type SftChunkOutput, type SftHeartbeat, createTrainingActivities } from './training';

const config = parseRunConfig(
  mergeConfig(RUN_PRESETS.ci, {
    model: { layers: 1, width: 32, heads: 2, mlpRatio: 2 },
    data: { perFamily: { train: 20, test: 2, ood: 2 }, validationPerFamily: 1 },
    sft: { steps: 30, batchSize: 8, evalEvery: 10, chunkSteps: 30 },
  }),
  'test',
);

describe('runSftChunk in a mock activity environment', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sophia-chunk-'));
  const storage = new LocalStorage(dir);
  const store = new CheckpointStore(storage);
  /** A fresh "worker": its own engine pool (nothing in memory) over the same storage. */
  const worker = () => {
    const engines = new EnginePool(() => createEngine({ kind: 'onnx' }));
    return { engines, acts: createTrainingActivities({ store, data: new RunData(storage), engines, workerQueue: 'q-test', identity: 'test-worker' }) };
  };
  const input = (runId: string, untilStep: number) => ({ runId, config, configHash: 'h', storage: storage.location, untilStep });

  beforeAll(async () => {
    const data = createDataActivities({ data: new RunData(storage) });
    for (const runId of ['straight', 'resumed', 'cancelled']) await new MockActivityEnvironment().run(data.prepareData, { runId, config, storage: storage.location });
  });
  afterAll(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('heartbeats every step with the last committed checkpoint, and commits every evalEvery steps (in the background, in order, all before it ends)', async () => {
    const { acts, engines } = worker();
    const env = new MockActivityEnvironment();
    const beats: SftHeartbeat[] = [];
    env.on('heartbeat', (d: unknown) => beats.push(d as SftHeartbeat));
    const out = await env.run<[ReturnType<typeof input>], SftChunkOutput, typeof acts.runSftChunk>(acts.runSftChunk, input('straight', 30));
    expect(out).toMatchObject({ step: 30, done: true, workerQueue: 'q-test', checkpointKey: 'runs/straight/sft/checkpoints/00000030' });
    // Each validation (steps 10, 20, 30) heartbeats after each batch it scores, with the step it validates.
    const validating = beats.filter((b) => b.phase?.startsWith('validation'));
    expect(validating.length).toBeGreaterThanOrEqual(3);
    expect([...new Set(validating.map((b) => b.step))]).toEqual([10, 20, 30]);
    expect(validating.filter((b) => /^validation (\d+)\/\1$/.test(b.phase!)).map((b) => b.step)).toEqual([10, 20, 30]);
    beats.splice(0, beats.length, ...beats.filter((b) => !b.phase?.startsWith('validation')));
    expect(beats.map((b) => b.step)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    // Step 10's checkpoint commits while training goes on: its own heartbeat still shows the initial weights, and
    // it has landed at the latest when step 20's is staged. Keys only move forward.
    const keys = ['runs/straight/init/checkpoints/00000000', ...[10, 20].map((s) => `runs/straight/sft/checkpoints/000000${s}`)];
    expect(beats[9]!.checkpointKey).toBe(keys[0]);
    expect(beats[19]!.checkpointKey).toBe(keys[1]);
    expect(beats[29]!.checkpointKey).toBe(keys[2]);
    const order = beats.map((b) => keys.indexOf(b.checkpointKey!));
    expect(order.every((k, i) => k >= 0 && (i === 0 || k >= order[i - 1]!))).toBe(true);
    expect((await store.list('straight', 'sft')).map((m) => m.step)).toEqual([10, 20, 30]);
    expect(out.initialCheckpointKey).toBe('runs/straight/init/checkpoints/00000000');
    await engines.dispose();
  });

  it('resumes a later attempt from the newest committed checkpoint and ends exactly like an uninterrupted run', async () => {
    // Attempt 1 trains to step 20 (checkpoints at 10, 20), then its worker "dies".
    const first = worker();
    await new MockActivityEnvironment().run(first.acts.runSftChunk, input('resumed', 20));
    await first.engines.dispose();
    // Attempt 2 on another worker with nothing in memory: it starts at step 20, not 0.
    const second = worker();
    const env = new MockActivityEnvironment({ attempt: 2 });
    const beats: SftHeartbeat[] = [];
    env.on('heartbeat', (d: unknown) => beats.push(d as SftHeartbeat));
    const out = await env.run<[ReturnType<typeof input>], SftChunkOutput, typeof second.acts.runSftChunk>(second.acts.runSftChunk, input('resumed', 30));
    expect(beats[0]!.step).toBe(21);
    expect(out.step).toBe(30);
    const state = async (runId: string) => sha256Hex((await store.load(`runs/${runId}/sft/checkpoints/00000030`)).files.get('state.bin')!);
    expect(await state('resumed')).toBe(await state('straight'));
    const losses = async (runId: string) => (await readMetrics(storage, runId)).filter((m) => m.kind === 'step').map((m) => m.loss);
    expect(await losses('resumed')).toEqual(await losses('straight'));
    await second.engines.dispose();
  });

  it('commits the current step when cancelled, then ends with the cancellation', async () => {
    const { acts, engines } = worker();
    const env = new MockActivityEnvironment();
    env.on('heartbeat', (d: unknown) => {
      if ((d as SftHeartbeat).step === 13) env.cancel('CANCELLED');
    });
    const err: unknown = await env.run(acts.runSftChunk, input('cancelled', 30)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CancelledFailure);
    const latest = await store.latest('cancelled', 'sft');
    expect(latest?.step).toBe(13);
    // The engine stays in memory at that checkpoint: the next chunk on this worker reuses it.
    const next = await new MockActivityEnvironment().run<[ReturnType<typeof input>], SftChunkOutput, typeof acts.runSftChunk>(acts.runSftChunk, input('cancelled', 30));
    expect(next.step).toBe(30);
    expect((await readMetrics(storage, 'cancelled')).filter((m) => m.kind === 'step').length).toBe(30);
    await engines.dispose();
  });
});

describe('a chunk that validates its initial weights (validateInitial)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sophia-chunk-init-'));
  const storage = new LocalStorage(dir);
  const store = new CheckpointStore(storage);
  const tokenizer = new Tokenizer();
  const examples = generateSplit('train', 1, 16, 4);
  afterAll(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A chunk of 40 steps (validating every 10, patience 2) whose validations return `losses` in turn (the first: step 0). */
  const chunk = async (runId: string, losses: number[]): Promise<ChunkOutput> => {
    const engines = new EnginePool(() => createEngine({ kind: 'onnx' }));
    const remaining = [...losses];
    try {
      return await new MockActivityEnvironment().run(() =>
        runTrainingChunk({ store, storage, engines, workerQueue: 'q-test', identity: 'test-worker' }, {
          runId, stage: 'rm', initStage: 'rm-init', configHash: 'h', engine: { kind: 'onnx' }, totalSteps: 40, untilStep: 40, evalEvery: 10, patience: 2, keepLast: 2,
          validateInitial: true,
          initialize: (e) => e.init(modelConfig(config, tokenizer.vocabSize), 3),
          step: async (e) => {
            const responses = await e.encodeResponses(examples.map((x) => x.answer));
            const out = await e.trainStepResponses({ prompts: promptsOf(examples), rows: responses.map((response, prompt) => ({ prompt, response })) }, { kind: 'sft' }, { ...DEFAULT_ADAMW, lr: 1e-3 });
            return { loss: out.loss };
          },
          validate: () => Promise.resolve(remaining.shift()!),
        }),
      );
    } finally {
      await engines.dispose();
    }
  };
  const validations = async (runId: string) => (await readMetrics(storage, runId)).filter((m) => m.kind === 'validation').map((m) => [m.step, m.valLoss]);

  it('keeps the initial weights as the best until a step beats them, and stops early counting from them', async () => {
    const kept = await chunk('init-best', [0.2, 0.5, 0.4]);
    expect(kept).toMatchObject({ step: 20, stoppedEarly: true, done: true, bestCheckpointKey: kept.initialCheckpointKey, initialCheckpointKey: 'runs/init-best/rm-init/checkpoints/00000000' });
    expect(await validations('init-best')).toEqual([[0, 0.2], [10, 0.5], [20, 0.4]]);
    expect((await store.manifest(kept.initialCheckpointKey)).metrics).toEqual({ valLoss: 0.2 });

    const beaten = await chunk('init-beaten', [0.2, 0.1, 0.3, 0.05, 0.06]);
    expect(beaten).toMatchObject({ step: 40, stoppedEarly: false, bestCheckpointKey: 'runs/init-beaten/rm/checkpoints/00000030' });
    expect(await validations('init-beaten')).toEqual([[0, 0.2], [10, 0.1], [20, 0.3], [30, 0.05], [40, 0.06]]);
  });
});
