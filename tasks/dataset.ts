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
import type { ReadReport } from '../datasets/types';
import { fileOf, isEncoded } from './images';
import { DIFFICULTY, type EncodedImage, type Example, type ExampleImage, FAMILIES, type Family, type Split, SPLITS, type TinyExample } from './types';

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

export function generateExample(family: Family, split: Split, index: number, imageSize: number, seed: number): TinyExample {
  const exSeed = exampleSeed(seed, split, family, index);
  const generated = GENERATORS[family](new Rng(exSeed), imageSize, DIFFICULTY[split]);
  return { id: `${split}-${family}-${index}`, family, split, seed: exSeed, ...generated };
}

/** `perFamily` examples of every family, interleaved (counting, chart, ocr, math, choice, counting, …). */
export function generateSplit(split: Split, perFamily: number, imageSize: number, seed: number): TinyExample[] {
  const out: TinyExample[] = [];
  for (let i = 0; i < perFamily; i++) for (const family of FAMILIES) out.push(generateExample(family, split, i, imageSize, seed));
  return out;
}

/** An image as a shard line stores it: pixels as base64 PNG (older datasets wrote `size` for their square side), or a
 * real dataset's file bytes as base64 with their type. */
type ImageRecord = { width?: number; height?: number; size?: number; png: string } | { width: number; height: number; mime: EncodedImage['mime']; data: string };

interface ExampleRecord extends Omit<Example, 'image' | 'moreImages'> {
  image: ImageRecord;
  moreImages?: ImageRecord[];
}

function imageRecord(image: ExampleImage): ImageRecord {
  if (isEncoded(image)) return { width: image.width, height: image.height, mime: image.mime, data: Buffer.from(image.bytes).toString('base64') };
  return { width: image.width, height: image.height, png: Buffer.from(encodePng(image)).toString('base64') };
}

function parseImage(record: ImageRecord | undefined, where: string): ExampleImage {
  if (record && 'png' in record && typeof record.png === 'string') return decodePng(Buffer.from(record.png, 'base64'));
  if (record && 'data' in record && typeof record.data === 'string' && (record.mime === 'image/png' || record.mime === 'image/jpeg') && Number.isInteger(record.width) && Number.isInteger(record.height)) {
    return { width: record.width, height: record.height, mime: record.mime, bytes: new Uint8Array(Buffer.from(record.data, 'base64')) };
  }
  throw new SophiaError('corrupt', `${where}: an image needs "png", or "data" with "mime", "width" and "height"`);
}

export function serializeExample(example: Example): string {
  const { image, moreImages, ...rest } = example;
  const record: ExampleRecord = { ...rest, image: imageRecord(image), ...(moreImages?.length ? { moreImages: moreImages.map(imageRecord) } : {}) };
  return JSON.stringify(record);
}

export function parseExample(line: string, where: string): Example {
  let record: ExampleRecord;
  try {
    record = JSON.parse(line) as ExampleRecord;
  } catch {
    throw new SophiaError('corrupt', `${where}: not a JSON line`);
  }
  for (const field of ['id', 'family', 'split', 'question', 'answer', 'answerType'] as const) {
    if (typeof record[field] !== 'string') throw new SophiaError('corrupt', `${where}: field "${field}" must be a string`);
  }
  if (!Array.isArray(record.steps)) throw new SophiaError('corrupt', `${where}: field "steps" is required`);
  const { moreImages, ...rest } = record;
  return { ...rest, image: parseImage(record.image, `${where} image`), ...(moreImages?.length ? { moreImages: moreImages.map((m, i) => parseImage(m, `${where} moreImages[${i}]`)) } : {}) };
}

export interface ShardEntry {
  key: string;
  count: number;
  size: number;
  sha256: string;
}

export interface SplitEntry {
  count: number;
  /** Examples per family (a real dataset's: per category or problem type), in the order first met. */
  byFamily: Record<string, number>;
  shards: ShardEntry[];
}

export interface DatasetManifest<S = DatasetSettings> {
  format: typeof DATASET_FORMAT;
  generatorVersion: number;
  /** What made the dataset: the tiny world's generator settings, or a real dataset's source settings. */
  settings: S;
  splits: Record<Split, SplitEntry>;
  previews: string[];
  /** A real dataset's read: rows read, kept and skipped per reason (datasets/ `ReadReport`). */
  read?: ReadReport;
  createdAt: string;
}

