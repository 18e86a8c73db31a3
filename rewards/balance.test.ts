import { describe, expect, it } from 'vitest';
import { balanceByBin, scoreBin, splitByPrompt } from './balance';

describe('scoreBin', () => {
  it('puts [k/10, (k+1)/10) in bin k and 1.0 in bin 9', () => {
    expect([0, 0.05, 0.1, 0.29, 0.3, 0.1 + 0.2, 0.7, 0.9, 0.95, 1].map(scoreBin)).toEqual([0, 0, 1, 2, 3, 3, 7, 9, 9, 9]);
  });

  it('refuses scores outside [0, 1]', () => {
    for (const bad of [-0.1, 1.01, NaN, Infinity]) expect(() => scoreBin(bad)).toThrow(RangeError);
  });
});

describe('balanceByBin', () => {
  // Sizes per bin: 5, 0, 2, 8, 1, 0, 3, 0, 0, 10 (bin 9 has four 1.0s and six 0.9s); 29 items.
  const SIZES = [5, 0, 2, 8, 1, 0, 3, 0, 0, 10];
  const items = SIZES.flatMap((n, bin) => Array.from({ length: n }, (_, i) => ({ id: `${bin}-${i}`, score: bin === 9 && i < 4 ? 1 : bin / 10 })));
  // Interleave the bins so that order preservation is visible.
  const input = [...items].sort((a, b) => Number(a.id.split('-')[1]) - Number(b.id.split('-')[1]) || a.score - b.score);
  const scoreOf = (t: { score: number }) => t.score;

  it('caps every bin at the median non-empty bin size by default', () => {
    // Non-empty sizes sorted: 1 2 3 5 8 10 → lower median 3.
    const out = balanceByBin(input, scoreOf, { seed: 1 });
    expect(out.counts).toEqual([3, 0, 2, 3, 1, 0, 3, 0, 0, 3]);
    expect(out.items).toHaveLength(15);
    expect(out.dropped).toBe(14);
  });

  it('caps at an explicit perBin', () => {
    const out = balanceByBin(input, scoreOf, { seed: 1, perBin: 4 });
    expect(out.counts).toEqual([4, 0, 2, 4, 1, 0, 3, 0, 0, 4]);
    expect(out.dropped).toBe(29 - 18);
    expect(balanceByBin(input, scoreOf, { seed: 1, perBin: 100 }).items).toEqual(input);
  });

  it('invents nothing, repeats nothing and keeps the input order', () => {
    const out = balanceByBin(input, scoreOf, { seed: 5 });
    const positions = out.items.map((item) => input.indexOf(item));
    expect(positions.every((p) => p >= 0)).toBe(true);
    expect(new Set(positions).size).toBe(positions.length);
    expect(positions).toEqual([...positions].sort((a, b) => a - b));
    // Small bins are kept whole.
    for (const id of ['2-0', '2-1', '4-0', '6-0', '6-1', '6-2']) expect(out.items.map((t) => t.id)).toContain(id);
  });

  it('is deterministic given the seed, and the seed matters', () => {
    const ids = (seed: number) => balanceByBin(input, scoreOf, { seed }).items.map((t) => t.id);
    expect(ids(7)).toEqual(ids(7));
    const distinct = new Set([1, 2, 3, 4, 5, 6].map((seed) => ids(seed).join(' ')));
    expect(distinct.size).toBeGreaterThan(1);
  });

  it('handles empty input and rejects a bad perBin', () => {
    expect(balanceByBin([], scoreOf, { seed: 1 })).toEqual({ items: [], counts: new Array(10).fill(0), dropped: 0 });
    expect(() => balanceByBin(input, scoreOf, { seed: 1, perBin: 0 })).toThrow(RangeError);
    expect(() => balanceByBin(input, scoreOf, { seed: 1, perBin: 2.5 })).toThrow(RangeError);
  });
});

describe('splitByPrompt', () => {
  // 10 prompts with 1–3 responses each, interleaved.
  const items = Array.from({ length: 20 }, (_, i) => ({ prompt: `p${(i * 7) % 10}`, i }));
  const promptOf = (t: { prompt: string }) => t.prompt;
  const prompts = (xs: readonly { prompt: string }[]) => new Set(xs.map(promptOf));

  it('moves whole prompts: share of the prompts (rounded) out, every item on exactly one side, input order kept', () => {
    const { kept, out } = splitByPrompt(items, promptOf, { share: 0.3, seed: 5 });
    expect(prompts(out).size).toBe(3);
    expect([...prompts(out)].filter((p) => prompts(kept).has(p))).toEqual([]);
    expect([...kept, ...out].map((t) => t.i).sort((a, b) => a - b)).toEqual(items.map((t) => t.i));
    expect(out.map((t) => t.i)).toEqual([...out.map((t) => t.i)].sort((a, b) => a - b));
  });

  it('is deterministic given the seed, and another seed picks other prompts', () => {
    const a = splitByPrompt(items, promptOf, { share: 0.5, seed: 1 });
    expect(splitByPrompt(items, promptOf, { share: 0.5, seed: 1 })).toEqual(a);
    expect(prompts(splitByPrompt(items, promptOf, { share: 0.5, seed: 2 }).out)).not.toEqual(prompts(a.out));
  });

  it('keeps at least minOut prompts out and one in, and refuses too few prompts', () => {
    const two = items.filter((t) => t.prompt === 'p0' || t.prompt === 'p1');
    expect(prompts(splitByPrompt(two, promptOf, { share: 0.01, seed: 1 }).out).size).toBe(1);
    expect(prompts(splitByPrompt(two, promptOf, { share: 0.99, seed: 1 }).kept).size).toBe(1);
    expect(prompts(splitByPrompt(items, promptOf, { share: 0.01, seed: 1, minOut: 2 }).out).size).toBe(2);
    expect(() => splitByPrompt(two, promptOf, { share: 0.5, seed: 1, minOut: 2 })).toThrow(/2 prompts cannot be split/);
    expect(() => splitByPrompt(items, promptOf, { share: 1, seed: 1 })).toThrow(RangeError);
  });
});
