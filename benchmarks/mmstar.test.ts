import { describe, expect, it } from 'vitest';
import { RowFieldError } from './fields';
import { mmstarCategories, scoreMmstar, validateMmstarRow } from './mmstar';

// A row shaped like MMStar's (Lin-Chen/MMStar), fields as published.
const row = validateMmstarRow({
  index: 0,
  question: 'Which option describes the object relationship in the image correctly?\nOptions: A: The suitcase is on the book., B: The suitcase is beneath the cat., C: The suitcase is beneath the bed., D: The suitcase is beneath the book.',
  answer: 'B',
  category: 'coarse perception',
  l2_category: 'image scene and topic',
});
const tagged = (answer: string) => `<think>looking</think><answer>${answer}</answer>`;

describe('MMStar (MMStar_eval: the letter first, or after "(", "option " or "the answer is ")', () => {
  it.each([
    ['the letter', tagged('B'), true, 'B'],
    ['the letter in lowercase', tagged('b'), true, 'B'],
    ['the letter in parentheses', tagged('(B)'), true, 'B'],
    ['the letter with its option text', tagged('B. The suitcase is beneath the cat.'), true, 'B'],
    ['"Option B"', tagged('Option B'), true, 'B'],
    ['"The answer is B"', tagged('The answer is B'), true, 'B'],
    ['the letter after a line break (trimmed)', tagged('\nB\n'), true, 'B'],
    ['another letter', tagged('A'), false, 'A'],
    ['"the answer is (B)": the rule reads "(" there', tagged('the answer is (B)'), false, null],
    ["the option's text alone: its first letter is read", tagged('The suitcase is beneath the cat.'), false, 'T'],
    ["a first word starting with the answer's letter (the official rule's quirk)", tagged('both are possible'), true, 'B'],
    ['the whole response without tags', 'B) because the cat sits on it', true, 'B'],
    ['an untagged response that starts with its thinking', '<think>it is B</think> B', false, null],
    ['an empty answer', tagged(''), false, null],
    ['the last answer block', `${tagged('A')}${tagged('B')}`, true, 'B'],
  ])('%s', (_name, response, correct, extracted) => {
    expect(scoreMmstar(row, response)).toEqual({ correct, score: correct ? 1 : 0, extracted });
  });
});

describe('MMStar rows', () => {
  it('reports the core capability and the axis', () => {
    expect(mmstarCategories(row)).toEqual({ category: ['coarse perception'], l2_category: ['image scene and topic'] });
    expect(mmstarCategories(validateMmstarRow({ answer: 'A' }))).toEqual({});
  });

  it.each([
    ['a missing answer', {}, 'answer', /option letter .*it is missing/],
    ['two letters', { answer: 'AB' }, 'answer', /got "AB"/],
    ['a non-string category', { answer: 'A', category: 1 }, 'category', /got 1/],
  ])('rejects %s, naming the field', (_name, record, field, message) => {
    const read = () => validateMmstarRow(record);
    expect(read).toThrow(RowFieldError);
    expect(read).toThrow(message);
    expect(read).toThrow(expect.objectContaining({ field }));
  });
});
