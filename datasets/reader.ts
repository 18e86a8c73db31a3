/**
 * Reading a real dataset: `openDataset(options).rows()` streams normalised `DatasetRow`s from every data file of a
 * local or s3:// location, while `report` counts what was read, kept and skipped, per reason.
 *
 *   const reader = openDataset({ format: 'easyr1', location: 's3://data/geometry3k', files: ['data/train-*.parquet'] });
 *   for await (const row of reader.rows()) write(row);   // one row in memory at a time (one parquet row group)
 *   reader.report                                          // { read, kept, bad: { 'missing-image': 2 }, examples, … }
 *
 * Files are read one after another in path order; rows in file order. Nothing is dropped silently: every skipped
 * row is counted under its `BadReason`, and the first few are located in `report.examples`.
 *
 * The stop rule: the share of bad rows (bad / read) is checked once when `earlyCheckRows` rows have been read and
 * again at the end. Above `maxBadShare` the read stops with a `DatasetQualityError` naming the file, row and reason
 * of the first bad rows and the setting to change. The prepare-data stage reads the whole dataset before any
 * training starts, so a bad dataset stops the run there; the early check stops a misconfigured one (a wrong image
 * root makes every row bad) after a few seconds instead of after a full pass. A dataset that yields no row at all
 * is refused too.
 */
import * as path from 'node:path';
import { ConfigError, SophiaError } from '../common/errors';
import { openStorage } from '../storage/open';
import { type DatasetFiles, type DatasetLocation, LocalDatasetFiles, openLocation, parseDatasetLocation, selectDataFiles, StorageDatasetFiles, type StorageForBucket } from './files';
import { contentId, type Draft, type ImageRef, mapRow } from './formats';
import { checkImage, QWEN_IMAGE_DEFAULTS } from './images';
import { jsonRows } from './json-rows';
import { parquetRows } from './parquet';
import { DEFAULT_PROMPT_TEMPLATE, renderPrompt, validateTemplate } from './prompt';
import { type BadReason, type BadRowExample, DATASET_FORMATS, type DatasetImage, type DatasetOptions, type DatasetRow, MAX_BAD_EXAMPLES, type RawRow, type ReadReport } from './types';

export const DEFAULT_MAX_BAD_SHARE = 0.01;
export const DEFAULT_EARLY_CHECK_ROWS = 1000;

/** Too many bad rows: the dataset (or its settings) must be fixed before training on it. */
export class DatasetQualityError extends SophiaError {
  constructor(
    message: string,
    readonly report: ReadReport,
    hint: string,
  ) {
    super('input', message, { hint });
  }
}

export interface DatasetReaderDeps {
  /** The Storage holding an S3 bucket's keys; default: S3 configured from the SOPHIA_S3_* environment. */
  storageFor?: StorageForBucket;
  /** Where these options sit in the run config, for messages (default "data"). */
  configPath?: string;
}

/** Checks options once, before any I/O; throws a `ConfigError` naming the field. Returns them with defaults. */
export function validateDatasetOptions(options: DatasetOptions, configPath = 'data'): Required<Pick<DatasetOptions, 'template' | 'maxBadShare' | 'earlyCheckRows'>> & DatasetOptions {
  if (!(DATASET_FORMATS as readonly string[]).includes(options.format)) {
    throw new ConfigError(`${configPath}.format`, `${JSON.stringify(options.format)} is not a dataset format`, { hint: `Use one of ${DATASET_FORMATS.join(', ')}` });
  }
  parseDatasetLocation(options.location, `${configPath}.location`);
  const template = options.template ?? DEFAULT_PROMPT_TEMPLATE;
  validateTemplate(template, `${configPath}.template`);
  const maxBadShare = options.maxBadShare ?? DEFAULT_MAX_BAD_SHARE;
  if (!(maxBadShare >= 0 && maxBadShare <= 1)) throw new ConfigError(`${configPath}.maxBadShare`, `must be in [0, 1] (got ${maxBadShare})`);
  const earlyCheckRows = options.earlyCheckRows ?? DEFAULT_EARLY_CHECK_ROWS;
  if (!Number.isInteger(earlyCheckRows) || earlyCheckRows < 1) throw new ConfigError(`${configPath}.earlyCheckRows`, `must be a positive integer (got ${earlyCheckRows})`);
  if (options.limit !== undefined && !(Number.isInteger(options.limit) && options.limit >= 1)) throw new ConfigError(`${configPath}.limit`, `must be a positive integer (got ${options.limit})`);
  for (const [name, value] of Object.entries(options.images ?? {})) {
    if (!Number.isInteger(value) || (value as number) < 1) throw new ConfigError(`${configPath}.images.${name}`, `must be a positive integer (got ${String(value)})`);
  }
  return { ...options, template, maxBadShare, earlyCheckRows };
}

