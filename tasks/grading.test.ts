import { describe, expect, it } from 'vitest';
import { adversarialAnswers } from '../bench/grading';
import { type AnswerType, checkFormat, extractChoices, grade, parseNumber, rationalsEqual, scoreAnswer } from './grading';

/** A well-formed response whose answer block holds `answer`. */
const respond = (answer: string) => `<think>Count the squares, then compare.</think>\n<answer>${answer}</answer>`;

describe('format gate', () => {
  const FAIL = { reward: 0, formatOk: false, extracted: null };

  it.each([
    ['missing </think>', '<think>x<answer>5</answer>'],
    ['answer before think', '<answer>5</answer><think>x</think>'],
    ['no answer tag', '<think>x</think>5'],
    ['unclosed answer', '<think>x</think><answer>5'],
    ['no think block', '<answer>5</answer>'],
    ['text before <think>', 'Sure! <think>x</think><answer>5</answer>'],
    ['answer only inside the thinking', '<think>so <answer>5</answer></think>'],
    ['uppercase tags', '<THINK>x</THINK><ANSWER>5</ANSWER>'],
    ['empty response', ''],
  ])('%s → reward 0, formatOk false', (_name, response) => {
    expect(grade('numeric', response, '5')).toEqual(FAIL);
  });

  it.each([
    ['minimal', '<think></think><answer>5</answer>', '5', 1],
    ['leading and trailing whitespace', '\n  <think>x</think>\n<answer>5</answer>\n ', '5', 1],
    ['multi-line thinking and answer', '<think>line 1\nline 2</think>\n\n<answer>\n 5 \n</answer>', '5', 1],
    ['text between and after the blocks', '<think>x</think> so: <answer>5</answer> done.', '5', 1],
    ['empty answer', '<think>x</think><answer></answer>', '', 0],
    ['blank answer', '<think>x</think><answer>   </answer>', '', 0],
    ['several answers: the first counts', '<think>x</think><answer>5</answer><answer>6</answer>', '5', 1],
    ['several answers, the first wrong', '<think>x</think><answer>6</answer><answer>5</answer>', '6', 0],
    ['nested answers', '<think>x</think><answer><answer>5</answer></answer>', '<answer>5', 0],
    ['an answer in the thinking is not the answer', '<think>maybe <answer>4</answer></think><answer>5</answer>', '5', 1],
  ])('%s → extracted %j, reward %d', (_name, response, extracted, reward) => {
    expect(grade('numeric', response, '5')).toEqual({ reward, formatOk: true, extracted });
  });

  it('returns the thinking too', () => {
    expect(checkFormat(' <think> a\nb </think><answer> B </answer>')).toEqual({ think: ' a\nb ', answer: 'B' });
  });
});

