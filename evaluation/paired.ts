/**
 * Comparing two training variants the way an ablation must: paired by seed and by evaluation example, with a
 * confidence interval that counts both sources of noise, and the power to see a difference of a given size.
 *
 * Data: for each seed s, the per-example correctness (1 or 0) of variant A and of variant B on the same evaluation
 * examples, in the same order (the ablation's runs of one seed share their SFT start, prompts order and test set).
 *
 *  - The paired difference of seed s is d_s = mean_i(a_si − b_si); the estimate is the mean of d_s over seeds.
 *  - Its 95 % interval is a crossed percentile bootstrap: each resample draws seeds with replacement and, once, the
 *    evaluation examples with replacement, used for every drawn seed and for both A and B (every seed evaluates the
 *    same examples, so the pairing holds at both levels). It so covers both the training noise (another seed trains
 *    differently) and the evaluation noise (another test set of the same size would score differently), without
 *    counting the evaluation noise twice as resampling examples within each seed would. The two-sided bootstrap
 *    p-value is 2 · min(P*(Δ ≤ 0), P*(Δ ≥ 0)).
 *    Resampling both seeds and examples counts their interaction (this seed did better on that example) at both
 *    levels, so the interval is somewhat wider than the true one: conservative, which is the safe side for claims.
 *  - Variance components of d_si (a two-way random-effects model, estimated from the crossed design's mean squares):
 *    σ²_seed (training: a seed shifts every example), σ²_example (some examples favour one arm whatever the seed),
 *    σ²_residual (seed × example). With n seeds and m examples the estimate's variance is
 *    σ²_seed / n + σ²_example / m + σ²_residual / (n m).
 *  - Power (normal approximation, two-sided α): detecting an effect δ with probability 1 − β needs that variance
 *    ≤ (δ / (z_{1−α/2} + z_{1−β}))²; `powerPlan` gives the seeds that takes at the measured m, the examples at the
 *    measured n, and the power at both. With few seeds the normal approximation is optimistic (a t-test needs more).
 */
import { Rng } from '../engine/rng';

export interface SeedPair {
  seed: number;
  /** Per-example correctness of variant A (1 correct, 0 not), in the evaluation's example order. */
  a: readonly number[];
  /** Variant B on the same examples in the same order. */
  b: readonly number[];
}

export interface PairedComparison {
  /** Seeds compared. */
  seeds: number;
  /** Evaluation examples per seed. */
  examples: number;
  /** Mean over seeds of mean(a − b): the estimated difference (accuracy points as a fraction). */
  difference: number;
  /** Per seed: mean(a − b). */
  perSeed: number[];
  /** 95 % (or `level`) hierarchical bootstrap interval of the difference. */
  interval: [number, number];
  /** Two-sided bootstrap p-value of "no difference". */
  pValue: number;
  /** Variance components of d_si (each at least 0; see the file's comment). */
  components: { seed: number; example: number; residual: number };
  /** The estimate's standard error from the components: √(σ²_seed / n + σ²_example / m + σ²_residual / (n m)). */
  standardError: number;
}

export interface BootstrapOptions {
  resamples?: number;
  level?: number;
  seed?: number;
}

const mean = (xs: readonly number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;

function variance(xs: readonly number[]): number {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  return xs.reduce((s, x) => s + (x - m) ** 2, 0) / (xs.length - 1);
}

/** The q-quantile of sorted values (linear interpolation between order statistics). */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) throw new RangeError('quantile of no values');
  const at = q * (sorted.length - 1);
  const lo = Math.floor(at);
  const hi = Math.ceil(at);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (at - lo);
}

export function comparePaired(pairs: readonly SeedPair[], options: BootstrapOptions = {}): PairedComparison {
  const { resamples = 10_000, level = 0.95, seed = 1 } = options;
  if (pairs.length === 0) throw new RangeError('comparePaired: no seeds to compare');
  const m = pairs[0]!.a.length;
  for (const p of pairs) {
    if (p.a.length !== p.b.length || p.a.length !== m || m === 0) {
      throw new RangeError(`comparePaired: seed ${p.seed} has ${p.a.length} and ${p.b.length} examples; every seed needs the same m > 0 examples for both variants (got m = ${m} first)`);
    }
  }
  const diffs = pairs.map((p) => p.a.map((x, i) => x - p.b[i]!));
  const perSeed = diffs.map(mean);
  const difference = mean(perSeed);
  const rng = new Rng(seed);
  const draw = (n: number) => Math.min(n - 1, Math.floor(rng.nextFloat() * n));
  const estimates = new Float64Array(resamples);
  const examples = new Int32Array(m);
  for (let r = 0; r < resamples; r++) {
    for (let i = 0; i < m; i++) examples[i] = draw(m);
    let total = 0;
    for (let s = 0; s < pairs.length; s++) {
      const d = diffs[draw(pairs.length)]!;
      for (let i = 0; i < m; i++) total += d[examples[i]!]!;
    }
    estimates[r] = total / (m * pairs.length);
  }
  const sorted = [...estimates].sort((x, y) => x - y);
  const tail = (1 - level) / 2;
  const below = sorted.filter((x) => x <= 0).length / resamples;
  const above = sorted.filter((x) => x >= 0).length / resamples;
  const components = varianceComponents(diffs);
  return {
    seeds: pairs.length,
    examples: m,
    difference,
    perSeed,
    interval: [quantile(sorted, tail), quantile(sorted, 1 - tail)],
    pValue: Math.min(1, 2 * Math.min(below, above)),
    components,
    standardError: Math.sqrt(estimateVariance(components, pairs.length, m)),
  };
}

