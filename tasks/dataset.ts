/**
 * Generating and storing the tiny world's datasets.
 *
 * `generateSplit` makes `perFamily` examples of each family for one split, interleaved, each from its own seed
 * (a hash of the run seed, split, family and index: the train and test seed sets are disjoint by construction,
 * and regenerating with the same settings gives the same bytes).
 *
 * `writeDataset` stores them through the storage port, claim-check style:
 *   runs/{runId}/data/{split}/shard-00000.jsonl   one example per line, the image as base64 PNG
 *   runs/{runId}/data/previews/{split}-{family}.png   an upscaled example image per family, for people
 *   runs/{runId}/data/manifest.json               written last: generator settings, counts, sha256 per shard
 * `readDataset` reads a split back, verifying every shard against the manifest.
 */
import { NotFoundError, SophiaError } from '../common/errors';
import { Rng } from '../engine/rng';
import { sha256Hex } from '../storage/hashing';
import { dataKey } from '../storage/keys';
import type { Storage } from '../storage/types';
import { GENERATORS } from './families';
import { decodePng, encodePng } from './render';
import { DIFFICULTY, type Example, FAMILIES, type Family, type Split, SPLITS } from './types';

const DATASET_FORMAT = 'sophia.dataset.v1';
const GENERATOR_VERSION = 1;

export interface DatasetSettings {
  /** Image side in pixels (the model's image.size). */
  imageSize: number;
  seed: number;
  /** Examples per family in each split. */
  perFamily: Record<Split, number>;
  /** Examples per shard file. */
  shardSize?: number;
}

export function exampleSeed(seed: number, split: Split, family: Family, index: number): number {
  let h = 0x811c9dc5 ^ seed;
  for (const ch of `${split}/${family}/${index}`) h = Math.imul(h ^ ch.charCodeAt(0), 16777619);
  return h >>> 0;
}

export function generateExample(family: Family, split: Split, index: number, imageSize: number, seed: number): Example {
  const exSeed = exampleSeed(seed, split, family, index);
  const generated = GENERATORS[family](new Rng(exSeed), imageSize, DIFFICULTY[split]);
  return { id: `${split}-${family}-${index}`, family, split, seed: exSeed, ...generated };
}

/** `perFamily` examples of every family, interleaved (counting, chart, ocr, math, choice, counting, …). */
export function generateSplit(split: Split, perFamily: number, imageSize: number, seed: number): Example[] {
  const out: Example[] = [];
  for (let i = 0; i < perFamily; i++) for (const family of FAMILIES) out.push(generateExample(family, split, i, imageSize, seed));
  return out;
}

interface ExampleRecord extends Omit<Example, 'image'> {
  image: { size: number; png: string };
}

function serializeExample(example: Example): string {
  const record: ExampleRecord = { ...example, image: { size: example.image.size, png: Buffer.from(encodePng(example.image)).toString('base64') } };
  return JSON.stringify(record);
}

function parseExample(line: string, where: string): Example {
  let record: ExampleRecord;
  try {
    record = JSON.parse(line) as ExampleRecord;
  } catch {
    throw new SophiaError('corrupt', `${where}: not a JSON line`);
  }
  for (const field of ['id', 'family', 'split', 'question', 'answer', 'answerType'] as const) {
    if (typeof record[field] !== 'string') throw new SophiaError('corrupt', `${where}: field "${field}" must be a string`);
  }
  if (!Array.isArray(record.steps) || typeof record.image?.png !== 'string') throw new SophiaError('corrupt', `${where}: fields "steps" and "image.png" are required`);
  return { ...record, image: decodePng(Buffer.from(record.image.png, 'base64')) };
}

export interface ShardEntry {
  key: string;
  count: number;
  size: number;
  sha256: string;
}

export interface DatasetManifest {
  format: typeof DATASET_FORMAT;
  generatorVersion: number;
  settings: DatasetSettings;
  splits: Record<Split, { count: number; byFamily: Record<Family, number>; shards: ShardEntry[] }>;
  previews: string[];
  createdAt: string;
}

