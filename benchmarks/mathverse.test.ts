import { describe, expect, it } from 'vitest';
import { RowFieldError } from './fields';
import { mathVerseCategories, parseChoices, scoreMathVerse, validateMathVerseRow } from './mathverse';

// Rows shaped like MathVerse testmini's, fields as published (the multi-choice question is the one of the
// official judge prompt's examples).
const QUESTION = 'As shown in the figure, circle O has a radius 1.0, if angle BAC = 60.0, then the length of BC is ()\nChoices:\nA:2\nB:2√{3}\nC:√{3}\nD:2√{2}';
const multiChoice = validateMathVerseRow({
  question_type: 'multi-choice',
  answer: 'C',
  question: QUESTION,
  problem_version: 'Text Lite',
  metadata: { split: 'testmini', source: 'GeoQA', subject: 'Plane Geometry', subfield: 'Length' },
});
const freeForm = (answer: string) => validateMathVerseRow({ question_type: 'free-form', answer, question: 'Find L.' });
const tagged = (answer: string) => `<think>reasoning</think><answer>${answer}</answer>`;

describe('MathVerse multi-choice: the letter read, or the letter of the option text given', () => {
  it.each([
    ['the letter', tagged('C'), true, 'C'],
    ['the letter in parentheses', tagged('(C)'), true, 'C'],
    ['the letter with its option text', tagged('C:√{3}'), true, 'C'],
    ["another option's label and text (the judge prompt's example: 0)", tagged('B:2√{3}'), false, 'B'],
    ["the correct option's text", tagged('√{3}'), true, 'C'],
    ["an option's text with a full stop", tagged('2√{2}.'), false, 'D'],
    ['"Option C"', tagged('Option C'), true, 'C'],
    ['\\boxed{C} without tags', 'So BC = √3, \\boxed{C}', true, 'C'],
    ['the last answer block', `${tagged('A')}${tagged('C')}`, true, 'C'],
    ['an unreadable answer ("null" in the judge prompt: 0)', tagged('cannot be determined'), false, null],
    ['an empty answer', tagged(''), false, null],
  ])('%s', (_name, response, correct, extracted) => {
    expect(scoreMathVerse(multiChoice, response)).toEqual({ correct, score: correct ? 1 : 0, extracted });
  });

  it('reads the options of the Choices: block', () => {
    expect([...parseChoices(QUESTION)]).toEqual([['A', '2'], ['B', '2√{3}'], ['C', '√{3}'], ['D', '2√{2}']]);
    expect([...parseChoices('Which one?\nChoices:\n(A) 3 cm\n(B) 4 cm')]).toEqual([['A', '3 cm'], ['B', '4 cm']]);
    expect(parseChoices('no options here').size).toBe(0);
  });
});

describe('MathVerse free-form: the same text (spacing, case, math delimiters ignored) or the same number', () => {
  it.each([
    ['the number', '14', '14', true, '14'],
    ['the number with its unit', '14', '14 cm', true, '14 cm'],
    ['an equation giving the number', '14', 'L = 14', true, 'L = 14'],
    ['a fraction of the same value', '14', '\\frac{28}{2}', true, '\\frac{28}{2}'],
    ['another number', '14', '14.32', false, '14.32'],
    ['an interval with other spacing and $…$', '(-2,1]', '$( -2, 1 ]$', true, '( -2, 1 ]'],
    ['an interval with another bracket', '(-2,1]', '(-2, 1)', false, '(-2, 1)'],
    ['an expression with other spacing', 'f(x) = -x^2 - 2x + 1', 'f(x)=-x^2-2x+1', true, 'f(x)=-x^2-2x+1'],
    ['the same quantity in other units (the GPT judge would accept it; the rules do not)', '0.5m', '50cm', false, '50cm'],
  ])('%s', (_name, answer, prediction, correct, extracted) => {
    expect(scoreMathVerse(freeForm(answer), tagged(prediction))).toEqual({ correct, score: correct ? 1 : 0, extracted });
  });

  it('scores an empty prediction as wrong with nothing extracted', () => {
    expect(scoreMathVerse(freeForm('14'), tagged(' '))).toEqual({ correct: false, score: 0, extracted: null });
  });
});

describe('MathVerse rows', () => {
  it('reports problem version, subject and subfield as categories', () => {
    expect(mathVerseCategories(multiChoice)).toEqual({ problem_version: ['Text Lite'], subject: ['Plane Geometry'], subfield: ['Length'] });
    expect(mathVerseCategories(freeForm('14'))).toEqual({});
  });

  it.each([
    ["MMMU's spelling of the question type", { question_type: 'multiple-choice', answer: 'C' }, 'question_type', /expected one of "multi-choice", "free-form"; got "multiple-choice"/],
    ['an option text as the multi-choice answer', { question_type: 'multi-choice', answer: '√{3}' }, 'answer', /option letter/],
    ['an empty free-form answer', { question_type: 'free-form', answer: ' ' }, 'answer', /non-empty answer/],
    ['a missing answer', { question_type: 'free-form' }, 'answer', /expected a string; it is missing/],
    ['a non-string subject', { question_type: 'free-form', answer: '1', metadata: { subject: 3 } }, 'metadata.subject', /got 3/],
  ])('rejects %s, naming the field', (_name, record, field, message) => {
    const read = () => validateMathVerseRow(record);
    expect(read).toThrow(RowFieldError);
    expect(read).toThrow(message);
    expect(read).toThrow(expect.objectContaining({ field }));
  });
});
