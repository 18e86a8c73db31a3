import { describe, expect, it } from 'vitest';
import { Rng } from '../engine/rng';
import { LocalStorage } from '../storage/local';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { exampleSeed, generateExample, generateSplit, readDataset, readDatasetManifest, writeDataset } from './dataset';
import { grade } from './grading';
import { decodePng, encodePng } from './render';
import { teacherResponse } from './teacher';
import { Tokenizer } from '../engine/model/tokenizer';
import { FAMILIES, SPLITS } from './types';

describe('task generators', () => {
  it('are deterministic from the seed', () => {
    for (const family of FAMILIES) {
      const a = generateExample(family, 'train', 7, 16, 42);
      const b = generateExample(family, 'train', 7, 16, 42);
      expect(a).toEqual(b);
      expect(generateExample(family, 'train', 8, 16, 42)).not.toEqual(a);
    }
  });

  it('give train and test disjoint seeds', () => {
    const train = new Set(generateSplit('train', 300, 16, 1).map((e) => e.seed));
    const test = generateSplit('test', 300, 16, 1).map((e) => e.seed);
    expect(test.filter((s) => train.has(s))).toEqual([]);
    expect(exampleSeed(1, 'train', 'ocr', 0)).not.toBe(exampleSeed(1, 'test', 'ocr', 0));
  });

  it('make answers the grader accepts from the teacher response, for every family and split', () => {
    const rng = new Rng(3);
    for (const split of SPLITS) {
      for (const e of generateSplit(split, 40, 16, 5)) {
        const result = grade(e.answerType, teacherResponse(e, rng), e.answer);
        expect({ id: e.id, reward: result.reward }).toEqual({ id: e.id, reward: 1 });
      }
    }
  });

  it('make ood harder: more objects, more bars, longer digit strings', () => {
    const objects = (split: 'train' | 'ood') => Math.max(...generateSplit(split, 60, 16, 2).filter((e) => e.family === 'counting').map((e) => (e.facts.squares as unknown[]).length));
    expect(objects('train')).toBeLessThanOrEqual(6);
    expect(objects('ood')).toBeGreaterThan(6);
    const bars = (split: 'train' | 'ood') => Math.max(...generateSplit(split, 60, 16, 2).filter((e) => e.family === 'chart').map((e) => (e.facts.heights as number[]).length));
    expect(bars('train')).toBeLessThanOrEqual(4);
    expect(bars('ood')).toBe(5);
    const digits = (split: 'train' | 'ood') => Math.max(...generateSplit(split, 60, 16, 2).filter((e) => e.family === 'ocr').map((e) => e.answer.replace(' ', '').length));
    expect(digits('train')).toBeLessThanOrEqual(4);
    expect(digits('ood')).toBeGreaterThan(4);
  });

  it('draw what the facts say (counting: one 2×2 square per counted cell)', () => {
    const e = generateExample('counting', 'test', 11, 16, 9);
    const lit = new Set<number>();
    for (let p = 0; p < 256; p++) if (e.image.rgb[p * 3]! + e.image.rgb[p * 3 + 1]! + e.image.rgb[p * 3 + 2]! > 0) lit.add(p);
    expect(lit.size).toBe((e.facts.squares as unknown[]).length * 4);
  });

  it('scale to 24-pixel images', () => {
    for (const family of FAMILIES) expect(generateExample(family, 'ood', 1, 24, 1).image).toMatchObject({ width: 24, height: 24 });
  });
});

describe('tokenizer', () => {
  const tok = new Tokenizer();

  it('round-trips questions and responses, tags as single tokens', () => {
    const text = '<think>red at 2 7 11. so red = 3</think><answer>3</answer>';
    const ids = tok.encode(text);
    expect(tok.decode(ids)).toBe(text);
    expect(ids.filter((id) => id >= 3 && id <= 6)).toEqual([3, 4, 5, 6]);
    for (const e of generateSplit('ood', 20, 16, 4)) {
      expect(tok.decode(tok.prompt(e.question))).toBe(e.question);
      expect(tok.decode(tok.response(teacherResponse(e, new Rng(1))))).toBe(teacherResponse(e, new Rng(1)));
    }
  });

  it('marks prompts with <bos> and responses with <eos>, which decode leaves out', () => {
    expect(tok.prompt('hi')[0]).toBe(1);
    expect(tok.response('hi').at(-1)).toBe(2);
    expect(tok.decode([1, ...tok.encode('hi'), 2, 0])).toBe('hi');
  });

  it('fails clearly on characters outside the alphabet', () => {
    expect(() => tok.encode('how many Z?')).toThrow(/character "Z" \(U\+005A\) at position 9 is not in the alphabet/);
    expect(() => tok.encode('é')).toThrow(/U\+00E9/);
    expect(() => tok.decode([tok.vocabSize])).toThrow(/outside/);
  });

  it('fits a 64-entry vocabulary', () => {
    expect(tok.vocabSize).toBeLessThanOrEqual(64);
  });
});

describe('datasets in storage', () => {
  it('write shards with a manifest and read them back verified', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sophia-data-'));
    try {
      const storage = new LocalStorage(dir);
      const manifest = await writeDataset(storage, 'r1', { imageSize: 16, seed: 3, perFamily: { train: 30, test: 4, ood: 4 }, shardSize: 64 });
      expect(manifest.splits.train.count).toBe(150);
      expect(manifest.splits.train.shards.length).toBe(3);
      expect(manifest.splits.test.byFamily).toEqual({ counting: 4, chart: 4, ocr: 4, math: 4, choice: 4 });
      expect(manifest.previews).toContain('runs/r1/data/previews/test-ocr.png');
      const train = await readDataset(storage, 'r1', 'train');
      expect(train).toEqual(generateSplit('train', 30, 16, 3));
      expect((await readDatasetManifest(storage, 'r1')).settings).toMatchObject({ seed: 3 });
      // A flipped byte in a shard is detected.
      const shardKey = manifest.splits.test.shards[0]!.key;
      const bytes = await storage.get(shardKey);
      bytes[10] = bytes[10]! ^ 1;
      await storage.put(shardKey, bytes);
      await expect(readDataset(storage, 'r1', 'test')).rejects.toThrow(/dataset shard .* has sha256/);
      await expect(readDatasetManifest(storage, 'r2')).rejects.toThrow(/run r2 has no dataset/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('round-trips images through PNG', () => {
    const e = generateExample('chart', 'train', 2, 16, 1);
    expect(decodePng(encodePng(e.image)).rgb).toEqual(e.image.rgb);
  });
});
