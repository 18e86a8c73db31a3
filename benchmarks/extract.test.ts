import { describe, expect, it } from 'vitest';
import { cleanAnswer, extractPrediction, lastBoxed } from './extract';

describe('extractPrediction', () => {
  it.each([
    ['the last <answer> block', '<think>maybe 3</think><answer>3</answer> wait <answer> 4 </answer>', '4'],
    ['the only block, trimmed', '<think>x</think><answer>\n  C  \n</answer>', 'C'],
    ['the whole response without tags', '  The answer is 12.  ', 'The answer is 12.'],
    ['the whole response when the last block never closes', '<answer>5', '<answer>5'],
    ['the last closed block when a later one is left open', '<answer>5</answer><answer>6', '5'],
    ['the innermost text of nested tags', '<answer>a<answer>b</answer>', 'b'],
    ['an empty block', '<think>…</think><answer></answer>', ''],
    ['the whole response when tags differ in case', '<ANSWER>7</ANSWER>', '<ANSWER>7</ANSWER>'],
  ])('takes %s', (_name, response, want) => {
    expect(extractPrediction(response)).toBe(want);
  });
});

describe('lastBoxed', () => {
  it('reads the last \\boxed{} with nested braces, or null', () => {
    expect(lastBoxed('\\boxed{1} then \\boxed{\\frac{1}{2}}')).toBe('\\frac{1}{2}');
    expect(lastBoxed('\\boxed{unclosed')).toBeNull();
    expect(lastBoxed('no box')).toBeNull();
  });
});

describe('cleanAnswer (the rule-based stand-in for the GPT extraction step)', () => {
  it.each([
    ['\\boxed{145°}', '145°'],
    ['So the answer is \\boxed{B}.', 'B'],
    ['The final answer is: 1.45.', '1.45'],
    ['The correct answer is **C**.', 'C'],
    ['Answer: $2\\sqrt{3}$', '2\\sqrt{3}'],
    ['5.', '5'],
    ['quarter past', 'quarter past'],
  ])('%j → %j', (prediction, want) => {
    expect(cleanAnswer(prediction)).toBe(want);
  });
});
