import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveRunConfig } from '../config/run-config';
import { LocalStorage } from '../storage/local';
import { readDataset, readDatasetManifest } from '../tasks/dataset';
import { pixelsOf } from '../tasks/images';
import { promptOf } from '../tasks/prompt';
import { DatasetQualityError } from './reader';
import { type SourcedSettings, writeSourcedDataset } from './run-dataset';
import { splitOf } from './split';
import { easyR1Parquet, jpegBytes, tempDir, trainingSetRows } from './testing/fixtures';

function dataset(rows = trainingSetRows(40, 2)): string {
  const root = tempDir('run-dataset');
  mkdirSync(path.join(root, 'data'));
  writeFileSync(path.join(root, 'data', 'train-00000-of-00001.parquet'), easyR1Parquet(rows));
  return root;
}

const settingsFor = (location: string, extra: Partial<SourcedSettings['source']> = {}, shardSize = 8): SourcedSettings => ({
  source: { format: 'easyr1', location, maxBadShare: 0.1, testShare: 0.25, ...extra },
  shardSize,
});

describe('a real dataset as a run\'s dataset (writeSourcedDataset)', () => {
  it('streams every good row into train or test by the hash of its id, in shards, and records the read with its bad rows by reason', async () => {
    const storage = new LocalStorage(tempDir('store'));
    const settings = settingsFor(dataset());
    const manifest = await writeSourcedDataset(storage, 'r1', settings);
    expect(manifest.read).toMatchObject({ read: 42, kept: 40, bad: { 'missing-image': 1, 'empty-answer': 1 } });
    expect(manifest.read?.examples.map((e) => [e.row, e.reason])).toEqual([[40, 'missing-image'], [41, 'empty-answer']]);
    expect(manifest.splits.train.count + manifest.splits.test.count).toBe(40);
    expect(manifest.splits.ood).toEqual({ count: 0, byFamily: {}, shards: [] });
    expect(manifest.splits.test.count).toBeGreaterThan(0);
    // Shards of shardSize lines (the last one shorter), each verified when read back.
    expect(manifest.splits.train.shards.map((s) => s.count).slice(0, -1).every((n) => n === 8)).toBe(true);
    const [train, test] = [await readDataset(storage, 'r1', 'train'), await readDataset(storage, 'r1', 'test')];
    for (const e of [...train, ...test]) expect(e.split).toBe(splitOf(e.id, { test: 0.25, validation: 0 }) === 'test' ? 'test' : 'train');
    expect(new Set([...train, ...test].map((e) => e.family))).toEqual(new Set(['numerical', 'OCR']));
    expect(manifest.splits.train.byFamily.numerical! + (manifest.splits.test.byFamily.numerical ?? 0)).toBe(20);
    // Answers in the grader's notation, the template applied, images kept as their PNG bytes and decoded for prompts.
    const ocr = [...train, ...test].find((e) => e.question.includes('panel 5'))!;
    expect(ocr).toMatchObject({ answer: '1005', answerType: 'ocr', steps: [], seed: 0 });
    expect(ocr.question).toMatch(/<think>/);
    expect(ocr.image).toMatchObject({ mime: 'image/png', width: 56, height: 28 });
    const prompt = promptOf(ocr);
    expect(prompt.messages[0]!.content[0]).toMatchObject({ type: 'image', image: { width: 56, height: 28 } });
    expect(pixelsOf(ocr.image).rgb.subarray(0, 3)).toEqual(new Uint8Array([(5 * 37) & 255, (5 * 91) & 255, 128]));
    expect(manifest.previews.some((k) => /previews\/train-ocr\.png$/.test(k))).toBe(true);
    expect(((await readDatasetManifest(storage, 'r1')).settings as SourcedSettings).source.location).toBe(settings.source.location);
  });

  it('puts an example in the same split whatever else the dataset holds: a grown dataset keeps its old test examples in test', async () => {
    const [small, grown] = [new LocalStorage(tempDir('small')), new LocalStorage(tempDir('grown'))];
    await writeSourcedDataset(small, 'r', settingsFor(dataset(trainingSetRows(20))));
    await writeSourcedDataset(grown, 'r', settingsFor(dataset(trainingSetRows(40))));
    const testIds = async (s: LocalStorage) => new Set((await readDataset(s, 'r', 'test')).map((e) => e.question));
    const [before, after] = [await testIds(small), await testIds(grown)];
    for (const q of before) expect(after.has(q)).toBe(true);
    expect(after.size).toBeGreaterThan(before.size);
  });

  it('keeps JPEG images as JPEG and decodes them for the prompt; `limit` reads only so many good rows', async () => {
    const rows = trainingSetRows(6).map((r, i) => (i === 0 ? { ...r, images: [{ bytes: jpegBytes(40, 20), path: null }] } : r));
    const storage = new LocalStorage(tempDir('jpeg'));
    const manifest = await writeSourcedDataset(storage, 'r', settingsFor(dataset(rows), { limit: 4, testShare: 0.01 }));
    expect(manifest.read).toMatchObject({ read: 4, kept: 4 });
    const first = (await readDataset(storage, 'r', 'train')).find((e) => e.question.includes('picture 0'))!;
    expect(first.image).toMatchObject({ mime: 'image/jpeg', width: 40, height: 20 });
    const pixels = pixelsOf(first.image);
    expect([pixels.width, pixels.height, pixels.rgb.length]).toEqual([40, 20, 40 * 20 * 3]);
  });

  it('stops on too many bad rows with the file, row and reason, and writes no manifest: no stage can start on it', async () => {
    const storage = new LocalStorage(tempDir('bad'));
    const err = await writeSourcedDataset(storage, 'r', settingsFor(dataset(trainingSetRows(10, 4)), { maxBadShare: 0.1 })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatasetQualityError);
    expect((err as Error).message).toMatch(/4 of 14 rows are bad at the end .*data\.source\.maxBadShare 0\.1.*data\/train-00000-of-00001\.parquet row 10: missing-image/);
    await expect(readDatasetManifest(storage, 'r')).rejects.toThrow(/has no dataset/);
  });
});

