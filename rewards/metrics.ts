/**
 * How well a thinking reward model agrees with its annotations (held-out data): pure functions.
 *
 *   mae        mean |prediction − annotation|
 *   pearson    linear correlation
 *   spearman   rank correlation (Pearson of average ranks, so ties share their rank)
 *   pairwise   over pairs of responses to the same prompt whose annotations differ: the share the model orders
 *              the same way (a tie in the predictions counts one half). This is what GRPO uses the reward
 *              for — ranking a group's responses — so it is the number that matters most.
 *   mixed-group accuracy
 *              over prompts whose responses include correct and wrong final answers (by the outcome grader): the
 *              share where the model's mean score of the correct responses is above that of the wrong ones (a tie
 *              counts one half). This is what Trust-GRPO's trust weight reacts to: where it is below 1/2 the
 *              reward model prefers wrong answers and γ damps it. It needs no annotation: only the outcomes.
 *   calibration error
 *              expected calibration error of the predictions against the annotations: predictions in ten equal
 *              bins of [0, 1], Σ_bin (n_bin / n) |mean prediction − mean annotation|. 0: a score of 0.7 means
 *              annotations of 0.7 on average.
 */

export interface RewardModelMetrics {
  count: number;
  mae: number;
  pearson: number;
  spearman: number;
  pairwiseAccuracy: number;
  pairs: number;
  /**
   * NaN (and 0 groups) when no prompt has both correct and wrong responses, or outcomes were not given; absent (with
   * calibrationError) from reports written before they were measured.
   */
  mixedGroupAccuracy?: number;
  mixedGroups?: number;
  calibrationError?: number;
}

function check(predictions: readonly number[], targets: readonly number[]): void {
  if (predictions.length !== targets.length) throw new RangeError(`predictions (${predictions.length}) and targets (${targets.length}) differ in length`);
}

export function meanAbsoluteError(predictions: readonly number[], targets: readonly number[]): number {
  check(predictions, targets);
  if (predictions.length === 0) return Number.NaN;
  return predictions.reduce((a, p, i) => a + Math.abs(p - targets[i]!), 0) / predictions.length;
}

/** Pearson correlation; NaN when either side has zero variance or fewer than 2 values. */
export function pearson(xs: readonly number[], ys: readonly number[]): number {
  check(xs, ys);
  const n = xs.length;
  if (n < 2) return Number.NaN;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = xs[i]! - mx;
    const dy = ys[i]! - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  return sxx === 0 || syy === 0 ? Number.NaN : sxy / Math.sqrt(sxx * syy);
}

/** 1-based ranks, ties get the mean of the ranks they span. */
export function averageRanks(xs: readonly number[]): number[] {
  const order = xs.map((x, i) => [x, i] as const).sort((a, b) => a[0] - b[0]);
  const ranks = new Array<number>(xs.length);
  for (let start = 0; start < order.length; ) {
    let end = start;
    while (end + 1 < order.length && order[end + 1]![0] === order[start]![0]) end++;
    const rank = (start + end) / 2 + 1;
    for (let k = start; k <= end; k++) ranks[order[k]![1]] = rank;
    start = end + 1;
  }
  return ranks;
}

export function spearman(xs: readonly number[], ys: readonly number[]): number {
  check(xs, ys);
  return pearson(averageRanks(xs), averageRanks(ys));
}

/** Pairwise ranking accuracy within groups (e.g. responses to one prompt); NaN when no pair differs. */
export function pairwiseAccuracy(predictions: readonly number[], targets: readonly number[], groups: readonly string[]): { accuracy: number; pairs: number } {
  check(predictions, targets);
  if (groups.length !== targets.length) throw new RangeError(`groups (${groups.length}) and targets (${targets.length}) differ in length`);
  const byGroup = new Map<string, number[]>();
  groups.forEach((g, i) => byGroup.set(g, [...(byGroup.get(g) ?? []), i]));
  let agree = 0;
  let pairs = 0;
  for (const members of byGroup.values()) {
    for (let a = 0; a < members.length; a++) {
      for (let b = a + 1; b < members.length; b++) {
        const i = members[a]!;
        const j = members[b]!;
        const t = Math.sign(targets[i]! - targets[j]!);
        if (t === 0) continue;
        pairs++;
        const p = Math.sign(predictions[i]! - predictions[j]!);
        agree += p === t ? 1 : p === 0 ? 0.5 : 0;
      }
    }
  }
  return { accuracy: pairs === 0 ? Number.NaN : agree / pairs, pairs };
}

/** Mixed-group accuracy (see the file's comment); NaN with 0 groups when no group has both outcomes. */
export function mixedGroupAccuracy(predictions: readonly number[], correct: readonly boolean[], groups: readonly string[]): { accuracy: number; groups: number } {
  if (predictions.length !== correct.length) throw new RangeError(`predictions (${predictions.length}) and outcomes (${correct.length}) differ in length`);
  if (groups.length !== correct.length) throw new RangeError(`groups (${groups.length}) and outcomes (${correct.length}) differ in length`);
  const byGroup = new Map<string, { right: number[]; wrong: number[] }>();
  groups.forEach((g, i) => {
    const entry = byGroup.get(g) ?? { right: [], wrong: [] };
    (correct[i] ? entry.right : entry.wrong).push(predictions[i]!);
    byGroup.set(g, entry);
  });
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  let agree = 0;
  let mixed = 0;
  for (const { right, wrong } of byGroup.values()) {
    if (right.length === 0 || wrong.length === 0) continue;
    mixed++;
    const d = Math.sign(mean(right) - mean(wrong));
    agree += d > 0 ? 1 : d === 0 ? 0.5 : 0;
  }
  return { accuracy: mixed === 0 ? Number.NaN : agree / mixed, groups: mixed };
}

/** Expected calibration error over `bins` equal bins of [0, 1] (see the file's comment); NaN with no predictions. */
export function calibrationError(predictions: readonly number[], targets: readonly number[], bins = 10): number {
  check(predictions, targets);
  if (predictions.length === 0) return Number.NaN;
  const sums = Array.from({ length: bins }, () => ({ n: 0, p: 0, t: 0 }));
  predictions.forEach((p, i) => {
    const b = sums[Math.min(bins - 1, Math.max(0, Math.floor(p * bins)))]!;
    b.n++;
    b.p += p;
    b.t += targets[i]!;
  });
  return sums.reduce((e, b) => (b.n === 0 ? e : e + (b.n / predictions.length) * Math.abs(b.p / b.n - b.t / b.n)), 0);
}

/** Every metric of the file; `correct` (each response's final answer right, by the outcome grader) adds the mixed-group accuracy. */
export function rewardModelMetrics(predictions: readonly number[], targets: readonly number[], groups: readonly string[], correct?: readonly boolean[]): RewardModelMetrics {
  const { accuracy, pairs } = pairwiseAccuracy(predictions, targets, groups);
  const mixed = correct ? mixedGroupAccuracy(predictions, correct, groups) : { accuracy: Number.NaN, groups: 0 };
  return {
    count: predictions.length,
    mae: meanAbsoluteError(predictions, targets),
    pearson: pearson(predictions, targets),
    spearman: spearman(predictions, targets),
    pairwiseAccuracy: accuracy,
    pairs,
    mixedGroupAccuracy: mixed.accuracy,
    mixedGroups: mixed.groups,
    calibrationError: calibrationError(predictions, targets),
  };
}
