import { describe, expect, it } from 'vitest';
import { Graph } from './graph';
import * as op from './ops';
import { Session, SessionDisposedError, hostTensor } from './runtime';

/** y = x · x for an (n, n) input: a run long enough to be in flight while other code runs. */
async function squareSession(n: number): Promise<Session> {
  const g = new Graph('square');
  const x = g.input('x', 'float32', [n, n]);
  g.output(op.matmul(g, x, x), 'y');
  return Session.create(g.toModel());
}

describe('Session', () => {
  it('dispose waits for a run in flight, which completes with its result; later runs throw', async () => {
    const n = 256;
    const session = await squareSession(n);
    const x = hostTensor('float32', [n, n], Float32Array.from({ length: n * n }, (_, i) => ((i % 7) - 3) / 8));
    const running = session.run({ x });
    const disposed = session.dispose();
    const out = await running;
    await disposed;
    // Row 0 · column 0 of x·x, computed here.
    let want = 0;
    for (let k = 0; k < n; k++) want += x.data[k]! as number * (x.data[k * n]! as number);
    expect(out.y!.data[0]).toBeCloseTo(want, 4);
    await expect(session.run({ x })).rejects.toBeInstanceOf(SessionDisposedError);
    await expect(session.dispose()).resolves.toBeUndefined(); // idempotent
  });
});
