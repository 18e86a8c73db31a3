/**
 * The dataset reader on generated datasets in both source formats: good rows normalised, every bad-row reason
 * counted, the s3:// path through a Storage (a real LocalStorage standing in for the bucket), streaming witnessed by
 * counting reads, and the bad-share stop.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../common/errors';
import { ANSWER_FORMATS } from './prompt';
import { DatasetQualityError, openDataset } from './reader';
import { CountingStorage, easyR1Parquet, GIF_BYTES, jpegBytes, noisePng, pngBytes, sophiaRecord, tempDir, truncatedPng } from './testing/fixtures';
import type { DatasetOptions, DatasetRow } from './types';

function write(root: string, file: string, bytes: Uint8Array | string): void {
  mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
  writeFileSync(path.join(root, file), bytes);
}

async function readAll(options: DatasetOptions, deps = {}): Promise<{ rows: DatasetRow[]; reader: ReturnType<typeof openDataset> }> {
  const reader = openDataset(options, deps);
  const rows: DatasetRow[] = [];
  for await (const row of reader.rows()) rows.push(row);
  return { rows, reader };
}

describe('sophiavl format (SophiaVL-R1 JSON arrays + image paths)', () => {
  const root = tempDir('sophiavl');
  write(root, 'Math/clevr/images/1.png', pngBytes(30, 20));
  write(root, 'Chart/bars/2.jpg', jpegBytes(32, 24));
  write(root, 'OCR/docs/3.png', pngBytes(40, 40));
  write(root, 'Knowledge/a.png', pngBytes(16, 16));
  write(root, 'Math/broken.png', truncatedPng());
  write(root, 'Math/anim.gif', GIF_BYTES);
  write(root, 'Math/thin.png', pngBytes(402, 2));
  const records = [
    sophiaRecord({ problem_id: 1 }),
    sophiaRecord({ problem_id: 2, problem: 'Which bar is tallest?', problem_type: 'multiple choice', options: ['A. red', 'B. blue'], solution: '<answer>B</answer>', path: './Chart/bars/2.jpg', data_source: 'ChartQA' }),
    sophiaRecord({ problem_id: 3, problem_type: 'OCR', solution: '<answer>4719 3802</answer>', path: './OCR/docs/3.png' }),
    sophiaRecord({ problem_id: 4, problem_type: 'free-form', solution: '<answer>Lee Harvey Oswald</answer>', path: './Knowledge/a.png' }),
    sophiaRecord({ problem_id: 5, path: '' }), // missing-image
    sophiaRecord({ problem_id: 6, path: './Math/missing.png' }), // image-not-found
    sophiaRecord({ problem_id: 7, path: '../../etc/passwd' }), // image-outside-root
    sophiaRecord({ problem_id: 8, path: './Math/broken.png' }), // unreadable-image
    sophiaRecord({ problem_id: 9, path: './Math/anim.gif' }), // unsupported-image
    sophiaRecord({ problem_id: 10, solution: '<answer> </answer>' }), // empty-answer
    sophiaRecord({ problem_id: 11, problem_type: 'video-grounding' }), // unknown-problem-type
    sophiaRecord({ problem_id: 12, data_type: 'video' }), // unsupported-data-type
    sophiaRecord({ problem_id: 13, problem_type: 'multiple choice', options: ['A. 1', 'B. 2'], solution: '<answer>E</answer>' }), // bad-choice-answer
    sophiaRecord({ problem_id: 1 }), // duplicate-id
    sophiaRecord({ problem_id: 15, problem: '<image>' }), // missing-question
    sophiaRecord({ problem_id: 16, path: './Math/thin.png' }), // bad-aspect-ratio
  ];
  write(root, 'json/math.json', JSON.stringify(records, null, 2));
  write(root, 'json/extra.jsonl', `${JSON.stringify(sophiaRecord({ problem_id: 20 }))}\n{"problem_id": 21, "problem": \n`); // malformed-record
  const options: DatasetOptions = { format: 'sophiavl', location: path.join(root, 'json'), imageRoot: '..', maxBadShare: 1 };

  it('normalises good rows: id, source, category, prompt, images, answer in the grader notation', async () => {
    const { rows } = await readAll(options);
    expect(rows.map((r) => r.id)).toEqual(['20', '1', '2', '3', '4']); // files in path order: extra.jsonl, math.json
    const choice = rows.find((r) => r.id === '2')!;
    expect(choice).toMatchObject({ source: 'ChartQA', category: 'chart', answer: 'B', answerType: 'choice', problemType: 'multiple choice', options: ['A. red', 'B. blue'] });
    expect(choice.question.startsWith('Which bar is tallest?\nA. red\nB. blue\n')).toBe(true);
    expect(choice.question.endsWith(ANSWER_FORMATS.choice)).toBe(true);
    expect(choice.images).toEqual([expect.objectContaining({ mime: 'image/jpeg', width: 32, height: 24 })]);
    expect(rows.find((r) => r.id === '1')).toMatchObject({ category: 'math', answer: '3', answerType: 'numeric', source: 'CLEVR-Math' });
    expect(rows.find((r) => r.id === '3')).toMatchObject({ category: 'ocr', answer: '4719 3802', answerType: 'ocr' });
    expect(rows.find((r) => r.id === '4')).toMatchObject({ category: 'knowledge', answer: 'Lee Harvey Oswald', answerType: 'text' });
  });

  it('counts every bad row under its reason and locates the first ones', async () => {
    const { reader } = await readAll(options);
    expect(reader.report).toMatchObject({ read: 18, kept: 5 });
    expect(reader.report.bad).toEqual({
      'malformed-record': 1,
      'missing-image': 1,
      'image-not-found': 1,
      'image-outside-root': 1,
      'unreadable-image': 1,
      'unsupported-image': 1,
      'empty-answer': 1,
      'unknown-problem-type': 1,
      'unsupported-data-type': 1,
      'bad-choice-answer': 1,
      'duplicate-id': 1,
      'missing-question': 1,
      'bad-aspect-ratio': 1,
    });
    expect(reader.report.examples[0]).toMatchObject({ file: 'extra.jsonl', row: 1, reason: 'malformed-record' });
    expect(reader.report.examples[1]).toEqual({ file: 'math.json', row: 4, reason: 'missing-image', detail: 'no "path"' });
    expect(reader.report.examples).toHaveLength(10);
    expect(reader.report.files).toEqual([{ file: 'extra.jsonl', rows: 2 }, { file: 'math.json', rows: 16 }]);
  });

  it('stops when the bad share is over maxBadShare, naming file, row, reason and the setting', async () => {
    const attempt = readAll({ ...options, maxBadShare: 0.5 });
    await expect(attempt).rejects.toThrow(DatasetQualityError);
    await expect(attempt).rejects.toThrow(/13 of 18 rows are bad at the end .*> data\.maxBadShare 0\.5.*First: extra\.jsonl row 1: malformed-record .*math\.json row 4: missing-image/);
    await expect(attempt).rejects.toThrow(/raise data\.maxBadShare/);
  });

  it('checks the share early, after earlyCheckRows rows, before reading on', async () => {
    const reader = openDataset({ ...options, maxBadShare: 0.2, earlyCheckRows: 8 });
    const seen: string[] = [];
    await expect(
      (async () => {
        for await (const row of reader.rows()) seen.push(row.id);
      })(),
    ).rejects.toThrow(/after the first 8 rows/);
    expect(reader.report.read).toBe(8);
    expect(seen).toEqual(['20', '1', '2', '3', '4']);
  });
});

describe('easyr1 format (parquet with embedded images, JSONL and JSON with paths)', () => {
  it('reads parquet rows with image bytes, selected files only, counting bad rows', async () => {
    const root = tempDir('easyr1');
    write(root, 'imgs/a.png', pngBytes(50, 30));
    const png = pngBytes(30, 20);
    write(root, 'data/train-00000-of-00001.parquet', easyR1Parquet([
      { images: [{ bytes: png, path: null }], problem: '<image>Find x.', answer: '3' },
      { images: [{ bytes: jpegBytes(20, 20), path: 'ignored.jpg' }], problem: '<image>Find y.', answer: '$\\frac{40}{3}$' },
      { images: [], problem: 'No image', answer: '1' }, // missing-image
      { images: [{ bytes: null, path: null }], problem: 'Empty struct', answer: '1' }, // missing-image
      { images: [{ bytes: truncatedPng(), path: null }], problem: 'Broken', answer: '1' }, // unreadable-image
      { images: [{ bytes: png, path: null }], problem: 'No answer', answer: '' }, // empty-answer
      { images: [{ bytes: png, path: null }], problem: null, answer: '2' }, // missing-question
      { images: [{ bytes: null, path: 'imgs/a.png' }], problem: 'By path', answer: '5' },
    ], { rowGroupSize: 3 }));
    write(root, 'data/test-00000-of-00001.parquet', easyR1Parquet([{ images: [{ bytes: png, path: null }], problem: 'held out', answer: '1' }]));
    const { rows, reader } = await readAll({ format: 'easyr1', location: root, files: ['data/train-*.parquet'], maxBadShare: 1 });
    expect(rows.map((r) => [r.rawQuestion, r.answer, r.answerType, r.images[0]!.width])).toEqual([
      ['Find x.', '3', 'numeric', 30],
      ['Find y.', '\\frac{40}{3}', 'numeric', 20],
      ['By path', '5', 'numeric', 50],
    ]);
    expect(Buffer.from(rows[0]!.images[0]!.bytes).equals(Buffer.from(png))).toBe(true);
    expect(rows[0]!.source).toBe('data/train-00000-of-00001.parquet');
    expect(rows[0]!.id).toMatch(/^h[0-9a-f]{24}$/);
    expect(reader.report).toMatchObject({ read: 8, kept: 3, bad: { 'missing-image': 2, 'unreadable-image': 1, 'empty-answer': 1, 'missing-question': 1 } });
    expect(reader.report.files).toEqual([{ file: 'data/train-00000-of-00001.parquet', rows: 8 }]);
  });

  it('reads gzip-compressed parquet (hyparquet-compressors) and a problem_type column', async () => {
    const root = tempDir('easyr1-gzip');
    write(root, 'train.parquet', easyR1Parquet([
      { images: [{ bytes: pngBytes(8, 8), path: null }], problem: 'Pick one', answer: '(c)', problem_type: 'multiple choice' },
      { images: [{ bytes: pngBytes(8, 8), path: null }], problem: 'Read it', answer: 'EXIT', problem_type: 'OCR' },
    ], { codec: 'GZIP' }));
    const { rows } = await readAll({ format: 'easyr1', location: path.join(root, 'train.parquet') });
    expect(rows.map((r) => [r.answer, r.answerType])).toEqual([['C', 'choice'], ['EXIT', 'ocr']]);
  });

  it('reads JSONL and JSON arrays with configured columns and an image root', async () => {
    const root = tempDir('easyr1-json');
    write(root, 'pictures/p/1.png', pngBytes(12, 10));
    write(root, 'pictures/p/2.png', pngBytes(14, 10));
    const line = (q: string, gt: string, pics: string[]) => JSON.stringify({ question: q, gt, pics, uid: `u-${q}` });
    write(root, 'rows/a.jsonl', [line('one', '1', ['p/1.png']), line('two', '2', ['p/1.png', 'p/2.png']), line('three', '3', ['p/404.png'])].join('\n'));
    write(root, 'rows/b.json', `[${line('four', '4', ['p/2.png'])}]`);
    const { rows, reader } = await readAll({
      format: 'easyr1',
      location: path.join(root, 'rows'),
      imageRoot: path.join(root, 'pictures'),
      columns: { prompt: 'question', answer: 'gt', images: 'pics', id: 'uid' },
      defaultProblemType: 'free-form',
      maxBadShare: 0.5,
    });
    expect(rows.map((r) => [r.id, r.answerType, r.images.map((i) => i.width)])).toEqual([
      ['u-one', 'text', [12]],
      ['u-two', 'text', [12, 14]],
      ['u-four', 'text', [14]],
    ]);
    expect(reader.report.bad).toEqual({ 'image-not-found': 1 });
    expect(reader.report.examples[0]!.detail).toContain('pictures/p/404.png');
  });

  it('shrinks images over images.maxPixels and counts them', async () => {
    const root = tempDir('easyr1-resize');
    write(root, 'train.parquet', easyR1Parquet([{ images: [{ bytes: pngBytes(300, 200), path: null }], problem: 'Big', answer: '1' }]));
    const { rows, reader } = await readAll({ format: 'easyr1', location: root, images: { maxPixels: 23520 } });
    expect(rows[0]!.images[0]).toMatchObject({ width: 168, height: 112, mime: 'image/png', resizedFrom: { width: 300, height: 200 } });
    expect(reader.report.resizedImages).toBe(1);
  });
});

describe('s3:// locations through the Storage port', () => {
  it('reads the same rows, with the same ids, as from a local copy', async () => {
    const bucketDir = tempDir('bucket');
    const storage = new CountingStorage(bucketDir, { fsync: false });
    const parquet = easyR1Parquet([
      { images: [{ bytes: pngBytes(10, 10), path: null }], problem: 'a', answer: '1' },
      { images: [{ bytes: null, path: 'imgs/b.png' }], problem: 'b', answer: '2' },
    ]);
    await storage.put('geo/data/train.parquet', parquet);
    await storage.put('geo/imgs/b.png', pngBytes(11, 11));
    const local = tempDir('local-copy');
    write(local, 'data/train.parquet', parquet);
    write(local, 'imgs/b.png', pngBytes(11, 11));
    const fromS3 = await readAll({ format: 'easyr1', location: 's3://my-bucket/geo' }, { storageFor: (bucket: string) => (bucket === 'my-bucket' ? storage : undefined) });
    const fromLocal = await readAll({ format: 'easyr1', location: local });
    expect(fromS3.rows.map((r) => r.id)).toEqual(fromLocal.rows.map((r) => r.id));
    expect(fromS3.rows.map((r) => r.images[0]!.width)).toEqual([10, 11]);
    expect(storage.rangedGets).toBeGreaterThan(0);
  });

  it('yields the first parquet row after reading only its row group (ranged reads counted)', async () => {
    const storage = new CountingStorage(tempDir('bucket-stream'), { fsync: false });
    const rows = Array.from({ length: 20 }, (_, i) => ({ images: [{ bytes: noisePng(96, 96, i + 1), path: null }], problem: `q${i}`, answer: String(i) }));
    const parquet = easyR1Parquet(rows, { rowGroupSize: 2 });
    await storage.put('sets/big.parquet', parquet);
    const reader = openDataset({ format: 'easyr1', location: 's3://my-bucket/sets/big.parquet' }, { storageFor: () => storage });
    const iterator = reader.rows()[Symbol.asyncIterator]();
    expect((await iterator.next()).value).toMatchObject({ rawQuestion: 'q0' });
    const afterFirst = { gets: storage.rangedGets, bytes: storage.bytesRead };
    expect(afterFirst.bytes).toBeLessThan(parquet.length / 4); // the footer and one of ten row groups
    let count = 1;
    while (!(await iterator.next()).done) count++;
    expect(count).toBe(20);
    expect(storage.rangedGets).toBeGreaterThanOrEqual(afterFirst.gets + 9); // one read per further row group at least
    expect(storage.bytesRead).toBeGreaterThan(parquet.length * 0.9);
  });

  it('yields the first JSONL row before the file is read through', async () => {
    const storage = new CountingStorage(tempDir('bucket-jsonl'), { fsync: false });
    await storage.put('sets/img.png', pngBytes(8, 8));
    // 6 MB: several times the local adapter's 1 MiB read size, so reading through would show.
    const lines = Array.from({ length: 30000 }, (_, i) => JSON.stringify({ problem: `question ${i} ${'padding '.repeat(20)}`, answer: String(i), images: ['img.png'] }));
    const body = Buffer.from(lines.join('\n'));
    await storage.put('sets/rows.jsonl', body);
    const iterator = openDataset({ format: 'easyr1', location: 's3://my-bucket/sets/rows.jsonl' }, { storageFor: () => storage }).rows()[Symbol.asyncIterator]();
    expect((await iterator.next()).value).toMatchObject({ answer: '0' });
    expect(storage.streamedBytes).toBeLessThan(body.length / 2);
    await iterator.return(undefined);
  });
});

describe('refusals before any row', () => {
  it('names the field of a bad location or template', () => {
    expect(() => openDataset({ format: 'easyr1', location: 'data/geo' })).toThrow(ConfigError);
    expect(() => openDataset({ format: 'easyr1', location: 'data/geo' })).toThrow(/data\.location: "data\/geo" is a relative path/);
    expect(() => openDataset({ format: 'easyr1', location: '/d', template: 'Answer: {answer_format}' })).toThrow(/data\.template: has no \{question\}/);
    expect(() => openDataset({ format: 'easyr1', location: 's3://Bad_Bucket/x' })).toThrow(/not an S3 bucket name/);
    expect(() => openDataset({ format: 'csv' as never, location: '/d' })).toThrow(/data\.format/);
  });

  it('refuses a directory without data files, and a dataset with no usable row', async () => {
    const empty = tempDir('empty');
    await expect(readAll({ format: 'easyr1', location: empty })).rejects.toThrow(/no data files under/);
    const allBad = tempDir('all-bad');
    write(allBad, 'rows.jsonl', JSON.stringify({ problem: 'q', answer: '1', images: [] }));
    await expect(readAll({ format: 'easyr1', location: allBad, maxBadShare: 1 })).rejects.toThrow(/no usable rows/);
  });
});
