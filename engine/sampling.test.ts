import { describe, expect, it } from 'vitest';
import { Rng } from './rng';
import { pickToken } from './sampling';

const logits = Float32Array.of(2, 1, 0.5, -1, 3, 0);

function distribution(temperature: number, topP: number, n = 40_000): number[] {
  const rng = new Rng(5);
  const counts = new Array<number>(logits.length).fill(0);
  for (let i = 0; i < n; i++) counts[pickToken(logits, temperature, topP, rng).token]!++;
  return counts.map((c) => c / n);
}

function softmax(xs: ArrayLike<number>, t: number): number[] {
  const z = Array.from(xs, (x) => x / t);
  const m = Math.max(...z);
  const e = z.map((x) => Math.exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

describe('pickToken', () => {
  it('is greedy at temperature 0, with the untempered logprob', () => {
    const pick = pickToken(logits, 0, 1, new Rng(1));
    expect(pick.token).toBe(4);
    expect(pick.logprob).toBeCloseTo(Math.log(softmax(logits, 1)[4]!), 10);
  });

  it('samples from softmax(logits / T) and reports that logprob', () => {
    const p = softmax(logits, 0.7);
    distribution(0.7, 1).forEach((f, i) => expect(f).toBeCloseTo(p[i]!, 2));
    const pick = pickToken(logits, 0.7, 1, new Rng(9));
    expect(pick.logprob).toBeCloseTo(Math.log(p[pick.token]!), 10);
  });

  it('keeps only the nucleus with top-p and renormalizes it', () => {
    const p = softmax(logits, 1); // sorted: 4 (0.61), 0 (0.22), 1 (0.08), …
    const f = distribution(1, 0.8);
    expect(f[4]! + f[0]!).toBe(1);
    expect(f[4]!).toBeCloseTo(p[4]! / (p[4]! + p[0]!), 2);
  });

  it('picks the same tokens as a full sort of the vocabulary at top-p < 1 (ties included)', () => {
    // Reference: every token sorted heaviest first (lower index first on ties), kept until the mass reaches top-p.
    const reference = (row: Float32Array, temperature: number, topP: number, rng: Rng): number => {
      const z = Array.from(row, (x) => x * (1 / temperature));
      const max = Math.max(...z);
      const e = z.map((x) => Math.exp(x - max));
      const sum = e.reduce((a, b) => a + b, 0);
      const order = e.map((_, i) => i).sort((a, b) => e[b]! - e[a]! || a - b);
      let kept = 0;
      let mass = 0;
      while (kept < e.length && mass < topP * sum) mass += e[order[kept++]!]!;
      const u = rng.nextFloat() * mass;
      let acc = 0;
      for (let k = 0; k < kept; k++) {
        acc += e[order[k]!]!;
        if (u < acc) return order[k]!;
      }
      return order[kept - 1]!;
    };
    const gen = new Rng(11);
    let checked = 0;
    for (const v of [2, 7, 64, 1000]) {
      for (let r = 0; r < 60; r++) {
        // Every third row quantized to a few levels, so many tokens tie.
        const row = Float32Array.from({ length: v }, () => (r % 3 === 0 ? Math.round(gen.nextNormal()) : gen.nextNormal() * 3));
        for (const topP of [0.05, 0.5, 0.9, 0.999]) {
          const temperature = 0.5 + (r % 4) * 0.3;
          const [a, b] = [new Rng(100 + r), new Rng(100 + r)];
          for (let k = 0; k < 5; k++) {
            expect(pickToken(row, temperature, topP, a).token).toBe(reference(row, temperature, topP, b));
            checked++;
          }
        }
      }
    }
    expect(checked).toBe(4 * 60 * 4 * 5);
  });

  it('is deterministic for a seed', () => {
    const a = new Rng(3);
    const b = new Rng(3);
    for (let i = 0; i < 50; i++) expect(pickToken(logits, 1.3, 0.9, a)).toEqual(pickToken(logits, 1.3, 0.9, b));
  });
});
