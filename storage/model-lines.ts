/**
 * Model lines: a named sequence of runs whose latest good checkpoint the next run starts from (e.g. `prod`,
 * retrained nightly). Stored as JSON records beside the runs:
 *
 *   lines/{line}/latest.json          the newest completed run of the line and its checkpoints
 *   lines/{line}/runs/{runId}.json    one record per completed run (history)
 *
 * A run is recorded only after it completed, so `latest` never points at a half-trained model.
 */
import { NotFoundError } from '../common/errors';
import { getJson, putJson } from './json';
import { assertValidName } from './keys';
import type { Storage } from './types';

export interface ModelLineRecord {
  line: string;
  runId: string;
  /** The final policy checkpoint (Trust-GRPO's if the run had that stage, else SFT's). */
  policyKey: string;
  /** The thinking reward model the run trained or used, if any. */
  rewardModelKey: string | undefined;
  completedAt: string;
  /** Final metrics of the run's evaluation stage. */
  metrics: Record<string, number>;
}

const latestKey = (line: string) => `lines/${line}/latest.json`;

export async function readLatest(storage: Storage, line: string): Promise<ModelLineRecord | undefined> {
  assertValidName('model line', line);
  try {
    return await getJson<ModelLineRecord>(storage, latestKey(line));
  } catch (err) {
    if (err instanceof NotFoundError) return undefined;
    throw err;
  }
}

export async function recordRun(storage: Storage, record: ModelLineRecord): Promise<void> {
  assertValidName('model line', record.line);
  assertValidName('run id', record.runId);
  await putJson(storage, `lines/${record.line}/runs/${record.runId}.json`, record);
  await putJson(storage, latestKey(record.line), record);
}
