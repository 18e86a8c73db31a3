/**
 * The checkpoint manifest: the record that makes a checkpoint exist.
 *
 * A checkpoint is a directory of files plus `manifest.json`, written LAST, listing every file with its size
 * and sha256, and the step, stage, config hash and metrics at that step. Readers trust nothing that the
 * manifest does not list, and verify every byte they read against it.
 *
 * This module holds the manifest type and its strict parser (pure functions, unit-tested alone).
 */
import { CorruptCheckpointError } from '../common/errors';
import { assertValidName, formatStep } from './keys';

export const MANIFEST_FORMAT = 'sophia.checkpoint.v1';

export interface CheckpointFileEntry {
  /** Logical name the writer gave the file ("weights.bin", "optimizer.bin", "state.json"). */
  name: string;
  /** Key relative to the checkpoint directory: `{attempt}/{name}`. */
  key: string;
  size: number;
  /** Lowercase hex sha256 of the file's bytes. */
  sha256: string;
}

export interface CheckpointManifest {
  format: typeof MANIFEST_FORMAT;
  runId: string;
  stage: string;
  step: number;
  /** Key of the checkpoint directory, `runs/{runId}/{stage}/checkpoints/{step:08d}`: the claim-check handle. */
  key: string;
  /** Id of the write attempt whose files this manifest commits (losing attempts leave orphans to clean). */
  attempt: string;
  /** ISO 8601 time the manifest was written. */
  createdAt: string;
  /** `hashConfig` of the run config that produced this checkpoint. */
  configHash: string;
  /** Scalar metrics at this step (loss, accuracy, ...); retention can keep the best by one of them. */
  metrics: Record<string, number>;
  /** Small JSON-serializable facts about the checkpoint (model config, data position, ...). */
  meta: Record<string, unknown>;
  files: CheckpointFileEntry[];
  totalBytes: number;
}

const SHA256_RE = /^[0-9a-f]{64}$/;
const ATTEMPT_RE = /^[0-9a-f]{8,64}$/;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Parses and validates manifest bytes read from `expectedKey`. Any deviation (bad JSON, missing field, a step
 * or run that does not match the key it was read from, bad sizes or hashes) is a `CorruptCheckpointError`
 * that names the field.
 */
export function parseManifest(bytes: Uint8Array, expectedKey: string): CheckpointManifest {
  const fail = (message: string): never => {
    throw new CorruptCheckpointError(expectedKey, `manifest.json ${message}`);
  };
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    fail(`is not valid UTF-8 JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  if (!isRecord(raw)) return fail('is not a JSON object');
  if (raw.format !== MANIFEST_FORMAT) fail(`has format ${JSON.stringify(raw.format)}, expected "${MANIFEST_FORMAT}"`);
  for (const field of ['runId', 'stage', 'key', 'attempt', 'createdAt', 'configHash'] as const) {
    if (typeof raw[field] !== 'string') fail(`field "${field}" must be a string`);
  }
  const m = raw as unknown as CheckpointManifest;
  if (!Number.isInteger(m.step) || m.step < 0) fail('field "step" must be a non-negative integer');
  if (m.key !== expectedKey) fail(`field "key" is ${JSON.stringify(m.key)} but the manifest was read from ${expectedKey}`);
  try {
    assertValidName('run id', m.runId);
    assertValidName('stage', m.stage);
  } catch {
    fail('has an invalid "runId" or "stage"');
  }
  if (expectedKey !== `runs/${m.runId}/${m.stage}/checkpoints/${formatStep(m.step)}`) {
    fail('fields "runId", "stage" and "step" do not match its location');
  }
  if (!ATTEMPT_RE.test(m.attempt)) fail('field "attempt" must be lowercase hex');
  if (Number.isNaN(Date.parse(m.createdAt))) fail('field "createdAt" is not an ISO 8601 time');
  if (!isRecord(m.metrics)) fail('field "metrics" must be an object');
  for (const [name, value] of Object.entries(m.metrics)) {
    if (typeof value !== 'number') fail(`metric "${name}" must be a number`);
  }
  if (!isRecord(m.meta)) fail('field "meta" must be an object');
  if (!Array.isArray(m.files)) return fail('field "files" must be an array');
  const names = new Set<string>();
  let total = 0;
  m.files.forEach((file: unknown, i) => {
    if (!isRecord(file)) return fail(`files[${i}] must be an object`);
    const f = file as unknown as CheckpointFileEntry;
    if (typeof f.name !== 'string' || names.has(f.name)) fail(`files[${i}].name is missing or duplicated`);
    names.add(f.name);
    if (f.key !== `${m.attempt}/${f.name}`) fail(`files[${i}].key must be "${m.attempt}/${f.name}"`);
    if (!Number.isInteger(f.size) || f.size < 0) fail(`files[${i}].size must be a non-negative integer`);
    if (typeof f.sha256 !== 'string' || !SHA256_RE.test(f.sha256)) fail(`files[${i}].sha256 must be 64 lowercase hex digits`);
    total += f.size;
  });
  if (m.totalBytes !== total) fail(`field "totalBytes" is ${m.totalBytes} but the files add up to ${total}`);
  return m;
}

export function serializeManifest(manifest: CheckpointManifest): Uint8Array {
  return new TextEncoder().encode(`${JSON.stringify(manifest, null, 2)}\n`);
}

/** True when two manifests commit the same bytes under the same names (what an idempotent re-save produces). */
export function sameContent(a: CheckpointManifest, b: CheckpointManifest): boolean {
  if (a.files.length !== b.files.length) return false;
  const byName = new Map(b.files.map((f) => [f.name, f]));
  return a.files.every((f) => {
    const other = byName.get(f.name);
    return other !== undefined && other.size === f.size && other.sha256 === f.sha256;
  });
}
