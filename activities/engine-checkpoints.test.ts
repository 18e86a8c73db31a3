import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import * as path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { StorageFullError } from '../common/errors';
import { inMemory } from '../engine/state-files';
import { createEngine } from '../engine/factory';
import { memorizeBatch, microConfig, trainOnStepBatches } from '../engine/testing/fixtures';
import { CheckpointStore } from '../storage/checkpoints';
import { LocalStorage } from '../storage/local';
import type { PutBody, PutOptions, PutResult } from '../storage/types';
import { canMountSmallDisk, mountSmallDisk, type SmallDisk } from '../storage/testing/small-disk';
import { CHECKPOINT_KEEPALIVE_MS, type StorageFullRetrySettings } from '../temporal.config';
import { CheckpointWriter, loadEngineCheckpoint, saveCheckpoint, saveEngineCheckpoint, withEngineFiles } from './engine-checkpoints';

// This file's engine states are staged in a scratch folder of its own (SOPHIA_SCRATCH), not the OS temp folder: the first
// scratch folder a process makes under a root removes, and logs, the folders killed processes left there, and the fault
// tests that `npm test` runs beside the unit tests kill workers that staged states in the OS temp folder.
const fileScratch = mkdtempSync(path.join(tmpdir(), 'sophia-ckpt-test-scratch-'));
const previousScratch = process.env.SOPHIA_SCRATCH;
process.env.SOPHIA_SCRATCH = fileScratch;
afterAll(() => {
  if (previousScratch === undefined) delete process.env.SOPHIA_SCRATCH;
  else process.env.SOPHIA_SCRATCH = previousScratch;
  rmSync(fileScratch, { recursive: true, force: true });
});

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
    const read = await withEngineFiles(store, manifest.key, (files) => inMemory(files));
    expect(read.map((f) => ({ name: f.name, data: new Uint8Array(f.data) }))).toEqual(saved); // (readFile hands back Buffers)
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

/** A local store whose checkpoint file writes wait for `open()`, and whose first `failures` of them fail. */
class GatedStorage extends LocalStorage {
  private opened!: () => void;
  private gate = new Promise<void>((resolve) => (this.opened = resolve));
  constructor(
    root: string,
    private failures = 0,
  ) {
    super(root);
  }
  open(): void {
    this.opened();
  }
  override async put(key: string, body: PutBody, options?: PutOptions): Promise<PutResult> {
    if (!key.endsWith('/manifest.json')) {
      await this.gate;
      if (this.failures > 0) {
        this.failures--;
        throw new Error('connection reset by peer');
      }
    }
    return super.put(key, body, options);
  }
}

