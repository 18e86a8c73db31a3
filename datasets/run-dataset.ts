/**
 * A real dataset as a run's dataset: `writeSourcedDataset` streams a run config's `data.source` through the adapters
 * (`openDataset`) into the run's storage in the same shard layout as the tiny world's (tasks/dataset.ts), so every
 * stage reads its examples the same way.
 *
 *  - each row goes to `test` when the stable hash of its id falls below `testShare`, else to `train` (split.ts: a
 *    grown dataset keeps every old test example in test); there is no `ood` split;
 *  - an example's family is the row's category (sophiavl: the image's top folder) or else its problem type: what
 *    results are grouped by;
 *  - images stay as their files' bytes (checked, and shrunk when over `images.maxPixels`, by the adapters);
 *  - the adapters' read report (rows read, kept, skipped per reason, the first bad rows located) goes into the
 *    manifest; too many bad rows stop the read with the adapters' `DatasetQualityError`, before any manifest is
 *    written, so no stage can start on the dataset.
 */
import type { DataSourceConfig } from '../config/run-config';
import { datasetOptionsOf } from '../config/run-config';
import { DatasetWriter, type DatasetManifest } from '../tasks/dataset';
import type { EncodedImage, Example, Split } from '../tasks/types';
import type { Storage } from '../storage/types';
import { type DatasetReaderDeps, openDataset } from './reader';
import { splitOf } from './split';
import type { DatasetImage, DatasetRow, ReadReport } from './types';

/** What a sourced dataset was made from (the manifest's `settings`; the same settings reuse the stored dataset). */
export interface SourcedSettings {
  source: DataSourceConfig;
  shardSize: number;
}

export function isSourced(settings: unknown): settings is SourcedSettings {
  return typeof settings === 'object' && settings !== null && 'source' in settings;
}

const encoded = (image: DatasetImage): EncodedImage => ({ width: image.width, height: image.height, mime: image.mime, bytes: image.bytes });

/** A dataset row as a run's example in `split`. */
export function exampleOfRow(row: DatasetRow, split: Split): Example {
  const [first, ...more] = row.images;
  if (!first) throw new RangeError(`row ${row.id} has no image`); // the adapters skip such rows as missing-image
  return {
    id: row.id,
    family: row.category ?? row.problemType,
    split,
    seed: 0,
    image: encoded(first),
    ...(more.length > 0 ? { moreImages: more.map(encoded) } : {}),
    source: row.source,
    question: row.question,
    answer: row.answer,
    answerType: row.answerType,
    steps: [],
    facts: {},
  };
}

export async function writeSourcedDataset(
  storage: Storage,
  runId: string,
  settings: SourcedSettings,
  deps: DatasetReaderDeps & { onProgress?: (report: ReadReport) => void } = {},
): Promise<DatasetManifest<SourcedSettings>> {
  const reader = openDataset(datasetOptionsOf(settings.source), { configPath: 'data.source', ...deps });
  const writer = new DatasetWriter(storage, runId, settings.shardSize);
  for await (const row of reader.rows()) {
    await writer.add(exampleOfRow(row, splitOf(row.id, { test: settings.source.testShare, validation: 0 }) === 'test' ? 'test' : 'train'));
    if (reader.report.kept % 500 === 0) deps.onProgress?.(reader.report);
  }
  return writer.finish(settings, new Date(), reader.report);
}
