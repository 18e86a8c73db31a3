/**
 * The outcome reward R^o ∈ [0, 1] of docs/architecture.md §3: rule-based grading of one sampled response against the ground
 * truth. Pure functions, no I/O; the trainer and `sophia grade` both call `grade`, so what the CLI prints is
 * exactly what training sees.
 *
 * A response is graded in two steps:
 *  1. the format gate (`checkFormat`): the response must be `<think>…</think>…<answer>…</answer>…`; if not, the
 *     reward is 0 whatever the answer. Otherwise the text inside the answer tags is the extracted answer;
 *  2. the rule for the example's answer type compares the extracted answer with the ground truth:
 *       numeric  1 if mathematically equal, else 0: plain numbers as exact rationals (`parseNumber`), anything
 *                else (`\sqrt{2}`, `2\pi`, `x + 1`) by value with a computer-algebra system (`tasks/symbolic.ts`);
 *       choice   1 if the set of option letters (A–Z) chosen equals the ground-truth set (`extractChoices`), else 0;
 *       ocr      exp(−WER): partial credit that decays with the word error rate;
 *       text     1 for an exact match after normalisation (the ROUGE tokens: lowercased, punctuation and spacing
 *                ignored), else the mean of ROUGE-1, ROUGE-2 and ROUGE-L F1 as partial credit.
 *
 * The numeric and choice parsers are deliberately strict: they accept the ways a correct answer is commonly
 * written, and give 0 to anything that hedges (two numbers, `x = 1, 2`, extra letters, `A or B`, a listing of the
 * options) or that they cannot read, because an over-lenient grader is a reward the policy learns to hack. No rule
 * throws on model output, and the work each does is bounded (the CAS sees at most 200 characters for at most 1 s).
 */
import { SophiaError } from '../common/errors';
import { MAX_SYMBOLIC_LENGTH, symbolicallyEqual } from './symbolic';
import { rougeScores, rougeTokens, wordErrorRate } from './text-metrics';

/** How an example's answer is graded. */
export type AnswerType = 'numeric' | 'choice' | 'ocr' | 'text';

export const ANSWER_TYPES: readonly AnswerType[] = ['numeric', 'choice', 'ocr', 'text'];

export interface GradeResult {
  /** The outcome reward R^o, in [0, 1]. */
  reward: number;
  /** Whether the response passed the `<think>…</think>…<answer>…</answer>` format gate. */
  formatOk: boolean;
  /** The trimmed text inside the answer tags; null when the format gate failed. */
  extracted: string | null;
}

/**
 * Grades one response: the format gate, then the rule for `type`. The one entry point the trainer uses.
 *
 * @param type how the ground truth is compared (see the module comment)
 * @param response the full sampled response, thinking included
 * @param answer the ground truth, in the same notation the rules accept from responses ("7", "A,C", "4719 3802")
 */
export function grade(type: AnswerType, response: string, answer: string): GradeResult {
  const format = checkFormat(response);
  if (format === null) return { reward: 0, formatOk: false, extracted: null };
  return { reward: scoreAnswer(type, format.answer, answer), formatOk: true, extracted: format.answer };
}

