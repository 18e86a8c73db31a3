/**
 * The programmatic thinking-reward judge (docs/architecture.md §3): scores a sampled response for reasoning quality, in
 * steps of 0.1, knowing the example's true intermediate steps and facts. It annotates policy samples for the
 * thinking reward model on the built-in tiny world, where an LLM judge (`llm-annotator.ts`) annotates real data.
 * Pure and deterministic: the same example and response always get the same score and notes.
 *
 * How a response is read. The format gate of `tasks/grading.ts` must pass, else the score is 0. The thinking is
 * split into segments at `.`, `,` or `;` followed by whitespace (the teacher's separators) and at newlines; each
 * segment is normalised (lowercase, whitespace and spacing around `=`, `+`, `-`, `:` collapsed, the lead-ins
 * "so", "thus", "hence", "therefore", "answer" dropped) and parsed as a *claim* of one of the forms the tiny world's
 * steps take: `red at 2 7 11` / `no red`, `red = 3`, `tallest = 22`, `8 + 18 = 26`, `bars 1 8 18`,
 * `digits 9 1 1 6`, `row 1: 0 5 5 5`, `red 0 green 1 blue 2 yellow 2`, `1: B`, `2 is B`. A claim has a *key*
 * (its left side: `red =`, `8 + 18 =`; sums with their operands sorted) and a *value*.
 *
 * The rubric (also `JUDGE_RUBRIC`, the text the LLM judge is prompted with, and docs/thinking-reward/RUBRIC.md):
 *  - steps (weight 0.7): the mean credit of the true steps: 1 when a segment states the step (same key and
 *    value), 0.5 when one has its left side with a wrong value (`red = 2` for `red = 3`; for a calculation, the
 *    same operations over other values: `3 + 1 = 4` for `2 + 1 = 3`), 0 when it is missing. Order is not checked;
 *  - consistency (weight 0.3): 1 when the value of the last answer-bearing claim (the last `… = n` for numeric
 *    answers, the last `n: …` / `n is …` for choices, the rows read for OCR) is the `<answer>` by the example's
 *    grading rule, else 0 (also when the reasoning reaches no answer);
 *  - error identification: −0.2 per claim that contradicts the facts (a wrong count, cell list, bar height,
 *    digit, option; wrong arithmetic; a sum over the wrong operands), whether or not the question needs it. A
 *    listing counts one error per wrong colour. A correct sum over a value misread earlier is not counted again:
 *    the mistake is counted once, where it was made;
 *  - redundancy: −0.1 per segment that repeats an earlier one or is irrelevant (not a claim, or a true claim that
 *    is none of the steps, such as the count of a colour not asked about);
 *  - format: −0.1 when the gate passes but there is text outside the two blocks or a second block.
 * Then: a final answer the grader does not give full reward caps the score at 0.5 (reasoning quality is what is
 * judged, but a response that ends wrong is never better than middling); the score is rounded half-up to the
 * nearest 0.1 and clipped to [0, 1]. A teacher response scores 1.
 */
import { type AnswerType, checkFormat, grade, scoreAnswer } from '../tasks/grading';
import { COLOR_NAMES } from '../tasks/render';
import type { Example } from '../tasks/types';

/** The numbers of the rubric; the rubric text is written from them. */
const JUDGE_WEIGHTS = {
  /** Weight of the step credit. */
  steps: 0.7,
  /** Weight of reasoning–answer consistency. */
  consistency: 0.3,
  /** Credit of a true step whose left side is stated with a wrong value. */
  partialStep: 0.5,
  /** Subtracted per claim that contradicts the facts. */
  perWrongClaim: 0.2,
  /** Subtracted per repeated or irrelevant segment. */
  perRedundant: 0.1,
  /** Subtracted for text outside `<think>…</think><answer>…</answer>`. */
  untidyFormat: 0.1,
  /** The most a response with a wrong final answer can score. */
  wrongAnswerCap: 0.5,
} as const;

const W = JUDGE_WEIGHTS;

