/**
 * bench/grading: the outcome grader (`tasks/grading.ts` `grade`) on what a policy early in training emits —
 * random and adversarial answers — to check that it never throws and stays fast now that symbolic answers go
 * through a computer-algebra system (`tasks/symbolic.ts`).
 *
 * `--n` seeded answers (`adversarialAnswers`: random strings of LaTeX pieces, power towers, nested roots, sums
 * and factorials of huge numbers, long repeats, random characters, option listings) are graded as `numeric` answers
 * against a few symbolic and plain ground truths, then as `choice` answers. Prints the total time, the mean and the
 * slowest calls, and how many rewards were 1 (only the few real answers among the garbage: `(B)` followed by text is
 * a choice of B, and a deeply boxed `7` is 7).
 *
 *   npm run bench:grading                  # 10,000 answers
 *   npm run bench:grading -- --n 1000 --seed 7
 */
import { parseArgs } from 'node:util';
import { type AnswerType, grade } from '../tasks/grading';
import { machineLine, printTable } from './report';

const PIECES = [
  '\\frac', '\\dfrac', '{', '}', '{', '}', '\\sqrt', '^', '_', '\\pi', 'e', 'x', 'y', '2', '3', '10', '0', '.', '(',
  ')', '\\left(', '\\right)', '+', '-', '\\cdot', '\\times', '/', '!', '\\sum', '\\int', '\\prod', '=', ',', ';',
  ' or ', ' and ', ' ', '\\infty', 'i', '%', '^\\circ', '\\text{cm}', '\\boxed{', '$', '\\\\', '\\begin{matrix}',
  '\\end{matrix}', '\\binom', '\\log', '\\ln', '\\sin', '&', '\\pm', '\\{', '\\}', '|', ':=', '\\lim_{x\\to 0}', 'A',
  '(B)', 'C.', 'D)', '\\mathbb{R}', '\\operatorname{f}', '\\,', '~', 'π', '√', '²', '\u0000', '\uFFFF', '😀',
];

const ADVERSARIAL = [
  '2^{2^{2^{2^{2^{2^{2}}}}}}',
  '10^{10^{10^{10}}}',
  '(10^{100})!',
  '\\sum_{n=1}^{10^{12}} n',
  '\\prod_{k=1}^{10^9} k',
  '\\int_0^{10^9} e^{x^2} dx',
  '\\lim_{x \\to \\infty} x^x',
  '\\sqrt{'.repeat(1000),
  '{'.repeat(5000),
  '\\frac{1}{\\frac{1}{\\frac{1}{\\frac{1}{\\frac{1}{\\frac{1}{\\frac{1}{2}}}}}}}',
  '9'.repeat(5000),
  '1e999999',
  'x^{x^{x^{x^{x^{x}}}}}',
  '\\sin(10^{100})',
  '\\Gamma(10^{6})',
  'A. 3 B. 4 C. 5 D. 6 E. 7 F. 8 G. 9',
  '(A) '.repeat(2000),
  'A, '.repeat(5000),
  '\\boxed{'.repeat(500) + '7' + '}'.repeat(500),
];

/** mulberry32: a small seeded generator, so every run grades the same answers. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` seeded random and adversarial answer texts. */
export function adversarialAnswers(n: number, seed: number): string[] {
  const random = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const kind = random();
    if (kind < 0.05) out.push(pick(ADVERSARIAL));
    else if (kind < 0.15) out.push(String.fromCharCode(...Array.from({ length: 1 + Math.floor(random() * 40) }, () => Math.floor(random() * 0x3000))));
    else out.push(Array.from({ length: 1 + Math.floor(random() * 24) }, () => pick(PIECES)).join(''));
  }
  return out;
}

const TRUTHS: [AnswerType, string][] = [
  ['numeric', '\\sqrt{2}'],
  ['numeric', '\\frac{\\pi}{3}'],
  ['numeric', 'x + 1'],
  ['numeric', '7'],
  ['choice', 'B'],
];

function main(): void {
  const { values } = parseArgs({ options: { n: { type: 'string', default: '10000' }, seed: { type: 'string', default: '1' } } });
  const answers = adversarialAnswers(Number(values.n), Number(values.seed));
  grade('numeric', '<think></think><answer>\\pi</answer>', '\\pi'); // load the CAS outside the timing
  const rows = TRUTHS.map(([type, truth]) => {
    const timesMs: number[] = [];
    let ones = 0;
    const start = performance.now();
    for (const answer of answers) {
      const t = performance.now();
      ones += grade(type, `<think>…</think><answer>${answer}</answer>`, truth).reward === 1 ? 1 : 0;
      timesMs.push(performance.now() - t);
    }
    const totalS = (performance.now() - start) / 1000;
    const sorted = [...timesMs].sort((a, b) => a - b);
    const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!.toFixed(2);
    return [type, truth, String(answers.length), totalS.toFixed(2), ((totalS * 1000) / answers.length).toFixed(3), at(0.5), at(0.99), at(1), String(ones)];
  });
  printTable(['type', 'truth', 'answers', 'total s', 'mean ms', 'p50 ms', 'p99 ms', 'max ms', 'reward 1'], rows);
  console.log(machineLine());
}

if (require.main === module) main();
