import { describe, expect, it } from 'vitest';
import { Rng } from '../engine/rng';
import { generateExample } from '../tasks/dataset';
import { teacherResponse } from '../tasks/teacher';
import { FAMILIES, SPLITS } from '../tasks/types';
import { ProgrammaticAnnotator } from './annotator';
import { scoreBin } from './balance';
import { type JudgedExample, judgeResponse, roundScore, segmentThinking } from './judge';
import { type Corruption, corruptResponse, randomCorruption } from './testing/corrupt';

const respond = (think: string, answer: string) => `<think>${think}</think><answer>${answer}</answer>`;
const isTenth = (x: number) => Number.isInteger(Math.round(x * 10)) && Math.round(x * 10) / 10 === x && x >= 0 && x <= 1;

// Hand-built examples with the facts the generators record (tasks/families.ts).
const counting: JudgedExample = {
  steps: ['red at 2 7 11', 'red = 3'],
  answer: '3',
  answerType: 'numeric',
  facts: {
    squares: [
      { cell: 2, color: 'red' },
      { cell: 5, color: 'green' },
      { cell: 7, color: 'red' },
      { cell: 11, color: 'red' },
    ],
    counts: { red: 3, green: 1, blue: 0, yellow: 0 },
    asked: 'red',
  },
};
const chart: JudgedExample = { steps: ['bars 5 12 10', '5 + 10 = 15'], answer: '15', answerType: 'numeric', facts: { heights: [5, 12, 10] } };
const ocr: JudgedExample = { steps: ['row 1: 0 5 5 5', 'row 2: 2 7 6'], answer: '0555 276', answerType: 'ocr', facts: { rows: [[0, 5, 5, 5], [2, 7, 6]] } };
const math: JudgedExample = {
  steps: ['red = 2', 'yellow = 1', '2 + 1 = 3'],
  answer: '3',
  answerType: 'numeric',
  facts: { squares: [], counts: { red: 2, green: 0, blue: 4, yellow: 1 }, asked: ['red', 'yellow'] },
};
const choiceMulti: JudgedExample = {
  steps: ['red 2 green 3 blue 2 yellow 3', '2: A,C'],
  answer: 'A,C',
  answerType: 'choice',
  facts: { squares: [], counts: { red: 2, green: 3, blue: 2, yellow: 3 }, options: ['red', 'green', 'blue', 'yellow'], target: 2 },
};
const choiceOne: JudgedExample = {
  steps: ['green at 11 12', 'green = 2', '2 is B'],
  answer: 'B',
  answerType: 'choice',
  facts: {
    squares: [
      { cell: 11, color: 'green' },
      { cell: 12, color: 'green' },
    ],
    counts: { red: 0, green: 2, blue: 0, yellow: 0 },
    options: [0, 2, 3, 9],
    asked: 'green',
  },
};

