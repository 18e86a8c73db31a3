import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { presetConfig } from '../engine/model/config';
import { type EngineOptions, createEngine } from '../engine/factory';
import { RUN_PRESETS, mergeConfig, parseRunConfig } from '../config/run-config';
import { estimateRun } from '../config/limits';
import { QWEN2_5_VL_3B } from '../config/testing/hf-configs';
import { EnginePool, engineOptionsOf, frozenEngineOptionsOf, workerMemoryBytes } from './engine-pool';
import { withFailureMapping } from './failures';

const config = { ...presetConfig('tiny', 'policy', 40), layers: 1, width: 32, heads: 2 };
const ONNX: EngineOptions = { kind: 'onnx' };

describe('EnginePool', () => {
  it('spills an evicted tagged engine and restores it, state and tag', async () => {
    const pool = new EnginePool(createEngine, 1);
    const a = await pool.slot('run-a/policy', ONNX);
    await a.engine.init(config, 1);
    pool.mark('run-a/policy', 'rl-step:7');
    const before = await a.engine.saveState();

    const b = await pool.slot('run-b/policy', ONNX); // evicts run-a (capacity 1)
    await b.engine.init(config, 2);
    expect(pool.loaded()).toEqual(['run-b/policy']);

    const again = await pool.slot('run-a/policy', ONNX);
    expect(again.checkpointKey).toBe('rl-step:7');
    expect(await again.engine.saveState()).toEqual(before);
    await pool.dispose();
  });

  it('does not keep the state of an untagged engine (it may be mid-update): the slot comes back empty', async () => {
    const pool = new EnginePool(createEngine, 1);
    const a = await pool.slot('a', ONNX);
    await a.engine.init(config, 1);
    pool.mark('a', undefined);
    await pool.slot('b', ONNX);
    const again = await pool.slot('a', ONNX);
    expect(again.checkpointKey).toBeUndefined();
    expect(() => again.engine.config()).toThrow();
    await pool.dispose();
  });

  it('keeps at most spillCapacity spilled states, dropping the least recently used', async () => {
    const pool = new EnginePool(createEngine, 1, 1);
    for (const name of ['x', 'y', 'z']) {
      const s = await pool.slot(name, ONNX);
      await s.engine.init(config, 1);
      pool.mark(name, `tag-${name}`);
    }
    // x was spilled, then dropped when y was spilled; z is loaded. Fetching y restores it (z is spilled instead).
    expect((await pool.slot('y', ONNX)).checkpointKey).toBe('tag-y');
    expect((await pool.slot('x', ONNX)).checkpointKey).toBeUndefined();
    expect((await pool.slot('z', ONNX)).checkpointKey).toBeUndefined(); // y was spilled by x's fetch and z dropped
    await pool.dispose();
  });

  it('spills into a folder under SOPHIA_SCRATCH that goes when the state is restored, dropped or the pool disposed', async () => {
    const scratch = mkdtempSync(path.join(tmpdir(), 'sophia-pool-scratch-'));
    const previous = process.env.SOPHIA_SCRATCH;
    process.env.SOPHIA_SCRATCH = scratch;
    const spills = () => readdirSync(scratch).filter((n) => n.startsWith('sophia-spill-')).length;
    try {
      const pool = new EnginePool(createEngine, 1, 1);
      for (const name of ['x', 'y']) {
        const s = await pool.slot(name, ONNX);
        await s.engine.init(config, 1);
        pool.mark(name, `tag-${name}`);
      }
      expect(spills()).toBe(1); // x
      await pool.slot('z', ONNX); // spills y, drops x (capacity 1)
      expect(spills()).toBe(1);
      expect((await pool.slot('y', ONNX)).checkpointKey).toBe('tag-y'); // restored: its folder goes; z was untagged
      expect(spills()).toBe(0);
      pool.mark('y', 'tag-y');
      await pool.slot('x', ONNX);
      expect(spills()).toBe(1);
      await pool.dispose();
      expect(spills()).toBe(0);
    } finally {
      if (previous === undefined) delete process.env.SOPHIA_SCRATCH;
      else process.env.SOPHIA_SCRATCH = previous;
      rmSync(scratch, { recursive: true, force: true });
    }
  });

  it("makes each slot's engine with the options of the run that uses it, and remakes it when they change", async () => {
    const made: EngineOptions[] = [];
    const pool = new EnginePool((options) => (made.push(options), createEngine(options)), 2);
    const a = await pool.slot('run-a/policy', { kind: 'onnx', threads: 1 });
    await a.engine.init(config, 1);
    pool.mark('run-a/policy', 'ckpt-1');
    expect((await pool.slot('run-a/policy', { kind: 'onnx', threads: 1 })).engine).toBe(a.engine); // same options: kept
    const b = await pool.slot('run-a/policy', { kind: 'onnx', threads: 2 });
    expect(b.engine).not.toBe(a.engine);
    expect(b.checkpointKey).toBeUndefined(); // a new engine: its owner reloads
    expect(made).toEqual([{ kind: 'onnx', threads: 1 }, { kind: 'onnx', threads: 2 }]);
    await pool.dispose();
  });

  it("takes a run's engine options from its config's engine section", () => {
    const withEngine = (engine: Record<string, unknown>) => parseRunConfig(mergeConfig(RUN_PRESETS.ci, { engine }), 'test');
    expect(engineOptionsOf(withEngine({ kind: 'onnx', executionProvider: 'cpu', threads: 0 }))).toEqual({ kind: 'onnx', executionProvider: 'cpu' });
    expect(engineOptionsOf(withEngine({ kind: 'onnx', executionProvider: 'cuda', threads: 3 }))).toEqual({ kind: 'onnx', executionProvider: 'cuda', threads: 3 });
    expect(() => engineOptionsOf(withEngine({ kind: 'pytorch' }))).toThrow(/engine.kind/);
  });

  describe('torch runs', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sophia-engine-pool-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));
    const model = path.join(dir, 'Qwen2.5-VL-3B-Instruct');
    mkdirSync(model);
    writeFileSync(path.join(model, 'config.json'), JSON.stringify(QWEN2_5_VL_3B));
    const torch = (engine: Record<string, unknown>) => parseRunConfig(mergeConfig(RUN_PRESETS.ci, { engine: { kind: 'torch', model, ...engine } }), 'test');
    const lots = 1024 ** 4;

    it('maps the torch section onto TorchEngineSettings: auto dtype and device left to the engine, threads 0 omitted', () => {
      expect(engineOptionsOf(torch({}), lots)).toEqual({ kind: 'torch', gradientCheckpointing: false });
      expect(engineOptionsOf(torch({ dtype: 'float64', device: 'cpu', threads: 2, gradientCheckpointing: true }), lots)).toEqual({ kind: 'torch', dtype: 'float64', device: 'cpu', threads: 2, gradientCheckpointing: true });
    });

    it('offloads RL\'s frozen models only where the config says engine.offloadFrozen, and never the training engine', () => {
      expect(frozenEngineOptionsOf(torch({ offloadFrozen: true }), lots)).toEqual({ kind: 'torch', gradientCheckpointing: false, offload: true });
      expect(engineOptionsOf(torch({ offloadFrozen: true }), lots)).toEqual({ kind: 'torch', gradientCheckpointing: false });
      expect(frozenEngineOptionsOf(torch({}), lots)).toEqual({ kind: 'torch', gradientCheckpointing: false });
      expect(frozenEngineOptionsOf(parseRunConfig(RUN_PRESETS.ci, 'test'))).toEqual(engineOptionsOf(parseRunConfig(RUN_PRESETS.ci, 'test')));
    });

    it('gives engine.rollout to the engines that sample, never to RL\'s frozen models', () => {
      const rollout = { backend: 'vllm', maxNumSeqs: 8 };
      expect(engineOptionsOf(torch({ rollout }), lots)).toEqual({ kind: 'torch', gradientCheckpointing: false, rollout });
      expect(frozenEngineOptionsOf(torch({ rollout }), lots)).toEqual({ kind: 'torch', gradientCheckpointing: false });
      expect(frozenEngineOptionsOf(torch({ rollout, offloadFrozen: true }), lots)).toEqual({ kind: 'torch', gradientCheckpointing: false, offload: true });
    });

    it('refuses a torch run that does not fit this worker, naming the parts; an s3:// model counts once downloaded', () => {
      expect(() => engineOptionsOf(torch({}), 1024 ** 3)).toThrow(/^engine\.model: the run's engines need about [\d.]+ GiB \(3,754,622,976 parameters\) in its \w+ stage: policy weights \(3,754,622,976 parameters, bfloat16\) 7\.0 GiB, .*; this worker has 1\.0 GiB for them/);
      const s3 = parseRunConfig(mergeConfig(RUN_PRESETS.ci, { engine: { kind: 'torch', model: 's3://models/qwen' } }), 'test');
      expect(engineOptionsOf(s3, 1024 ** 3)).toEqual({ kind: 'torch', gradientCheckpointing: false });
      expect(() => engineOptionsOf(s3, 1024 ** 3, { models: { policy: model } })).toThrow(/3,754,622,976 parameters/);
      // On a CPU worker auto means float32: twice the bytes of the weights.
      expect(() => engineOptionsOf(torch({}), 1024 ** 3, { cuda: false })).toThrow(/policy weights \(3,754,622,976 parameters, float32\) 14\.0 GiB/);
    });
  });

  it('refuses, non-retryably, a run whose engines cannot fit this worker, before making any', async () => {
    const big = parseRunConfig(mergeConfig(RUN_PRESETS.ci, { model: { width: 2048, heads: 16, layers: 8 } }), 'test');
    const fits = estimateRun(big).engineMemoryBytes;
    expect(engineOptionsOf(big, fits)).toEqual({ kind: 'onnx', executionProvider: 'cpu' });
    expect(() => engineOptionsOf(big, fits - 1)).toThrow(/^model: the run's engines need about [\d.]+ [GM]iB \([\d,]+ parameters\); this worker has [\d.]+ [GM]iB/);
    // Through an activity's failure mapping it is a non-retryable failure.
    const refused = withFailureMapping({ slot: () => Promise.resolve(engineOptionsOf(big, fits - 1)) });
    await expect(refused.slot()).rejects.toMatchObject({ nonRetryable: true, type: 'ConfigError' });
    expect(workerMemoryBytes({ SOPHIA_WORKER_MEMORY_GB: '2' })).toBe(2 * 1024 ** 3);
    expect(() => workerMemoryBytes({ SOPHIA_WORKER_MEMORY_GB: 'x' })).toThrow(/SOPHIA_WORKER_MEMORY_GB/);
  });
});
