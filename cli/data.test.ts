import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { easyR1Parquet, pngBytes, tempDir } from '../datasets/testing/fixtures';
import { type DataCheck, dataCommand } from './data';

let root = '';
const image = (seed: number) => [{ bytes: pngBytes(40 + seed, 30, [seed * 20, 100, 50]), path: null }];

beforeAll(() => {
  root = tempDir('data-check');
  const rows = [
    ...Array.from({ length: 8 }, (_, i) => ({ images: image(i), problem: `<image>What is ${i} + 1?`, answer: String(i + 1) })),
    { images: image(9), problem: '<image>Which is larger? A. 1 B. 2', answer: 'B', problem_type: 'multiple choice' },
    { images: null, problem: '<image>No image?', answer: '3' },
  ];
  mkdirSync(path.join(root, 'ok'));
  writeFileSync(path.join(root, 'ok', 'train-00000.parquet'), easyR1Parquet(rows, { rowGroupSize: 4 }));
}, 60_000);
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function run(args: string[]): Promise<{ code: number; text: string }> {
  const out = new PassThrough();
  let text = '';
  out.on('data', (c: Buffer) => (text += c.toString()));
  const code = await dataCommand(args, {}, out);
  return { code, text };
}

describe('sophia data check', () => {
  it('reports kept and skipped rows by reason, answer types and the split, and exits 1 past the bad share', async () => {
    const lenient = await run(['check', '--format', 'easyr1', '--location', path.join(root, 'ok'), '--max-bad-share', '0.2', '--json']);
    expect(lenient.code).toBe(0);
    const check = JSON.parse(lenient.text) as DataCheck;
    expect(check.report).toMatchObject({ read: 10, kept: 9, bad: { 'missing-image': 1 } });
    expect(check.report.examples[0]).toMatchObject({ file: 'train-00000.parquet', row: 9, reason: 'missing-image' });
    expect(check.answerTypes).toEqual({ numeric: 8, choice: 1 });
    expect(check.splits.train + check.splits.validation + check.splits.test).toBe(9);

    // The default tolerance (1 %): the same data stops, as a run would before training, naming the row.
    const strict = await run(['check', '--format', 'easyr1', '--location', path.join(root, 'ok')]);
    expect(strict.code).toBe(1);
    expect(strict.text).toMatch(/10 rows read in 1 file\(s\); 9 kept, 1 skipped \(10\.00 %\)/);
    expect(strict.text).toMatch(/train-00000\.parquet row 9: missing-image/);
    expect(strict.text).toMatch(/stopped: .*train-00000\.parquet.*row 9.*missing-image/s);
  });

  it('stops after --limit rows, and refuses bad flags naming them', async () => {
    const limited = JSON.parse((await run(['check', '--format', 'easyr1', '--location', path.join(root, 'ok'), '--limit', '4', '--json'])).text) as DataCheck;
    expect(limited.report.read).toBe(4);
    await expect(run(['check', '--format', 'parquet', '--location', root])).rejects.toThrow(/--format must be sophiavl or easyr1/);
    await expect(run(['check', '--format', 'easyr1'])).rejects.toThrow(/--format and --location are required/);
    await expect(run(['check', '--format', 'easyr1', '--location', root, '--test', '2'])).rejects.toThrow(/--test must be a number in \[0, 1\]/);
    await expect(run(['check', '--format', 'easyr1', '--location', 'relative/dir'])).rejects.toThrow(/data\.location/);
    await expect(run(['list'])).rejects.toThrow(/the data command is "data check"/);
  });
});
