/**
 * Symbolic answers for the `numeric` rule of `tasks/grading.ts`: `\pi`, `\sqrt{2}`, `\frac{\sqrt{3}}{2}`, `2\pi`,
 * `3^{2}`, `e^{2}`, `x + 1` are compared by value with a computer-algebra system. The grader reaches this only
 * when one side is not a plain number; plain numbers keep their exact rational comparison (`parseNumber`).
 *
 * The CAS is the Cortex Compute Engine (`@cortex-js/compute-engine`, MIT): it is the one maintained npm package
 * that parses LaTeX itself (into MathJSON) and evaluates it, with bignum precision, free-variable analysis
 * (`unknowns`), canonical forms (`isSame`) and a time limit (`withTimeLimit`). mathjs (Apache-2.0) evaluates well
 * but reads no LaTeX, so it would need a hand-written LaTeX front end; nerdamer (partial LaTeX) and algebrite (none)
 * have had no release in years.
 * Its `engines` field asks for Node ≥ 22.3, but the CommonJS build needs nothing newer than Node 20, and the
 * grading tests run it on the Node this repository uses. It is loaded on first use (≈ 0.3 s), so commands that
 * never grade a symbolic answer do not pay for it.
 *
 * Strictness, because the reward is what the policy learns to hack:
 *  - only arithmetic, roots, powers, logarithms, trigonometric functions, the constants π, e, i, ±∞ and
 *    one-letter (or Greek, optionally subscripted) variables are read; anything else (a tuple `1, 2`, `\pm`, an
 *    equation, a set, `\text{or}`, a factorial, a sum, an undefined function, a unit) makes the answer unreadable;
 *  - text that the LaTeX parser would silently join into one number (`7 8` → 78, `2 \frac{1}{2}` → 2.5, `3{,}5`)
 *    is refused before parsing, and so is scientific notation (the parser expands `1e999999` digit by digit, for
 *    45 s, out of reach of the time limit; `parseNumber` reads the sensible ones);
 *  - both sides must have the same free variables: `7 or 8` reads as the product 56·o·r, whose `o` and `r` a
 *    number does not have;
 *  - equal means the same canonical form, or the same value within a relative 1e-9 (at three sample points when
 *    there are variables, one of them negative so `\sqrt{x^2}` is not `x`);
 *  - the work is bounded: at most `MAX_SYMBOLIC_LENGTH` characters, `TIME_LIMIT_MS` of CAS time per comparison,
 *    and nothing outside the list above is canonicalized or evaluated (the parser's raw output is checked first).
 *    Nothing here throws: an unreadable side, a CAS error or a spent time limit all score as unequal. (A correct
 *    answer takes ~0.3 ms and the slowest garbage measured 54 ms (bench/grading.ts): the limit is 1 s, far enough
 *    above both that a busy machine's pauses do not turn a right answer into a 0 — a reward must not depend on load.)
 */
import type { ComputeEngine, ComputeEngineConstructor, Expression } from '@cortex-js/compute-engine';

/** Longest text given to the CAS; symbolic answers are short and this bounds the parser's work on garbage. */
export const MAX_SYMBOLIC_LENGTH = 200;

/** CAS time allowed for one comparison (parse, canonical form, evaluation of both sides). */
export const TIME_LIMIT_MS = 1000;

/** Values are equal when |a − b| ≤ RELATIVE_TOLERANCE · max(|a|, |b|), or ≤ ABSOLUTE_TOLERANCE (`\sin(\pi)` = 0). */
export const RELATIVE_TOLERANCE = 1e-9;
const ABSOLUTE_TOLERANCE = 1e-15;

// The functions an answer may use (canonical MathJSON operator names).
const OPERATORS = new Set([
  'Add', 'Subtract', 'Negate', 'Multiply', 'Divide', 'Rational', 'Power', 'Sqrt', 'Root', 'Abs', 'Complex',
  'Exp', 'Ln', 'Log', 'Lb', 'Lg',
  'Sin', 'Cos', 'Tan', 'Cot', 'Sec', 'Csc', 'Arcsin', 'Arccos', 'Arctan', 'Sinh', 'Cosh', 'Tanh',
]);
// Before canonicalization the parser's output also has implicit products (`2\sqrt{3}`), parentheses and
// `\tan^{-1}`. Checking it first means nothing outside the list is ever canonicalized or evaluated.
const RAW_OPERATORS = new Set([...OPERATORS, 'InvisibleOperator', 'Delimiter', 'Apply', 'InverseFunction']);
const CONSTANTS = new Set(['Pi', 'ExponentialE', 'ImaginaryUnit', 'PositiveInfinity', 'NegativeInfinity']);
const GREEK = 'alpha|beta|gamma|delta|epsilon|varepsilon|zeta|eta|theta|vartheta|iota|kappa|lambda|mu|nu|xi|rho|sigma|tau|upsilon|phi|varphi|chi|psi|omega';
const VARIABLE = new RegExp(`^(?:[A-Za-z]|${GREEK}|${GREEK.replace(/\b\w/g, (c) => c.toUpperCase())})(?:_[A-Za-z0-9]+)?$`);