/** The rubric in words: the judge implements it, the LLM judge is prompted with it. */
export const JUDGE_RUBRIC = `You judge the reasoning of a response to a question about an image. The response writes its reasoning inside <think>…</think> and its final answer inside <answer>…</answer>. Score the quality of the reasoning from 0 to 1 in steps of 0.1:
- correct intermediate steps (${W.steps} of the score): every fact the solution needs (what is where in the image, counts, values read, arithmetic) is stated and correct; a step stated with a wrong value earns ${W.partialStep} of its share, a missing step nothing;
- consistency (${W.consistency} of the score): the final answer is what the last step of the reasoning concludes;
- errors: subtract ${W.perWrongClaim} for each claim that contradicts the image or is a calculation mistake (a misread value carried forward into a later calculation counts once);
- redundancy: subtract ${W.perRedundant} for each repeated or irrelevant statement;
- format: subtract ${W.untidyFormat} for text outside the <think> and <answer> blocks; with no <think> block or no <answer> block the score is 0;
- a wrong final answer caps the score at ${W.wrongAnswerCap};
- round to the nearest 0.1 and keep the score within [0, 1]. A concise, complete and correct reasoning that ends in the right answer scores 1.`;

/** Sub-scores in [0, 1] (1 = nothing wrong); the score is their combination described in the module comment. */
export interface JudgeParts {
  /** Mean credit of the true steps. */
  steps: number;
  /** 1 when the reasoning's conclusion is the answer given, else 0. */
  consistency: number;
  /** 1 − 0.2 per wrong claim, floored at 0. */
  errorFree: number;
  /** 1 − 0.1 per repeated or irrelevant segment, floored at 0. */
  redundancy: number;
  /** 1 clean, 0.9 text outside the blocks, 0 format gate failed. */
  format: number;
  /** The outcome reward of the final answer (the grader's); below 1 caps the score. */
  answer: number;
}

export interface JudgeResult {
  /** In [0, 1], a multiple of 0.1 (exactly k / 10). */
  score: number;
  parts: JudgeParts;
  /** Why points were lost, one line each, in reading order. */
  notes: string[];
}

/** What the judge reads of an example (an `Example` fits; tests build smaller ones). */
export type JudgedExample = Pick<Example, 'steps' | 'answer' | 'answerType'> & Partial<Pick<Example, 'facts'>>;

/** Rounds half-up to the nearest 0.1 and clips to [0, 1]; the result is exactly k / 10. */
export function roundScore(x: number): number {
  // toFixed(6) first, so float noise (0.35 + 0.3 = 0.6499…) does not decide the rounding.
  const tenths = Math.round(Number((x * 10).toFixed(6)));
  return Math.min(10, Math.max(0, tenths)) / 10;
}

export function judgeResponse(example: JudgedExample, response: string): JudgeResult {
  const formatted = checkFormat(response);
  if (formatted === null) {
    const parts = { steps: 0, consistency: 0, errorFree: 0, redundancy: 0, format: 0, answer: 0 };
    return { score: 0, parts, notes: ['format: no <think>…</think> followed by <answer>…</answer>'] };
  }
  const notes: string[] = [];
  const format = isTidy(response) ? 1 : 1 - W.untidyFormat;
  if (format < 1) notes.push('format: text outside the <think> and <answer> blocks');

  const truth = truthTable(example);
  const trueClaims = example.steps.map((step) => ({ step, claim: parseClaim(normalizeSegment(step)) }));
  const trueKeys = new Set(trueClaims.flatMap(({ claim }) => (claim ? [claim.key] : [])));
  const trueArith = trueClaims.find(({ claim }) => claim?.kind === 'arith')?.claim;

  const segments = segmentThinking(formatted.think);
  const claims: Claim[] = [];
  const seen = new Set<string>();
  const misread = new Set<string>();
  let wrong = 0;
  let redundant = 0;
  for (const segment of segments) {
    if (seen.has(segment)) {
      redundant++;
      notes.push(`redundant: "${segment}" repeats an earlier step`);
      continue;
    }
    seen.add(segment);
    const claim = parseClaim(segment);
    if (!claim) {
      redundant++;
      notes.push(`redundant: "${segment}" is not a step of the solution`);
      continue;
    }
    claims.push(claim);
    const errors = claimErrors(claim, truth, trueArith, misread);
    if (errors.length > 0) {
      wrong += errors.length;
      for (const e of errors) notes.push(`wrong: "${segment}": ${e}`);
    } else if (!trueKeys.has(claim.key) && !(claim.kind === 'arith' && trueArith)) {
      redundant++;
      notes.push(`redundant: "${segment}" is true but not needed`);
    }
  }

  let credit = 0;
  for (const { step, claim } of trueClaims) {
    const got = stepCredit(step, claim, claims, seen);
    if (got < 1) notes.push(got > 0 ? `step "${step}" stated with a wrong value` : `step "${step}" missing`);
    credit += got;
  }
  const steps = example.steps.length > 0 ? credit / example.steps.length : 1;

  const implied = impliedAnswer(example.answerType, claims);
  const consistency = implied !== null && scoreAnswer(example.answerType, formatted.answer, implied) === 1 ? 1 : 0;
  if (consistency === 0) {
    notes.push(implied === null ? 'consistency: the reasoning reaches no answer' : `consistency: the reasoning concludes "${implied}", the answer says "${formatted.answer}"`);
  }
  const answer = grade(example.answerType, response, example.answer).reward;

  const errorFree = Math.max(0, 1 - W.perWrongClaim * wrong);
  const redundancy = Math.max(0, 1 - W.perRedundant * redundant);
  let raw = W.steps * steps + W.consistency * consistency - W.perWrongClaim * wrong - W.perRedundant * redundant - (1 - format);
  if (answer < 1 && raw > W.wrongAnswerCap) {
    raw = W.wrongAnswerCap;
    notes.push(`capped at ${W.wrongAnswerCap}: the final answer is wrong`);
  }
  return { score: roundScore(raw), parts: { steps, consistency, errorFree, redundancy, format, answer }, notes };
}

