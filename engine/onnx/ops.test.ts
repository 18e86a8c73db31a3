import { describe, expect, it } from 'vitest';
import { pseudoRandom } from './gradcheck';
import { Graph } from './graph';
import * as op from './ops';
import { Session, hostTensor } from './runtime';

describe('matmulSlotMajor (FusedMatMul with transBatchB)', () => {
  it('equals the product with b transposed to batch-major first, with and without transB', async () => {
    const [s, b, h, d, m] = [5, 2, 3, 4, 2];
    const g = new Graph('slot-major');
    const q = g.input('q', 'float32', [b, h, m, d]); // (…, M, D)
    const w = g.input('w', 'float32', [b, h, m, s]); // (…, M, S)
    const cache = g.input('cache', 'float32', [s, b, h, d]); // slot-major
    const batchMajor = op.transpose(g, cache, [1, 2, 0, 3]); // (B, H, S, D)
    g.output(op.matmulSlotMajor(g, q, cache, { transB: true, alpha: 0.5 }), 'scores');
    g.output(op.mulScalar(g, op.matmul(g, q, op.transposeLast2(g, batchMajor)), 0.5), 'scores_ref');
    g.output(op.matmulSlotMajor(g, w, cache, { transB: false }), 'mixed');
    g.output(op.matmul(g, w, batchMajor), 'mixed_ref');
    const session = await Session.create(g.toModel());
    const t = (shape: number[], seed: number) => hostTensor('float32', shape, Float32Array.from(pseudoRandom(shape.reduce((x, y) => x * y), seed)));
    const out = await session.run({ q: t([b, h, m, d], 1), w: t([b, h, m, s], 2), cache: t([s, b, h, d], 3) });
    await session.dispose();
    expect(out.scores!.shape).toEqual([b, h, m, s]);
    expect(out.mixed!.shape).toEqual([b, h, m, d]);
    const close = (x: string, y: string) => Array.from(out[x]!.data as Float32Array).forEach((v, i) => expect(v).toBeCloseTo((out[y]!.data as Float32Array)[i]!, 5));
    close('scores', 'scores_ref');
    close('mixed', 'mixed_ref');
  });

  it('names both shapes when the batch axes do not line up', () => {
    const g = new Graph('bad');
    const q = g.input('q', 'float32', [2, 3, 1, 4]);
    const cache = g.input('cache', 'float32', [5, 3, 2, 4]);
    expect(() => op.matmulSlotMajor(g, q, cache, { transB: true })).toThrow(/batch axes differ: \[2, 3, 1, 4\] and \[3, 2, 5, 4\]/);
  });
});