describe('numeric', () => {
  it.each([
    // integers and signs
    ['7', '7', 1],
    ['7', '8', 0],
    ['-3', '-3', 1],
    ['−3', '-3', 1], // Unicode minus
    ['+3', '3', 1],
    ['- 3', '-3', 1],
    ['-3', '3', 0],
    ['-0', '0', 1],
    // decimals
    ['0.5', '0.5', 1],
    ['.5', '0.5', 1],
    ['5.', '5', 1],
    ['5.0', '5', 1],
    ['7', '7.00', 1],
    ['0.25', '0.2500', 1],
    ['0.3', '0.31', 0],
    ['1e3', '1000', 1],
    // fractions and LaTeX
    ['1/2', '0.5', 1],
    ['2/4', '1/2', 1],
    ['1 / 4', '0.25', 1],
    ['\\frac{1}{2}', '0.5', 1],
    ['\\dfrac{3}{4}', '0.75', 1],
    ['\\frac12', '1/2', 1],
    ['-\\frac{3}{4}', '-0.75', 1],
    ['\\frac{-3}{4}', '-3/4', 1],
    ['\\frac{3}{-4}', '-0.75', 1],
    ['1/3', '0.333333333333', 0], // exact: a truncated decimal is not a third
    ['\\frac{1}{0}', '0', 0],
    // thousands separators
    ['1,234,567', '1234567', 1],
    ['1,000', '1000', 1],
    ['12,345.5', '12345.5', 1],
    ['1000', '1,000', 1],
    ['1,23', '123', 0],
    ['1,23', '1.23', 0],
    ['1,2345', '12345', 0],
    // percent, units, words
    ['50%', '50', 1],
    ['50 %', '50', 1],
    ['50\\%', '50', 1],
    ['50%', '0.5', 0],
    ['12 cm', '12', 1],
    ['5 apples', '5', 1],
    ['3 bars', '3', 1],
    ['6 cm^2', '6', 1],
    ['30^\\circ', '30', 1],
    ['$12$ \\text{cm}', '12', 1],
    // wrappers, prefixes, whitespace
    ['  42  ', '42', 1],
    ['$42$', '42', 1],
    ['\\boxed{42}', '42', 1],
    ['$\\boxed{\\frac{1}{2}}$', '0.5', 1],
    ['\\(42\\)', '42', 1],
    ['x = 4', '4', 1],
    ['x=-4', '-4', 1],
    ['= 4', '4', 1],
    ['Answer: 4', '4', 1],
    ['The answer is 4.', '4', 1],
    // not one number
    ['3 or 4', '3', 0],
    ['3 or 4', '4', 0],
    ['3 or -3', '3', 0],
    ['2 1/2', '2.5', 0],
    ['2^3', '2', 0],
    ['5!', '5', 0],
    ['2\\pi', '2', 0],
    ['5²', '5', 0],
    ['about 5', '5', 0],
    ['five', '5', 0],
    ['', '0', 0],
    ['5', 'not a number', 0],
  ])('%j vs %j → %d', (response, truth, reward) => {
    expect(grade('numeric', respond(response), truth).reward).toBe(reward);
  });

  it('compares exactly: values a float would confuse stay different', () => {
    // 2^53 + 1 and 2^53 are the same double.
    expect(Number('9007199254740993')).toBe(Number('9007199254740992'));
    expect(grade('numeric', respond('9007199254740993'), '9007199254740992').reward).toBe(0);
    expect(grade('numeric', respond('0.30000000000000004'), '0.3').reward).toBe(0);
    expect(grade('numeric', respond('3/10'), '0.3').reward).toBe(1);
  });

  it('parses to exact rationals', () => {
    expect(parseNumber('1,234.5')).toEqual({ num: 12345n, den: 10n });
    expect(parseNumber('-\\frac{6}{8}')).toEqual({ num: -6n, den: 8n });
    expect(parseNumber('2.5e-3')).toEqual({ num: 25n, den: 10000n });
    expect(parseNumber('1e99999')).toBeNull(); // exponent out of range
    expect(rationalsEqual({ num: -6n, den: 8n }, { num: -3n, den: 4n })).toBe(true);
  });
});