// ---------------------------------------------------------------------------------------------------------------
// Reading the thinking
// ---------------------------------------------------------------------------------------------------------------

/** Whether the response is exactly the two blocks (whitespace allowed around and between them). */
function isTidy(response: string): boolean {
  const m = /^<think>([\s\S]*?)<\/think>\s*<answer>([\s\S]*?)<\/answer>$/.exec(response.trim());
  return m !== null && !/<\/?(?:think|answer)>/.test(m[1]! + m[2]!);
}

const LEAD_INS = /^(?:so|thus|hence|therefore|answer)\b[\s:]*/;

/** One segment in the canonical spelling claims are parsed from. */
function normalizeSegment(text: string): string {
  let s = text
    .toLowerCase()
    .replace(/\s*=\s*/g, ' = ')
    .replace(/\s*\+\s*/g, ' + ')
    .replace(/(\d)\s*-\s*(\d)/g, '$1 - $2')
    .replace(/\s*:\s*/g, ': ')
    .replace(/\s*,\s*/g, ',')
    .replace(/\s+/g, ' ')
    .trim()
    .replace(/[.!;,]+$/, '')
    .trim();
  for (let next = s.replace(LEAD_INS, ''); next !== s; next = s.replace(LEAD_INS, '')) s = next;
  return s;
}

/** The thinking split at `.`/`,`/`;` + whitespace and at newlines, normalised, empty segments dropped. */
export function segmentThinking(think: string): string[] {
  return think
    .split(/[.;,](?=\s|$)|\n/)
    .map(normalizeSegment)
    .filter((s) => s !== '');
}

type ClaimKind = 'cells' | 'count' | 'extreme' | 'arith' | 'bars' | 'digits' | 'row' | 'listing' | 'choiceSet' | 'choiceOne';

interface Claim {
  kind: ClaimKind;
  /** The left side, canonical: `red =`, `red at`, `2 + 8 =`, `row 1:`. */
  key: string;
  /** The right side, canonical: `3`, `2 7 11`, `a,c`. */
  value: string;
  /** The atomic facts it asserts, checked one by one against the truth (a listing asserts one count per colour). */
  atoms: { key: string; value: string }[];
}

const COLOR = `(${COLOR_NAMES.join('|')})`;
const NUMBERS = '(\\d+(?: \\d+)*)';
const sortedNumbers = (list: string) => list.split(' ').map(Number).sort((a, b) => a - b).join(' ');
const singleDigits = (list: string) => list.replace(/ /g, '').split('').join(' ');

function claim(kind: ClaimKind, key: string, value: string): Claim {
  return { kind, key, value, atoms: [{ key, value }] };
}

