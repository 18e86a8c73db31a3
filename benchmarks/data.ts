/**
 * Reading a benchmark's local copy (or an `s3://` prefix) in its published layout: the parquet files of its Hugging
 * Face dataset (MathVista's `data/testmini-*.parquet`, MMMU's `<Subject>/validation-*.parquet`, …), or JSON/JSONL
 * files of the same rows. Every .parquet/.jsonl/.json file under the location is read, in path order, row by row
 * (parquet one row group at a time: datasets/parquet.ts), so a benchmark is never held whole in memory.
 *
 * `files` narrows which files are read (globs relative to the location, `*` within one path segment), e.g.
 * `["data/testmini-*.parquet"]` for MathVista, whose folder also holds the larger test split.
 */
import { SophiaError } from '../common/errors';
import { openLocation, parseDatasetLocation, selectDataFiles, type StorageForBucket } from '../datasets/files';
import { jsonRows } from '../datasets/json-rows';
import { parquetRows } from '../datasets/parquet';
import { openStorage } from '../storage/open';

/** The published rows under `location`, in file order; `field` names the setting in errors. */
export async function* benchmarkRecords(
  location: string,
  field: string,
  options: { files?: string[]; storageFor?: StorageForBucket } = {},
): AsyncGenerator<Record<string, unknown>> {
  const storageFor = options.storageFor ?? ((bucket: string) => openStorage(`s3://${bucket}`, process.env));
  const { files, single } = await openLocation(parseDatasetLocation(location, field), storageFor);
  const entries = single !== undefined ? [{ path: single, size: (await files.size(single)) ?? 0 }] : selectDataFiles(await files.list(), options.files);
  if (entries.length === 0) {
    throw new SophiaError('not-found', `${field}: no benchmark data under ${files.location}${options.files ? ` matching ${JSON.stringify(options.files)}` : ' (.parquet, .jsonl or .json files)'}`, {
      hint: 'Give the folder of the benchmark\'s published files (e.g. a download of its Hugging Face dataset)',
    });
  }
  for (const entry of entries) {
    if (/\.parquet$/i.test(entry.path)) {
      yield* parquetRows(files, entry.path, entry.size);
      continue;
    }
    let line = 0;
    for await (const parsed of jsonRows(() => files.stream(entry.path), entry.path, `${files.location}/${entry.path}`)) {
      line++;
      if ('error' in parsed) throw new SophiaError('corrupt', `${files.location}/${entry.path}: record ${line}: ${parsed.error}`, { hint: 'Download the benchmark file again' });
      if (parsed.record === null || typeof parsed.record !== 'object' || Array.isArray(parsed.record)) {
        throw new SophiaError('corrupt', `${files.location}/${entry.path}: record ${line} is not a JSON object`, { hint: 'A benchmark row is one object of its published fields' });
      }
      yield parsed.record as Record<string, unknown>;
    }
  }
}