describe('numeric: symbolic answers (by value, through the CAS)', () => {
  it.each([
    // each against itself: all scored 0 before the CAS
    ['\\pi', '\\pi'],
    ['\\sqrt{2}', '\\sqrt{2}'],
    ['\\frac{\\sqrt{3}}{2}', '\\frac{\\sqrt{3}}{2}'],
    ['2\\sqrt{3}', '2\\sqrt{3}'],
    ['\\frac{\\pi}{3}', '\\frac{\\pi}{3}'],
    ['3^{2}', '3^{2}'],
    ['e^{2}', 'e^{2}'],
    ['\\infty', '\\infty'],
    // other spellings of the same value
    ['2\\pi', '\\pi \\cdot 2'],
    ['2\\sqrt{3}', '\\sqrt{12}'],
    ['\\frac{\\sqrt{2}}{2}', '\\frac{1}{\\sqrt{2}}'],
    ['\\dfrac{\\pi}{3}', '\\frac{\\pi}{3}'],
    ['e^{2}', '\\exp(2)'],
    ['3^{2}', '9'],
    ['2^3', '8'],
    ['\\sqrt[3]{8}', '2'],
    ['\\sqrt{-1}', 'i'],
    ['$\\boxed{\\frac{\\sqrt{3}}{2}}$', '\\frac{\\sqrt{3}}{2}'],
    ['x = 2\\sqrt{3}', '\\sqrt{12}'],
    ['The answer is \\sqrt{2}.', '\\sqrt{2}'],
    // expressions: the same free variables, equal at every sample point
    ['\\tan^{-1}(1)', '\\frac{\\pi}{4}'],
    ['\\log_{2} 8', '3'],
    ['x + 1', '1 + x'],
    ['2\\theta', '\\theta + \\theta'],
    ['\\pi r^2', 'r^{2}\\pi'],
    ['\\frac{x^2 - 1}{x - 1}', 'x + 1'],
    // a decimal for an irrational truth counts to within a relative 1e-9 (math-verify compares numerically too)
    ['0.8660254037844386', '\\frac{\\sqrt{3}}{2}'],
    ['\\frac{\\sqrt{3}}{2}', '0.8660254037844386'],
    ['3.14159265359', '\\pi'],
  ])('%j = %j', (response, truth) => {
    expect(grade('numeric', respond(response), truth).reward).toBe(1);
  });

  it.each([
    ['\\sqrt{2}', '\\sqrt{3}'],
    ['-\\sqrt{2}', '\\sqrt{2}'],
    ['\\frac{\\pi}{3}', '\\frac{\\pi}{6}'],
    ['e^{2}', 'e^{3}'],
    ['2\\pi', '2'],
    ['3+4i', '3-4i'],
    ['\\infty', '-\\infty'],
    // decimals short of the tolerance
    ['0.866', '\\frac{\\sqrt{3}}{2}'],
    ['0.8660254', '\\frac{\\sqrt{3}}{2}'],
    ['3.14', '\\pi'],
    // a rational truth is matched exactly, also through the CAS
    ['0.333333333333', '\\frac{1}{3}'],
    // expressions: different variables or values
    ['x + 1', 'x + 2'],
    ['x', 'y'],
    ['\\pi r^2', '\\pi'],
    ['\\sqrt{x^2}', 'x'], // not equal for negative x
    // degrees are a unit, as for plain numbers (30^\circ is 30)
    ['30^\\circ', '\\frac{\\pi}{6}'],
  ])('%j ≠ %j', (response, truth) => {
    expect(grade('numeric', respond(response), truth).reward).toBe(0);
  });

  it.each([
    // two values, or a value and a hedge
    ['7 or 8', '56'], // read by the CAS as 56·o·r: the free variables o, r make it unequal
    ['7 or 8', '7'],
    ['\\sqrt{2} or \\sqrt{3}', '\\sqrt{2}'],
    ['x = \\sqrt{2} \\text{ or } x = -\\sqrt{2}', '\\sqrt{2}'],
    ['x = 1, 2', '1'],
    ['\\sqrt{2}, \\sqrt{3}', '\\sqrt{2}'],
    ['\\sqrt{2}; \\sqrt{3}', '\\sqrt{2}'],
    ['\\pm\\sqrt{2}', '\\sqrt{2}'],
    ['\\sqrt{2} \\approx 1.414', '\\sqrt{2}'],
    // text the LaTeX parser would join into one number
    ['7 8', '78'],
    ['2\\frac{1}{2}', '\\frac{5}{2}'],
    ['3{,}5', '35'],
    // what the CAS is not allowed to evaluate or read
    ['5!', '120'],
    ['\\sum_{n=1}^{1000000000} n', '500000000500000000'],
    ['\\binom{5}{2}', '10'],
    ['f(2)', 'f(2)'],
    ['\\sqrt{2}\\,\\text{cm}', '\\sqrt{2}'], // units are read only after a plain number
    ['\\frac{1}{0}', '\\frac{1}{0}'],
    ['\\{1, 2\\}', '\\{1, 2\\}'],
    ['x + 1 = 2', 'x + 1 = 2'], // an equation is not a value (a leading `x =` is only a prefix)
    ['\\sqrt{2}', 'not a number'],
  ])('%j vs %j → 0 (not one readable value)', (response, truth) => {
    expect(grade('numeric', respond(response), truth).reward).toBe(0);
  });

  it.each([
    '\\frac{',
    '\\sqrt',
    '}{',
    '\\left(',
    '^^^_',
    '\\begin{matrix} 1 & 2 \\end{matrix}',
    '\\undefinedcommand{2}',
    '\\sqrt{'.repeat(300),
    'x'.repeat(10_000),
    '\\frac{1}{2}'.repeat(100),
  ])('garbage %j scores 0 against itself, without throwing', (text) => {
    expect(grade('numeric', respond(text), text).reward).toBe(0);
  });

  it('never throws on random and adversarial output', () => {
    // 500 check the contract; how long each takes is bench/grading.ts's to measure (10,000, with a table).
    for (const text of adversarialAnswers(500, 3)) {
      for (const [type, truth] of [['numeric', '\\sqrt{2}'], ['numeric', 'x + 1'], ['choice', 'B']] as const) {
        const { reward } = grade(type, respond(text), truth);
        expect(reward === 0 || reward === 1).toBe(true);
      }
    }
  });
});

