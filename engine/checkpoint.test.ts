import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CheckpointStore } from '../storage/checkpoints';
import { LocalStorage } from '../storage/local';
import { loadEngineCheckpoint, saveEngineCheckpoint } from './checkpoint';
import { OnnxEngine } from './onnx-engine';
import { microConfig, trainOnStepBatches } from './testing/fixtures';

describe('engine checkpoints through the checkpoint store', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sophia-engine-ckpt-'));
  const store = new CheckpointStore(new LocalStorage(dir));
  afterAll(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('saves the full state at the engine step and restores it exactly into a fresh engine', async () => {
    const a = new OnnxEngine();
    await a.init(microConfig(), 4);
    await trainOnStepBatches(a, 2);
    const manifest = await saveEngineCheckpoint(store, a, { runId: 'r1', stage: 'sft', configHash: 'h', metrics: { loss: 1.25 } });
    expect(manifest).toMatchObject({ step: 2, stage: 'sft', metrics: { loss: 1.25 } });
    expect(manifest.meta).toMatchObject({ engineStep: 2, model: microConfig() });
    const b = new OnnxEngine();
    await loadEngineCheckpoint(store, manifest.key, b);
    expect(b.step()).toBe(2);
    expect(Buffer.compare(Buffer.from(await b.saveState()), Buffer.from(await a.saveState()))).toBe(0);
    // Both continue identically.
    await trainOnStepBatches(a, 1);
    await trainOnStepBatches(b, 1);
    expect(Buffer.compare(Buffer.from(await b.saveState()), Buffer.from(await a.saveState()))).toBe(0);
    await a.dispose();
    await b.dispose();
  });
});
