import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { afterAll, describe, expect, it } from 'vitest';
import { createEngine } from '../engine/factory';
import { microConfig, trainOnStepBatches } from '../engine/testing/fixtures';
import { CheckpointStore } from '../storage/checkpoints';
import { LocalStorage } from '../storage/local';
import type { CheckpointManifest } from '../storage/manifest';
import { type RunEvent, loadNewestIntact } from './checkpoint-recovery';
import { loadEngineCheckpoint, saveEngineCheckpoint } from './engine-checkpoints';

describe('loading the newest intact checkpoint', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sophia-recovery-'));
  const storage = new LocalStorage(dir);
  const store = new CheckpointStore(storage);
  const env = new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') });
  afterAll(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const flipByte = async (m: CheckpointManifest) => {
    const key = `${m.key}/${m.files[0]!.key}`;
    const bytes = Uint8Array.from(await storage.get(key));
    bytes[9] = bytes[9]! ^ 0x40;
    await storage.put(key, bytes);
  };

  it('quarantines corrupt checkpoints newest first and loads the one before them, then falls back to the next stage', async () => {
    const engine = createEngine({ kind: 'onnx' });
    await engine.init(microConfig(), 3);
    const init = await saveEngineCheckpoint(store, engine, { runId: 'r', stage: 'init', step: 0, configHash: 'h' });
    const saved: CheckpointManifest[] = [];
    for (let i = 0; i < 3; i++) {
      await trainOnStepBatches(engine, 1);
      saved.push(await saveEngineCheckpoint(store, engine, { runId: 'r', stage: 'sft', configHash: 'h' }));
    }
    const reader = createEngine({ kind: 'onnx' });
    await loadEngineCheckpoint(store, saved[0]!.key, reader);
    const atStep1 = await reader.saveState();
    await flipByte(saved[2]!);
    await flipByte(saved[1]!);

    const target = createEngine({ kind: 'onnx' });
    const events: RunEvent[] = [];
    const loaded = await env.run<[], CheckpointManifest | undefined, () => Promise<CheckpointManifest | undefined>>(() => loadNewestIntact(store, target, { runId: 'r', stages: ['sft', 'init'] }, events));
    expect(loaded?.step).toBe(1);
    expect(target.step()).toBe(1);
    expect(await target.saveState()).toEqual(atStep1);
    expect(events.map((e) => [e.kind, e.stage, 'step' in e ? e.step : undefined])).toEqual([
      ['checkpoint-quarantined', 'sft', 3],
      ['checkpoint-quarantined', 'sft', 2],
    ]);
    expect(events[0]!.message).toMatch(/state\.bin has sha256 [0-9a-f]{64}, the manifest records .*quarantined/);
    expect((await store.list('r', 'sft')).map((m) => m.step)).toEqual([1]);
    expect((await store.quarantined('r', 'sft')).map((m) => m.step)).toEqual([2, 3]);

    // Every checkpoint of the stage corrupt: the next stage's (the initial weights).
    await flipByte(saved[0]!);
    const fallback = await env.run<[], CheckpointManifest | undefined, () => Promise<CheckpointManifest | undefined>>(() => loadNewestIntact(store, target, { runId: 'r', stages: ['sft', 'init'] }, events));
    expect(fallback?.key).toBe(init.key);
    expect(target.step()).toBe(0);
    // Nothing intact anywhere: undefined (the caller starts afresh), nothing left in `latest`.
    await flipByte(init);
    expect(await env.run(() => loadNewestIntact(store, target, { runId: 'r', stages: ['sft', 'init'] }, events))).toBeUndefined();
    expect(events).toHaveLength(4);
    expect(await store.latest('r', 'init')).toBeUndefined();
    for (const e of [engine, reader, target]) await e.dispose();
  });
});