export function openDataset(options: DatasetOptions, deps: DatasetReaderDeps = {}): DatasetReader {
  return new DatasetReader(options, deps);
}

export class DatasetReader {
  readonly report: ReadReport = { read: 0, kept: 0, bad: {}, examples: [], files: [], resizedImages: 0 };
  private readonly options: ReturnType<typeof validateDatasetOptions>;
  private readonly configPath: string;
  private readonly storageFor: StorageForBucket;
  private readonly seen = new Set<string>();

  constructor(options: DatasetOptions, deps: DatasetReaderDeps = {}) {
    this.configPath = deps.configPath ?? 'data';
    this.options = validateDatasetOptions(options, this.configPath);
    this.storageFor = deps.storageFor ?? ((bucket) => openStorage(`s3://${bucket}`, process.env));
  }

  async *rows(): AsyncGenerator<DatasetRow> {
    const { files, single } = await openLocation(parseDatasetLocation(this.options.location, `${this.configPath}.location`), this.storageFor);
    const imageFiles = this.imageRoot(files);
    const dataFiles = single !== undefined ? [{ path: single, size: (await files.size(single)) ?? 0 }] : selectDataFiles(await files.list(), this.options.files);
    if (dataFiles.length === 0) {
      throw new SophiaError('not-found', `no data files under ${files.location}${this.options.files ? ` match ${JSON.stringify(this.options.files)}` : ' (.parquet, .jsonl or .json)'}`, {
        hint: `Check ${this.configPath}.location and ${this.configPath}.files`,
      });
    }
    const { limit } = this.options;
    reading: for (const entry of dataFiles) {
      const fileReport = { file: entry.path, rows: 0 };
      this.report.files.push(fileReport);
      for await (const raw of this.records(files, entry.path, entry.size)) {
        fileReport.rows++;
        this.report.read++;
        const row = 'error' in raw ? undefined : await this.normalise(raw, imageFiles);
        if (row) {
          this.report.kept++;
          yield row;
        }
        if (this.report.read === this.options.earlyCheckRows) this.checkShare(`after the first ${this.report.read} rows`);
        if (limit !== undefined && this.report.kept >= limit) break reading;
      }
    }
    this.checkShare('at the end');
    if (this.report.kept === 0) {
      throw new DatasetQualityError(`no usable rows in ${files.location} (${this.report.read} read)`, this.report, `Check ${this.configPath}.format and the column names`);
    }
  }

  /** Raw records of one file; a record that does not parse is counted here. */
  private async *records(files: DatasetFiles, file: string, size: number): AsyncGenerator<RawRow | { error: true }> {
    let row = 0;
    if (/\.parquet$/i.test(file)) {
      for await (const record of parquetRows(files, file, size)) yield { file, row: row++, record };
      return;
    }
    for await (const parsed of jsonRows(() => files.stream(file), file, `${files.location}/${file}`)) {
      if ('error' in parsed) {
        this.bad({ file, row: row++, reason: 'malformed-record', detail: parsed.error });
        yield { error: true };
      } else yield { file, row: row++, record: parsed.record };
    }
  }

  /** Where image paths resolve: `imageRoot` (absolute, s3://, or relative to the data root), else the data root. */
  private imageRoot(files: DatasetFiles): DatasetFiles {
    const root = this.options.imageRoot?.trim();
    if (!root) return files;
    const field = `${this.configPath}.imageRoot`;
    if (root.startsWith('/') || /^[a-z][a-z0-9+.-]*:\/\//i.test(root)) {
      const location: DatasetLocation = parseDatasetLocation(root, field);
      return location.kind === 'local' ? new LocalDatasetFiles(location.path) : new StorageDatasetFiles(this.storageFor(location.bucket), location.prefix, location.uri);
    }
    if (files instanceof LocalDatasetFiles) return new LocalDatasetFiles(path.resolve(files.root, root));
    const storageFiles = files as StorageDatasetFiles;
    const prefix = path.posix.normalize(`${storageFiles.prefix}/${root}`).replace(/^\/+|\/+$/g, '');
    if (prefix.startsWith('..')) throw new ConfigError(field, `${JSON.stringify(root)} leaves the bucket`, { hint: 'Give s3://BUCKET/PREFIX of the images' });
    return new StorageDatasetFiles(storageFiles.storage, prefix === '.' ? '' : prefix);
  }