/** The rule for `type` applied to an already extracted answer; always in [0, 1]. */
export function scoreAnswer(type: AnswerType, extracted: string, answer: string): number {
  switch (type) {
    case 'numeric':
      return scoreNumeric(extracted, answer);
    case 'choice':
      return scoreChoice(extracted, answer);
    case 'ocr':
      return scoreOcr(extracted, answer);
    case 'text':
      return scoreText(extracted, answer);
    default: {
      const unknown: never = type;
      throw new SophiaError('input', `unknown answer type ${JSON.stringify(unknown)}: expected one of ${ANSWER_TYPES.join(', ')}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Format gate
// ---------------------------------------------------------------------------------------------------------------

export interface FormattedResponse {
  /** The text between `<think>` and the first `</think>`, untrimmed. */
  think: string;
  /** The text inside the first `<answer>…</answer>` after `</think>`, trimmed. */
  answer: string;
}

/**
 * The format gate. After trimming surrounding whitespace, the response must fully match
 * `<think>(.*?)</think>.*<answer>(.*?)</answer>.*` with `.` matching newlines: it starts with `<think>`, the
 * thinking closes, and an answer block follows somewhere after it. Tags are case-sensitive. Returns null when it
 * does not match.
 *
 * Written with `indexOf` rather than the regex so the answer taken is the *first* complete `<answer>…</answer>`
 * after the first `</think>` (the regex's greedy `.*` would pick the last one). Consequences: with several answer
 * blocks only the first counts (hedging across blocks gains nothing); a nested `<answer><answer>3</answer>` yields
 * `<answer>3`, which no rule reads as an answer; `<answer></answer>` passes the gate with an empty answer.
 */
export function checkFormat(response: string): FormattedResponse | null {
  const s = response.trim();
  if (!s.startsWith('<think>')) return null;
  const thinkEnd = s.indexOf('</think>', '<think>'.length);
  if (thinkEnd < 0) return null;
  const open = s.indexOf('<answer>', thinkEnd + '</think>'.length);
  if (open < 0) return null;
  const close = s.indexOf('</answer>', open + '<answer>'.length);
  if (close < 0) return null;
  return { think: s.slice('<think>'.length, thinkEnd), answer: s.slice(open + '<answer>'.length, close).trim() };
}

// ---------------------------------------------------------------------------------------------------------------
// Shared markup stripping
// ---------------------------------------------------------------------------------------------------------------

/** Index of the `}` matching the `{` at `open`, or -1. */
function matchingBrace(s: string, open: number): number {
  let depth = 0;
  for (let i = open; i < s.length; i++) {
    if (s[i] === '{') depth++;
    else if (s[i] === '}' && --depth === 0) return i;
  }
  return -1;
}

const WRAPPER_COMMAND = /^\\(?:boxed|fbox|text|textbf|textrm|mathrm|mathbf|mbox)\s*\{/;

/** `\boxed{X} rest` → `X rest` (also `\text{}`, `\mathrm{}`…) when the text starts with such a command. */
function unwrapLeadingCommand(s: string): string {
  const m = WRAPPER_COMMAND.exec(s);
  if (!m) return s;
  const close = matchingBrace(s, m[0].length - 1);
  if (close < 0) return s;
  return `${s.slice(m[0].length, close)} ${s.slice(close + 1)}`.trim();
}

/** Applies `step` until the text stops changing. */
function untilStable(s: string, step: (s: string) => string): string {
  for (let next = step(s); next !== s; next = step(s)) s = next;
  return s;
}

// ---------------------------------------------------------------------------------------------------------------
// numeric
// ---------------------------------------------------------------------------------------------------------------

/** An exact rational number num/den with den > 0 (not necessarily in lowest terms). */
export interface Rational {
  num: bigint;
  den: bigint;
}

/** Whether two rationals are equal (cross-multiplication, exact). */
export function rationalsEqual(a: Rational, b: Rational): boolean {
  return a.num * b.den === b.num * a.den;
}

/** Scientific-notation exponents beyond this are not read as numbers (10^1000 is already no answer to anything). */
const MAX_EXPONENT = 1000;

// An unsigned decimal: digits with optional thousands separators (commas between groups of exactly 3 digits), an
// optional fractional part (`5.`, `5.25`, `.5`), an optional exponent. The lookahead refuses `1,2345` and
// `1,000,00` as grouped numbers: they then read as `1` followed by more digits, which `parseNumber` rejects.
const DECIMAL = /(?:(\d{1,3}(?:,\d{3})+(?!\d|,\d)|\d+)(?:\.(\d*))?|\.(\d+))(?:[eE]([+-]?\d+))?/y;

/** Reads an unsigned decimal at `at`; returns its value and where it ends. */
function readDecimal(s: string, at: number): { value: Rational; end: number } | null {
  DECIMAL.lastIndex = at;
  const m = DECIMAL.exec(s);
  if (!m) return null;
  const intPart = (m[1] ?? '').replaceAll(',', '');
  const fracPart = m[2] ?? m[3] ?? '';
  const exponent = m[4] === undefined ? 0 : Number(m[4]);
  if (Math.abs(exponent) > MAX_EXPONENT) return null;
  let num = BigInt(intPart + fracPart || '0');
  let den = 10n ** BigInt(fracPart.length);
  if (exponent >= 0) num *= 10n ** BigInt(exponent);
  else den *= 10n ** BigInt(-exponent);
  return { value: { num, den }, end: DECIMAL.lastIndex };
}

/** Reads one argument of `\frac` at `at`: a `{…}` group holding exactly one number, or a single digit (`\frac12`). */
function readFracArg(s: string, at: number): { value: Rational; end: number } | null {
  while (s[at] === ' ') at++;
  if (s[at] === '{') {
    const close = matchingBrace(s, at);
    if (close < 0) return null;
    const value = parseBareNumber(s.slice(at + 1, close));
    return value && { value, end: close + 1 };
  }
  const c = s[at];
  return c !== undefined && c >= '0' && c <= '9' ? { value: { num: BigInt(c), den: 1n }, end: at + 1 } : null;
}

/** Reads a signed number at `at`: a decimal, a fraction `a/b`, or `\frac{a}{b}`. */
function readNumber(s: string, at: number): { value: Rational; end: number } | null {
  let negative = false;
  if (s[at] === '-' || s[at] === '+') {
    negative = s[at] === '-';
    at++;
    while (s[at] === ' ') at++;
  }
  let read: { value: Rational; end: number } | null;
  if (s.startsWith('\\frac', at)) {
    const top = readFracArg(s, at + '\\frac'.length);
    const bottom = top && readFracArg(s, top.end);
    if (!top || !bottom || bottom.value.num === 0n) return null;
    read = { value: divide(top.value, bottom.value), end: bottom.end };
  } else {
    read = readDecimal(s, at);
    if (!read) return null;
    const slash = /\s*\/\s*/y;
    slash.lastIndex = read.end;
    const bottom = slash.test(s) ? readDecimal(s, slash.lastIndex) : null;
    if (bottom) {
      if (bottom.value.num === 0n) return null;
      read = { value: divide(read.value, bottom.value), end: bottom.end };
    }
  }
  return negative ? { value: { num: -read.value.num, den: read.value.den }, end: read.end } : read;
}

/** a / b for b ≠ 0, keeping den > 0. */
function divide(a: Rational, b: Rational): Rational {
  const num = a.num * b.den;
  const den = a.den * b.num;
  return den < 0n ? { num: -num, den: -den } : { num, den };
}

/** Exactly one number and nothing else (used inside `\frac{…}{…}`). */
function parseBareNumber(s: string): Rational | null {
  const t = s.trim();
  const read = readNumber(t, 0);
  return read && read.end === t.length ? read.value : null;
}

/** LaTeX and Unicode spellings normalized before parsing: math delimiters, spacing commands, minus signs. */
function normalizeMath(text: string): string {
  return text
    .replaceAll('\\$', '')
    .replaceAll('$', '') // math mode `$…$`, `$$…$$`, and a currency sign
    .replace(/\\[()[\]]/g, ' ') // `\(…\)`, `\[…\]`
    .replace(/\\(?:[,;:! ]|quad|qquad)|~/g, ' ')
    .replace(/\\(?:dfrac|tfrac)/g, '\\frac')
    .replaceAll('\\displaystyle', '')
    .replaceAll('\\%', '%')
    .replace(/[\u2212\u2013]/g, '-') // Unicode minus, en dash
    .trim();
}

// `answer:`, `the final answer is`, `x =`, `=` before the number.
const NUMERIC_PREFIX = /^(?:(?:the\s+)?(?:final\s+)?answer\b\s*(?:is\b)?\s*[:：]?|[A-Za-z][A-Za-z0-9_]*\s*=|=)\s*/i;

// After the number, text that would change its value: powers, factorials, operators, π, roots, LaTeX math
// commands. `5²` or `2\pi` is not 5 or 2.
const VALUE_CHANGING_SUFFIX = /^(?:[\^!*×·÷+\-/=<>≤≥≠≈π√⁰¹²³⁴⁵⁶⁷⁸⁹]|\\(?!(?:text|textrm|mathrm|mbox|operatorname|rm|circ|degree)\b))/;
// Exponents of units (`cm^2`, `\text{m}^{3}`, `m_2`) and degree signs, whose digits are not a second number.
const UNIT_POWER = /(?<=[\p{L}}])\s*[\^_]\s*(?:\{\s*[+-]?\d+\s*\}|[+-]?\d+)/gu;
const DEGREES = /^\s*\^\s*(?:\{\s*\\circ\s*\}|\\circ)/;

/**
 * Whether the text after a number is only units or words (`cm`, `apples`, `\text{cm}^2`, `^\circ`), so the
 * number stands as the answer. Any other number in it (not part of a word like `H2O` or a unit power) makes the
 * answer ambiguous: `3 or 4`, `2 and 2`, `1,23`, `2^3` are all rejected.
 */
function isUnitSuffix(rest: string): boolean {
  const t = rest.replace(DEGREES, '').trim();
  if (t === '') return true;
  if (VALUE_CHANGING_SUFFIX.test(t)) return false;
  return !/(?<![\p{L}\d])\d/u.test(t.replace(UNIT_POWER, ''));
}

/**
 * Reads a numeric answer as an exact rational, or null when the text is not one number.
 *
 * Accepted: integers, decimals (`0.5`, `.5`, `5.`), scientific notation (`1.5e3`), fractions `a/b`, LaTeX
 * `\frac{a}{b}`, `\dfrac`, `\tfrac`, `\frac12`; a sign (`+`, `-`, Unicode `−`); thousands separators (`1,234,567`,
 * commas only between groups of exactly 3 digits); a trailing `%` (stripped: "50%" reads as 50, not 0.5);
 * trailing units or words (`12 cm`, `5 apples`, `30^\circ`); wrapping `$…$`, `\(…\)`, `\boxed{…}`, `\text{…}`;
 * a leading `answer:`, `the answer is`, `x =`, `=`; surrounding whitespace.
 *
 * Rejected (null): empty text, text that does not start with the number after those prefixes (`about 5`), a
 * second number anywhere (`3 or 4`, `1,23`, `2 1/2`: mixed numbers are not read), a suffix that changes the
 * value (`2^3`, `5!`, `2\pi`, `5²`), a zero denominator, exponents beyond ±1000. The numeric rule then hands
 * such answers to the CAS, which reads `2^3` as 8 and `2\pi` by value, but not `3 or 4`, `2 1/2` or `5!`.
 */
export function parseNumber(text: string): Rational | null {
  const s = untilStable(normalizeMath(text), (t) => unwrapLeadingCommand(t.replace(NUMERIC_PREFIX, '')));
  const read = readNumber(s, 0);
  if (!read) return null;
  const rest = s.slice(read.end).replace(/^\s*%/, '');
  return isUnitSuffix(rest) ? read.value : null;
}

// A trailing degree sign or percent sign is a unit, as in `parseNumber` (`30^\circ` is 30, not π/6); a trailing
// full stop ends a sentence (`The answer is \sqrt{2}.`).
const SYMBOLIC_SUFFIX = /(?:\s*\^\s*(?:\{\s*\\circ\s*\}|\\circ)|\s*°|\s*%|(?<!\d)\.)\s*$/;

/** The text the CAS reads: as `parseNumber` sees it (wrappers and `x =` stripped), less a trailing unit sign. */
function symbolicText(text: string): string {
  if (text.length > 4 * MAX_SYMBOLIC_LENGTH) return ''; // unreadable anyway: spare the normalization
  const s = untilStable(normalizeMath(text), (t) => unwrapLeadingCommand(t.replace(NUMERIC_PREFIX, '')));
  return s.replace(SYMBOLIC_SUFFIX, '').trim();
}

/**
 * numeric rule: 1 if the answers are equal, else 0 (also when the ground truth itself is unreadable).
 *
 * When both sides are plain numbers (`parseNumber`), they are compared as exact rationals: `0.1 + 0.2`-style
 * float error cannot occur, `1/3` is not `0.333333333333`, and `2^53 + 1` is not `2^53`. Otherwise the answers
 * are compared by value with a computer-algebra system (`symbolicallyEqual`, `tasks/symbolic.ts`): `\sqrt{12}` =
 * `2\sqrt{3}`, `2\pi` = `\pi \cdot 2`, `3^{2}` = `9`, `x + 1` = `1 + x`, within a relative 1e-9. So a decimal
 * counts for an irrational truth when it carries about ten significant digits (`0.8660254037844386` =
 * `\frac{\sqrt{3}}{2}`, `0.866` is not), as in math-verify's numeric comparison; a rational truth must be matched
 * exactly.
 */
function scoreNumeric(extracted: string, answer: string): number {
  const got = parseNumber(extracted);
  const want = parseNumber(answer);
  if (got !== null && want !== null) return rationalsEqual(got, want) ? 1 : 0;
  return symbolicallyEqual(symbolicText(extracted), symbolicText(answer)) ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------------------------
// choice
// ---------------------------------------------------------------------------------------------------------------

// `answer:`, `the correct answer is`, `option`, `options:`, `choice`.
const CHOICE_PREFIX = /^(?:(?:the\s+)?(?:final\s+|correct\s+)?answers?\b\s*(?:is\b|are\b)?\s*[:：]?|(?:options?|choices?)\b\s*[:：]?)\s*/i;
// Separators between letters: `,` `;` `&` `/` `、`, the word `and`, whitespace.
const CHOICE_SEPARATOR = /\s*(?:[,;&/、]|\band\b)\s*|\s+/i;
// One letter token: `B`, `(B)`, `[B]`, `B.`, `B)`, `B:`; uppercase runs (`AC`) or one lowercase letter (`b`).
const CHOICE_TOKEN = /^[([]?([A-Z]+|[a-z])[)\]]?[.:]?$/;
// A leading option label followed by its option text: `(B) 12 apples`, `B. 12 apples`, `B) 12`, `B: 12`. Group 1
// is the letter of an enclosed label `(B)`/`[B]`, groups 2 and 3 the letter and mark of `B.`, `B)`, `B:`.
const LABELLED_OPTION = /^(?:[([]\s*([A-Z])\s*[)\]]|([A-Z])([.):])(?=\s|$))/;
// Further labels in the same style as the first, later in the text: `(A)`/`[A]` anywhere not inside a word, or
// `A.`/`A)`/`A:` after a space and before more text (`Vitamin C.` at the end is not a label).
const ENCLOSED_LABEL = /(?<![\p{L}\d])[([]\s*([A-Z])\s*[)\]]/gu;
const markedLabel = (mark: string) => new RegExp(`(?<=\\s)([A-Z])\\${mark}(?=\\s+\\S)`, 'g');
// What joins the options of a multi-select answer: the text before the next label ends with `,` `;` `&` `、` `and`.
const JOINED = /(?:[,;&、]|\band)\s*$/i;
const HEDGE = /\bor\b/i;
// `or` before another option in any style (`(A) 3 or B`, `A. or B.`, `C) 5 or option D`): a hedge even when the
// second option is not labelled like the first.
const OR_OPTION = /\b(?:or|OR|Or)\s+(?:(?:[Oo]ptions?|[Cc]hoices?)\s+)?(?:[([]\s*[A-Z]\s*[)\]]|[A-Z](?![\p{L}\d]))/u;

/**
 * The option letters (A–Z) a choice answer selects, uppercase, sorted, without duplicates; empty when the text
 * is not an option choice.
 *
 * Two forms are read, after stripping `$`, `*`, `\boxed{}`/`\text{}` and a leading `answer:`, `the answer is`,
 * `option`, `options`:
 *  - letters only, with separators: `B`, `(B)`, `B.`, `A, C`, `C,A`, `A and C`, `A & C`, `AC`. Lowercase is
 *    accepted only one letter per token (`b`, `a, c`), so words (`bad`, `face`) are not choices. `A or B` is a
 *    hedge and selects nothing;
 *  - a labelled option with its text: `(B) 12 apples`, `C. 5` select one letter. When further labels in the
 *    same style follow (`(A)`, or `A.`/`A)`/`A:` before more text), the response names several options: they are
 *    a multi-select only when each is joined to the next by `and`, `&`, `,` or `;` (`(A) 3 apples and (C) 5
 *    apples` → A, C). Otherwise it is a listing of the options (`A. 3 B. 4 C. 5`) or an argument about them
 *    (`B) 4 because A) is wrong`), and with `or` between them a hedge (`(A) 3 or (B) 4`, also `(A) 3 or B`
 *    with the second option in any style): all select nothing.
 *    Never the first label alone: naming more options than one must not count as choosing one of them.
 * Anything else (`a cat`, `Banana`, `I think B`, `B 12 apples`) selects nothing. The answer block should hold the
 * chosen option and nothing more; reasons belong in the thinking.
 */
export function extractChoices(text: string): string[] {
  const stripped = text.replaceAll('\\$', '').replace(/[$*]/g, '').trim();
  const s = untilStable(stripped, (t) => unwrapLeadingCommand(t.replace(CHOICE_PREFIX, '')));

  const tokens = s.split(CHOICE_SEPARATOR).filter((t) => t !== '');
  const matches = tokens.map((t) => CHOICE_TOKEN.exec(t));
  if (tokens.length > 0 && matches.every((m): m is RegExpExecArray => m !== null)) {
    const letters = new Set(matches.flatMap((m) => [...(m[1] ?? '').toUpperCase()]));
    return [...letters].sort();
  }

  const label = LABELLED_OPTION.exec(s);
  if (!label) return [];
  const first = (label[1] ?? label[2])!;
  const rest = s.slice(label[0].length);
  if (OR_OPTION.test(rest)) return [];
  const others = [...rest.matchAll(label[1] !== undefined ? ENCLOSED_LABEL : markedLabel(label[3]!))];
  if (others.length === 0) return [first];
  // The text of each named option up to the next label: every one must end with a joining word.
  const before = others.map((m, i) => rest.slice(i === 0 ? 0 : others[i - 1]!.index + others[i - 1]![0].length, m.index));
  if (before.some((t) => HEDGE.test(t)) || !before.every((t) => JOINED.test(t))) return [];
  return [...new Set([first, ...others.map((m) => m[1]!)])].sort();
}

/** choice rule: 1 iff the response selects exactly the ground-truth set of letters (non-empty), else 0. */
function scoreChoice(extracted: string, answer: string): number {
  const want = extractChoices(answer);
  const got = extractChoices(extracted);
  return want.length > 0 && got.length === want.length && got.every((c, i) => c === want[i]) ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------------------------
// ocr and text
// ---------------------------------------------------------------------------------------------------------------

/**
 * ocr rule: exp(−WER) of the extracted answer against the ground truth: 1 for an exact transcript (up to case
 * and spacing), e^−0.5 ≈ 0.61 with half the words wrong, e^−1 ≈ 0.37 with all wrong or missing (an empty answer
 * too), less with extra words. Never 0, so every legible attempt carries some signal.
 */
function scoreOcr(extracted: string, answer: string): number {
  return clamp01(Math.exp(-wordErrorRate(extracted, answer)));
}

/**
 * text rule: 1 when the extracted answer equals the ground truth after normalisation (same ROUGE tokens: case,
 * punctuation and spacing do not count); otherwise partial credit, the mean of ROUGE-1, ROUGE-2 and ROUGE-L F1.
 * The exact-match rule comes first because the ROUGE mean alone underrates short answers: a correct one-word
 * answer has no bigrams, so its ROUGE-2 is 0 and the mean only (1 + 0 + 1) / 3 ≈ 0.667.
 */
function scoreText(extracted: string, answer: string): number {
  const got = rougeTokens(extracted);
  const want = rougeTokens(answer);
  if (want.length > 0 && got.length === want.length && got.every((t, i) => t === want[i])) return 1;
  const r = rougeScores(extracted, answer);
  return clamp01((r.rouge1 + r.rouge2 + r.rougeL) / 3);
}

/** Guards the [0, 1] contract against float rounding (e.g. an F1 of 1 + 1 ulp). */
function clamp01(x: number): number {
  return Math.min(1, Math.max(0, x));
}
