/**
 * The Trust-GRPO reward of docs/architecture.md §3: how one group's outcome and thinking rewards become final rewards and
 * advantages. Pure functions, no I/O; the RL stage and `sophia trust-grpo` both call `groupRewards`, so what the
 * CLI prints is exactly what training sees.
 *
 * Abstractions:
 *  - a group: the G responses sampled for one prompt, as two parallel arrays (shape (G,)) — `outcome` R^o from the
 *    rule-based grader and `thinking` R^t from the thinking reward model, both in [0, 1];
 *  - the trust weight γ (`trustWeight`): how far the reward model can be believed on this group. Responses with
 *    R^o ≥ threshold are "correct" (C), the rest "wrong" (W). If the model scores wrong answers' reasoning higher
 *    on average than correct ones' (μ_w > μ_c), it is contradicting the ground truth and its reward is damped by
 *    γ = exp(μ_c − μ_w) < 1; otherwise γ = 1;
 *  - the annealing factor a (`annealFactor`): exp(−step / T), which fades the thinking reward out over training
 *    so the policy ends up optimizing the verifiable outcome;
 *  - a `Variant`: which of these pieces are switched on (the paper's ablations), as a plain config value;
 *  - `EmptyGroupPolicy`: what to do when C or W is empty, i.e. there is no evidence for or against the model.
 *
 * Final reward R_i = R^o_i + α · γ · a · R^t_i; advantage A_i = (R_i − mean R) / (std R + eps) within the group.
 * `batchStats` reduces one step's groups to the metrics the trainer logs.
 *
 * Inputs are validated at this seam (the CLI hands it untrusted JSON): a wrong type is a TypeError, a value out of
 * range a RangeError, and every message starts with the path of the field at fault (`groups[2].thinking[1]: …`).
 */

/**
 * Which reward the RL stage optimizes (docs/architecture.md §3 ablations):
 *  - `grpo`             R = R^o; thinking rewards are ignored (and may be omitted);
 *  - `thinking`         R = R^o + α · R^t (γ = 1, a = 1);
 *  - `thinking+anneal`  R = R^o + α · a · R^t (γ = 1);
 *  - `trust-grpo`       R = R^o + α · γ · a · R^t, the full method;
 *  - `untrained-rm`     the same formula as `trust-grpo`; only the reward model that produced R^t differs (one that
 *                       was never trained), which is the caller's business, not this module's.
 */
export type Variant = 'grpo' | 'thinking' | 'thinking+anneal' | 'trust-grpo' | 'untrained-rm';

export const VARIANTS: readonly Variant[] = ['grpo', 'thinking', 'thinking+anneal', 'trust-grpo', 'untrained-rm'];

/**
 * What a group whose responses are all correct or all wrong (C or W empty) gets:
 *  - `trust`: γ = 1 — nothing contradicts the reward model, so its reward is used in full (the paper's definition);
 *  - `skip`: no thinking reward for that group at all, R = R^o (what the authors' released code does).
 * Only the variants that compute γ (`trust-grpo`, `untrained-rm`) look at it: `thinking` and `thinking+anneal`
 * have no trust weight, so they always use the thinking reward, and `grpo` never does.
 */
export type EmptyGroupPolicy = 'trust' | 'skip';

const EMPTY_GROUP_POLICIES: readonly EmptyGroupPolicy[] = ['trust', 'skip'];

/** How the group standard deviation of the advantage is computed: divide by n − 1 (`unbiased`) or n. */
export type StdKind = 'unbiased' | 'population';

const STD_KINDS: readonly StdKind[] = ['unbiased', 'population'];

/**
 * Which definition of the reward: the paper's (`paper`, the module comment) or what the authors' released code
 * computes (`authors-code`, verl/workers/reward/custom.py of github.com/kxfan2002/SophiaVL-R1, read for this):
 *  - a group whose outcome rewards are all ≥ 0.9 or all ≤ 0.1 gets no thinking reward (R = R^o);
 *  - a response whose outcome reward is below 0.2 gets thinking reward 0 (so, with 0/1 outcome rewards, the wrong
 *    responses' mean μ_w is 0 and γ is always 1);
 *  - μ_c and μ_w are 0 for an empty set, and γ = exp(μ_c − μ_w) only when μ_c < μ_w and some response is correct;
 *  - the annealing temperature defaults to 12000 (its training config's value) instead of the run's total steps.
 * The thinking variants use these rules as they apply (`thinking` has no γ and no annealing); `grpo` has no
 * thinking reward either way.
 */
