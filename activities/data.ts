/**
 * Data preparation (CPU queue): the run's dataset into storage — the tiny world generated, or the real dataset of
 * `data.source` read through the adapters (datasets/run-dataset.ts), checked row by row and split by id hash.
 * Idempotent: a dataset that is already committed with the same settings is reused, so a retried or repeated stage
 * never reads or generates it again. Too many bad rows in a real dataset fail the stage (not retried) before any
 * training, with the file, row and reason of the first ones.
 */
import { Context, log } from '@temporalio/activity';
import { modelConfig, type RunConfig } from '../config/run-config';
import { hashConfig } from '../storage/hashing';
import { isSourced, type SourcedSettings, writeSourcedDataset } from '../datasets/run-dataset';
import { type DatasetManifest, type DatasetSettings, readDatasetManifest, writeDataset } from '../tasks/dataset';
import { Tokenizer } from '../engine/model/tokenizer';
import { withFailureMapping } from './failures';
import type { RunData, RunStore } from './run-data';

export interface PrepareDataInput extends RunStore {
  runId: string;
  config: RunConfig;
  storage: string;
}

export interface PrepareDataOutput {
  manifestKey: string;
  counts: Record<string, number>;
  reused: boolean;
  /** A real dataset's read: rows read and skipped (per reason in the manifest and the report). */
  read?: { read: number; kept: number; bad: number };
}

/** What the run's dataset is made from: its real dataset's settings, or the tiny world's generator settings. */
export function datasetSettings(config: RunConfig): DatasetSettings | SourcedSettings {
  return config.data.source ? { source: config.data.source, shardSize: config.data.shardSize } : tinyWorldSettings(config);
}

export function tinyWorldSettings(config: RunConfig): DatasetSettings {
  const model = modelConfig(config, new Tokenizer().vocabSize);
  return { imageSize: model.image.size, seed: config.seed, perFamily: config.data.perFamily, shardSize: config.data.shardSize };
}

export function createDataActivities({ data }: { data: RunData }) {
  return withFailureMapping({
    async prepareData(input: PrepareDataInput): Promise<PrepareDataOutput> {
      await data.assertStorage(input);
      const settings = datasetSettings(input.config);
      const existing = await readDatasetManifest(data.storage, input.runId).catch(() => undefined);
      const reused = existing !== undefined && hashConfig(existing.settings) === hashConfig(settings);
      let manifest: DatasetManifest<unknown>;
      if (reused) manifest = existing;
      else if (isSourced(settings)) {
        const ctx = Context.current();
        manifest = await writeSourcedDataset(data.storage, input.runId, settings, { onProgress: (r) => ctx.heartbeat({ read: r.read, kept: r.kept }) });
      } else manifest = await writeDataset(data.storage, input.runId, settings);
      const counts = { train: manifest.splits.train.count, test: manifest.splits.test.count, ood: manifest.splits.ood.count };
      const read = manifest.read ? { read: manifest.read.read, kept: manifest.read.kept, bad: manifest.read.read - manifest.read.kept } : undefined;
      log.info('dataset ready', { runId: input.runId, stage: 'prepareData', reused, ...counts, ...read });
      return { manifestKey: `runs/${input.runId}/data/manifest.json`, counts, reused, ...(read ? { read } : {}) };
    },
  });
}

export type DataActivities = ReturnType<typeof createDataActivities>;
