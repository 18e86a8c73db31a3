import { describe, expect, it } from 'vitest';
import { RowFieldError } from './fields';
import { mmmuCategories, scoreMmmu, validateMmmuRow } from './mmmu';

// Rows shaped like MMMU validation's, fields as published (options and list answers are stringified Python lists).
// The expected letters and candidates were checked against the official eval_utils.py under CPython.
const multiChoice = validateMmmuRow({
  id: 'validation_Accounting_1',
  question: 'What is the total cost? <image 1>',
  options: "['$6', '$7', '$8', '$9']",
  answer: 'B',
  question_type: 'multiple-choice',
});
const open = (answer: string) => validateMmmuRow({ id: 'validation_Math_15', question_type: 'open', options: '[]', answer });
const tagged = (answer: string) => `<think>reasoning</think><answer>${answer}</answer>`;

describe('MMMU multiple choice (parse_multi_choice_response + eval_multi_choice)', () => {
  it.each([
    ['the letter', tagged('B'), true, 'B'],
    ['the letter in parentheses', tagged('(B)'), true, 'B'],
    ['the letter with a full stop (stripped from the ends)', tagged('B.'), true, 'B'],
    ['the letter in quotes', tagged("'B'"), true, 'B'],
    ['another letter in a sentence', tagged('The answer is (C).'), false, 'C'],
    ['the bracketed letter written last', tagged('I think (A) is wrong, the answer is (B)'), true, 'B'],
    ['the standalone letter written last', tagged('A or B'), true, 'B'],
    ["the option's text in a prediction of more than 5 words", tagged('I would go with the option costing $7 overall here'), true, 'B'],
    ["the option's text in 5 words or fewer: unparsed, so wrong (the official code guesses)", tagged('It costs $7'), false, null],
    ['a lowercase letter: unparsed, so wrong', tagged('b'), false, null],
    ['"B. $7": no standalone letter, too short for text: unparsed, so wrong', tagged('B. $7'), false, null],
    ['the whole response without tags', 'Adding the items gives $7, so the answer is B', true, 'B'],
    ['the last answer block', `${tagged('A')} no, ${tagged('B')}`, true, 'B'],
  ])('%s', (_name, response, correct, extracted) => {
    expect(scoreMmmu(multiChoice, response)).toEqual({ correct, score: correct ? 1 : 0, extracted });
  });
});

describe('MMMU open (parse_open_response + eval_open)', () => {
  it.each([
    ['the number in the key phrase', '24.5', 'The area is 24.5 square meters.\nSo the final answer is 24.5', true],
    ['the number written with more decimals, equal at 2', '24.5', '24.50', true],
    ['a number that differs at 2 decimals', '24.5', '24.49', false],
    ['rounding to 2 decimals first', '30', 'it is 30.004', true],
    ['a number beyond the rounding', '30', 'it is 30.01', false],
    ['thousands separators', '1234', 'x = 1,234', true],
    ['a long decimal rounding to the answer', '3.14', 'about 3.14159', true],
    ['the answer text inside a key phrase', 'embryonic', 'therefore the answer is embryonic', true],
    ['a one-letter answer beside a space', 'a', 'the answer is a', true],
    ['a one-letter answer inside a word', 'a', 'banana', false],
    ['any of a stringified list of answers', "['24/7', '3.429']", '3.43', true],
    ['none of a stringified list of answers', "['24/7', '3.429']", '3.42', false],
  ])('%s', (_name, answer, prediction, correct) => {
    const result = scoreMmmu(open(answer), tagged(prediction));
    expect(result.correct).toBe(correct);
    expect(result.score).toBe(correct ? 1 : 0);
  });

  it('reports the normalised candidates as the extracted answer', () => {
    expect(scoreMmmu(open('3.14'), tagged('about 3.14159')).extracted).toBe('["about 3.14159",3.14]');
    expect(scoreMmmu(open('3.14'), tagged('')).extracted).toBeNull();
  });
});

describe('MMMU rows', () => {
  it('reports the discipline and subject named by the id', () => {
    expect(mmmuCategories(multiChoice)).toEqual({ discipline: ['Business'], subject: ['Accounting'] });
    const art = validateMmmuRow({ id: 'validation_Art_Theory_12', question_type: 'open', answer: 'x' });
    expect(mmmuCategories(art)).toEqual({ discipline: ['Art and Design'], subject: ['Art_Theory'] });
    expect(mmmuCategories(validateMmmuRow({ question_type: 'open', answer: 'x' }))).toEqual({});
  });

  it('accepts options as a JSON array too', () => {
    const row = validateMmmuRow({ question_type: 'multiple-choice', options: ['1', '2'], answer: 'A' });
    expect(scoreMmmu(row, tagged('A')).correct).toBe(true);
  });

  it.each([
    ["MathVerse's spelling of the question type", { question_type: 'multi-choice', answer: 'B' }, 'question_type', /got "multi-choice"/],
    ['an option text as the answer', { question_type: 'multiple-choice', options: "['$6', '$7']", answer: '$7' }, 'answer', /letter, one of A, B; got "\$7"/],
    ['a letter beyond the options', { question_type: 'multiple-choice', options: "['$6', '$7']", answer: 'C' }, 'answer', /one of A, B; got "C"/],
    ['options that are not a list', { question_type: 'multiple-choice', options: '$6, $7', answer: 'A' }, 'options', /stringified|published/],
    ['missing options', { question_type: 'multiple-choice', answer: 'A' }, 'options', /it is missing/],
    ['an id of no MMMU subject', { id: 'validation_Cooking_1', question_type: 'open', answer: '1' }, 'id', /one of the 30 subjects/],
  ])('rejects %s, naming the field', (_name, record, field, message) => {
    const read = () => validateMmmuRow(record);
    expect(read).toThrow(RowFieldError);
    expect(read).toThrow(message);
    expect(read).toThrow(expect.objectContaining({ field }));
  });
});