  private bad(example: BadRowExample): undefined {
    this.report.bad[example.reason] = (this.report.bad[example.reason] ?? 0) + 1;
    if (this.report.examples.length < MAX_BAD_EXAMPLES) this.report.examples.push(example);
    return undefined;
  }

  private async normalise(raw: RawRow, imageFiles: DatasetFiles): Promise<DatasetRow | undefined> {
    const where = (reason: BadReason, detail: string): undefined => this.bad({ file: raw.file, row: raw.row, reason, detail });
    const mapped = mapRow(this.options.format, raw, this.options.columns, this.options.defaultProblemType);
    if ('bad' in mapped) return where(mapped.bad, mapped.detail);
    const draft: Draft = mapped.draft;
    const images: DatasetImage[] = [];
    for (const ref of draft.images) {
      const loaded = await this.loadImage(ref, imageFiles);
      if ('bad' in loaded) return where(loaded.bad, loaded.detail);
      if (loaded.ok.resizedFrom) this.report.resizedImages++;
      images.push(loaded.ok);
    }
    const id = draft.ownId ?? contentId(raw, draft);
    if (this.seen.has(id)) return where('duplicate-id', `id ${JSON.stringify(id)} was already read`);
    this.seen.add(id);
    const question = renderPrompt(this.options.template, { question: draft.rawQuestion, options: draft.options, answerType: draft.answerType });
    return {
      id,
      source: draft.source ?? raw.file,
      ...(draft.category !== undefined ? { category: draft.category } : {}),
      question,
      rawQuestion: draft.rawQuestion,
      images,
      answer: draft.answer,
      answerType: draft.answerType,
      problemType: draft.problemType,
      ...(draft.options ? { options: draft.options } : {}),
    };
  }

  private async loadImage(ref: ImageRef, imageFiles: DatasetFiles): Promise<ReturnType<typeof checkImage> | { bad: BadReason; detail: string }> {
    const images = { ...QWEN_IMAGE_DEFAULTS, ...this.options.images };
    if ('bytes' in ref) return checkImage(ref.bytes, images);
    const relative = relativeImagePath(ref.path, imageFiles);
    if (relative === undefined) return { bad: 'image-outside-root', detail: `${JSON.stringify(ref.path)} is outside ${imageFiles.location}` };
    const bytes = await imageFiles.readAll(relative);
    if (bytes === undefined) return { bad: 'image-not-found', detail: `no file ${imageFiles.location}/${relative}` };
    return checkImage(bytes, images);
  }

  /** Throws when the bad share is above the limit. */
  private checkShare(when: string): void {
    const { read } = this.report;
    const badCount = read - this.report.kept;
    if (read === 0 || badCount / read <= this.options.maxBadShare) return;
    const first = this.report.examples.slice(0, 3).map((e) => `${e.file} row ${e.row}: ${e.reason} (${e.detail})`).join('; ');
    const counts = Object.entries(this.report.bad).map(([reason, n]) => `${reason} ${n}`).join(', ');
    throw new DatasetQualityError(
      `${badCount} of ${read} rows are bad ${when} (${((100 * badCount) / read).toFixed(1)}% > ${this.configPath}.maxBadShare ${this.options.maxBadShare}): ${counts}. First: ${first}`,
      this.report,
      `Fix the rows or the dataset settings (${this.configPath}.imageRoot, ${this.configPath}.columns, ${this.configPath}.format), or raise ${this.configPath}.maxBadShare if dropping them is acceptable`,
    );
  }
}

/** A row's image path relative to the image root, or undefined when it leaves the root. */
export function relativeImagePath(imagePath: string, root: DatasetFiles): string | undefined {
  let p = imagePath.replace(/\\/g, '/');
  if (p.startsWith('/')) {
    if (!(root instanceof LocalDatasetFiles) || !p.startsWith(`${root.root}/`)) return undefined;
    p = p.slice(root.root.length + 1);
  }
  const normal = path.posix.normalize(p);
  if (normal === '..' || normal.startsWith('../') || normal === '.' || normal.startsWith('/')) return undefined;
  return normal;
}
