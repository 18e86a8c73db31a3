/**
 * What activities of one worker share about runs: the storage they all use (checked against the run's), the
 * tokenizer, and each run's datasets, read from storage once per worker and kept in memory.
 */
import { StorageConfigError } from '../common/errors';
import type { RunConfig } from '../config/run-config';
import { generateSplit, readDataset } from '../tasks/dataset';
import { Tokenizer } from '../tasks/tokenizer';
import type { Example, Split } from '../tasks/types';
import type { Storage } from '../storage/types';

export class RunData {
  readonly tokenizer = new Tokenizer();
  private readonly splits = new Map<string, Promise<Example[]>>();

  constructor(readonly storage: Storage) {}

  /** Activities refuse to work on a run whose data lives somewhere else than this worker's storage. */
  assertStorage(runStorage: string): void {
    if (runStorage !== this.storage.location) {
      throw new StorageConfigError(`this worker uses storage ${this.storage.location} but the run's data is in ${runStorage}`, {
        hint: 'Start workers with the run\'s storage (--storage or SOPHIA_STORAGE)',
      });
    }
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

  /** Validation examples: the test distribution from a separate seed stream (never used for reporting). */
  validation(config: RunConfig, imageSize: number): Example[] {
    return generateSplit('test', config.data.validationPerFamily, imageSize, config.seed + 1000);
  }
}
