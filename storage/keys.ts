/**
 * Storage keys: validation and the layout of a run's objects (docs/architecture.md §2).
 *
 *   runs/{runId}/{stage}/checkpoints/{step:08d}/manifest.json      committed checkpoint (written last)
 *   runs/{runId}/{stage}/checkpoints/{step:08d}/{attempt}/{file}   that checkpoint's files
 *   runs/{runId}/data/...                                          datasets
 *   runs/{runId}/rollouts/{step}/...                               rollouts and rewards per RL step
 *   runs/{runId}/reports/...                                       report.json, report.md, plots
 *   runs/{runId}/metrics.jsonl                                     per-step metrics
 *   runs/{runId}/tensorboard/{stage}/events.out.tfevents.…         TensorBoard event files of the metrics
 *   runs/{runId}/tracking/mlflow.json                              what was sent to MLflow (tracking/sync.ts)
 *
 * Every key that reaches an adapter passes `assertValidKey`, so no caller can escape the storage root
 * (`..`, absolute paths) or create ambiguous keys (empty segments, `.`), whatever the adapter.
 */
import { InvalidKeyError } from '../common/errors';

/** Longest key accepted (S3's limit is 1024 bytes of UTF-8). */
const MAX_KEY_BYTES = 1024;

/** A valid S3 bucket name: 3–63 lowercase letters, digits, "." and "-", starting and ending with a letter or digit. */
export const S3_BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** Prefix reserved for adapters' own bookkeeping (e.g. the local adapter's temp files). */
export const RESERVED_SEGMENT_PREFIX = '.sophia-';

/** Throws `InvalidKeyError` unless `key` is a clean relative "/"-separated object key. */
export function assertValidKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0) throw new InvalidKeyError(String(key), 'it is empty');
  if (key.startsWith('/')) throw new InvalidKeyError(key, 'it is absolute (starts with "/")');
  if (key.endsWith('/')) throw new InvalidKeyError(key, 'it ends with "/"');
  if (key.includes('\\')) throw new InvalidKeyError(key, 'it contains a backslash');
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(key)) throw new InvalidKeyError(key, 'it contains a control character');
  if (new TextEncoder().encode(key).length > MAX_KEY_BYTES) {
    throw new InvalidKeyError(key, `it is longer than ${MAX_KEY_BYTES} bytes`);
  }
  for (const segment of key.split('/')) {
    if (segment === '') throw new InvalidKeyError(key, 'it has an empty segment ("//")');
    if (segment === '.' || segment === '..') throw new InvalidKeyError(key, `it has a "${segment}" segment`);
    if (segment.startsWith(RESERVED_SEGMENT_PREFIX)) {
      throw new InvalidKeyError(key, `segments starting with "${RESERVED_SEGMENT_PREFIX}" are reserved`);
    }
  }
}

/**
 * Validates a listing prefix: "" (everything) or a key-like string that may end with "/".
 * Prefixes are matched as plain string prefixes, as S3 does.
 */
export function assertValidPrefix(prefix: string): void {
  if (prefix === '') return;
  assertValidKey(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix);
}

/** Joins key parts with "/" and validates the result. */
export function joinKey(...parts: string[]): string {
  const key = parts.join('/');
  assertValidKey(key);
  return key;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Run ids and stage names become key segments: letters, digits, ".", "_", "-"; at most 128 characters. */
export function assertValidName(kind: 'run id' | 'stage' | 'file name' | 'model line' | 'schedule id', name: string): void {
  if (!NAME_RE.test(name)) {
    throw new InvalidKeyError(name, `not a valid ${kind}`, `A ${kind} is 1–128 letters, digits, ".", "_" or "-", starting with a letter or digit`);
  }
}

/** Largest step that fits the 8-digit zero-padded layout. */
const MAX_STEP = 99_999_999;

export function assertValidStep(step: number): void {
  if (!Number.isInteger(step) || step < 0 || step > MAX_STEP) {
    throw new InvalidKeyError(String(step), `a checkpoint step must be an integer in [0, ${MAX_STEP}]`);
  }
}

export function formatStep(step: number): string {
  assertValidStep(step);
  return String(step).padStart(8, '0');
}

export function runPrefix(runId: string): string {
  assertValidName('run id', runId);
  return `runs/${runId}`;
}

export function checkpointsPrefix(runId: string, stage: string): string {
  assertValidName('stage', stage);
  return `${runPrefix(runId)}/${stage}/checkpoints`;
}

/** The key of one checkpoint: its directory, which holds `manifest.json` once committed. */
export function checkpointKey(runId: string, stage: string, step: number): string {
  return `${checkpointsPrefix(runId, stage)}/${formatStep(step)}`;
}

export function manifestKey(checkpointDirKey: string): string {
  return `${checkpointDirKey}/manifest.json`;
}

export interface CheckpointAddress {
  runId: string;
  stage: string;
  step: number;
}

const CHECKPOINT_KEY_RE = /^runs\/([^/]+)\/([^/]+)\/checkpoints\/(\d{8})$/;

/** Inverse of `checkpointKey`; throws `InvalidKeyError` for anything else. */
export function parseCheckpointKey(key: string): CheckpointAddress {
  const match = CHECKPOINT_KEY_RE.exec(key);
  if (!match) {
    throw new InvalidKeyError(key, 'not a checkpoint key of the form runs/{runId}/{stage}/checkpoints/{step:08d}');
  }
  const [, runId, stage, step] = match as unknown as [string, string, string, string];
  assertValidName('run id', runId);
  assertValidName('stage', stage);
  return { runId, stage, step: Number(step) };
}

/** A dataset object: `runs/{runId}/data/{path}`. */
export function dataKey(runId: string, path: string): string {
  return joinKey(runPrefix(runId), 'data', path);
}

/** A rollout object of one RL step: `runs/{runId}/rollouts/{step}/{path}`. */
export function rolloutKey(runId: string, step: number, path: string): string {
  assertValidStep(step);
  return joinKey(runPrefix(runId), 'rollouts', String(step), path);
}

/** A report artifact: `runs/{runId}/reports/{path}`. */
export function reportKey(runId: string, path: string): string {
  return joinKey(runPrefix(runId), 'reports', path);
}

/** What the run's experiment tracking sent where: `runs/{runId}/tracking/{name}.json`. */
export function trackingStateKey(runId: string, name: 'mlflow'): string {
  return joinKey(runPrefix(runId), 'tracking', `${name}.json`);
}

export function metricsKey(runId: string): string {
  return `${runPrefix(runId)}/metrics.jsonl`;
}