const manifestKeyOf = (runId: string) => dataKey(runId, 'manifest.json');

/** A family name as a storage key segment. */
const keySegment = (name: string) => name.toLowerCase().replace(/[^a-z0-9_-]+/g, '-').replace(/^-+|-+$/g, '') || 'other';

/**
 * Writes a run's examples one at a time, in shards of `shardSize` lines per split (so a dataset never has to be in
 * memory whole), a preview image for the first example of each family in each split, and the manifest last: a
 * reader sees a dataset whole or not at all.
 */
export class DatasetWriter {
  private readonly splits = new Map<Split, SplitEntry & { lines: string[] }>();
  private readonly previews: string[] = [];

  constructor(
    private readonly storage: Storage,
    private readonly runId: string,
    private readonly shardSize: number,
  ) {}

  async add(example: Example): Promise<void> {
    let split = this.splits.get(example.split);
    if (!split) this.splits.set(example.split, (split = { count: 0, byFamily: {}, shards: [], lines: [] }));
    if (split.byFamily[example.family] === undefined) {
      split.byFamily[example.family] = 0;
      const { bytes, mime } = fileOf(example.image, 8);
      const key = dataKey(this.runId, `previews/${example.split}-${keySegment(example.family)}.${mime === 'image/png' ? 'png' : 'jpg'}`);
      await this.storage.put(key, bytes, { contentType: mime });
      this.previews.push(key);
    }
    split.byFamily[example.family]!++;
    split.count++;
    split.lines.push(serializeExample(example));
    if (split.lines.length >= this.shardSize) await this.flush(example.split, split);
  }

  private async flush(name: Split, split: SplitEntry & { lines: string[] }): Promise<void> {
    if (split.lines.length === 0) return;
    const key = dataKey(this.runId, `${name}/shard-${String(split.shards.length).padStart(5, '0')}.jsonl`);
    const body = new TextEncoder().encode(`${split.lines.join('\n')}\n`);
    const written = await this.storage.put(key, body, { contentType: 'application/x-ndjson' });
    split.shards.push({ key, count: split.lines.length, size: written.size, sha256: written.sha256 });
    split.lines = [];
  }

  /** Writes what is left and then the manifest; every split is listed, an empty one with no shards. */
  async finish<S>(settings: S, now = new Date(), read?: ReadReport): Promise<DatasetManifest<S>> {
    const splits = {} as DatasetManifest['splits'];
    for (const name of SPLITS) {
      const split = this.splits.get(name) ?? { count: 0, byFamily: {}, shards: [], lines: [] };
      await this.flush(name, split);
      splits[name] = { count: split.count, byFamily: split.byFamily, shards: split.shards };
    }
    const manifest: DatasetManifest<S> = { format: DATASET_FORMAT, generatorVersion: GENERATOR_VERSION, settings, splits, previews: this.previews, ...(read ? { read } : {}), createdAt: now.toISOString() };
    await this.storage.put(manifestKeyOf(this.runId), new TextEncoder().encode(`${JSON.stringify(manifest, null, 2)}\n`), { contentType: 'application/json' });
    return manifest;
  }
}

export async function writeDataset(storage: Storage, runId: string, settings: DatasetSettings, now = new Date()): Promise<DatasetManifest> {
  const writer = new DatasetWriter(storage, runId, settings.shardSize ?? 2000);
  for (const split of SPLITS) {
    for (const example of generateSplit(split, settings.perFamily[split], settings.imageSize, settings.seed)) await writer.add(example);
  }
  return writer.finish(settings, now);
}

export async function readDatasetManifest(storage: Storage, runId: string): Promise<DatasetManifest<unknown>> {
  let bytes: Uint8Array;
  try {
    bytes = await storage.get(manifestKeyOf(runId));
  } catch (err) {
    if (err instanceof NotFoundError) {
      throw new SophiaError('not-found', `run ${runId} has no dataset (${manifestKeyOf(runId)} is missing)`, { hint: 'Generate it first (the prepareData stage or `sophia data`)' });
    }
    throw err;
  }
  const manifest = JSON.parse(new TextDecoder().decode(bytes)) as { format?: unknown } & DatasetManifest<unknown>;
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