export type Semantics = 'paper' | 'authors-code';

export const SEMANTICS: readonly Semantics[] = ['paper', 'authors-code'];

/** The authors' code: the annealing temperature, the one-sided bounds, the floor below which R^t is 0. */
export const AUTHORS_CODE = { annealTemperature: 12000, allCorrectAtLeast: 0.9, allWrongAtMost: 0.1, thinkingFloor: 0.2 } as const;

export interface TrustWeightOptions {
  /** An outcome reward ≥ threshold counts as correct; default 0.5 (so a 0.5 is correct). */
  threshold?: number;
  /** Default `trust`. */
  emptyGroup?: EmptyGroupPolicy;
}

export interface TrustWeight {
  /** γ ∈ (0, 1]. */
  gamma: number;
  /** |C| and |W|. */
  correct: number;
  wrong: number;
  /** Mean thinking reward over C and over W; null when that set is empty. */
  muCorrect: number | null;
  muWrong: number | null;
  /** False only when the group is one-sided and the policy is `skip`: the thinking reward must then be dropped. */
  thinkingUsed: boolean;
}

/** The hyperparameters of one step, shared by every group of the batch (the CLI's top-level fields). */
export interface TrustConfig {
  /** RL step, an integer ≥ 0 (0 = the first update). */
  step: number;
  /** Planned RL steps, an integer ≥ 1; the default annealing temperature. */
  totalSteps: number;
  /** Weight of the thinking reward, ≥ 0 (paper: 0.3). */
  alpha: number;
  variant: Variant;
  /** Default `trust`. */
  emptyGroup?: EmptyGroupPolicy;
  /** T in exp(−step / T), > 0; default `totalSteps`. */
  annealTemperature?: number;
  /** Correctness threshold on R^o, in [0, 1]; default 0.5. */
  threshold?: number;
  /** Default `unbiased`. */
  std?: StdKind;
  /** Added to the std before dividing, ≥ 0; default 1e-6. */
  eps?: number;
  /** Default `paper`. */
  semantics?: Semantics;
}

export interface GroupRewardsInput extends TrustConfig {
  /** R^o per response, shape (G,), G ≥ 1. */
  outcome: number[];
  /** R^t per response, shape (G,); may be empty (`[]`) only for `grpo`. */
  thinking: number[];
  /** The path of this group in the caller's data (e.g. `groups[2]`), prefixed to `outcome` / `thinking` in errors. */
  where?: string;
}

export interface GroupRewards {
  /** The trust weight applied; 1 where the variant has none (`grpo`, `thinking`, `thinking+anneal`). */
  gamma: number;
  /** The annealing factor applied; 1 where the variant has none (`grpo`, `thinking`). */
  anneal: number;
  /** Final rewards R, shape (G,). */
  rewards: number[];
  /** Advantages A, shape (G,); all exactly 0 when `zeroVariance`. */
  advantages: number[];
  /** All rewards equal: the group carries no learning signal. */
  zeroVariance: boolean;
  /** Whether R includes the thinking term (false for `grpo` and for groups skipped by the `skip` policy). */
  thinkingUsed: boolean;
  /** Both correct and wrong responses (outcome reward at or above the threshold, and below it). */
  mixed: boolean;
  /**
   * In a mixed group (correct and wrong responses, thinking rewards given), which the reward model's raw scores favour
   * on average: the correct responses (μ_c > μ_w), the wrong ones, or neither. Absent for one-sided groups and `grpo`.
   */
  preference?: 'correct' | 'wrong' | 'tie';
}

export interface BatchStats {
  /** Number of groups. */
  groups: number;
  /** Mean γ over all groups (groups without a trust weight, skipped ones included, count as γ = 1). */
  meanGamma: number;
  /** Share of groups whose thinking reward was damped (γ < 1): how often the reward model contradicted the grader. */
  distrustedShare: number;
  /** The step's annealing factor (the same for every group). */
  anneal: number;
  /** Share of groups with no learning signal (all rewards equal). */
  zeroVarianceShare: number;
  /** Share of groups whose R has no thinking term (all of them under `grpo`). */
  thinkingSkippedShare: number;
  /** Share of groups with both correct and wrong responses (the only ones where the trust weight can act). */
  mixedShare: number;
  /**
   * The reward model's on-policy mixed-group accuracy: among the mixed groups with thinking rewards, the share where
   * it scores the correct responses higher on average. Absent when the step has none.
   */
  rmMixedGroupAccuracy?: number;
}

