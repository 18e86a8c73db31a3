import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SophiaError } from '../common/errors';
import { completion, serveChat, stopChatServers } from '../common/testing/chat-server';
import { tempDir } from '../datasets/testing/fixtures';
import { BENCHMARKS, type BenchmarkName } from './index';
import { cacheKey, ExtractionCache, extractionPrompt, extractionTarget, LlmExtractor, parseExtraction } from './llm-extract';

// Published rows, as the benchmarks' datasets hold them (images left out: the judge sees text only).
const ROWS = {
  mathvistaChoice: {
    query: 'Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.\nQuestion: Find the angle.\nChoices:\n(A) 135°\n(B) 140°\n(C) 145°\n(D) 150°',
    question_type: 'multi_choice', answer_type: 'text', precision: null, choices: ['135°', '140°', '145°', '150°'], answer: '145°',
  },
  mathvistaFloat: { query: 'Question: What is the length of AB? (Unit: cm)', question_type: 'free_form', answer_type: 'float', precision: 1, choices: null, answer: '4.3' },
  mathvistaList: { query: 'Question: Between which two years is the peak?', question_type: 'free_form', answer_type: 'list', precision: null, choices: null, answer: '[2007, 2008]' },
  mathverseChoice: { question: 'The length of BC is ()\nChoices:\nA:2\nB:2√{3}\nC:√{3}\nD:2√{2}', question_type: 'multi-choice', answer: 'C' },
  mathverseFree: { question: 'Write the range of f in interval notation.', question_type: 'free-form', answer: '(-4,1]' },
  mmmuChoice: { id: 'validation_Art_Theory_1', question: 'Who painted <image 1>?', options: "['Monet', 'Manet', 'Degas']", question_type: 'multiple-choice', answer: 'B' },
  mmmuOpen: { id: 'validation_Math_3', question: 'What is the area of the triangle?', options: '[]', question_type: 'open', answer: '12' },
  chartqa: { query: 'What is the value of the tallest bar?', label: ['45'] },
  mmstar: { question: 'What is on the table?\nOptions: A: a cup, B: a book, C: a lamp, D: a phone', answer: 'B' },
} as const;

const userText = (benchmark: BenchmarkName, record: Record<string, unknown>, response: string) => {
  const messages = extractionPrompt(extractionTarget(benchmark, record), response);
  expect(messages.map((m) => m.role)).toEqual(['system', 'user']);
  expect(messages[0]!.content).toContain('Extracted answer: none');
  return messages[1]!.content as string;
};

describe('the extraction prompt', () => {
  it.each([
    ['mathvista', ROWS.mathvistaChoice, ['Find the angle.', '(C) 145°', 'letter of the option', 'one of A, B, C, D']],
    ['mathvista', ROWS.mathvistaFloat, ['What is the length of AB? (Unit: cm)', 'as a number', 'do not round']],
    ['mathvista', ROWS.mathvistaList, ['Between which two years', 'list in square brackets']],
    ['mathverse', ROWS.mathverseChoice, ['The length of BC is ()', 'B:2√{3}', 'one of A, B, C, D']],
    ['mathverse', ROWS.mathverseFree, ['Write the range of f', 'mathematical expression']],
    ['mmmu', ROWS.mmmuChoice, ['Who painted <image 1>?', 'A. Monet\nB. Manet\nC. Degas', 'one of A, B, C)']],
    ['mmmu', ROWS.mmmuOpen, ['What is the area of the triangle?', 'a number']],
    ['chartqa', ROWS.chartqa, ['What is the value of the tallest bar?', 'without units, currency or % signs']],
    ['mmstar', ROWS.mmstar, ['What is on the table?', 'C: a lamp', 'one of A, B, C, D']],
  ] as const)('%s: the question, its options, the response and what to extract', (benchmark, record, parts) => {
    const response = `<think>reasoning about ${benchmark}</think><answer>final ${benchmark}</answer>`;
    const text = userText(benchmark, record, response);
    for (const part of [...parts, response]) expect(text).toContain(part);
    // The row under question comes after the worked examples, and the response is fenced.
    expect(text.lastIndexOf(parts[0])).toBeGreaterThan(text.indexOf('Now this one:'));
    expect(text).toContain(`[Model response]\n${response}\n[End of model response]`);
  });

  it('asks each benchmark row only for what its rule compares (letters for choices, none otherwise)', () => {
    expect(extractionTarget('mathvista', ROWS.mathvistaChoice).letters).toEqual(['A', 'B', 'C', 'D']);
    expect(extractionTarget('mmmu', ROWS.mmmuChoice).letters).toEqual(['A', 'B', 'C']);
    expect(extractionTarget('mmstar', ROWS.mmstar).letters).toEqual(['A', 'B', 'C', 'D']);
    expect(extractionTarget('mathverse', { question_type: 'multi-choice', question: 'Which is right? (choices in the image)' }).letters).toEqual([]);
    expect(extractionTarget('chartqa', ROWS.chartqa).letters).toBeUndefined();
    expect(extractionTarget('mathverse', ROWS.mathverseFree).letters).toBeUndefined();
  });
});

