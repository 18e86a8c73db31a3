/**
 * How well a thinking reward model agrees with its annotations (held-out data): pure functions.
 *
 *   mae        mean |prediction − annotation|
 *   pearson    linear correlation
 *   spearman   rank correlation (Pearson of average ranks, so ties share their rank)
 *   pairwise   over pairs of responses to the same prompt whose annotations differ: the share the model orders
 *              the same way (a tie in the predictions counts one half). This is what GRPO uses the reward
 *              for — ranking a group's responses — so it is the number that matters most.
 */

export interface RewardModelMetrics {
  count: number;
  mae: number;
  pearson: number;
  spearman: number;
  pairwiseAccuracy: number;
  pairs: number;
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

export function rewardModelMetrics(predictions: readonly number[], targets: readonly number[], groups: readonly string[]): RewardModelMetrics {
  const { accuracy, pairs } = pairwiseAccuracy(predictions, targets, groups);
  return {
    count: predictions.length,
    mae: meanAbsoluteError(predictions, targets),
    pearson: pearson(predictions, targets),
    spearman: spearman(predictions, targets),
    pairwiseAccuracy: accuracy,
    pairs,
  };
}
