/**
 * What activities of one worker share about runs: the storage they all use (checked against the run's: its location
 * and its id), the tokenizer, and each run's datasets, read from storage once per worker and kept in memory.
 */
import { StorageConfigError } from '../common/errors';
import type { RunConfig } from '../config/run-config';
import { generateSplit, readDataset } from '../tasks/dataset';
import { Tokenizer } from '../engine/model/tokenizer';
import type { Example, Split } from '../tasks/types';
import { readStoreId } from '../storage/store-id';
import type { Storage } from '../storage/types';

/** Which store a run's data is in, as every activity's input carries it (from `PipelineInput`). */
export interface RunStore {
  runId: string;
  /** The store's location when the run started. */
  storage: string;
  /** The store's id when the run started (`storage/store-id.ts`); absent in runs started before stores had ids. */
  storeId?: string | undefined;
}

export class RunData {
  readonly tokenizer = new Tokenizer();
  private readonly splits = new Map<string, Promise<Example[]>>();

  constructor(readonly storage: Storage) {}

  /**
   * Activities refuse to work on a run whose data lives somewhere else than this worker's storage: another location,
   * or (for runs that recorded it) another store behind the same location — the same folder path on another machine,
   * the same bucket name on another S3 endpoint, a store wiped and created again. The store's marker is read on every
   * call (one small read), so a store replaced while the worker runs is noticed too. Not retryable: another attempt
   * on this worker would find the same store.
   */
  async assertStorage(run: RunStore): Promise<void> {
    if (run.storage !== this.storage.location) {
      throw new StorageConfigError(`this worker uses storage ${this.storage.location} but the run's data is in ${run.storage}`, {
        hint: 'Start workers with the run\'s storage (--storage or SOPHIA_STORAGE)',
      });
    }
    if (run.storeId === undefined) return; // started before stores had ids: its location is all there is to check
    const id = await readStoreId(this.storage);
    if (id === run.storeId) return;
    throw new StorageConfigError(
      `run ${run.runId} was started on store ${run.storeId} at ${run.storage}, but this worker's storage ${this.storage.location} is ${id === undefined ? 'a store without an id (no marker)' : `store ${id}`}: ` +
        'the same location names two different stores (the same folder path on another machine, the same bucket on another S3 endpoint, or a store wiped and created again)',
      {
        hint: 'Run this worker on the store the run was started with (a folder or bucket both machines share, with the same SOPHIA_S3_ENDPOINT); if that store is gone, start the run again under a new run id (a schedule: delete and create it again), which records the store as it is now',
      },
    );
  }

  split(runId: string, split: Split): Promise<Example[]> {
    const key = `${runId}/${split}`;
    let examples = this.splits.get(key);
    if (!examples) {
      examples = readDataset(this.storage, runId, split);
      this.splits.set(key, examples);
      examples.catch(() => this.splits.delete(key));
    }
    return examples;
  }

  /** A split's examples by id (for items that name their example). */
  async byId(runId: string, split: Split): Promise<Map<string, Example>> {
    return new Map((await this.split(runId, split)).map((e) => [e.id, e]));
  }

  /**
   * SFT's validation examples: the tiny world's test distribution from a separate seed stream (never used for
   * reporting). A real dataset has none: SFT on it is refused by the run config (it has no teacher responses).
   */
  validation(config: RunConfig, imageSize: number): Example[] {
    if (config.data.source) return [];
    return generateSplit('test', config.data.validationPerFamily, imageSize, config.seed + 1000);
  }
}