describe('CheckpointWriter: checkpoints committed beside training', () => {
  const roots: string[] = [];
  const scratch = mkdtempSync(path.join(tmpdir(), 'sophia-writer-scratch-'));
  // A staging folder a killed worker of this host left (made before any test here runs): the first scratch folder this
  // process makes under this root removes it.
  const leftover = path.join(scratch, `sophia-save-${spawnSync(process.execPath, ['-e', '0']).pid}-00aa11bb22cc@${hostname()}`);
  mkdirSync(leftover);
  const staged = () => readdirSync(scratch).filter((n) => n.startsWith('sophia-save-')).length;
  beforeAll(() => {
    process.env.SOPHIA_SCRATCH = scratch;
  });
  afterAll(() => {
    process.env.SOPHIA_SCRATCH = fileScratch;
    for (const r of [...roots, scratch]) rmSync(r, { recursive: true, force: true });
  });
  const gated = (failures = 0) => {
    const root = mkdtempSync(path.join(tmpdir(), 'sophia-writer-'));
    roots.push(root);
    const storage = new GatedStorage(root, failures);
    return { storage, store: new CheckpointStore(storage) };
  };

  it('returns once the state is staged; the upload goes on while training does, and commits the state as it was when saved', async () => {
    const { storage, store } = gated();
    const engine = createEngine({ kind: 'onnx' });
    await engine.init(microConfig(), 4);
    await trainOnStepBatches(engine, 2);
    const atSave = await engine.saveState();
    const writer = new CheckpointWriter(store);
    const committed: string[] = [];
    const key = await writer.save(engine, { runId: 'w', stage: 'sft', configHash: 'h' }, (m) => Promise.resolve(void committed.push(m.key)));
    expect(key).toBe('runs/w/sft/checkpoints/00000002');
    expect(existsSync(leftover)).toBe(false);
    expect(staged()).toBe(1);
    await trainOnStepBatches(engine, 1); // training goes on while the upload waits
    expect(await store.latest('w', 'sft')).toBeUndefined();
    expect(committed).toEqual([]);
    storage.open();
    const manifest = await writer.flush();
    expect(manifest?.key).toBe(key);
    expect(committed).toEqual([key]);
    expect(staged()).toBe(0); // the staged folder is gone
    expect(await writer.flush()).toBeUndefined();
    const b = createEngine({ kind: 'onnx' });
    await loadEngineCheckpoint(store, key, b);
    expect(await b.saveState()).toEqual(atSave); // step 2, not the step 3 the engine reached meanwhile
    await engine.dispose();
    await b.dispose();
    await store.close();
  });

  it('heartbeats what it waits for while a commit takes longer than CHECKPOINT_KEEPALIVE_MS', async () => {
    const { storage, store } = gated();
    const engine = createEngine({ kind: 'onnx' });
    await engine.init(microConfig(), 6);
    await trainOnStepBatches(engine, 1);
    const phases: string[] = [];
    const writer = new CheckpointWriter(store, { heartbeat: (phase) => phases.push(phase) });
    await writer.save(engine, { runId: 'k', stage: 'sft', configHash: 'h' });
    const opened = setTimeout(() => storage.open(), CHECKPOINT_KEEPALIVE_MS + 700);
    try {
      expect((await writer.flush())?.step).toBe(1);
    } finally {
      clearTimeout(opened);
    }
    expect(phases).toEqual(['committing the checkpoint of step 1']);
    await engine.dispose();
    await store.close();
  }, 20_000);

  it('commits again, in flush, a background commit that failed, and says so in the activity log', async () => {
    const { storage, store } = gated(1);
    storage.open();
    const engine = createEngine({ kind: 'onnx' });
    await engine.init(microConfig(), 5);
    await trainOnStepBatches(engine, 1);
    const logs: string[] = [];
    const env = new MockActivityEnvironment(undefined, { logger: new DefaultLogger('WARN', (entry) => logs.push(entry.message)) });
    const keys = await env.run(async () => {
      const writer = new CheckpointWriter(store);
      const key = await writer.save(engine, { runId: 'f', stage: 'sft', configHash: 'h' });
      await trainOnStepBatches(engine, 1);
      const second = await writer.save(engine, { runId: 'f', stage: 'sft', configHash: 'h' }); // flushes the first
      expect((await store.list('f', 'sft')).map((m) => m.key)).toEqual([key]);
      await writer.flush();
      return [key, second];
    });
    expect((await store.list('f', 'sft')).map((m) => m.key)).toEqual(keys);
    expect(logs).toEqual(['checkpoint commit failed: committing it again']);
    expect(staged()).toBe(0);
    await engine.dispose();
    await store.close();
  });
});