describe('choice', () => {
  it.each([
    ['B', 'B', 1],
    ['(B)', 'B', 1],
    ['B.', 'B', 1],
    ['B)', 'B', 1],
    ['[B]', 'B', 1],
    ['b', 'B', 1],
    ['B', 'b', 1],
    ['Option B', 'B', 1],
    ['answer: B', 'B', 1],
    ['The correct answer is (B).', 'B', 1],
    ['(B) 12 apples', 'B', 1],
    ['B. 12 apples', 'B', 1],
    ['\\boxed{B}', 'B', 1],
    ['**B**', 'B', 1],
    ['C', 'B', 0],
    // several letters: a set, in any order and notation
    ['A, C', 'A,C', 1],
    ['C,A', 'A, C', 1],
    ['A and C', 'AC', 1],
    ['A & C', 'A,C', 1],
    ['CA', 'A,C', 1],
    ['a, c', 'A,C', 1],
    ['(A) and (C)', 'A,C', 1],
    ['A, A, C', 'A,C', 1],
    ['(A) 3 apples and (C) 5 apples', 'A,C', 1],
    ['A', 'A,C', 0], // subset
    ['A, B, C', 'A,C', 0], // superset
    ['A, C', 'A', 0],
    ['(A) 3 or (B) 4', 'A', 0], // hedging
    // not an option choice
    ['a cat', 'A', 0],
    ['Banana', 'B', 0],
    ['bad', 'A,B,D', 0],
    ['I think B', 'B', 0],
    ['B 12 apples', 'B', 0],
    ['', 'B', 0],
    // letters beyond F (MMMU, MMStar-like data)
    ['G', 'G', 1],
    ['(Z)', 'Z', 1],
    ['j', 'J', 1],
    ['The answer is (K).', 'K', 1],
    ['H. 12 apples', 'H', 1],
    ['A, G', 'A,G', 1],
    ['G', 'F', 0],
    // several options named: never the first alone
    ['A. 3 B. 4', 'A', 0], // a listing of the options
    ['A. 3 B. 4', 'A,B', 0],
    ['A. 3 B. 4 C. 5', 'A', 0],
    ['(A) 3 (B) 4 (C) 5', 'A', 0],
    ['A) 3 B) 4', 'A', 0],
    ['A: 3 B: 4', 'A', 0],
    ['B) 4 because A) is wrong', 'B', 0], // an argument about the options, not a choice
    ['B) 4 because A) is wrong', 'A,B', 0],
    ['A or B', 'A', 0], // a hedge
    ['A or B', 'A,B', 0],
    ['(A) or (B)', 'A', 0],
    ['(A) 3 or (B) 4', 'A,B', 0],
    ['(A) 3 or B', 'A', 0], // the second option in another style
    ['A. or B.', 'A', 0],
    ['C) 5 or option D', 'C', 0],
    ['(B) red or blue', 'B', 1], // `or` inside one option's text
    ['(B) 3 or a few', 'B', 1],
    ['(A) 3 apples, (C) 5 apples', 'A,C', 1], // options joined by `,` or `and` are a multi-select
    ['(A) 3 apples, (C) 5 apples', 'A', 0],
    // one option, with text that looks like a label in another style
    ['(B) Vitamin C.', 'B', 1],
    ['B. Vitamin C.', 'B', 1],
    ['(B) I. and II. only', 'B', 1],
    ['C. 5', 'C', 1],
    ['The answer is C.', 'C', 1],
  ])('%j vs %j → %d', (response, truth, reward) => {
    expect(grade('choice', respond(response), truth).reward).toBe(reward);
  });

  it('extracts sorted, deduplicated uppercase letters', () => {
    expect(extractChoices('D, b')).toEqual(['B', 'D']);
    expect(extractChoices('Options: C & A')).toEqual(['A', 'C']);
    expect(extractChoices('face')).toEqual([]);
    expect(extractChoices('X, Y and Z')).toEqual(['X', 'Y', 'Z']);
  });

  it('reads a listing, an argument or a hedge across options as no choice at all', () => {
    expect(extractChoices('A. 3 B. 4 C. 5')).toEqual([]);
    expect(extractChoices('B) 4 because A) is wrong')).toEqual([]);
    expect(extractChoices('(A) 3 or (B) 4')).toEqual([]);
    expect(extractChoices('(A) 3 apples and (C) 5 apples')).toEqual(['A', 'C']);
    expect(extractChoices('(B) 12 apples')).toEqual(['B']);
  });
});

