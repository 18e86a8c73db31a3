/**
 * `runs/{runId}/metrics.jsonl`: one JSON line per training step (and per validation), for curves, the API and
 * reports. S3 has no append, so appending rewrites the object; records are keyed by (stage, kind, step), and
 * an append first drops existing records of the same stage and kind at or after its first step — so an
 * activity that is retried after a crash rewrites the steps it redoes instead of duplicating them.
 *
 * Each append then rewrites the TensorBoard event file of every stage its records touch
 * (`runs/{runId}/tensorboard/{stage}/events.out.tfevents.…`, observability/tensorboard.ts) from all of that stage's
 * records, kept and new. metrics.jsonl is written first, so an event file that cannot be written fails the append
 * without costing metrics.jsonl its records; the stage's next append writes the event file whole again.
 */
import { NotFoundError } from '../common/errors';
import { observeRecords } from '../observability/metrics';
import { eventFiles } from '../observability/tensorboard';
import { metricsKey } from './keys';
import type { Storage } from './types';

export interface MetricRecord {
  stage: string;
  /** `step` (one optimizer step) or `validation`, … */
  kind: string;
  step: number;
  /** Wall-clock time the record was made (ISO 8601). */
  time: string;
  [metric: string]: string | number;
}

export async function readMetrics(storage: Storage, runId: string): Promise<MetricRecord[]> {
  let bytes: Uint8Array;
  try {
    bytes = await storage.get(metricsKey(runId));
  } catch (err) {
    if (err instanceof NotFoundError) return [];
    throw err;
  }
  return new TextDecoder()
    .decode(bytes)
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as MetricRecord);
}

export async function appendMetrics(storage: Storage, runId: string, records: readonly MetricRecord[]): Promise<void> {
  if (records.length === 0) return;
  const existing = await readMetrics(storage, runId);
  const firstStep = new Map<string, number>();
  for (const r of records) {
    const key = `${r.stage}/${r.kind}`;
    firstStep.set(key, Math.min(firstStep.get(key) ?? Infinity, r.step));
  }
  const kept = existing.filter((r) => !(r.step >= (firstStep.get(`${r.stage}/${r.kind}`) ?? Infinity)));
  const all = [...kept, ...records];
  const lines = all.map((r) => JSON.stringify(r)).join('\n');
  await storage.put(metricsKey(runId), new TextEncoder().encode(`${lines}\n`), { contentType: 'application/x-ndjson' });
  const touched = new Set(records.map((r) => r.stage));
  for (const file of eventFiles(runId, all.filter((r) => touched.has(r.stage)))) {
    await storage.put(file.key, file.bytes, { contentType: 'application/octet-stream' });
  }
  observeRecords(runId, records); // this process's Prometheus metrics (observability/metrics.ts)
}
