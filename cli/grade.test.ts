import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { SophiaError } from '../common/errors';
import { ANSWER_TYPES } from '../tasks/grading';
import { gradeCommand } from './grade';
import { main } from './main';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'sophia-grade-'));
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

/** Runs `gradeCommand` and returns what it wrote. */
async function run(file: string): Promise<string> {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  await gradeCommand(file, out);
  return Buffer.concat(chunks).toString('utf8');
}

const line = (type: unknown, response: unknown, answer: unknown) => JSON.stringify({ type, response, answer });

describe('sophia grade', () => {
  it('writes one result per input line, in order, skipping blank lines', async () => {
    const file = await jsonl('good.jsonl', [
      line('numeric', '<think>2+3</think><answer>5 apples</answer>', '5'),
      '',
      line('choice', '<think>x</think><answer>C, A</answer>', 'A,C'),
      '   ',
      line('ocr', '<think>x</think><answer>4719 3803</answer>', '4719 3802'),
      line('text', 'no tags at all', 'the cat'),
      '{"answer": "cat", "response": "<think></think><answer>the cat</answer>", "type": "text", "id": 7}',
    ]);
    expect(await run(file)).toBe(
      [
        '{"reward":1,"formatOk":true,"extracted":"5 apples"}',
        '{"reward":1,"formatOk":true,"extracted":"C, A"}',
        `{"reward":${Math.exp(-0.5)},"formatOk":true,"extracted":"4719 3803"}`,
        '{"reward":0,"formatOk":false,"extracted":null}',
        `{"reward":${(2 / 3 + 0 + 2 / 3) / 3},"formatOk":true,"extracted":"the cat"}`,
        '',
      ].join('\n'),
    );
  });

  it('grades symbolic answers by value and letters beyond F, and reads a listing of options as no choice', async () => {
    const file = await jsonl('rules.jsonl', [
      line('numeric', '<think>x</think><answer>\\sqrt{12}</answer>', '2\\sqrt{3}'),
      line('numeric', '<think>x</think><answer>\\sqrt{2}</answer>', '\\sqrt{3}'),
      line('choice', '<think>x</think><answer>(G)</answer>', 'G'),
      line('choice', '<think>x</think><answer>A. 3 B. 4</answer>', 'A'),
    ]);
    const rewards = (await run(file)).trim().split('\n').map((l) => (JSON.parse(l) as { reward: number }).reward);
    expect(rewards).toEqual([1, 0, 1, 0]);
  });

  it('writes nothing for an empty file', async () => {
    expect(await run(await jsonl('empty.jsonl', ['', '']))).toBe('');
  });

  it.each([
    ['invalid JSON', ['{"type": "numeric"', line('numeric', 'r', '1')], /line 1: invalid JSON .*expected one object per line/],
    ['not an object', [line('numeric', 'r', '1'), '[1, 2]'], /line 2: expected a JSON object/],
    ['missing type', [line('numeric', 'r', '1'), '', '{"response": "r", "answer": "1"}'], /line 3: field "type": expected one of "numeric", "choice", "ocr", "text"; it is missing/],
    ['unknown type', [line('math', 'r', '1')], /line 1: field "type": expected one of .*; got "math"/],
    ['missing response', ['{"type": "ocr", "answer": "1"}'], /line 1: field "response": expected a string; it is missing/],
    ['non-string answer', [line('numeric', 'r', 7)], /line 1: field "answer": expected a string; got 7/],
  ])('rejects %s, naming the line and the field, and writes nothing', async (_name, lines, message) => {
    const file = await jsonl('bad.jsonl', lines);
    const out = new PassThrough();
    const write = vi.spyOn(out, 'write');
    const err: unknown = await gradeCommand(file, out).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SophiaError);
    expect((err as SophiaError).category).toBe('input');
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).toContain(file);
    expect(write).not.toHaveBeenCalled();
  });

  it('rejects a missing file', async () => {
    const file = path.join(dir, 'nope.jsonl');
    await expect(gradeCommand(file, new PassThrough())).rejects.toThrow(/--jsonl .*nope\.jsonl: cannot read the file \(no such file\)/);
  });

  it('is wired into the CLI, with --jsonl required', async () => {
    const error = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const write = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      expect(await main(['grade'])).toBe(2);
      expect(String(error.mock.calls[0]?.[0])).toMatch(/--jsonl FILE is required/);
      expect(await main(['grade', '--jsonl', path.join(dir, 'nope.jsonl')])).toBe(2);
      expect(String(error.mock.calls[1]?.[0])).toMatch(/cannot read the file/);
      expect(await main(['grade', '--bogus'])).toBe(2);
      expect(write).not.toHaveBeenCalled();
    } finally {
      vi.restoreAllMocks();
    }
  });

  it('documents every answer type in sophia grade --help, and the main usage points there', async () => {
    const log = vi.spyOn(console, 'log').mockImplementation(() => undefined);
    try {
      expect(await main(['grade', '--help'])).toBe(0);
      const help = String(log.mock.calls[0]?.[0]);
      for (const type of ANSWER_TYPES) expect(help).toMatch(new RegExp(`^  ${type} +\\S`, 'm')); // a row per type
      expect(help).toMatch(/ocr .*exp\(−WER\)/);
      expect(help).toMatch(/text .*1 when exact, else mean[\s\S]*ROUGE-1\/2\/L F1/);
      expect(help).toContain('formatOk false');
      expect(help).toMatch(/choice +the same set of option letters A–Z/);
      expect(help).toContain('\\sqrt{12} = 2\\sqrt{3}'); // symbolic answers compare by value
      expect(help).toContain('a listing "A. 3 B. 4"');
      expect(await main(['grade', '-h'])).toBe(0);
      expect(await main(['help'])).toBe(0);
      expect(String(log.mock.calls.at(-1)?.[0])).toContain('sophia grade --help');
    } finally {
      vi.restoreAllMocks();
    }
  });
});
