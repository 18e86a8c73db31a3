import { describe, expect, it } from 'vitest';
import { presetConfig } from '../engine/model/config';
import { type EngineOptions, createEngine } from '../engine/factory';
import { RUN_PRESETS, mergeConfig, parseRunConfig } from '../config/run-config';
import { estimateRun } from '../config/limits';
import { EnginePool, engineOptionsOf, workerMemoryBytes } from './engine-pool';
import { withFailureMapping } from './failures';

const config = { ...presetConfig('tiny', 'policy', 40), layers: 1, width: 32, heads: 2 };
const ONNX: EngineOptions = { kind: 'onnx' };

describe('EnginePool', () => {
  it('spills an evicted tagged engine to host memory and restores it, state and tag', async () => {
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
