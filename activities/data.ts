/**
 * Data preparation (CPU queue): generate the run's tiny-world dataset into storage. Idempotent: a dataset that
 * is already committed with the same settings is reused, so a retried or repeated stage never regenerates.
 */
import { log } from '@temporalio/activity';
import { modelConfig, type RunConfig } from '../config/run-config';
import { hashConfig } from '../storage/hashing';
import { type DatasetSettings, readDatasetManifest, writeDataset } from '../tasks/dataset';
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
}

export function datasetSettings(config: RunConfig): DatasetSettings {
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
      const manifest = reused ? existing : await writeDataset(data.storage, input.runId, settings);
      const counts = { train: manifest.splits.train.count, test: manifest.splits.test.count, ood: manifest.splits.ood.count };
      log.info('dataset ready', { runId: input.runId, stage: 'prepareData', reused, ...counts });
      return { manifestKey: `runs/${input.runId}/data/manifest.json`, counts, reused };
    },
  });
}

export type DataActivities = ReturnType<typeof createDataActivities>;