const DEFAULT_THRESHOLD = 0.5;
const DEFAULT_EPS = 1e-6;

/** "it is missing" or `got <value>`, for error messages. */
function got(value: unknown): string {
  if (value === undefined) return 'it is missing';
  if (typeof value === 'number' || typeof value === 'bigint') return `got ${String(value)}`; // NaN, Infinity, 1.5
  return `got ${JSON.stringify(value) ?? typeof value}`;
}

/** Checks that `value` is a finite number in [min, max] (and an integer if asked). */
function checkNumber(value: unknown, field: string, min: number, max = Infinity, integer = false): void {
  const range = max === Infinity ? `≥ ${min}` : `in [${min}, ${max}]`;
  const what = integer ? `an integer ${range}` : `a number ${range}`;
  if (typeof value !== 'number') throw new TypeError(`${field}: expected ${what}; ${got(value)}`);
  if (!Number.isFinite(value) || value < min || value > max || (integer && !Number.isInteger(value))) {
    throw new RangeError(`${field}: expected ${what}; ${got(value)}`);
  }
}

/** Checks that `value` is a finite number > 0. */
function checkPositive(value: unknown, field: string): void {
  if (typeof value !== 'number') throw new TypeError(`${field}: expected a number > 0; ${got(value)}`);
  if (!Number.isFinite(value) || value <= 0) throw new RangeError(`${field}: expected a number > 0; ${got(value)}`);
}

/** Checks that `value` is one of `allowed` (a string enum). */
function checkOneOf(value: unknown, field: string, allowed: readonly string[]): void {
  const expected = `expected one of ${allowed.map((a) => `"${a}"`).join(', ')}`;
  if (typeof value !== 'string') throw new TypeError(`${field}: ${expected}; ${got(value)}`);
  if (!allowed.includes(value)) throw new RangeError(`${field}: ${expected}; ${got(value)}`);
}

/** Checks an array of rewards in [0, 1]. */
function checkScores(values: unknown, field: string): void {
  if (!Array.isArray(values)) throw new TypeError(`${field}: expected an array of numbers in [0, 1]; ${got(values)}`);
  for (const [i, v] of values.entries()) checkNumber(v, `${field}[${i}]`, 0, 1);
}

/** Checks a group's two arrays: both rewards in [0, 1], same length ≥ 1 (thinking may be `[]` if allowed). */
function checkGroup(outcome: unknown, thinking: unknown, prefix: string, thinkingOptional: boolean): void {
  checkScores(outcome, `${prefix}outcome`);
  checkScores(thinking, `${prefix}thinking`);
  const g = (outcome as number[]).length;
  const t = (thinking as number[]).length;
  if (g === 0) throw new RangeError(`${prefix}outcome: expected at least one response; got []`);
  if (t !== g && !(thinkingOptional && t === 0)) {
    const fix = thinkingOptional ? ` (or [] under "grpo")` : '';
    throw new RangeError(`${prefix}thinking: expected ${g} values, one per outcome${fix}; got ${t}`);
  }
}

/**
 * Validates one step's hyperparameters; throws a TypeError or RangeError naming the field. `groupRewards` calls it;
 * callers that validate a whole batch up front (the CLI) call it once before any group.
 */
export function checkTrustConfig(config: TrustConfig): void {
  checkNumber(config.step, 'step', 0, Infinity, true);
  checkNumber(config.totalSteps, 'totalSteps', 1, Infinity, true);
  checkNumber(config.alpha, 'alpha', 0);
  checkOneOf(config.variant, 'variant', VARIANTS);
  if (config.emptyGroup !== undefined) checkOneOf(config.emptyGroup, 'emptyGroup', EMPTY_GROUP_POLICIES);
  if (config.annealTemperature !== undefined) checkPositive(config.annealTemperature, 'annealTemperature');
  if (config.threshold !== undefined) checkNumber(config.threshold, 'threshold', 0, 1);
  if (config.std !== undefined) checkOneOf(config.std, 'std', STD_KINDS);
  if (config.eps !== undefined) checkNumber(config.eps, 'eps', 0);
  if (config.semantics !== undefined) checkOneOf(config.semantics, 'semantics', SEMANTICS);
}