const CLAIM_RULES: [RegExp, (m: RegExpExecArray) => Claim][] = [
  [new RegExp(`^no ${COLOR}$`), (m) => claim('cells', `${m[1]} at`, '')],
  [new RegExp(`^${COLOR} at ${NUMBERS}$`), (m) => claim('cells', `${m[1]} at`, sortedNumbers(m[2]!))],
  [new RegExp(`^${COLOR} = (-?\\d+)$`), (m) => claim('count', `${m[1]} =`, String(Number(m[2])))],
  [/^(tallest|shortest) = (-?\d+)$/, (m) => claim('extreme', `${m[1]} =`, String(Number(m[2])))],
  [/^(-?\d+(?: [+-] -?\d+)+) = (-?\d+)$/, (m) => ({ kind: 'arith', key: `${canonicalExpression(m[1]!)} =`, value: String(Number(m[2])), atoms: [] })],
  [new RegExp(`^bars ${NUMBERS}$`), (m) => claim('bars', 'bars', m[1]!)],
  [/^digits ([\d ]+)$/, (m) => claim('digits', 'digits', singleDigits(m[1]!))],
  [/^row (\d+): ([\d ]+)$/, (m) => claim('row', `row ${Number(m[1])}:`, singleDigits(m[2]!))],
  [/^(\d+):(?: ([a-f](?:,[a-f])*))?$/, (m) => claim('choiceSet', `${Number(m[1])}:`, [...new Set((m[2] ?? '').split(',').filter(Boolean))].sort().join(','))],
  [/^(\d+) is ([a-f])$/, (m) => claim('choiceOne', `${Number(m[1])} is`, m[2]!)],
  [new RegExp(`^${COLOR} \\d+(?: ${COLOR} \\d+)*$`), (m) => listing(m[0])],
];

/** `red 0 green 1 blue 2`: one claim whose atoms are the counts `red = 0`, `green = 1`, `blue = 2`. */
function listing(text: string): Claim {
  const tokens = text.split(' ');
  const atoms: Claim['atoms'] = [];
  for (let i = 0; i < tokens.length; i += 2) atoms.push({ key: `${tokens[i]} =`, value: String(Number(tokens[i + 1])) });
  return { kind: 'listing', key: `counts ${atoms.map((a) => a.key.slice(0, -2)).join(' ')}`, value: atoms.map((a) => a.value).join(' '), atoms };
}

/** Sums with their operands sorted (`18 + 8` and `8 + 18` are the same step); other expressions as written. */
function canonicalExpression(expr: string): string {
  const tokens = expr.split(' ');
  if (tokens.every((t, i) => i % 2 === 0 || t === '+')) {
    return tokens.filter((_, i) => i % 2 === 0).map(Number).sort((a, b) => a - b).join(' + ');
  }
  return tokens.map((t, i) => (i % 2 === 0 ? String(Number(t)) : t)).join(' ');
}

function evaluate(expr: string): number {
  const tokens = expr.split(' ');
  let total = Number(tokens[0]);
  for (let i = 1; i + 1 < tokens.length; i += 2) total += (tokens[i] === '-' ? -1 : 1) * Number(tokens[i + 1]);
  return total;
}

function operands(expr: string): string {
  return sortedNumbers(expr.split(' ').filter((_, i) => i % 2 === 0).join(' '));
}

function parseClaim(segment: string): Claim | null {
  for (const [re, make] of CLAIM_RULES) {
    const m = re.exec(segment);
    if (m) return make(m);
  }
  return null;
}

// ---------------------------------------------------------------------------------------------------------------
// Checking claims against the truth
// ---------------------------------------------------------------------------------------------------------------

type Truth = (key: string) => string | undefined;

const LETTERS = 'abcdef';

/**
 * The true value of an atomic claim's key, or undefined when the example does not say. From the true steps, and
 * from the facts for what the steps do not mention (counts and cells of every colour, every bar, every row, every
 * option), so that wrong side remarks count as errors too.
 */
function truthTable(example: JudgedExample): Truth {
  const table = new Map<string, string>();
  for (const step of example.steps) for (const atom of parseClaim(normalizeSegment(step))?.atoms ?? []) table.set(atom.key, atom.value);
  const facts = example.facts ?? {};
  const counts = isRecord(facts.counts) ? facts.counts : undefined;
  const squares = Array.isArray(facts.squares) ? (facts.squares as { cell?: unknown; color?: unknown }[]) : [];
  const heights = numberArray(facts.heights);
  const rows = Array.isArray(facts.rows) ? (facts.rows as unknown[]).map(numberArray).filter((r): r is number[] => r !== undefined) : undefined;
  const options = Array.isArray(facts.options) ? (facts.options as unknown[]) : undefined;

  if (counts) {
    for (const c of COLOR_NAMES) {
      if (typeof counts[c] !== 'number') continue;
      if (!table.has(`${c} =`)) table.set(`${c} =`, String(counts[c]));
      const cells = squares.filter((s) => s.color === c && typeof s.cell === 'number').map((s) => s.cell as number);
      if (!table.has(`${c} at`)) table.set(`${c} at`, cells.sort((a, b) => a - b).join(' '));
    }
  }
  if (heights && heights.length > 0) {
    table.set('bars', heights.join(' '));
    table.set('tallest =', String(Math.max(...heights)));
    table.set('shortest =', String(Math.min(...heights)));
  }
  if (rows) {
    table.set('digits', rows.flat().join(' '));
    rows.forEach((row, i) => table.set(`row ${i + 1}:`, row.join(' ')));
  }
  return (key) => {
    const known = table.get(key);
    if (known !== undefined) return known;
    if (rows && /^row \d+:$/.test(key)) return ''; // a row the image does not have
    const n = /^(\d+)(:| is)$/.exec(key);
    if (!n || !options) return undefined;
    const value = Number(n[1]);
    if (n[2] === ':' && counts) {
      // Colour options: the letters of the colours with exactly n squares.
      return options.flatMap((o, i) => (typeof o === 'string' && counts[o] === value ? [LETTERS[i]!] : [])).join(',');
    }
    if (n[2] === ' is') {
      // Numeric options: the letter of the option n; '' when n is not an option (every letter is then wrong).
      const i = options.indexOf(value);
      return i >= 0 ? LETTERS[i]! : '';
    }
    return undefined;
  };
}