describe.skipIf(!canMountSmallDisk())('a checkpoint save on a full disk (tmpfs; root only)', () => {
  const FAST: StorageFullRetrySettings = { initialIntervalMs: 300, backoffCoefficient: 2, maximumIntervalMs: 1_000, totalWaitMs: 20_000 };
  const disks: SmallDisk[] = [];
  const stores: CheckpointStore[] = [];
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
    for (const d of disks.splice(0)) d.unmount();
  });
  const fullStore = (bytes = 1 << 20) => {
    const disk = mountSmallDisk(bytes);
    disks.push(disk);
    const store = new CheckpointStore(new LocalStorage(disk.dir));
    stores.push(store);
    return { disk, store };
  };
  type Beat = { step: number; phase: string };
  /** A real activity context; its log lines are kept in `logs` instead of printed. */
  const activityEnv = (logs: string[] = []) => new MockActivityEnvironment(undefined, { logger: new DefaultLogger('WARN', (entry) => logs.push(entry.message)) });
  const inActivity = <T>(env: MockActivityEnvironment, fn: () => Promise<T>) => env.run<[], T, () => Promise<T>>(fn);

  it('waits while the disk is full, heartbeating so, and saves the same step once space is freed', async () => {
    const { disk, store } = fullStore();
    const engine = createEngine({ kind: 'onnx' });
    await engine.init(microConfig(), 4);
    await trainOnStepBatches(engine, 3);
    const state = await engine.saveState();
    disk.fill();
    const logs: string[] = [];
    const env = activityEnv(logs);
    const beats: Beat[] = [];
    env.on('heartbeat', (d: Beat) => {
      beats.push(d);
      if (beats.length === 3) disk.free(); // the operator frees space while the save waits
    });
    const manifest = await inActivity(env, () => saveEngineCheckpoint(store, engine, { runId: 'r', stage: 'sft', configHash: 'h' }, FAST));
    expect(manifest).toMatchObject({ step: 3, stage: 'sft' });
    expect(engine.step()).toBe(3); // the engine was not touched, let alone trained again
    expect(beats[0]).toEqual({ step: 3, phase: expect.stringMatching(/^disk is full: retrying the checkpoint save of step 3 in \d+ s$/) as unknown });
    expect(logs[0]).toMatch(/^disk is full: retrying the checkpoint save of step 3 in \d+ s$/);
    const b = createEngine({ kind: 'onnx' });
    await loadEngineCheckpoint(store, manifest.key, b);
    expect(await b.saveState()).toEqual(state);
    await engine.dispose();
    await b.dispose();
  });

  it('removes what a failed attempt wrote, so a retry finds the space that was freed', async () => {
    // Two files of 400 KiB on a 1 MiB disk holding 300 KiB of filler: one is written, the other meets ENOSPC. Left
    // behind, the written one would take most of the 300 KiB freed later, and every retry would fail again.
    const { disk, store } = fullStore();
    disk.fill(300 << 10);
    const files = ['a.bin', 'b.bin'].map((name, i) => ({ name, data: new Uint8Array(400 << 10).fill(i + 1) }));
    const env = activityEnv();
    let beats = 0;
    env.on('heartbeat', () => {
      if (++beats === 1) disk.free();
    });
    const manifest = await inActivity(env, () => saveCheckpoint(store, { runId: 'r', stage: 'sft', step: 1, configHash: 'h', files }, FAST));
    expect(beats).toBeGreaterThan(0);
    expect((await store.load(manifest.key)).files.get('b.bin')).toEqual(Buffer.from(files[1]!.data));
  });

  it('gives up after the declared total wait with the retryable disk-full error', async () => {
    const { disk, store } = fullStore();
    disk.fill();
    const env = activityEnv();
    const phases: string[] = [];
    env.on('heartbeat', (d: Beat) => phases.push(d.phase));
    const started = Date.now();
    const err: unknown = await inActivity(env, () => saveCheckpoint(store, { runId: 'r', stage: 'sft', step: 2, configHash: 'h', files: [{ name: 'state.bin', data: new Uint8Array(64 << 10) }] }, { ...FAST, totalWaitMs: 2_000 }))
      .catch((e: unknown) => e);
    expect(Date.now() - started).toBeGreaterThanOrEqual(2_000);
    expect(err).toBeInstanceOf(StorageFullError);
    expect((err as StorageFullError).retryable).toBe(true);
    expect((err as Error).message).toMatch(/checkpoint runs\/r\/sft\/checkpoints\/00000002 could not be saved: the disk stayed full for 2s \(cannot write .*the disk is full \(ENOSPC\)/);
    expect(phases.length).toBeGreaterThan(1);
    expect(await store.latest('r', 'sft')).toBeUndefined();
  });

  it('outside an activity (sophia sft) fails at once with the disk-full error', async () => {
    const { disk, store } = fullStore();
    disk.fill();
    const err: unknown = await saveCheckpoint(store, { runId: 'r', stage: 'sft', step: 1, configHash: 'h', files: [{ name: 'state.bin', data: new Uint8Array(64 << 10) }] }, FAST).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageFullError);
  });
});