describe('ocr', () => {
  it.each([
    ['4719 3802', '4719 3802', 1],
    ['4719  3802 ', '4719 3802', 1],
    ['Hello World', 'hello world', 1],
    ['4719 3803', '4719 3802', Math.exp(-1 / 2)], // 1 substitution / 2 words
    ['4719', '4719 3802', Math.exp(-1 / 2)], // 1 deletion / 2 words
    ['4719 3802 1111', '4719 3802', Math.exp(-1 / 2)], // 1 insertion / 2 words
    ['12 34 56', '12 43 56', Math.exp(-1 / 3)],
    ['a b c d', 'a x c', Math.exp(-2 / 3)], // b→x, +d
    ['9999', '4719 3802', Math.exp(-1)], // 1 substitution + 1 deletion / 2 words
    ['', '4719 3802', Math.exp(-1)], // an empty answer is all deletions
    ['1 2 3 4 5 6', '1', Math.exp(-5)],
  ])('%j vs %j → %d', (response, truth, reward) => {
    expect(grade('ocr', respond(response), truth).reward).toBeCloseTo(reward, 14);
  });

  it('gives hand-computed partial credit', () => {
    expect(grade('ocr', respond('4719 3803'), '4719 3802').reward).toBeCloseTo(0.6065306597126334, 14);
    expect(grade('ocr', respond('12 34 56'), '12 43 56').reward).toBeCloseTo(0.7165313105737893, 14);
  });
});

describe('text', () => {
  const ref = 'the cat sat on the mat';
  it.each([
    ['the cat sat on the mat', 1],
    ['The cat sat on the mat.', 1],
    ['the cat sat', 40 / 63], // (2/3 + 4/7 + 2/3) / 3
    ['mat the on sat cat the', 0.5], // (1 + 0 + 1/2) / 3
    ['a dog ran', 0],
    ['cat', (2 / 7 + 0 + 2 / 7) / 3], // P = 1, R = 1/6 → F1 = 2/7; no bigrams
  ])('%j → %d', (response, reward) => {
    expect(grade('text', respond(response), ref).reward).toBeCloseTo(reward, 12);
  });

  it('gives an exact (normalised) match 1, also for one-word answers that have no bigrams', () => {
    // The ROUGE mean alone gave a correct one-word answer (1 + 0 + 1) / 3 ≈ 0.667 (ROUGE-2 has no bigrams to match).
    expect(grade('text', respond('Paris'), 'Paris').reward).toBe(1);
    expect(grade('text', respond(' paris. '), 'Paris').reward).toBe(1);
    expect(grade('text', respond('New  York!'), 'new york').reward).toBe(1);
    // Partial credit stays ROUGE: an extra word is not a match; a wrong word scores 0; an empty truth matches nothing.
    expect(grade('text', respond('Paris France'), 'Paris').reward).toBeCloseTo((2 / 3 + 0 + 2 / 3) / 3, 12);
    expect(grade('text', respond('London'), 'Paris').reward).toBe(0);
    expect(grade('text', respond('?'), '!').reward).toBe(0);
  });
});

describe('grade', () => {
  it('keeps every reward in [0, 1]', () => {
    const cases: [AnswerType, string, string][] = [
      ['numeric', '1e1000', '1'],
      ['choice', 'A,B,C,D,E,F', 'A'],
      ['ocr', 'a '.repeat(500), 'a'],
      ['text', 'the '.repeat(50), 'the'],
    ];
    for (const [type, response, truth] of cases) {
      const { reward } = grade(type, respond(response), truth);
      expect(reward).toBeGreaterThanOrEqual(0);
      expect(reward).toBeLessThanOrEqual(1);
    }
  });

  it('rejects an unknown answer type from untyped callers', () => {
    expect(() => scoreAnswer('math' as AnswerType, '1', '1')).toThrow(/unknown answer type "math"/);
  });
});
