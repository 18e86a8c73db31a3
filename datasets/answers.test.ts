import { describe, expect, it } from 'vitest';
import { answerTypeOf, choiceLetters, groundTruthText, labelOptions } from './answers';

describe('problem type → answer type', () => {
  it('maps the SophiaVL-R1 / Video-R1 types and their spellings', () => {
    expect(answerTypeOf('multiple choice')).toBe('choice');
    expect(answerTypeOf('multiple_choice')).toBe('choice');
    expect(answerTypeOf('numerical')).toBe('numeric');
    expect(answerTypeOf('regression')).toBe('numeric');
    expect(answerTypeOf('OCR')).toBe('ocr');
    expect(answerTypeOf('free-form')).toBe('text');
    expect(answerTypeOf('text')).toBe('text');
  });

  it('has no rule for an unknown type', () => {
    expect(answerTypeOf('video-grounding')).toBeUndefined();
    expect(answerTypeOf('')).toBeUndefined();
    expect(answerTypeOf('constructor')).toBeUndefined();
  });
});

describe('ground truth', () => {
  it('takes the first <answer> block, drops $ and trims', () => {
    expect(groundTruthText('<answer> $3.5$ </answer>')).toBe('3.5');
    expect(groundTruthText('<answer>a</answer><answer>b</answer>')).toBe('a');
    expect(groundTruthText('  Denali ')).toBe('Denali');
  });

  it('reads choice answers as option letters', () => {
    const options = labelOptions(['3', '7', '9']);
    expect(options).toEqual(['A. 3', 'B. 7', 'C. 9']);
    expect(choiceLetters('B', options)).toEqual({ letters: 'B' });
    expect(choiceLetters('(c)', options)).toEqual({ letters: 'C' });
    expect(choiceLetters('A, C', options)).toEqual({ letters: 'A,C' });
    expect(choiceLetters('B. 7', options)).toEqual({ letters: 'B' });
    expect(choiceLetters('9', options)).toEqual({ letters: 'C' });
  });

  it('refuses what is not option letters, repeats, or letters past the options', () => {
    expect(choiceLetters('seven', labelOptions(['3', '7']))).toHaveProperty('error');
    expect(choiceLetters('A,A', undefined)).toHaveProperty('error');
    expect(choiceLetters('E', labelOptions(['3', '7']))).toEqual({ error: '"E" names E but the row has options A–B' });
  });
});
