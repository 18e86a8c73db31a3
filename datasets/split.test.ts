import { describe, expect, it } from 'vitest';
import { type DataSplit, splitOf, splitPosition } from './split';

const ids = Array.from({ length: 20000 }, (_, i) => `example-${i}`);

describe('splitOf', () => {
  it('is a fixed function of the id (golden values: sha256 prefixes)', () => {
    // sha256("a") = ca978112ca1b… → 0xca978112ca1b / 2^48; sha256("geo-1") = 11412745e4a8… .
    expect(splitPosition('a')).toBeCloseTo(0xca978112ca1b / 2 ** 48, 15);
    expect(splitPosition('geo-1')).toBeCloseTo(0x11412745e4a8 / 2 ** 48, 15);
    expect(splitOf('a', { test: 0.1, validation: 0.1 })).toBe('train'); // 0.7914
    expect(splitOf('a', { test: 0.1, validation: 0.25 })).toBe('validation'); // ≥ 0.75
    expect(splitOf('geo-1', { test: 0.1, validation: 0 })).toBe('test'); // 0.0674
  });

  it('gives each split its share within 1 percentage point on 20000 ids', () => {
    const counts: Record<DataSplit, number> = { train: 0, validation: 0, test: 0 };
    for (const id of ids) counts[splitOf(id, { test: 0.1, validation: 0.05 })]++;
    expect(Math.abs(counts.test / ids.length - 0.1)).toBeLessThan(0.01);
    expect(Math.abs(counts.validation / ids.length - 0.05)).toBeLessThan(0.01);
    expect(counts.train + counts.test + counts.validation).toBe(ids.length);
  });

  it('never moves a held-out example into train when a share grows', () => {
    for (const id of ids.slice(0, 5000)) {
      const before = splitOf(id, { test: 0.1, validation: 0.05 });
      const after = splitOf(id, { test: 0.2, validation: 0.1 });
      if (before !== 'train') expect(after).toBe(before);
    }
  });

  it('refuses shares outside [0, 1] or summing past 1', () => {
    expect(() => splitOf('x', { test: -0.1, validation: 0 })).toThrow(RangeError);
    expect(() => splitOf('x', { test: 0.6, validation: 0.5 })).toThrow(/at most 1/);
  });
});