describe('judgeResponse: hand-built cases', () => {
  // Score = 0.7·steps + 0.3·consistency − 0.2·wrong − 0.1·redundant − 0.1·untidy, capped at 0.5 if the answer is
  // wrong, rounded half-up to 0.1. The comment after each case is that sum.
  it.each([
    ['teacher', respond('red at 2 7 11. so red = 3', '3'), 1],
    ['other separators, spacing and case', respond('Red at 11 2 7;  thus RED=3.', '3'), 1],
    ['a repeated step', respond('red at 2 7 11. red at 2 7 11. red = 3', '3'), 0.9], // 1 − 0.1
    ['a true but irrelevant count', respond('red at 2 7 11. green = 1. red = 3', '3'), 0.9], // 1 − 0.1
    ['filler', respond('let me look. red at 2 7 11. red = 3', '3'), 0.9], // 1 − 0.1
    ['a wrong irrelevant count', respond('red at 2 7 11. blue = 2. red = 3', '3'), 0.8], // 1 − 0.2
    ['text after the answer', `${respond('red at 2 7 11. red = 3', '3')} done.`, 0.9], // 1 − 0.1
    ['missing the cells', respond('red = 3', '3'), 0.7], // 0.35 + 0.3
    ['wrong cells, right count', respond('red at 2 7, red = 3', '3'), 0.6], // 0.525 + 0.3 − 0.2
    ['a wrong count, answer follows', respond('red at 2 7 11. red = 4', '4'), 0.5], // 0.525 + 0.3 − 0.2 = 0.625, capped
    ['a wrong count, right answer', respond('red at 2 7 11. red = 4', '3'), 0.3], // 0.525 − 0.2
    ['right reasoning, inconsistent wrong answer', respond('red at 2 7 11. red = 3', '4'), 0.5], // 1 − 0.3, capped
    ['a square that is not there', respond('no red. red = 0', '0'), 0.3], // 0.35 + 0.3 − 0.4
    ['no reasoning', respond('', '3'), 0],
    ['garbage reasoning', respond('squares bar look 7', '3'), 0],
    ['no <think> block', '<answer>3</answer>', 0],
    ['truncated', '<think>red at 2 7 11. red = 3</think><answ', 0],
  ])('counting: %s → %s', (_name, response, score) => {
    expect(judgeResponse(counting, response).score).toBe(score);
  });

  it.each([
    ['teacher', respond('bars 5 12 10; 5 + 10 = 15', '15'), 1],
    ['operands in another order', respond('bars 5 12 10; 10 + 5 = 15', '15'), 1],
    ['arithmetic error, answer follows', respond('bars 5 12 10; 5 + 10 = 16', '16'), 0.5], // 0.525 + 0.3 − 0.2, capped
    ['arithmetic error, right answer', respond('bars 5 12 10; 5 + 10 = 16', '15'), 0.3], // 0.525 − 0.2
    ['the wrong bars added', respond('bars 5 12 10; 5 + 12 = 17', '17'), 0.5], // 0.525 + 0.3 − 0.2, capped
    ['a misread bar not used', respond('bars 5 13 10; 5 + 10 = 15', '15'), 0.6], // 0.525 + 0.3 − 0.2
    ['a misread bar carried into the sum (one error)', respond('bars 6 12 10; 6 + 10 = 16', '16'), 0.5], // 0.35 + 0.3 − 0.2 = 0.45: half credit for the sum, no second error
    ['no listing', respond('so 5 + 10 = 15', '15'), 0.7], // 0.35 + 0.3
  ])('chart: %s → %s', (_name, response, score) => {
    expect(judgeResponse(chart, response).score).toBe(score);
  });

  it.each([
    ['teacher', respond('row 1: 0 5 5 5, row 2: 2 7 6', '0555 276'), 1],
    ['digits written together', respond('row 1: 0555. row 2: 276', '0555 276'), 1],
    ['a wrong digit, answer follows', respond('row 1: 0 5 5 5, row 2: 2 7 8', '0555 278'), 0.5], // 0.525 + 0.3 − 0.2 = 0.625, capped
    ['a row missing', respond('row 1: 0 5 5 5', '0555 276'), 0.4], // 0.35 (the reasoning concludes 0555) rounds up
    ['a row that is not there', respond('row 1: 0 5 5 5, row 2: 2 7 6, row 3: 1', '0555 276'), 0.5], // 0.7 − 0.2: it concludes "0555 276 1"
  ])('ocr: %s → %s', (_name, response, score) => {
    expect(judgeResponse(ocr, response).score).toBe(score);
  });

  it('ocr: one row, digits run together', () => {
    const one: JudgedExample = { steps: ['digits 9 1 1 6'], answer: '9116', answerType: 'ocr', facts: { rows: [[9, 1, 1, 6]] } };
    expect(judgeResponse(one, respond('digits 9116', '9116')).score).toBe(1);
    expect(judgeResponse(one, respond('digits 9 1 7 6', '9176')).score).toBe(0.5); // 0.35 + 0.3 − 0.2 = 0.45
  });

  it.each([
    ['teacher', respond('red = 2, yellow = 1, answer 2 + 1 = 3', '3'), 1],
    ['counts in another order', respond('yellow = 1. red = 2. 1 + 2 = 3', '3'), 1],
    ['a misread count carried into the sum', respond('red = 3, yellow = 1, 3 + 1 = 4', '4'), 0.5], // 0.467 + 0.3 − 0.2, capped
    ['arithmetic error, answer follows', respond('red = 2, yellow = 1, 2 + 1 = 4', '4'), 0.5], // 0.583 + 0.3 − 0.2, capped
    ['arithmetic error, right answer', respond('red = 2, yellow = 1, 2 + 1 = 4', '3'), 0.4], // 0.583 − 0.2
    ['a count missing', respond('red = 2, 2 + 1 = 3', '3'), 0.8], // 0.467 + 0.3
  ])('math: %s → %s', (_name, response, score) => {
    expect(judgeResponse(math, response).score).toBe(score);
  });

  it.each([
    ['teacher (multi)', choiceMulti, respond('red 2 green 3 blue 2 yellow 3. answer 2: A,C', 'A,C'), 1],
    ['letters in another order', choiceMulti, respond('red 2 green 3 blue 2 yellow 3. 2: C,A', 'A,C'), 1],
    ['two wrong counts in the listing, right letters', choiceMulti, respond('red 2 green 4 blue 2 yellow 1. 2: A,C', 'A,C'), 0.4], // 0.525 + 0.3 − 0.4
    ['a letter missing, answer follows', choiceMulti, respond('red 2 green 3 blue 2 yellow 3. 2: A', 'A'), 0.5], // 0.525 + 0.3 − 0.2, capped
    ['teacher (one)', choiceOne, respond('green at 11 12. green = 2. so 2 is B', 'B'), 1],
    ['the wrong letter, answer follows', choiceOne, respond('green at 11 12. green = 2. 2 is C', 'C'), 0.5], // 0.583 + 0.3 − 0.2, capped
    ['a misread count leading to another option', choiceOne, respond('green at 11 12. green = 3. 3 is C', 'C'), 0.4], // 0.35 + 0.3 − 0.2 − 0.1 ("3 is C" is true but no step)
  ])('choice: %s → %s', (_name, example, response, score) => {
    expect(judgeResponse(example, response).score).toBe(score);
  });

  it('explains every lost point in the notes and reports the parts', () => {
    const result = judgeResponse(counting, `${respond('red at 2 7. red at 2 7. red = 3', '3')} done.`);
    expect(result.parts).toEqual({ steps: 0.75, consistency: 1, errorFree: 0.8, redundancy: 0.9, format: 0.9, answer: 1 });
    expect(result.notes).toEqual([
      'format: text outside the <think> and <answer> blocks',
      'wrong: "red at 2 7": red at 2 7 11',
      'redundant: "red at 2 7" repeats an earlier step',
      'step "red at 2 7 11" stated with a wrong value',
    ]);
    expect(result.score).toBe(0.4); // 0.525 + 0.3 − 0.2 − 0.1 − 0.1 = 0.425
  });
});

