import { describe, expect, it } from 'vitest';
import { pngBytes } from '../datasets/testing/fixtures';
import { DEFAULT_EVAL_TEMPLATE, imageBytes, QuestionError, questionOf, renderEvalPrompt, validateEvalTemplate } from './inputs';

const PNG = pngBytes(30, 20, [10, 20, 30]);
const struct = (bytes: Uint8Array) => ({ bytes, path: 'x.png' });
const kinds = (parts: ReturnType<typeof questionOf>) => parts.map((p) => (p.type === 'text' ? `text:${p.text}` : `image:${p.field}`));

describe('benchmark questions from published rows', () => {
  it('reads each benchmark\'s question text and image columns', () => {
    expect(kinds(questionOf('mathvista', { query: 'Hint: …\nQuestion: how many?', decoded_image: struct(PNG), image: 'images/1.jpg' }))).toEqual(['image:decoded_image', 'text:Hint: …\nQuestion: how many?']);
    expect(kinds(questionOf('mathverse', { question: 'q', query_cot: 'q with cot', image: struct(PNG) }))).toEqual(['image:image', 'text:q with cot']);
    expect(kinds(questionOf('mathverse', { question: 'plain q', image: struct(PNG) }))).toEqual(['image:image', 'text:plain q']);
    expect(kinds(questionOf('chartqa', { query: 'max?', image: struct(PNG), label: ['4'] }))).toEqual(['image:image', 'text:max?']);
    expect(kinds(questionOf('mmstar', { question: 'Which? A: x, B: y', image: PNG }))).toEqual(['image:image', 'text:Which? A: x, B: y']);
  });

  it('puts MMMU\'s images where the question marks them and letters its options', () => {
    const row = { question: 'Compare <image 1> with <image 2>. Which is larger?', options: "['the first', 'the second']", question_type: 'multiple-choice', image_1: struct(PNG), image_2: struct(PNG), image_3: null };
    expect(kinds(questionOf('mmmu', row))).toEqual(['text:Compare ', 'image:image_1', 'text: with ', 'image:image_2', 'text:. Which is larger?', 'text:\nA. the first\nB. the second']);
    // An image no marker names goes first; an open question has no options.
    const open = { question: 'What is the value?', question_type: 'open', image_1: struct(PNG) };
    expect(kinds(questionOf('mmmu', open))).toEqual(['image:image_1', 'text:What is the value?']);
  });

  it('names the field a row lacks', () => {
    expect(() => questionOf('chartqa', { query: 'max?', image: null })).toThrow(QuestionError);
    expect(() => questionOf('chartqa', { query: 'max?', image: { bytes: null, path: 'a.png' } })).toThrow(/^image: no image bytes/);
    expect(() => questionOf('mathvista', { decoded_image: struct(PNG) })).toThrow(/^query: no question text \(query or question/);
    expect(() => questionOf('mmmu', { question: 'See <image 2>.', question_type: 'open', image_1: struct(PNG) })).toThrow(/^image_2: the question shows <image 2>/);
    expect(() => questionOf('mmmu', { question: 'Pick one', question_type: 'multiple-choice', options: '[]', image_1: struct(PNG) })).toThrow(/^options:/);
  });

  it('reads image bytes from a struct, raw bytes or base64 text, and nothing else', () => {
    expect(imageBytes(struct(PNG))).toBe(PNG);
    expect(imageBytes(PNG)).toBe(PNG);
    expect(Buffer.from(imageBytes(Buffer.from(PNG).toString('base64'))!).equals(Buffer.from(PNG))).toBe(true);
    expect(imageBytes('images/1.jpg')).toBeUndefined();
    expect(imageBytes({ bytes: new Uint8Array(0) })).toBeUndefined();
    expect(imageBytes(42)).toBeUndefined();
  });

  it('renders the template around the question\'s parts and refuses one without {question}', () => {
    const parts = renderEvalPrompt('Q: {question}\nA:', [{ type: 'image', bytes: PNG, field: 'image' }, { type: 'text', text: 'how many?' }]);
    expect(kinds(parts)).toEqual(['text:Q: ', 'image:image', 'text:how many?\nA:']);
    expect(kinds(renderEvalPrompt(DEFAULT_EVAL_TEMPLATE, [{ type: 'text', text: 'x' }]))[0]).toMatch(/^text:x\nFirst think .*<answer>/s);
    expect(() => validateEvalTemplate('Answer in <answer></answer>.', '--template')).toThrow(/--template: the evaluation template has no \{question\}/);
    expect(() => validateEvalTemplate(DEFAULT_EVAL_TEMPLATE, '--template')).not.toThrow();
  });
});