function mean(values: readonly number[]): number {
  let sum = 0;
  for (const v of values) sum += v;
  return sum / values.length;
}

/** `trustWeight` on already validated input. */
function computeTrustWeight(outcome: readonly number[], thinking: readonly number[], threshold: number, emptyGroup: EmptyGroupPolicy): TrustWeight {
  const thinkingC: number[] = [];
  const thinkingW: number[] = [];
  for (const [i, o] of outcome.entries()) (o >= threshold ? thinkingC : thinkingW).push(thinking[i]!);
  const correct = thinkingC.length;
  const wrong = thinkingW.length;
  const muCorrect = correct > 0 ? mean(thinkingC) : null;
  const muWrong = wrong > 0 ? mean(thinkingW) : null;
  if (muCorrect === null || muWrong === null) {
    // One-sided group: nothing to compare the reward model against.
    return { gamma: 1, correct, wrong, muCorrect, muWrong, thinkingUsed: emptyGroup === 'trust' };
  }
  const gamma = muCorrect >= muWrong ? 1 : Math.exp(muCorrect - muWrong);
  return { gamma, correct, wrong, muCorrect, muWrong, thinkingUsed: true };
}

/** γ as the authors' code computes it: empty means 0; damped only when some response is correct and μ_c < μ_w. */
function authorsGamma(outcome: readonly number[], thinking: readonly number[], threshold: number): number {
  const c = thinking.filter((_, i) => outcome[i]! >= threshold);
  const w = thinking.filter((_, i) => outcome[i]! < threshold);
  const muC = c.length > 0 ? mean(c) : 0;
  const muW = w.length > 0 ? mean(w) : 0;
  return c.length > 0 && muC < muW ? Math.exp(muC - muW) : 1;
}

/**
 * The trust weight γ of one group (see the module comment).
 *
 * @param outcome R^o per response, shape (G,), values in [0, 1]
 * @param thinking R^t per response, shape (G,), values in [0, 1]
 */
export function trustWeight(outcome: number[], thinking: number[], opts: TrustWeightOptions = {}): TrustWeight {
  const threshold = opts.threshold ?? DEFAULT_THRESHOLD;
  const emptyGroup = opts.emptyGroup ?? 'trust';
  checkNumber(threshold, 'threshold', 0, 1);
  checkOneOf(emptyGroup, 'emptyGroup', EMPTY_GROUP_POLICIES);
  checkGroup(outcome, thinking, '', false);
  return computeTrustWeight(outcome, thinking, threshold, emptyGroup);
}

/**
 * The annealing factor a = exp(−step / T), T = `temperature` ?? `totalSteps`: 1 at step 0, e⁻¹ at step T. Defined
 * for any step ≥ 0, past `totalSteps` included (a run extended beyond its plan keeps decaying).
 */
export function annealFactor(step: number, totalSteps: number, temperature?: number): number {
  checkNumber(step, 'step', 0);
  checkPositive(totalSteps, 'totalSteps');
  if (temperature !== undefined) checkPositive(temperature, 'temperature');
  return Math.exp(-step / (temperature ?? totalSteps));
}

/**
 * Group-normalized advantages (R_i − mean R) / (std R + eps), shape (G,). A group whose rewards are all equal
 * (every group of one response, too) gets exact zeros: it carries no signal, and computing it would only turn
 * rounding noise in the mean into nonzero advantages.
 */
function advantagesOf(rewards: readonly number[], std: StdKind, eps: number): { advantages: number[]; zeroVariance: boolean } {
  const zeroVariance = rewards.every((r) => r === rewards[0]);
  if (zeroVariance) return { advantages: rewards.map(() => 0), zeroVariance };
  const m = mean(rewards);
  let squares = 0;
  for (const r of rewards) squares += (r - m) ** 2;
  const sd = Math.sqrt(squares / (std === 'unbiased' ? rewards.length - 1 : rewards.length));
  return { advantages: rewards.map((r) => (r - m) / (sd + eps)), zeroVariance };
}

/**
 * Final rewards and advantages of one group under `input.variant` (see `Variant` for the formulas).
 *
 * `gamma` and `anneal` report what was applied: 1 for a factor the variant does not have (under `grpo` neither
 * applies, so both are 1). A group skipped by the `skip` policy reports γ = 1, the step's anneal factor, and
 * `thinkingUsed: false`.
 */
