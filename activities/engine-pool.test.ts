import { describe, expect, it } from 'vitest';
import { presetConfig } from '../engine/model/config';
import { createEngine } from '../engine/factory';
import { EnginePool } from './engine-pool';

const config = { ...presetConfig('tiny', 'policy', 40), layers: 1, width: 32, heads: 2 };

describe('EnginePool', () => {
  it('spills an evicted tagged engine to host memory and restores it, state and tag', async () => {
    const pool = new EnginePool(() => createEngine({ kind: 'onnx' }), 1);
    const a = await pool.slot('run-a/policy');
    await a.engine.init(config, 1);
    pool.mark('run-a/policy', 'rl-step:7');
    const before = await a.engine.saveState();

    const b = await pool.slot('run-b/policy'); // evicts run-a (capacity 1)
    await b.engine.init(config, 2);
    expect(pool.loaded()).toEqual(['run-b/policy']);

    const again = await pool.slot('run-a/policy');
    expect(again.checkpointKey).toBe('rl-step:7');
    expect(await again.engine.saveState()).toEqual(before);
    await pool.dispose();
  });

  it('does not keep the state of an untagged engine (it may be mid-update): the slot comes back empty', async () => {
    const pool = new EnginePool(() => createEngine({ kind: 'onnx' }), 1);
    const a = await pool.slot('a');
    await a.engine.init(config, 1);
    pool.mark('a', undefined);
    await pool.slot('b');
    const again = await pool.slot('a');
    expect(again.checkpointKey).toBeUndefined();
    expect(() => again.engine.config()).toThrow();
    await pool.dispose();
  });

  it('keeps at most spillCapacity spilled states, dropping the least recently used', async () => {
    const pool = new EnginePool(() => createEngine({ kind: 'onnx' }), 1, 1);
    for (const name of ['x', 'y', 'z']) {
      const s = await pool.slot(name);
      await s.engine.init(config, 1);
      pool.mark(name, `tag-${name}`);
    }
    // x was spilled, then dropped when y was spilled; z is loaded. Fetching y restores it (z is spilled instead).
    expect((await pool.slot('y')).checkpointKey).toBe('tag-y');
    expect((await pool.slot('x')).checkpointKey).toBeUndefined();
    expect((await pool.slot('z')).checkpointKey).toBeUndefined(); // y was spilled by x's fetch and z dropped
    await pool.dispose();
  });
});
