/**
 * The SFT chunk activity in a mock activity context (no server): heartbeats, resume from the latest committed
 * checkpoint after an attempt died, and cancellation that commits the current step first.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mergeConfig, parseRunConfig, RUN_PRESETS } from '../config/run-config';
import { createEngine } from '../engine/factory';
import { CheckpointStore } from '../storage/checkpoints';
import { LocalStorage } from '../storage/local';
import { readMetrics } from '../storage/metrics-log';
import { sha256Hex } from '../storage/hashing';
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
