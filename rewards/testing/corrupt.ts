/**
 * Test helper: realistic corrupted responses, the kinds of mistakes a policy warmed up on teacher responses makes
 * (a wrong count or digit, wrong arithmetic, a missing or repeated step, filler, an answer that does not follow
 * from the reasoning, broken format). The judge's tests use it to check that every kind costs points and that a
 * mix of them fills all ten score bins. Test-only: the pipeline annotates real policy samples instead.
 */
import type { Rng } from '../../engine/rng';
import type { Example } from '../../tasks/types';

export const CORRUPTIONS = [
  'wrong-value', // one number (or option letter) in one step changed; the answer follows it half of the time
  'drop-step', // one step left out
  'repeat-step', // one step written twice
  'filler', // an irrelevant segment inserted
  'wrong-answer', // the answer changed, the reasoning not
  'garbage-think', // the thinking replaced by word soup
  'extra-text', // text after the answer block
  'no-think', // the thinking block missing
  'truncate', // the response cut off
] as const;
export type Corruption = (typeof CORRUPTIONS)[number];

/** A response under construction: the parts the teacher writes, mutated by corruptions. */
interface Draft {
  steps: string[];
  answer: string;
  sep: string;
  closer: string;
  suffix: string;
  think: boolean;
  truncateAt: number | null;
}

const SEPARATORS = ['. ', ', ', '; '];
const CLOSERS = ['', 'so ', 'thus ', 'answer '];
const FILLER = ['let me look', 'hmm', 'the image is small', 'count carefully', 'i think', 'blue = 0', 'red = 1', 'green at 3', 'bars 5 5'];
const WORDS = ['the', 'red', 'squares', 'at', 'bar', 'so', '3', '7', 'digits', 'look', 'count'];

const int = (rng: Rng, n: number) => rng.nextU32() % n;
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[int(rng, xs.length)]!;

/** `n` changed by ±1..3, never negative and never equal to `n`. */
function otherNumber(rng: Rng, n: number): number {
  const delta = 1 + int(rng, 3);
  return n - delta >= 0 && int(rng, 2) === 0 ? n - delta : n + delta;
}

function otherLetter(rng: Rng, letter: string): string {
  return pick(rng, ['A', 'B', 'C', 'D'].filter((l) => l !== letter));
}

/** The answer a reasoning made of `steps` concludes, in the example's notation (as a consistent policy would write it). */
function impliedBy(example: Example, steps: string[]): string {
  const lastStep = steps.at(-1) ?? '';
  if (example.answerType === 'ocr') {
    return steps.map((s) => s.replace(/^(?:digits|row \d+:) /, '').replace(/ /g, '')).join(' ');
  }
  if (example.answerType === 'choice') return (/(?:: | is )(.*)$/.exec(lastStep)?.[1] ?? '').toUpperCase();
  return /(-?\d+)$/.exec(lastStep)?.[1] ?? example.answer;
}

function apply(kind: Corruption, draft: Draft, example: Example, rng: Rng): void {
  switch (kind) {
    case 'wrong-value': {
      if (draft.steps.length === 0) return;
      const i = int(rng, draft.steps.length);
      const step = draft.steps[i]!;
      const absent = /^no (\w+)$/.exec(step);
      if (absent) {
        // "no red" → "red at 7": a square seen that is not there.
        draft.steps[i] = `${absent[1]} at ${1 + int(rng, 36)}`;
        return;
      }
      const numbers = [...step.matchAll(/\d+/g)];
      const letters = [...step.matchAll(/(?<=[:,] ?|is )[A-D]\b/g)];
      if (letters.length > 0 && (numbers.length === 0 || int(rng, 2) === 0)) {
        const m = pick(rng, letters);
        draft.steps[i] = step.slice(0, m.index) + otherLetter(rng, m[0]) + step.slice(m.index + 1);
      } else if (numbers.length > 0) {
        const m = pick(rng, numbers);
        const replacement = example.answerType === 'ocr' ? String((Number(m[0]) + 1 + int(rng, 9)) % 10) : String(otherNumber(rng, Number(m[0])));
        draft.steps[i] = step.slice(0, m.index) + replacement + step.slice(m.index + m[0].length);
      }
      if (int(rng, 2) === 0) draft.answer = impliedBy(example, draft.steps);
      return;
    }
    case 'drop-step':
      draft.steps.splice(int(rng, draft.steps.length), 1);
      return;
    case 'repeat-step': {
      if (draft.steps.length === 0) return;
      const i = int(rng, draft.steps.length);
      draft.steps.splice(i + 1 + int(rng, draft.steps.length - i), 0, draft.steps[i]!);
      return;
    }
    case 'filler':
      draft.steps.splice(int(rng, draft.steps.length + 1), 0, pick(rng, FILLER));
      return;
    case 'wrong-answer':
      if (example.answerType === 'choice') draft.answer = otherLetter(rng, draft.answer.split(',')[0]!);
      else if (example.answerType === 'ocr') draft.answer = draft.answer.replace(/\d/, (d) => String((Number(d) + 1) % 10));
      else draft.answer = String(otherNumber(rng, Number(draft.answer)));
      return;
    case 'garbage-think':
      // Starts with "the", so that it never happens to read as a step.
      draft.steps = [['the', ...Array.from({ length: 2 + int(rng, 6) }, () => pick(rng, WORDS))].join(' ')];
      return;
    case 'extra-text':
      draft.suffix = pick(rng, [' done.', '\nhope this helps', ' <answer>0</answer>']);
      return;
    case 'no-think':
      draft.think = false;
      return;
    case 'truncate':
      draft.truncateAt = 0.2 + 0.7 * rng.nextFloat();
      return;
  }
}

function render(d: Draft): string {
  const steps = d.steps.map((s, i) => (i === d.steps.length - 1 && d.closer ? `${d.closer}${s}` : s));
  const think = d.think ? `<think>${steps.join(d.sep)}</think>` : steps.join(d.sep);
  const response = `${think}<answer>${d.answer}</answer>${d.suffix}`;
  return d.truncateAt === null ? response : response.slice(0, Math.floor(response.length * d.truncateAt));
}

/** A teacher-style response with the given corruptions applied in order (none: the teacher response). */
export function corruptResponse(example: Example, kinds: readonly Corruption[], rng: Rng): string {
  const draft: Draft = {
    steps: [...example.steps],
    answer: example.answer,
    sep: pick(rng, SEPARATORS),
    closer: pick(rng, CLOSERS),
    suffix: '',
    think: true,
    truncateAt: null,
  };
  for (const kind of kinds) apply(kind, draft, example, rng);
  return render(draft);
}

/**
 * A random mix like a young policy's samples: mostly in-reasoning mistakes (0–3 of them, stacked), rarely
 * broken format. Returns the response and the corruptions applied.
 */
export function randomCorruption(example: Example, rng: Rng): { response: string; kinds: Corruption[] } {
  const n = [0, 1, 1, 1, 2, 2, 2, 3, 3, 4][int(rng, 10)]!;
  const common: Corruption[] = ['wrong-value', 'wrong-value', 'drop-step', 'repeat-step', 'filler', 'wrong-answer', 'extra-text'];
  const kinds = Array.from({ length: n }, () => (rng.nextFloat() < 0.08 ? pick(rng, ['garbage-think', 'no-think', 'truncate'] as const) : pick(rng, common)));
  return { response: corruptResponse(example, kinds, rng), kinds };
}
