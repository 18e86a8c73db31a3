import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { BENCHMARK_NAMES } from '../benchmarks/index';
import { SophiaError } from '../common/errors';
import { main } from './main';
import { scoreCommand } from './score';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'sophia-score-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes `lines` to a fresh JSONL file and returns its path. */
async function jsonl(name: string, lines: string[]): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, lines.join('\n'));
  return file;
}

/** Runs `scoreCommand` and returns what it wrote. */
async function run(benchmark: string, file: string): Promise<string> {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  await scoreCommand(benchmark, file, out);
  return Buffer.concat(chunks).toString('utf8');
}

const mathvista = (fields: Record<string, unknown>, response: unknown) =>
  JSON.stringify({ question_type: 'free_form', answer_type: 'integer', precision: null, choices: null, answer: '3', ...fields, response });
const chartqa = (label: unknown, response: unknown) => JSON.stringify({ query: 'What is the value?', label, human_or_machine: 0, response });

describe('sophia score', () => {
  it('writes one result per input line, in order, skipping blank lines (MathVista)', async () => {
    const file = await jsonl('mathvista.jsonl', [
      mathvista({}, '<think>1+2</think><answer>3</answer>'),
      '',
      mathvista({ question_type: 'multi_choice', answer_type: 'text', choices: ['135°', '140°', '145°', '150°'], answer: '145°' }, '<answer>B</answer>'),
      '   ',
      mathvista({ answer_type: 'float', precision: 2, answer: '1.45' }, 'no tags: 1.449'),
      mathvista({ answer_type: 'float', precision: 2, answer: '1.45', pid: '7', metadata: { task: 'math word problem' } }, '1.449'),
    ]);
    expect(await run('mathvista', file)).toBe(
      [
        '{"correct":true,"score":1,"extracted":"3"}',
        '{"correct":false,"score":0,"extracted":"140°"}',
        '{"correct":false,"score":0,"extracted":null}',
        '{"correct":true,"score":1,"extracted":"1.45"}',
        '',
      ].join('\n'),
    );
  });

  it('scores with the benchmark named (ChartQA relaxed accuracy at its 5 % edge)', async () => {
    const file = await jsonl('chartqa.jsonl', [chartqa(['45'], '<answer>47.25</answer>'), chartqa(['45'], '<answer>47.26</answer>'), chartqa(['Yes'], 'yes')]);
    expect((await run('chartqa', file)).trim().split('\n')).toEqual([
      '{"correct":true,"score":1,"extracted":"47.25"}',
      '{"correct":false,"score":0,"extracted":"47.26"}',
      '{"correct":true,"score":1,"extracted":"yes"}',
    ]);
  });

  it('writes nothing for an empty file', async () => {
    expect(await run('mmstar', await jsonl('empty.jsonl', ['', '']))).toBe('');
  });

  it.each([
    ['invalid JSON', 'chartqa', [chartqa(['1'], '1'), '{"label": '], /line 2: invalid JSON .*expected one object per line like \{"query"/],
    ['not an object', 'chartqa', ['[1, 2]'], /line 1: expected a JSON object\. Each line holds a ChartQA test row's fields plus "response"/],
    ['a missing response', 'chartqa', [chartqa(['1'], '1'), '', JSON.stringify({ label: ['1'] })], /line 3: field "response": expected a string: the model's full output; it is missing/],
    ['a missing row field', 'mathvista', [mathvista({ answer_type: undefined }, 'r')], /line 1: field "answer_type": expected one of "text", "integer", "float", "list"; it is missing/],
    ['a float row without precision', 'mathvista', [mathvista({}, '3'), mathvista({ answer_type: 'float' }, '1.5')], /line 2: field "precision": expected a whole number of decimals/],
    ['a nested field', 'mathverse', [JSON.stringify({ question_type: 'free-form', answer: '1', metadata: { subfield: 2 }, response: '1' })], /line 1: field "metadata.subfield": expected a string or null; got 2/],
    ["MMMU options that are not the published list", 'mmmu', [JSON.stringify({ question_type: 'multiple-choice', options: 'A, B', answer: 'A', response: 'A' })], /line 1: field "options": .*got "A, B"\. Each line holds a MMMU validation row's fields/],
    ['an MMStar answer that is not a letter', 'mmstar', [JSON.stringify({ answer: 'cat', response: 'A' })], /line 1: field "answer": expected an option letter/],
  ])('rejects %s, naming the line and the field, and writes nothing', async (_name, benchmark, lines, message) => {
    const file = await jsonl('bad.jsonl', lines);
    const out = new PassThrough();
    const write = vi.spyOn(out, 'write');
    const err: unknown = await scoreCommand(benchmark, file, out).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SophiaError);
    expect((err as SophiaError).category).toBe('input');
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).toContain(file);
    expect(write).not.toHaveBeenCalled();
  });

  it('rejects an unknown benchmark, listing the known ones, before reading the file', async () => {
    await expect(scoreCommand('mathvision', path.join(dir, 'nope.jsonl'), new PassThrough())).rejects.toThrow(
      '--benchmark: unknown benchmark "mathvision"; known benchmarks: mathvista, mathverse, mmmu, chartqa, mmstar',
    );
  });

  it('rejects a missing file', async () => {
    await expect(scoreCommand('mmmu', path.join(dir, 'nope.jsonl'), new PassThrough())).rejects.toThrow(/--jsonl .*nope\.jsonl: cannot read the file \(no such file\)/);
  });

  it('is wired into the CLI, with --benchmark and --jsonl required', async () => {
    const error = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const write = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      expect(await main(['score', '--jsonl', 'x.jsonl'])).toBe(2);
      expect(String(error.mock.calls[0]?.[0])).toMatch(/--benchmark NAME and --jsonl FILE are required/);
      expect(await main(['score', '--benchmark', 'mmmu'])).toBe(2);
      expect(await main(['score', '--benchmark', 'nope', '--jsonl', path.join(dir, 'nope.jsonl')])).toBe(2);
      expect(String(error.mock.calls[2]?.[0])).toMatch(/known benchmarks: mathvista/);
      expect(await main(['score', '--bogus'])).toBe(2);
      expect(write).not.toHaveBeenCalled();
    } finally {
      vi.restoreAllMocks();
    }
  });

  it('prints its results to stdout through the CLI', async () => {
    const file = await jsonl('cli.jsonl', [chartqa(['45'], '<answer>45</answer>')]);
    const write = vi.spyOn(process.stdout, 'write').mockImplementation((...args: unknown[]) => {
      const done = args.at(-1);
      if (typeof done === 'function') (done as () => void)();
      return true;
    });
    try {
      expect(await main(['score', '--benchmark', 'chartqa', '--jsonl', file])).toBe(0);
      expect(String(write.mock.calls[0]?.[0])).toBe('{"correct":true,"score":1,"extracted":"45"}\n');
    } finally {
      vi.restoreAllMocks();
    }
  });

  it('documents every benchmark in sophia score --help, and the main usage points there', async () => {
    const log = vi.spyOn(console, 'log').mockImplementation(() => undefined);
    try {
      expect(await main(['score', '--help'])).toBe(0);
      const help = String(log.mock.calls[0]?.[0]);
      for (const name of BENCHMARK_NAMES) {
        expect(help).toMatch(new RegExp(`^${name} \\(.+\\)\\n  fields: +\\S[\\s\\S]*?\\n  example: +\\{`, 'm'));
      }
      expect(help).toContain('last <answer>…</answer>');
      expect(await main(['help'])).toBe(0);
      expect(String(log.mock.calls.at(-1)?.[0])).toContain('sophia score --help');
    } finally {
      vi.restoreAllMocks();
    }
  });
});
