import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createEngine } from '../engine/factory';
import { memorizeBatch, microConfig, trainOnStepBatches } from '../engine/testing/fixtures';
import { CheckpointStore } from '../storage/checkpoints';
import { LocalStorage } from '../storage/local';
import { loadEngineCheckpoint, readEngineFiles, saveEngineCheckpoint } from './engine-checkpoints';

describe('engine checkpoints through the checkpoint store', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sophia-engine-ckpt-'));
  const store = new CheckpointStore(new LocalStorage(dir));
  const onnx = () => createEngine({ kind: 'onnx' });
  afterAll(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('saves the engine\'s files at its step and restores them exactly into a fresh engine', async () => {
    const a = onnx();
    await a.init(microConfig(), 4);
    await trainOnStepBatches(a, 2);
    const manifest = await saveEngineCheckpoint(store, a, { runId: 'r1', stage: 'sft', configHash: 'h', metrics: { loss: 1.25 } });
    expect(manifest).toMatchObject({ step: 2, stage: 'sft', metrics: { loss: 1.25 } });
    expect(manifest.meta).toMatchObject({ engineStep: 2, model: microConfig() });
    const saved = await a.saveState();
    expect(manifest.files.map((f) => f.name)).toEqual(saved.map((f) => f.name));
    const read = (await readEngineFiles(store, manifest.key)).files;
    expect(read.map((f) => ({ name: f.name, data: new Uint8Array(f.data) }))).toEqual(saved); // (the store hands back Buffers)
    const b = onnx();
    await loadEngineCheckpoint(store, manifest.key, b);
    expect(b.step()).toBe(2);
    expect(await b.saveState()).toEqual(saved);
    // Both continue identically.
    await trainOnStepBatches(a, 1);
    await trainOnStepBatches(b, 1);
    expect(await b.saveState()).toEqual(await a.saveState());
    await a.dispose();
    await b.dispose();
  });

  it('loads a checkpoint as earlier versions committed it (one state.bin) — also with a fresh optimizer', async () => {
    const a = onnx();
    await a.init(microConfig(), 5);
    await trainOnStepBatches(a, 2);
    const [state] = await a.saveState();
    // The layout every earlier version wrote: exactly one file, state.bin, holding the engine state bytes.
    expect(state!.name).toBe('state.bin');
    const legacy = await store.save({ runId: 'r2', stage: 'sft', step: 2, configHash: 'h', metrics: {}, meta: { engine: a.info.description, model: microConfig(), engineStep: 2 }, files: [{ name: 'state.bin', data: state!.data }] });
    const b = onnx();
    await loadEngineCheckpoint(store, legacy.key, b);
    expect(await b.saveState()).toEqual([state]);

    const fresh = onnx();
    await loadEngineCheckpoint(store, legacy.key, fresh, { freshOptimizer: true });
    expect(fresh.step()).toBe(0);
    const batch = memorizeBatch();
    expect(await fresh.logprobs(batch, 1)).toEqual(await b.logprobs(batch, 1)); // the same weights
    for (const e of [a, b, fresh]) await e.dispose();
  });
});
