import { describe, expect, it } from 'vitest';
import { Rng } from './rng';

describe('Rng', () => {
  it('is reproducible from a seed and differs between seeds', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const c = new Rng(43);
    const xs = Array.from({ length: 5 }, () => a.nextU32());
    expect(Array.from({ length: 5 }, () => b.nextU32())).toEqual(xs);
    expect(Array.from({ length: 5 }, () => c.nextU32())).not.toEqual(xs);
  });

  it('resumes the exact stream from a saved state', () => {
    const a = new Rng(7);
    for (let i = 0; i < 100; i++) a.nextFloat();
    const resumed = new Rng(a.state());
    expect(Array.from({ length: 10 }, () => resumed.nextFloat())).toEqual(Array.from({ length: 10 }, () => a.nextFloat()));
  });

  it('produces plausible uniform and normal statistics', () => {
    const r = new Rng(1);
    const n = 20_000;
    const u = Array.from({ length: n }, () => r.nextFloat());
    expect(Math.min(...u)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...u)).toBeLessThan(1);
    expect(u.reduce((a, b) => a + b, 0) / n).toBeCloseTo(0.5, 1);
    const z = Array.from({ length: n }, () => r.nextNormal());
    const mean = z.reduce((a, b) => a + b, 0) / n;
    const variance = z.reduce((a, b) => a + (b - mean) ** 2, 0) / n;
    expect(Math.abs(mean)).toBeLessThan(0.03);
    expect(variance).toBeGreaterThan(0.95);
    expect(variance).toBeLessThan(1.05);
  });

  it('rejects bad seeds and states', () => {
    expect(() => new Rng(1.5)).toThrow(RangeError);
    expect(() => new Rng([0, 0, 0, 0])).toThrow(RangeError);
  });
});
