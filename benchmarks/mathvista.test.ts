import { describe, expect, it } from 'vitest';
import { RowFieldError } from './fields';
import { mapToChoice, mathVistaCategories, scoreMathVista, validateMathVistaRow } from './mathvista';

// Rows shaped like MathVista testmini's (pids 1, 5 and others), with the fields as published.
const CHOICES = ['135°', '140°', '145°', '150°'];
const multiChoice = validateMathVistaRow({
  question_type: 'multi_choice',
  answer_type: 'text',
  precision: null,
  choices: CHOICES,
  answer: '145°',
  unit: null,
  metadata: { task: 'geometry problem solving', skills: ['geometry reasoning', 'algebraic reasoning'] },
});
const integer = validateMathVistaRow({ question_type: 'free_form', answer_type: 'integer', precision: null, choices: null, answer: '3' });
const float2 = validateMathVistaRow({ question_type: 'free_form', answer_type: 'float', precision: 2.0, choices: null, answer: '1.45', unit: '$' });
const float1 = validateMathVistaRow({ question_type: 'free_form', answer_type: 'float', precision: 1, choices: null, answer: '1.4' });
const list = validateMathVistaRow({ question_type: 'free_form', answer_type: 'list', precision: null, choices: null, answer: '[2014, 2016]' });

const tagged = (answer: string) => `<think>reasoning</think><answer>${answer}</answer>`;

describe('MathVista multi_choice: the prediction mapped to an option, compared with the answer text', () => {
  it.each([
    ['the letter', tagged('C'), true, '145°'],
    ['a lowercase letter in parentheses anywhere (official rule)', tagged('I pick (c) here'), true, '145°'],
    ["the option's text", tagged('145°'), true, '145°'],
    ['a letter label with its text', tagged('C. 145°'), true, '145°'],
    ['"Option C"', tagged('Option C'), true, '145°'],
    ['\\boxed{C} in an untagged response', 'The angle is \\boxed{C}.', true, '145°'],
    ['the last answer block', `${tagged('A')} on reflection ${tagged('C')}`, true, '145°'],
    ['another letter', tagged('B'), false, '140°'],
    ['the nearest option by edit distance, the first of equals', tagged('146°'), false, '140°'],
    ['a text closest to the right option', tagged('145 °'), true, '145°'],
    ['a letter beyond the options, mapped by edit distance', tagged('E'), false, '135°'],
    ['an empty answer (incorrect, as with --ignore_empty_extractions)', tagged(''), false, null],
  ])('%s', (_name, response, correct, extracted) => {
    expect(scoreMathVista(multiChoice, response)).toEqual({ correct, score: correct ? 1 : 0, extracted });
  });

  it('maps a prediction that is exactly an option text before reading letters', () => {
    expect(mapToChoice('A', ['B', 'A'])).toBe('A'); // the option "A", not the first option
    expect(mapToChoice('a cat', ['a cat', 'a dog'])).toBe('a cat');
  });
});

describe('MathVista free_form', () => {
  it.each([
    ['integer: the same number', integer, tagged('3'), true, '3'],
    ['integer: truncated as int(float(x))', integer, tagged('3.7'), true, '3'],
    ['integer: with a unit', integer, tagged('3 apples'), true, '3'],
    ['integer: another number', integer, tagged('4'), false, '4'],
    ['integer: no number', integer, tagged('three'), false, null],
    ['float: rounded to precision 2', float2, tagged('1.449'), true, '1.45'],
    ['float: with a currency sign', float2, tagged('$1.45'), true, '1.45'],
    ['float: rounded away from the answer', float2, tagged('1.455'), false, '1.46'],
    ['float: round(1.45, 1) is 1.4 (binary value, as in Python)', float1, tagged('1.45'), true, '1.4'],
    ['float: precision 1 keeps one decimal', float1, tagged('1.46'), false, '1.5'],
    ['list: the same items', list, tagged('[2014, 2016]'), true, '[2014, 2016]'],
    ['list: without brackets or spaces', list, tagged('2014,2016'), true, '[2014, 2016]'],
    ['list: another order', list, tagged('[2016, 2014]'), false, '[2016, 2014]'],
    ['list: an item missing', list, tagged('[2014]'), false, '[2014]'],
  ])('%s', (_name, row, response, correct, extracted) => {
    expect(scoreMathVista(row, response)).toEqual({ correct, score: correct ? 1 : 0, extracted });
  });

  it('compares a float answer by value (an answer written 1.50 matches 1.5)', () => {
    const row = validateMathVistaRow({ question_type: 'free_form', answer_type: 'float', precision: 2, choices: null, answer: '1.50' });
    expect(scoreMathVista(row, tagged('1.5')).correct).toBe(true);
  });
});

describe('MathVista rows', () => {
  it('reports the task and every skill as categories', () => {
    expect(mathVistaCategories(multiChoice)).toEqual({ task: ['geometry problem solving'], skills: ['geometry reasoning', 'algebraic reasoning'] });
    expect(mathVistaCategories(integer)).toEqual({});
  });

  const base = { question_type: 'free_form', answer_type: 'integer', precision: null, choices: null, answer: '3' };
  it.each([
    ['a missing question_type', { ...base, question_type: undefined }, 'question_type', /expected one of "multi_choice", "free_form"; it is missing/],
    ['an unknown answer_type', { ...base, answer_type: 'number' }, 'answer_type', /got "number"/],
    ['a numeric answer', { ...base, answer: 3 }, 'answer', /expected a string; got 3/],
    ['a float without precision', { ...base, answer_type: 'float' }, 'precision', /whole number of decimals .*float answer; got null/],
    ['a fractional precision', { ...base, precision: 1.5 }, 'precision', /got 1.5/],
    ['multi_choice without choices', { ...base, question_type: 'multi_choice', answer_type: 'text' }, 'choices', /non-empty list of strings; got null/],
    ['a letter as the multi_choice answer', { ...base, question_type: 'multi_choice', answer_type: 'text', choices: CHOICES, answer: 'C' }, 'answer', /option's text, not its letter/],
    ['skills that are not a list', { ...base, metadata: { skills: 'arithmetic' } }, 'metadata.skills', /list of strings; got "arithmetic"/],
  ])('rejects %s, naming the field', (_name, record, field, message) => {
    const read = () => validateMathVistaRow(record);
    expect(read).toThrow(RowFieldError);
    expect(read).toThrow(message);
    expect(read).toThrow(expect.objectContaining({ field }));
  });
});