describe('parseExtraction', () => {
  it.each([
    ['Extracted answer: 45', undefined, '45'],
    ['Extracted answer: (-3, 2]', undefined, '(-3, 2]'],
    ['The response ends with 12.\nExtracted answer: 12.', undefined, '12'],
    ['**Extracted answer:** `4.33`', undefined, '4.33'],
    ['extracted ANSWER: "Chile"', undefined, 'Chile'],
    ['Extracted answer: 3\nOn reflection:\nExtracted answer: 7', undefined, '7'],
    ['Extracted answer: [2015, 2019]', undefined, '[2015, 2019]'],
    ['Extracted answer: B', ['A', 'B', 'C', 'D'], 'B'],
    ['Extracted answer: (c)', ['A', 'B', 'C', 'D'], 'C'],
    ['Extracted answer: B. a book', ['A', 'B', 'C', 'D'], 'B'],
    ['Extracted answer: Option D', ['A', 'B', 'C', 'D'], 'D'],
    ['Extracted answer: E', [], 'E'],
    // Not an answer: each is null, so the benchmark's rule reads the response itself.
    ['Extracted answer: F', ['A', 'B', 'C', 'D'], null],
    ['Extracted answer: a book', ['A', 'B', 'C', 'D'], null],
    ['Extracted answer: none', undefined, null],
    ['Extracted answer: None.', ['A', 'B'], null],
    ['Extracted answer: N/A', undefined, null],
    ['Extracted answer:', undefined, null],
    ['Extracted answer: **', undefined, null],
    ['45', undefined, null],
    ['', undefined, null],
    ["I'm sorry, but I can't help with that request.", undefined, null],
    ['The answer is B.', ['A', 'B'], null],
  ] as const)('%j (letters %j) → %j', (reply, letters, answer) => {
    expect(parseExtraction(reply, letters)).toBe(answer);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The extractor against a real local HTTP server implementing chat/completions
// ---------------------------------------------------------------------------------------------------------------

let dir = '';
beforeEach(() => {
  dir = tempDir('llm-extract');
});
afterEach(async () => {
  await stopChatServers();
  rmSync(dir, { recursive: true, force: true });
});

const fast = { retryDelayMs: 1, timeoutMs: 5000 };
const cacheFiles = () => readdirSync(path.join(dir, 'cache')).filter((n) => n.endsWith('.json'));

describe('LlmExtractor', () => {
  it('asks the model at temperature 0 with the key, returns the parsed answer, and caches it so that no request repeats', async () => {
    const server = await serveChat(() => completion('Extracted answer: 45'));
    const options = { baseUrl: server.baseUrl, model: 'judge-small', apiKey: 'sk-extract-1', cacheDir: path.join(dir, 'cache'), ...fast };
    const extractor = LlmExtractor.open(options);
    expect(await extractor.extract('chartqa', ROWS.chartqa, 'The tallest bar reads 45 units.')).toBe('45');
    expect(server.received).toHaveLength(1);
    const { path: url, authorization, body } = server.received[0]!;
    expect([url, authorization, body.model, body.temperature]).toEqual(['/v1/chat/completions', 'Bearer sk-extract-1', 'judge-small', 0]);
    expect(body.messages).toEqual(extractionPrompt(extractionTarget('chartqa', ROWS.chartqa), 'The tallest bar reads 45 units.'));

    // The same question and response again, in this run and in the next: from the cache, no request.
    expect(await extractor.extract('chartqa', ROWS.chartqa, 'The tallest bar reads 45 units.')).toBe('45');
    const again = LlmExtractor.open(options);
    expect(again.cache.size).toBe(1);
    expect(await again.extract('chartqa', ROWS.chartqa, 'The tallest bar reads 45 units.')).toBe('45');
    expect(server.received).toHaveLength(1);
    expect([extractor.stats, again.stats]).toEqual([{ requests: 1, cached: 1 }, { requests: 0, cached: 1 }]);

    // The entry: one file named by the key of (model, prompt), holding the answer and the reply.
    const key = cacheKey('judge-small', body.messages as never);
    expect(cacheFiles()).toEqual([`${key}.json`]);
    expect(JSON.parse(readFileSync(path.join(dir, 'cache', `${key}.json`), 'utf8'))).toEqual({ model: 'judge-small', answer: '45', reply: 'Extracted answer: 45' });

    // Another judge model is another key.
    await LlmExtractor.open({ ...options, model: 'judge-large' }).extract('chartqa', ROWS.chartqa, 'The tallest bar reads 45 units.');
    expect(server.received).toHaveLength(2);
  });

  it('caches "no answer" too, sends nothing for an empty response, and checks letters against the row', async () => {
    const server = await serveChat((_r, n) => completion(['I cannot tell.', 'Extracted answer: F', 'Extracted answer: (B)'][n]!));
    const extractor = LlmExtractor.open({ baseUrl: server.baseUrl, model: 'm', cacheDir: path.join(dir, 'cache'), ...fast });
    expect(await extractor.extract('chartqa', ROWS.chartqa, 'The bars are hard to read.')).toBeNull();
    expect(await extractor.extract('mmstar', ROWS.mmstar, 'F, the vase')).toBeNull();
    expect(await extractor.extract('mmstar', ROWS.mmstar, 'It is the book.')).toBe('B');
    expect(await extractor.extract('mmstar', ROWS.mmstar, '  \n')).toBeNull();
    expect(await extractor.extract('chartqa', ROWS.chartqa, 'The bars are hard to read.')).toBeNull();
    expect(server.received).toHaveLength(3);
    expect(cacheFiles()).toHaveLength(3);
  });

  it('ignores corrupt cache entries with a warning, never crashing, and rewrites them', async () => {
    const server = await serveChat(() => completion('Extracted answer: 45'));
    const options = { baseUrl: server.baseUrl, model: 'm', cacheDir: path.join(dir, 'cache'), ...fast };
    await LlmExtractor.open(options).extract('chartqa', ROWS.chartqa, 'It is 45.');
    const [file] = cacheFiles();
    writeFileSync(path.join(dir, 'cache', file!), '{"model": "m", "answer": ');
    writeFileSync(path.join(dir, 'cache', `${'0'.repeat(64)}.json`), '{"model": "m", "answer": 3, "reply": ""}');
    writeFileSync(path.join(dir, 'cache', `.${'1'.repeat(64)}.42.tmp`), '{"model"'); // an interrupted write: not an entry
    const warnings: string[] = [];
    const extractor = LlmExtractor.open({ ...options, warn: (w) => warnings.push(w) });
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toMatch(/extraction cache: ignoring .*0{64}\.json, which is not a cache entry/);
    expect(warnings[1]).toContain(file);
    expect(extractor.cache.size).toBe(0);
    expect(await extractor.extract('chartqa', ROWS.chartqa, 'It is 45.')).toBe('45');
    expect(server.received).toHaveLength(2);
    const reread: string[] = [];
    expect(LlmExtractor.open({ ...options, warn: (w) => reread.push(w) }).cache.size).toBe(1);
    expect(reread).toHaveLength(1); // only the entry of wrong shape is left
  });

  it('retries a failing server, then fails with an error naming the endpoint; nothing is cached', async () => {
    const server = await serveChat(() => ({ status: 503, body: '{"error": "model is loading"}' }));
    const extractor = LlmExtractor.open({ baseUrl: server.baseUrl, model: 'm', cacheDir: path.join(dir, 'cache'), maxRetries: 2, field: (o) => (o === 'baseUrl' ? '--extract-url' : undefined), ...fast });
    const err = await extractor.extract('chartqa', ROWS.chartqa, 'It is 45.').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SophiaError);
    expect((err as SophiaError).message).toBe(
      `extraction endpoint ${server.baseUrl}/chat/completions failed 3 attempts; last: HTTP 503: "{\\"error\\": \\"model is loading\\"}". Check that the server is running and reachable at --extract-url`,
    );
    expect(server.received).toHaveLength(3);
    expect(cacheFiles()).toEqual([]);
  });

  it('validates the endpoint once, naming the option', () => {
    expect(() => LlmExtractor.open({ baseUrl: 'localhost:8000', model: 'm', cacheDir: dir })).toThrow(/extract\.baseUrl: must be http\(s\)/);
    expect(() => LlmExtractor.open({ baseUrl: 'http://127.0.0.1:1/v1', model: '', cacheDir: dir, field: (o) => `--${o}` })).toThrow(/--model: is required/);
  });
});

describe('ExtractionCache', () => {
  it('writes each entry atomically under its key and reads them all back once', () => {
    const cache = ExtractionCache.open(path.join(dir, 'c'), () => {});
    cache.put('a'.repeat(64), { model: 'm', answer: 'B', reply: 'Extracted answer: B' });
    cache.put('b'.repeat(64), { model: 'm', answer: null, reply: 'no idea' });
    expect(readdirSync(path.join(dir, 'c')).sort()).toEqual([`${'a'.repeat(64)}.json`, `${'b'.repeat(64)}.json`]);
    const reread = ExtractionCache.open(path.join(dir, 'c'), () => {});
    expect([reread.size, reread.get('a'.repeat(64))?.answer, reread.get('b'.repeat(64))?.answer]).toEqual([2, 'B', null]);
  });

  it('keys on the model and the full prompt', () => {
    const prompt = extractionPrompt(extractionTarget('mmstar', ROWS.mmstar), 'B');
    expect(cacheKey('m', prompt)).toMatch(/^[0-9a-f]{64}$/);
    expect(cacheKey('m', prompt)).toBe(cacheKey('m', extractionPrompt(extractionTarget('mmstar', ROWS.mmstar), 'B')));
    expect(cacheKey('m', prompt)).not.toBe(cacheKey('m2', prompt));
    expect(cacheKey('m', prompt)).not.toBe(cacheKey('m', extractionPrompt(extractionTarget('mmstar', ROWS.mmstar), 'B.')));
  });
});

describe('what the rules make of an extracted answer', () => {
  it.each([
    ['mathvista', ROWS.mathvistaChoice, 'C', true],
    ['mathvista', ROWS.mathvistaFloat, '4.33', true],
    ['mathvista', ROWS.mathvistaList, '[2007, 2008]', true],
    ['mathverse', ROWS.mathverseChoice, 'C', true],
    ['mathverse', ROWS.mathverseFree, '(-4, 1]', true],
    ['mmmu', ROWS.mmmuChoice, 'B', true],
    ['mmmu', ROWS.mmmuOpen, '12', true],
    ['chartqa', ROWS.chartqa, '45', true],
    ['mmstar', ROWS.mmstar, 'B', true],
    ['mmstar', ROWS.mmstar, 'A', false],
  ] as const)('%s: <answer>%s</answer> is scored as its rule reads it', (benchmark, record, answer, correct) => {
    // The form each target asks for is the form the benchmark's rule compares.
    expect(BENCHMARKS[benchmark].read(record).score(`<answer>${answer}</answer>`).correct).toBe(correct);
  });
});
