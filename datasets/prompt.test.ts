import { describe, expect, it } from 'vitest';
import { ConfigError } from '../common/errors';
import { ANSWER_FORMATS, DEFAULT_PROMPT_TEMPLATE, renderPrompt, validateTemplate } from './prompt';

describe('prompt template', () => {
  it('renders the default: question, options, the think/answer instruction and the per-type line', () => {
    validateTemplate(DEFAULT_PROMPT_TEMPLATE, 'data.template');
    const prompt = renderPrompt(DEFAULT_PROMPT_TEMPLATE, { question: 'Which is largest?', options: ['A. 3', 'B. 7'], answerType: 'choice' });
    expect(prompt.startsWith('Which is largest?\nA. 3\nB. 7\n')).toBe(true);
    expect(prompt).toContain('<think> and </think>');
    expect(prompt).toContain('<answer> and </answer>');
    expect(prompt.endsWith(ANSWER_FORMATS.choice)).toBe(true);
    expect(prompt).not.toMatch(/\{[a-z_]+\}/);
  });

  it('leaves {options} empty without options and picks the line for the answer type', () => {
    const prompt = renderPrompt('{question}{options} | {answer_format}', { question: 'Q?', answerType: 'numeric' });
    expect(prompt).toBe(`Q? | ${ANSWER_FORMATS.numeric}`);
  });

  it('keeps braces that are not placeholders', () => {
    expect(renderPrompt('{question} Put the result in \\boxed{}.', { question: 'Q?', answerType: 'text' })).toBe('Q? Put the result in \\boxed{}.');
  });

  it('refuses a template without {question}, naming the field', () => {
    const attempt = () => validateTemplate('Answer in <answer></answer>. {answer_format}', 'data.template');
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(/data\.template: has no \{question\} placeholder/);
  });

  it('refuses an unknown placeholder, naming it', () => {
    expect(() => validateTemplate('{question} {answer}', 'data.template')).toThrow(/unknown placeholder \{answer\}/);
  });
});
