import { describe, expect, it } from 'vitest';
import { comparePaired, normalCdf, normalQuantile, powerPlan, quantile, type SeedPair, varianceComponents } from './paired';
import { Rng } from '../engine/rng';

/** Seeds of m examples: A correct with probability pa + the seed's training shift, B with pb (independent examples). */
function simulate(seeds: number, m: number, pa: number, pb: number, seedSd: number, seed = 7): SeedPair[] {
  const rng = new Rng(seed);
  return Array.from({ length: seeds }, (_, s) => {
    const shift = seedSd * rng.nextNormal();
    const a: number[] = [];
    const b: number[] = [];
    for (let i = 0; i < m; i++) {
      a.push(rng.nextFloat() < pa + shift ? 1 : 0);
      b.push(rng.nextFloat() < pb ? 1 : 0);
    }
    return { seed: s + 1, a, b };
  });
}

describe('normal distribution', () => {
  it.each([
    [0.5, 0],
    [0.975, 1.959964],
    [0.8, 0.841621],
    [0.995, 2.575829],
    [0.01, -2.326348],
  ])('Φ⁻¹(%f) = %f, and Φ inverts it', (p, z) => {
    expect(normalQuantile(p)).toBeCloseTo(z, 5);
    expect(normalCdf(z)).toBeCloseTo(p, 6);
  });

  it('refuses p outside (0, 1)', () => {
    expect(() => normalQuantile(1)).toThrow(/p must be in \(0, 1\)/);
  });
});

describe('comparePaired', () => {
  it('measures the paired difference per seed and its mean', () => {
    const c = comparePaired([
      { seed: 1, a: [1, 1, 0, 0], b: [1, 0, 0, 0] },
      { seed: 2, a: [1, 1, 1, 0], b: [1, 1, 0, 0] },
    ]);
    expect(c.perSeed).toEqual([0.25, 0.25]);
    expect(c.difference).toBe(0.25);
    expect(c.components.seed).toBe(0);
    expect(c.interval[0]).toBeLessThanOrEqual(0.25);
    expect(c.interval[1]).toBeGreaterThanOrEqual(0.25);
  });

  it('gives an interval that covers the true difference and excludes 0 for a clear effect, and a small p-value', () => {
    const c = comparePaired(simulate(8, 400, 0.6, 0.5, 0.01));
    expect(c.interval[0]).toBeGreaterThan(0.03);
    expect(c.interval[1]).toBeLessThan(0.17);
    expect(c.interval[0]).toBeLessThan(0.1);
    expect(c.interval[1]).toBeGreaterThan(0.1);
    expect(c.pValue).toBeLessThan(0.01);
  });

  it('finds no difference between equal variants: the interval holds 0 and the p-value is large', () => {
    const c = comparePaired(simulate(5, 200, 0.5, 0.5, 0, 3));
    expect(c.interval[0]).toBeLessThan(0);
    expect(c.interval[1]).toBeGreaterThan(0);
    expect(c.pValue).toBeGreaterThan(0.05);
  });

  it('widens with training noise across seeds that the examples alone do not show', () => {
    const quiet = comparePaired(simulate(6, 300, 0.55, 0.5, 0, 11));
    const noisy = comparePaired(simulate(6, 300, 0.55, 0.5, 0.08, 11));
    expect(noisy.components.seed).toBeGreaterThan(10 * Math.max(quiet.components.seed, 1e-6));
    expect(noisy.standardError).toBeGreaterThan(quiet.standardError);
    expect(noisy.interval[1] - noisy.interval[0]).toBeGreaterThan(1.5 * (quiet.interval[1] - quiet.interval[0]));
  });

  it('is the same for the same data and bootstrap seed', () => {
    const pairs = simulate(3, 50, 0.6, 0.5, 0.02);
    expect(comparePaired(pairs)).toEqual(comparePaired(pairs));
  });

  it('refuses seeds with different example counts, naming the seed', () => {
    expect(() => comparePaired([{ seed: 1, a: [1], b: [1] }, { seed: 2, a: [1, 0], b: [1, 0] }])).toThrow(/seed 2 has 2 and 2 examples/);
  });

  it('quantile interpolates between order statistics', () => {
    expect(quantile([0, 1, 2, 3], 0.5)).toBe(1.5);
  });
});

describe('varianceComponents', () => {
  it('separates a seed shift, an example effect and their interaction', () => {
    // d_si = seed effect + example effect exactly (no interaction): rows −1, +1; columns 0, 2, 4.
    const d = [[-1, 1, 3], [1, 3, 5]];
    const c = varianceComponents(d);
    expect(c.residual).toBeCloseTo(0, 12);
    expect(c.seed).toBeCloseTo(2, 12); // var(−1 +1 … row means 1, 3) = 2
    expect(c.example).toBeCloseTo(4, 12); // var(column means 0, 2, 4) = 4
  });

  it('with one seed, counts everything as residual', () => {
    expect(varianceComponents([[1, 0, 1, 0]])).toEqual({ seed: 0, example: 0, residual: 1 / 3 });
  });
});

describe('powerPlan', () => {
  const base = { seeds: 3, examples: 100 };

  it('matches the textbook sample size when all the noise is the seeds: σ = 2 points, δ = 1.5 → ⌈(2.80 · 2 / 1.5)²⌉ seeds', () => {
    const plan = powerPlan({ ...base, components: { seed: 0.02 ** 2, example: 0, residual: 0 } }, 0.015);
    expect(plan.seedsNeeded).toBe(Math.ceil(((1.959964 + 0.841621) * 0.02 / 0.015) ** 2));
    expect(plan.standardError).toBeCloseTo(0.02 / Math.sqrt(3), 10);
    expect(plan.detectableEffect).toBeCloseTo(2.801585 * 0.02 / Math.sqrt(3), 5);
    expect(plan.examplesNeeded).toBe(Number.POSITIVE_INFINITY); // more examples cannot remove training noise
    expect(plan.achievedPower).toBeLessThan(0.8);
    expect(plan.achievedPower).toBeCloseTo(normalCdf(0.015 / (0.02 / Math.sqrt(3)) - 1.959964), 5);
  });

  it('trades examples for seeds when the noise is the interaction, and needs more examples when it is the examples', () => {
    // Interaction only (two coin flips per example: 0.5): variance 0.5 / (n m).
    const target = (0.015 / 2.801585) ** 2;
    const mixed = powerPlan({ ...base, seeds: 4, components: { seed: 0, example: 0, residual: 0.5 } }, 0.015);
    expect(mixed.seedsNeeded).toBe(Math.ceil(0.5 / 100 / target));
    expect(mixed.examplesNeeded).toBe(Math.ceil(0.5 / 4 / target));
    // Example effects alone: seeds cannot help once σ²_example / m is over the target.
    const examples = powerPlan({ ...base, components: { seed: 0, example: 0.01, residual: 0 } }, 0.015);
    expect(examples.seedsNeeded).toBe(Number.POSITIVE_INFINITY);
    expect(examples.examplesNeeded).toBe(Math.ceil(0.01 / target));
  });
});