export function groupRewards(input: GroupRewardsInput): GroupRewards {
  checkTrustConfig(input);
  const prefix = input.where === undefined ? '' : `${input.where}.`;
  checkGroup(input.outcome, input.thinking, prefix, input.variant === 'grpo');

  const { outcome, variant, alpha } = input;
  const authors = input.semantics === 'authors-code';
  // The authors' code scores no thinking below an outcome of 0.2.
  const thinking = authors && variant !== 'grpo' ? input.thinking.map((t, i) => (outcome[i]! < AUTHORS_CODE.thinkingFloor ? 0 : t)) : input.thinking;
  let gamma = 1;
  let anneal = 1;
  let thinkingUsed = variant !== 'grpo';
  if (variant === 'thinking+anneal' || variant === 'trust-grpo' || variant === 'untrained-rm') {
    anneal = annealFactor(input.step, input.totalSteps, input.annealTemperature ?? (authors ? AUTHORS_CODE.annealTemperature : undefined));
  }
  if (authors) {
    if (thinkingUsed && (outcome.every((o) => o >= AUTHORS_CODE.allCorrectAtLeast) || outcome.every((o) => o <= AUTHORS_CODE.allWrongAtMost))) thinkingUsed = false;
    if (thinkingUsed && (variant === 'trust-grpo' || variant === 'untrained-rm')) gamma = authorsGamma(outcome, thinking, input.threshold ?? DEFAULT_THRESHOLD);
  } else if (variant === 'trust-grpo' || variant === 'untrained-rm') {
    const trust = computeTrustWeight(outcome, thinking, input.threshold ?? DEFAULT_THRESHOLD, input.emptyGroup ?? 'trust');
    gamma = trust.gamma;
    thinkingUsed = trust.thinkingUsed;
  }

  let preference: GroupRewards['preference'];
  const threshold = input.threshold ?? DEFAULT_THRESHOLD;
  const mixedGroup = outcome.some((o) => o >= threshold) && outcome.some((o) => o < threshold);
  if (mixedGroup && variant !== 'grpo' && input.thinking.length > 0) {
    const c = input.thinking.filter((_, i) => outcome[i]! >= threshold);
    const w = input.thinking.filter((_, i) => outcome[i]! < threshold);
    if (c.length > 0 && w.length > 0) preference = mean(c) > mean(w) ? 'correct' : mean(c) < mean(w) ? 'wrong' : 'tie';
  }
  const scale = alpha * gamma * anneal;
  const rewards = thinkingUsed ? outcome.map((o, i) => o + scale * thinking[i]!) : [...outcome]; // (G,)
  const { advantages, zeroVariance } = advantagesOf(rewards, input.std ?? 'unbiased', input.eps ?? DEFAULT_EPS);
  return { gamma, anneal, rewards, advantages, zeroVariance, thinkingUsed, mixed: mixedGroup, ...(preference ? { preference } : {}) };
}

/**
 * One step's metrics from its groups' results. Throws a RangeError for an empty batch or for groups from
 * different steps (different anneal factors), which would make the metrics meaningless.
 */
export function batchStats(results: readonly GroupRewards[]): BatchStats {
  const first = results[0];
  if (first === undefined) throw new RangeError('results: expected at least one group; got []');
  const n = results.length;
  const share = (pred: (r: GroupRewards) => boolean) => results.filter(pred).length / n;
  const judged = results.filter((r) => r.preference !== undefined);
  const mixed = results.findIndex((r) => r.anneal !== first.anneal);
  if (mixed !== -1) {
    throw new RangeError(`results[${mixed}].anneal: expected ${first.anneal} like results[0] (one step per batch); got ${results[mixed]!.anneal}`);
  }
  return {
    groups: n,
    meanGamma: mean(results.map((r) => r.gamma)),
    distrustedShare: share((r) => r.gamma < 1),
    anneal: first.anneal,
    zeroVarianceShare: share((r) => r.zeroVariance),
    thinkingSkippedShare: share((r) => !r.thinkingUsed),
    mixedShare: share((r) => r.mixed),
    ...(judged.length > 0 ? { rmMixedGroupAccuracy: judged.filter((r) => r.preference === 'correct').length / judged.length } : {}),
  };
}