/**
 * Why a claim contradicts the truth, one reason per wrong atom; empty when nothing it says is known false.
 * `misread` holds the numbers of earlier wrong atoms: a sum over them is the same mistake carried forward, not a
 * new one, so it is not counted again (the error is counted once, where it was made). Wrong atoms add to it.
 */
function claimErrors(claim: Claim, truth: Truth, trueArith: Claim | null | undefined, misread: Set<string>): string[] {
  if (claim.kind === 'arith') {
    const expr = claim.key.slice(0, -2);
    const value = evaluate(expr);
    if (value !== Number(claim.value)) return [`${expr} is ${value}`];
    if (!trueArith) return [];
    const want = operands(trueArith.key.slice(0, -2)).split(' ');
    const extra = operands(expr).split(' ');
    for (const w of want) {
      const i = extra.indexOf(w);
      if (i >= 0) extra.splice(i, 1);
    }
    return extra.every((x) => misread.has(x)) ? [] : [`the operands should be ${want.join(', ')}`];
  }
  const errors: string[] = [];
  for (const atom of claim.atoms) {
    const want = truth(atom.key);
    if (want === undefined || want === atom.value) continue;
    errors.push(`${atom.key} ${want === '' ? '(none)' : want}`);
    if (claim.kind !== 'cells') for (const n of atom.value.split(' ')) misread.add(n); // cells are places, not values
  }
  return errors;
}

/** 1 when a claim states the true step, `partialStep` when one has its key with another value, else 0. */
function stepCredit(step: string, trueClaim: Claim | null, claims: Claim[], segments: Set<string>): number {
  if (!trueClaim) return segments.has(normalizeSegment(step)) ? 1 : 0; // a step of a form the parser does not know
  const sameKey = claims.filter((c) => c.key === trueClaim.key);
  if (sameKey.some((c) => c.value === trueClaim.value)) return 1;
  // A calculation's left side is its shape: `3 + 1 = 4` is the step `2 + 1 = 3` done over other values.
  const shape = (key: string) => key.replace(/\d+/g, '#');
  const sameShape = trueClaim.kind === 'arith' && claims.some((c) => c.kind === 'arith' && shape(c.key) === shape(trueClaim.key));
  return sameKey.length > 0 || sameShape ? W.partialStep : 0;
}

/** What the reasoning concludes, in the answer's notation; null when no claim carries an answer. */
function impliedAnswer(type: AnswerType, claims: Claim[]): string | null {
  const last = (kinds: ClaimKind[]) => claims.filter((c) => kinds.includes(c.kind)).at(-1);
  if (type === 'choice') return last(['choiceSet', 'choiceOne'])?.value.toUpperCase() ?? null;
  if (type === 'ocr') {
    const rows = new Map<string, string>();
    for (const c of claims) if (c.kind === 'row') rows.set(c.key, c.value.replace(/ /g, ''));
    if (rows.size > 0) return [...rows.entries()].sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true })).map(([, v]) => v).join(' ');
    return last(['digits'])?.value.replace(/ /g, '') ?? null;
  }
  return last(['count', 'extreme', 'arith'])?.value ?? null;
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function numberArray(x: unknown): number[] | undefined {
  return Array.isArray(x) && x.every((v) => typeof v === 'number') ? x : undefined;
}