describe('data.source in a run config', () => {
  const base = { extends: 'ci', engine: { kind: 'torch', model: '/models/qwen' }, sft: { steps: 0 }, stages: ['prepareData', 'sftWarmup', 'trustGrpo', 'evaluation'], rl: { variant: 'grpo' } };
  const source = { format: 'easyr1', location: '/data/geo3k' };

  it('is accepted with the torch engine and no SFT steps, with testShare 0.05 by default', () => {
    expect(resolveRunConfig({ ...base, data: { source } }, 'test').data.source).toEqual({ ...source, testShare: 0.05 });
  });

  it.each([
    ['the onnx engine', { engine: { kind: 'onnx' } }, /data\.source: a real dataset needs a Hugging Face vision-language model/],
    ['SFT steps', { sft: { steps: 10 } }, /sft\.steps: 10 SFT steps need teacher responses.*set sft\.steps: 0/],
    ['the programmatic judge', { stages: undefined, rewardModel: { annotator: { kind: 'programmatic' } }, rl: { variant: 'trust-grpo' } }, /rewardModel\.annotator: the programmatic judge checks responses against the tiny world's true steps.*kind: judge/],
  ])('is refused with %s, naming the field and the fix', (_name, overrides, message) => {
    expect(() => resolveRunConfig({ ...base, ...overrides, data: { source } }, 'test')).toThrow(message);
  });

  it.each([
    [{ location: 'relative/dir' }, /data\.source\.location/],
    [{ format: 'csv' }, /data\.source\.format/],
    [{ testShare: 1 }, /data\.source\.testShare/],
    [{ template: 'no placeholders' }, /data\.source\.template/],
    [{ maxBadShare: 2 }, /data\.source\.maxBadShare/],
  ])('refuses a bad field %j by name', (bad, message) => {
    expect(() => resolveRunConfig({ ...base, data: { source: { ...source, ...bad } } }, 'test')).toThrow(message);
  });
});