/** σ²_seed / n + σ²_example / m + σ²_residual / (n m): the variance of a mean over n seeds and m examples. */
export function estimateVariance(c: PairedComparison['components'], seeds: number, examples: number): number {
  return c.seed / seeds + c.example / examples + c.residual / (seeds * examples);
}

/**
 * Variance components of a seeds × examples table (two-way random effects without replication): from the mean squares
 * MS_seed = m · var(row means), MS_example = n · var(column means), MS_residual (the interaction),
 * σ²_residual = MS_residual, σ²_seed = (MS_seed − MS_residual) / m, σ²_example = (MS_example − MS_residual) / n, each
 * at least 0. With one seed, the seed and residual parts cannot be told apart: all of it counts as residual.
 */
export function varianceComponents(d: readonly (readonly number[])[]): PairedComparison['components'] {
  const n = d.length;
  const m = d[0]!.length;
  const rows = d.map(mean);
  const cols = Array.from({ length: m }, (_, i) => mean(d.map((r) => r[i]!)));
  const grand = mean(rows);
  if (n < 2 || m < 2) return { seed: 0, example: n < 2 ? 0 : variance(cols), residual: n < 2 ? variance(d[0]!) : 0 };
  let ss = 0;
  for (let s = 0; s < n; s++) for (let i = 0; i < m; i++) ss += (d[s]![i]! - rows[s]! - cols[i]! + grand) ** 2;
  const msResidual = ss / ((n - 1) * (m - 1));
  const msSeed = m * variance(rows);
  const msExample = n * variance(cols);
  return { seed: Math.max(0, (msSeed - msResidual) / m), example: Math.max(0, (msExample - msResidual) / n), residual: msResidual };
}

/** The standard normal quantile Φ⁻¹(p) (Acklam's rational approximation, refined by one Halley step). */
export function normalQuantile(p: number): number {
  if (!(p > 0 && p < 1)) throw new RangeError(`normalQuantile: p must be in (0, 1) (got ${p})`);
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const low = 0.02425;
  let x: number;
  if (p < low) {
    const q = Math.sqrt(-2 * Math.log(p));
    x = (((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) / ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1);
  } else if (p <= 1 - low) {
    const q = p - 0.5;
    const r = q * q;
    x = ((((((a[0]! * r + a[1]!) * r + a[2]!) * r + a[3]!) * r + a[4]!) * r + a[5]!) * q) / (((((b[0]! * r + b[1]!) * r + b[2]!) * r + b[3]!) * r + b[4]!) * r + 1);
  } else {
    const q = Math.sqrt(-2 * Math.log(1 - p));
    x = -(((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) / ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1);
  }
  const e = normalCdf(x) - p;
  const u = e * Math.sqrt(2 * Math.PI) * Math.exp((x * x) / 2);
  return x - u / (1 + (x * u) / 2);
}

/** Φ(x) via erf (Abramowitz & Stegun 7.1.26: absolute error below 1.5e-7, ample for power calculations). */
export function normalCdf(x: number): number {
  const z = Math.abs(x) / Math.SQRT2;
  const t = 1 / (1 + 0.3275911 * z);
  const poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
  const erf = 1 - poly * Math.exp(-z * z);
  return x >= 0 ? 0.5 * (1 + erf) : 0.5 * (1 - erf);
}

export interface PowerPlan {
  /** The effect to detect (a fraction: 0.015 = 1.5 points). */
  effect: number;
  alpha: number;
  /** Target power 1 − β. */
  power: number;
  /** Standard error of the estimate with the measured seeds and examples. */
  standardError: number;
  /** Power to detect `effect` with the measured seeds and examples. */
  achievedPower: number;
  /** Smallest effect detectable with `power` at the measured seeds and examples. */
  detectableEffect: number;
  /** Seeds needed at the measured examples per seed (Infinity when the examples' own noise is too large: more examples). */
  seedsNeeded: number;
  /** Examples per seed needed at the measured seeds (Infinity when training noise alone is too large: more seeds). */
  examplesNeeded: number;
}

/** How well a comparison like `c` can detect `effect` (normal approximation; see the file's comment). */
export function powerPlan(c: Pick<PairedComparison, 'components' | 'seeds' | 'examples'>, effect: number, alpha = 0.05, power = 0.8): PowerPlan {
  const zAlpha = normalQuantile(1 - alpha / 2);
  const zSum = zAlpha + normalQuantile(power);
  const { seed, example, residual } = c.components;
  const standardError = Math.sqrt(estimateVariance(c.components, c.seeds, c.examples));
  const achievedPower = standardError === 0 ? 1 : normalCdf(effect / standardError - zAlpha);
  const target = (effect / zSum) ** 2; // the largest variance of the estimate that still detects `effect`
  // n ≥ (σ²_seed + σ²_residual / m) / (target − σ²_example / m); m ≥ (σ²_example + σ²_residual / n) / (target − σ²_seed / n)
  const seedRoom = target - example / c.examples;
  const exampleRoom = target - seed / c.seeds;
  const seedsNeeded = seedRoom <= 0 ? Number.POSITIVE_INFINITY : Math.max(1, Math.ceil((seed + residual / c.examples) / seedRoom));
  const examplesNeeded = exampleRoom <= 0 ? Number.POSITIVE_INFINITY : Math.max(1, Math.ceil((example + residual / c.seeds) / exampleRoom));
  return { effect, alpha, power, standardError, achievedPower, detectableEffect: zSum * standardError, seedsNeeded, examplesNeeded };
}