const manifestKeyOf = (runId: string) => dataKey(runId, 'manifest.json');

export async function writeDataset(storage: Storage, runId: string, settings: DatasetSettings, now = new Date()): Promise<DatasetManifest> {
  const shardSize = settings.shardSize ?? 2000;
  const splits = {} as DatasetManifest['splits'];
  const previews: string[] = [];
  for (const split of SPLITS) {
    const examples = generateSplit(split, settings.perFamily[split], settings.imageSize, settings.seed);
    const shards: ShardEntry[] = [];
    for (let start = 0; start < examples.length; start += shardSize) {
      const chunk = examples.slice(start, start + shardSize);
      const key = dataKey(runId, `${split}/shard-${String(shards.length).padStart(5, '0')}.jsonl`);
      const body = new TextEncoder().encode(`${chunk.map(serializeExample).join('\n')}\n`);
      const written = await storage.put(key, body, { contentType: 'application/x-ndjson' });
      shards.push({ key, count: chunk.length, size: written.size, sha256: written.sha256 });
    }
    for (const family of FAMILIES) {
      const first = examples.find((e) => e.family === family);
      if (!first) continue;
      const key = dataKey(runId, `previews/${split}-${family}.png`);
      await storage.put(key, encodePng(first.image, 8), { contentType: 'image/png' });
      previews.push(key);
    }
    const byFamily = Object.fromEntries(FAMILIES.map((f) => [f, examples.filter((e) => e.family === f).length])) as Record<Family, number>;
    splits[split] = { count: examples.length, byFamily, shards };
  }
  const manifest: DatasetManifest = {
    format: DATASET_FORMAT,
    generatorVersion: GENERATOR_VERSION,
    settings,
    splits,
    previews,
    createdAt: now.toISOString(),
  };
  await storage.put(manifestKeyOf(runId), new TextEncoder().encode(`${JSON.stringify(manifest, null, 2)}\n`), { contentType: 'application/json' });
  return manifest;
}

export async function readDatasetManifest(storage: Storage, runId: string): Promise<DatasetManifest> {
  let bytes: Uint8Array;
  try {
    bytes = await storage.get(manifestKeyOf(runId));
  } catch (err) {
    if (err instanceof NotFoundError) {
      throw new SophiaError('not-found', `run ${runId} has no dataset (${manifestKeyOf(runId)} is missing)`, { hint: 'Generate it first (the prepareData stage or `sophia data`)' });
    }
    throw err;
  }
  const manifest = JSON.parse(new TextDecoder().decode(bytes)) as { format?: unknown } & DatasetManifest;
  if (manifest.format !== DATASET_FORMAT) {
    throw new SophiaError('corrupt', `${manifestKeyOf(runId)}: format ${JSON.stringify(manifest.format)}, expected ${DATASET_FORMAT as string}`);
  }
  return manifest;
}

/** Every example of a split, each shard verified against its sha256. */
export async function readDataset(storage: Storage, runId: string, split: Split): Promise<Example[]> {
  const manifest = await readDatasetManifest(storage, runId);
  const out: Example[] = [];
  for (const shard of manifest.splits[split].shards) {
    const bytes = await storage.get(shard.key);
    const sha = sha256Hex(bytes);
    if (sha !== shard.sha256 || bytes.length !== shard.size) {
      throw new SophiaError('corrupt', `dataset shard ${shard.key} has sha256 ${sha} (${bytes.length} bytes), the manifest records ${shard.sha256} (${shard.size} bytes)`, {
        hint: 'Regenerate the dataset for this run',
      });
    }
    const lines = new TextDecoder().decode(bytes).split('\n').filter((l) => l.length > 0);
    lines.forEach((line, i) => out.push(parseExample(line, `${shard.key}:${i + 1}`)));
  }
  return out;
}
