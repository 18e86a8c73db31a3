/**
 * Balancing annotated samples across the ten score bins (docs/architecture.md §3): policy samples bunch up at a few scores
 * (many perfect responses, many broken ones), and a reward model trained on them as they come learns mostly to
 * say those scores. The paper balances its 156k annotations across the bins; here every bin is capped at
 * `perBin` items, chosen at random (seeded) within the bin, and bins with fewer keep all of theirs. Nothing is
 * invented: small bins are not upsampled, so the output is as balanced as the data allows.
 *
 * Bins: bin k holds scores in [k/10, (k+1)/10), except the last, which is [0.9, 1.0] and so holds 1.0 too
 * (a score of 1.0 is a perfect response, the same kind of sample as 0.9, not a bin of its own).
 *
 * After balancing, the items are split by prompt (`splitByPrompt`): whole prompts go to one side, so that the
 * held-out pairs (same prompt, different responses) are unseen in training. The reward-model stage splits twice:
 * train vs held out, then the held-out prompts into a validation part (picks the best checkpoint) and a test part
 * (only the report measures it), so the reported metrics are not those the checkpoint was selected on.
 */
import { Rng } from '../engine/rng';

export const SCORE_BINS = 10;

/** The bin 0..9 of a score in [0, 1]; 1.0 goes to bin 9. Throws RangeError outside [0, 1] or for NaN. */
export function scoreBin(score: number): number {
  if (!(score >= 0 && score <= 1)) throw new RangeError(`score must be in [0, 1] (got ${score})`);
  // The 1e-9 keeps 0.3 (stored as 0.29999…) in bin 3 after the multiplication.
  return Math.min(SCORE_BINS - 1, Math.floor(score * SCORE_BINS + 1e-9));
}

export interface BalanceOptions {
  /**
   * The most items kept per bin. Default: the median size of the non-empty bins (the lower of the two middle
   * sizes when their number is even), so that about half the occupied bins are cut down to the typical size and
   * the rest are kept whole.
   */
  perBin?: number;
  /** Seeds the choice of which items a capped bin keeps. */
  seed: number;
}

export interface Balanced<T> {
  /** The kept items, in their input order. */
  items: T[];
  /** Items kept per bin (length 10). */
  counts: number[];
  /** Items left out. */
  dropped: number;
}

/**
 * Caps every score bin at `perBin` items. Deterministic given the seed and the input order; the output keeps the
 * input order; every output item is an input item (the same reference), none repeated.
 */
export function balanceByBin<T>(items: readonly T[], scoreOf: (t: T) => number, opts: BalanceOptions): Balanced<T> {
  if (opts.perBin !== undefined && !(Number.isInteger(opts.perBin) && opts.perBin >= 1)) {
    throw new RangeError(`perBin must be a positive integer (got ${opts.perBin})`);
  }
  const rng = new Rng(opts.seed);
  const binsB: number[][] = Array.from({ length: SCORE_BINS }, () => []); // input indices per bin
  items.forEach((item, i) => binsB[scoreBin(scoreOf(item))]!.push(i));
  const perBin = opts.perBin ?? medianNonEmpty(binsB.map((b) => b.length));

  const keep: number[] = [];
  const counts: number[] = [];
  for (const bin of binsB) {
    const chosen = bin.length > perBin ? sample(rng, bin, perBin) : bin;
    keep.push(...chosen);
    counts.push(chosen.length);
  }
  keep.sort((a, b) => a - b);
  return { items: keep.map((i) => items[i]!), counts, dropped: items.length - keep.length };
}

/** The lower median of the non-zero sizes; 1 when all are zero (nothing to keep anyway). */
function medianNonEmpty(sizes: number[]): number {
  const nonEmpty = sizes.filter((n) => n > 0).sort((a, b) => a - b);
  return nonEmpty.length === 0 ? 1 : nonEmpty[Math.floor((nonEmpty.length - 1) / 2)]!;
}

/** k of xs uniformly at random without replacement (a partial Fisher–Yates shuffle). */
function sample(rng: Rng, xs: readonly number[], k: number): number[] {
  const out = [...xs];
  for (let i = 0; i < k; i++) {
    const j = i + (rng.nextU32() % (out.length - i));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out.slice(0, k);
}

/**
 * Splits items in two by prompt: `share` of the distinct prompts (rounded, at least `minOut`, leaving at least one)
 * go to `out` with all their items, the rest to `kept`. Which prompts is a seeded shuffle: deterministic given the
 * seed and the items' prompts in order of first appearance. Both sides keep the input order. Throws RangeError
 * when there are fewer than `minOut` + 1 prompts.
 */
export function splitByPrompt<T>(items: readonly T[], promptOf: (t: T) => string, opts: { share: number; seed: number; minOut?: number }): { kept: T[]; out: T[] } {
  if (!(opts.share > 0 && opts.share < 1)) throw new RangeError(`share must be in (0, 1) (got ${opts.share})`);
  const minOut = opts.minOut ?? 1;
  const prompts = [...new Set(items.map(promptOf))];
  if (prompts.length < minOut + 1) throw new RangeError(`${prompts.length} prompts cannot be split: at least ${minOut} out and 1 kept are needed`);
  const count = Math.min(prompts.length - 1, Math.max(minOut, Math.round(prompts.length * opts.share)));
  const out = new Set(sample(new Rng(opts.seed), prompts.map((_, i) => i), count).map((i) => prompts[i]!));
  return { kept: items.filter((t) => !out.has(promptOf(t))), out: items.filter((t) => out.has(promptOf(t))) };
}