describe('judgeResponse: generated examples', () => {
  it('gives every teacher response 1, for every family, split, separator and closer', () => {
    const rng = new Rng(1);
    for (const split of SPLITS) {
      for (const family of FAMILIES) {
        for (let i = 0; i < 20; i++) {
          const e = generateExample(family, split, i, 24, 7);
          const response = teacherResponse(e, rng);
          expect({ id: e.id, response, score: judgeResponse(e, response).score }).toEqual({ id: e.id, response, score: 1 });
        }
      }
    }
  });

  it('lowers the score for every corruption kind, in the expected direction', () => {
    const rng = new Rng(2);
    for (let i = 0; i < 30; i++) {
      for (const family of FAMILIES) {
        const e = generateExample(family, 'train', i, 24, 9);
        const score = (kind: Corruption) => judgeResponse(e, corruptResponse(e, [kind], rng)).score;
        expect(score('repeat-step')).toBe(0.9);
        expect(score('extra-text')).toBe(0.9);
        expect(score('filler')).toBeLessThanOrEqual(0.9);
        expect(score('drop-step')).toBeLessThanOrEqual(0.8);
        expect(score('wrong-value')).toBeLessThanOrEqual(0.7);
        expect(score('wrong-answer')).toBeLessThanOrEqual(0.5);
        expect(score('garbage-think')).toBeLessThanOrEqual(0.1);
        expect(score('no-think')).toBe(0);
        expect(score('truncate')).toBe(0);
      }
    }
  });

  it('always scores a multiple of 0.1 in [0, 1], deterministically, and fills all ten bins', () => {
    const rng = new Rng(3);
    const counts = new Array<number>(10).fill(0);
    for (let i = 0; i < 100; i++) {
      for (const family of FAMILIES) {
        const e = generateExample(family, i % 5 === 4 ? 'ood' : 'train', i, 24, 11);
        const { response } = randomCorruption(e, rng);
        const { score } = judgeResponse(e, response);
        expect(isTenth(score), `${score} for ${response}`).toBe(true);
        expect(judgeResponse(e, response).score).toBe(score);
        counts[scoreBin(score)]!++;
      }
    }
    expect(counts.every((n) => n > 0), `bins ${counts.join(' ')}`).toBe(true);
  });
});

describe('helpers', () => {
  it('roundScore rounds half up to exact tenths and clips', () => {
    expect([0.35 + 0.3, 0.4499, 0.45, -0.3, 1.26, 0.7 * 0.5 + 0.3 - 0.2].map(roundScore)).toEqual([0.7, 0.4, 0.5, 0, 1, 0.5]);
  });

  it('segmentThinking splits at the teacher separators but not inside option lists', () => {
    expect(segmentThinking('red 0 green 0 blue 0 yellow 1, so 0: A,B,C.\nthus Red=0')).toEqual(['red 0 green 0 blue 0 yellow 1', '0: a,b,c', 'red = 0']);
  });
});

describe('ProgrammaticAnnotator', () => {
  it('annotates with the judge, in request order', async () => {
    const e = generateExample('math', 'train', 0, 24, 1);
    const good = teacherResponse(e, new Rng(1));
    const annotations = await new ProgrammaticAnnotator().annotate([
      { example: e, response: good },
      { example: e, response: `<answer>${e.answer}</answer>` },
    ]);
    expect(annotations).toEqual([
      { score: 1, notes: [] },
      { score: 0, notes: ['format: no <think>…</think> followed by <answer>…</answer>'] },
    ]);
  });
});