// Digits the parser would join: `7 8`, `1 .5`, `2 \frac{1}{2}` (a mixed number), `3{,}5`; commas and semicolons
// between several values; scientific notation (see the module comment).
const JOINED_OR_SEVERAL = /\d\s+\.?\d|\d\s*\\frac\s*\{?\s*\d|[,;]|\d[eE][+-]?\d/;

// Values substituted for the variables (the k-th variable gets value + k · VARIABLE_STEP), one negative.
const SAMPLE_VALUES = [0.731, -1.2946, 2.1178];
const VARIABLE_STEP = 0.1931;

let engine: ComputeEngine | undefined;

/** The shared engine, created on first use. */
function getEngine(): ComputeEngine {
  if (engine === undefined) {
    // Loaded lazily: the library is 3.4 MB of JavaScript, and most `sophia` commands never grade symbolic answers.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const lib = require('@cortex-js/compute-engine') as { ComputeEngine: ComputeEngineConstructor };
    engine = new lib.ComputeEngine();
  }
  return engine;
}

/** Whether a MathJSON expression uses only `operators`, the constants, variables and finite numbers. */
function isAllowed(json: unknown, operators: ReadonlySet<string>): boolean {
  if (typeof json === 'number') return Number.isFinite(json);
  if (typeof json === 'string') return CONSTANTS.has(json) || VARIABLE.test(json);
  if (Array.isArray(json)) {
    const [head, ...ops] = json as unknown[];
    if (typeof head !== 'string' || !operators.has(head)) return false;
    if (head === 'InverseFunction') return ops.length === 1 && typeof ops[0] === 'string' && OPERATORS.has(ops[0]);
    // `["Delimiter", body, "'('", "')'"]`: the delimiters are quoted strings.
    if (head === 'Delimiter') return ops.length >= 1 && isAllowed(ops[0], operators) && ops.slice(1).every((d) => typeof d === 'string' && d.startsWith("'"));
    return ops.every((op) => isAllowed(op, operators));
  }
  if (typeof json === 'object' && json !== null) {
    if ('num' in json) return typeof json.num === 'string' && /^[-+]?[\d.]/.test(json.num); // not NaN or ±Infinity
    if ('sym' in json) return isAllowed(json.sym, operators);
    if ('fn' in json) return isAllowed(json.fn, operators);
  }
  return false;
}

/** Parses one side into a canonical expression, or null when it is not a readable symbolic answer. */
function read(ce: ComputeEngine, text: string): Expression | null {
  if (text === '' || text.length > MAX_SYMBOLIC_LENGTH || JOINED_OR_SEVERAL.test(text)) return null;
  const raw = ce.parse(text, { form: 'raw' });
  if (!isAllowed(raw.json, RAW_OPERATORS)) return null;
  const expr = raw.canonical;
  return expr.isValid && isAllowed(expr.json, OPERATORS) ? expr : null;
}

/** Whether two finite complex values agree within the tolerances. */
function close(a: Expression, b: Expression): boolean {
  const parts: [number, number][] = [[a.re, b.re], [a.im, b.im]];
  return parts.every(([x, y]) => {
    if (!Number.isFinite(x) || !Number.isFinite(y)) return false;
    const diff = Math.abs(x - y);
    return diff <= ABSOLUTE_TOLERANCE || diff <= RELATIVE_TOLERANCE * Math.max(Math.abs(x), Math.abs(y));
  });
}

/** Same free variables, then the same canonical form or the same value at every sample point. */
function equalExpressions(a: Expression, b: Expression): boolean {
  const vars = [...a.unknowns].sort();
  const varsB = [...b.unknowns].sort();
  if (vars.length !== varsB.length || vars.some((v, i) => v !== varsB[i])) return false;
  if (a.isSame(b)) return true;
  if (vars.length === 0) return close(a.N(), b.N());
  return SAMPLE_VALUES.every((value) => {
    const point = Object.fromEntries(vars.map((v, k) => [v, value + k * VARIABLE_STEP]));
    return close(a.subs(point).N(), b.subs(point).N());
  });
}

/**
 * Whether two LaTeX answers are equal as numbers or expressions (see the module comment). The callers have already
 * stripped wrappers (`$…$`, `\boxed{}`) and prefixes (`x =`). Never throws: unreadable text, a CAS error or a
 * spent time limit all mean "not equal".
 */
export function symbolicallyEqual(got: string, want: string): boolean {
  if (got.length > MAX_SYMBOLIC_LENGTH || want.length > MAX_SYMBOLIC_LENGTH) return false;
  try {
    const ce = getEngine();
    // A scope per comparison: symbols the parser declares on the fly (`x`, `o`, `r`) do not outlive it.
    ce.pushScope();
    try {
      return ce.withTimeLimit(TIME_LIMIT_MS, () => {
        const a = read(ce, got);
        const b = a && read(ce, want);
        return a !== null && b !== null && equalExpressions(a, b);
      });
    } finally {
      ce.popScope();
    }
  } catch {
    return false; // a CAS error or CancellationError (time limit) on model output: unreadable, hence unequal
  }
}
