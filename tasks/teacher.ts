/**
 * Teacher responses for the SFT warmup: `<think>` with an example's true intermediate steps, written in a
 * compact and varied way, then `<answer>`. Variation (separators, lead-ins, a closing "so …") keeps the policy
 * from collapsing onto one surface form, so later RL has diverse samples to rank.
 */
import type { Rng } from '../engine/rng';
import type { Example } from './types';

const SEPARATORS = ['. ', ', ', '; '];
const CLOSERS = ['', 'so ', 'thus ', 'answer '];

export function teacherResponse(example: Pick<Example, 'steps' | 'answer'>, rng: Rng): string {
  const sep = SEPARATORS[rng.nextU32() % SEPARATORS.length]!;
  const closer = CLOSERS[rng.nextU32() % CLOSERS.length]!;
  const steps = example.steps.map((s, i) => (i === example.steps.length - 1 && closer ? `${closer}${s}` : s));
  return `<think>${steps.join(sep)}</think><answer>${example.answer}</answer>`;
}
