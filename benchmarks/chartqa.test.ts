import { describe, expect, it } from 'vitest';
import { chartNumber, chartQaCategories, relaxedMatch, scoreChartQa, validateChartQaRow } from './chartqa';
import { RowFieldError } from './fields';

const row = (label: unknown, humanOrMachine: unknown = 0) => validateChartQaRow({ query: 'What is the value?', label, human_or_machine: humanOrMachine });
const tagged = (answer: string) => `<think>reading the chart</think><answer>${answer}</answer>`;

describe('ChartQA relaxed accuracy', () => {
  it.each([
    ['the same number', ['45'], '45', true],
    ['the same number written as a decimal', ['45'], '45.0', true],
    ['exactly 5 % above', ['45'], '47.25', true],
    ['exactly 5 % below', ['45'], '42.75', true],
    ['just over 5 % above', ['45'], '47.26', false],
    ['just over 5 % below', ['45'], '42.74', false],
    ['exactly 5 % where floating point says 5.000000000000004 % (exact arithmetic here)', ['0.5'], '0.525', true],
    ['a percent sign, stripped', ['45'], '45%', true],
    ['a percent sign on the label, stripped', ['12.5%'], '12.5', true],
    ['thousands separators in the prediction', ['1234'], '1,295', true],
    ['thousands separators in the label', ['1,234'], '1296', false],
    ['a negative number 5 % off', ['-20'], '-21', true],
    ['the opposite sign', ['-20'], '20', false],
    ['zero by value', ['0'], '0.0', true],
    ['anything else against zero', ['0'], '0.01', false],
    ['text, ignoring case', ['Yes'], 'yes', true],
    ['text with other punctuation (exact match)', ['Yes'], 'Yes.', false],
    ['a number with words is text', ['45'], '45 million', false],
    ['any of several labels', ['12', 'twelve'], 'Twelve', true],
  ])('%s', (_name, labels, prediction, correct) => {
    expect(scoreChartQa(row(labels), tagged(prediction))).toEqual({ correct, score: correct ? 1 : 0, extracted: prediction });
  });

  it('uses the last answer block, else the whole response', () => {
    expect(scoreChartQa(row(['45']), `${tagged('40')} wait ${tagged('45')}`).correct).toBe(true);
    expect(scoreChartQa(row(['45']), ' 45 ')).toEqual({ correct: true, score: 1, extracted: '45' });
    expect(scoreChartQa(row(['45']), 'The value is 45').correct).toBe(false);
    expect(scoreChartQa(row(['45']), tagged(''))).toEqual({ correct: false, score: 0, extracted: null });
  });

  it('reads numbers in Python float syntax after dropping commas and a final %', () => {
    expect(chartNumber('1.5e3')).toEqual({ num: 15000n, den: 10n });
    expect(chartNumber('-.5%')).toEqual({ num: -5n, den: 10n });
    expect(chartNumber('$45')).toBeNull();
    expect(relaxedMatch('5.', '5')).toBe(true);
  });
});

describe('ChartQA rows', () => {
  it('reads a label given as one string, and reports the test set', () => {
    expect(scoreChartQa(row('45'), tagged('45')).correct).toBe(true);
    expect(chartQaCategories(row(['45'], 0))).toEqual({ human_or_machine: ['human'] });
    expect(chartQaCategories(row(['45'], 1))).toEqual({ human_or_machine: ['machine'] });
    expect(chartQaCategories(row(['45'], 1n))).toEqual({ human_or_machine: ['machine'] }); // the parquet column's int64, as a reader returns it
    expect(chartQaCategories(row(['45'], 'machine'))).toEqual({ human_or_machine: ['machine'] });
    expect(chartQaCategories(row(['45'], null))).toEqual({});
  });

  it.each([
    ['a missing label', () => validateChartQaRow({ query: 'q' }), 'label', /it is missing/],
    ['an empty label list', () => row([]), 'label', /non-empty list of answer strings.*got \[\]/],
    ['a numeric label', () => row([45]), 'label', /got \[45\]/],
    ['an unknown test set', () => row(['45'], 2), 'human_or_machine', /0 \(human\), 1 \(machine\).*got 2/],
  ])('rejects %s, naming the field', (_name, read, field, message) => {
    expect(read).toThrow(RowFieldError);
    expect(read).toThrow(message);
    expect(read).toThrow(expect.objectContaining({ field }));
  });
});
