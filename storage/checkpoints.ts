/**
 * The checkpoint store: typed, verified checkpoints over any byte-level `Storage` (docs/architecture.md §2, §5).
 *
 *   save     files → `{dir}/{attempt}/{name}` (hashed while streaming), then `{dir}/manifest.json` with a
 *            conditional put: the first committed attempt wins; an identical re-save is a no-op, a different
 *            one is a `CheckpointConflictError`. A crash before the manifest leaves an invisible, incomplete
 *            checkpoint that retention cleans up.
 *   list     committed checkpoints of a run's stage, ascending by step; `latest` = the highest step.
 *   load     reads the files a manifest lists (into memory; `loadInto`: streamed into a local folder) and
 *            verifies size and sha256 of each while reading; any mismatch is a `CorruptCheckpointError` naming
 *            the file.
 *   retain   keeps the last K and the best by a metric; deletes the rest (manifest first, so a half-deleted
 *            checkpoint is never visible) and removes orphaned attempts.
 *   quarantine takes a committed checkpoint that did not read back intact out of use: a marker
 *            `{dir}/quarantined-{attempt}.json` (why, when, its manifest) is written, then its manifest is
 *            deleted, so `list`/`latest` no longer see it while its files stay for inspection. Retention and
 *            `delete` never remove a quarantined attempt; a later save of the same step commits beside it.
 *
 * Activities pass the checkpoint's directory key (`manifest.key`) around, never the bytes (claim check).
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import * as path from 'node:path';
import { type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  AlreadyExistsError,
  CheckpointConflictError,
  CheckpointNotFoundError,
  CorruptCheckpointError,
  NotFoundError,
  SizeMismatchError,
} from '../common/errors';
import { StreamDigest } from './hashing';
import { Sha256Worker } from './sha256-worker';
import {
  assertValidName,
  assertValidStep,
  checkpointKey,
  checkpointsPrefix,
  manifestKey,
  parseCheckpointKey,
  type CheckpointAddress,
} from './keys';
import { MANIFEST_FORMAT, parseManifest, sameContent, serializeManifest, type CheckpointFileEntry, type CheckpointManifest } from './manifest';
import type { ObjectInfo, Storage } from './types';

/** One file to save: bytes in memory, or a stream factory for data too large to hold twice. */
export type CheckpointFileInput =
  | { name: string; data: Uint8Array }
  | { name: string; stream: () => AsyncIterable<Uint8Array> | Iterable<Uint8Array> | Readable };

export interface SaveCheckpointInput extends CheckpointAddress {
  files: CheckpointFileInput[];
  configHash: string;
  metrics?: Record<string, number>;
  meta?: Record<string, unknown>;
}

export interface LoadedCheckpoint {
  manifest: CheckpointManifest;
  /** File name → verified bytes (large files are backed by a SharedArrayBuffer). */
  files: Map<string, Uint8Array>;
}

export interface LoadedCheckpointOnDisk {
  manifest: CheckpointManifest;
  /** The verified files in the folder, in manifest order. */
  files: { name: string; path: string; size: number }[];
}

export interface RetentionPolicy {
  /** Keep this many of the newest committed checkpoints (≥ 1: the latest is never deleted). */
  keepLast: number;
  /** Also keep the single best checkpoint by this metric. */
  keepBest?: { metric: string; mode: 'min' | 'max' };
}

export interface RetentionResult {
  kept: number[];
  deleted: number[];
  /** Objects removed that no manifest referenced (interrupted saves, losing attempts). */
  orphansRemoved: number;
}

/** Everything under a stage's checkpoints prefix, classified. */
export interface CheckpointInventory {
  committed: CheckpointManifest[];
  /** Manifests that exist but fail validation. */
  invalid: { key: string; error: CorruptCheckpointError }[];
  /** Steps with files but no manifest: interrupted saves (invisible to `list`/`latest`). */
  incomplete: number[];
  /** Steps with a quarantined attempt and no manifest of their own. */
  quarantined: number[];
}

/** The marker of a quarantined checkpoint: why it was taken out of use, and the manifest it had. */
export interface QuarantineMarker {
  format: typeof QUARANTINE_FORMAT;
  /** The checkpoint's directory key. */
  key: string;
  step: number;
  reason: string;
  quarantinedAt: string;
  manifest: CheckpointManifest;
}

const QUARANTINE_FORMAT = 'sophia.quarantine.v1';
const QUARANTINE_RE = /^quarantined-[0-9a-f]+\.json$/;
const quarantineMarkerKey = (dir: string, attempt: string) => `${dir}/quarantined-${attempt}.json`;

export interface CheckpointStoreOptions {
  /** Files saved or loaded concurrently (default 2). */
  concurrency?: number;
  /** Verify large files on a worker thread while they are read (default true). */
  hashWorker?: boolean;
  /** Time source for `createdAt` (tests pass a fixed clock). */
  now?: () => Date;
}

type CheckpointRef = string | CheckpointAddress;

const STEP_DIR_RE = /^(\d{8})\/(.+)$/;

/**
 * Runs `fn` over `items` with at most `limit` in flight; after the first error no new item starts, and it rejects
 * with that error once the items in flight have ended (so nothing is still writing when a failed save is cleaned up).
 */
async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length && !failed) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  });
  const settled = await Promise.allSettled(lanes);
  const rejected = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (rejected) throw rejected.reason;
}

/** Files at least this large are hashed off-thread when loaded. */
const OFF_THREAD_MIN_BYTES = 4 << 20;

export class CheckpointStore {
  private readonly concurrency: number;
  private readonly now: () => Date;
  private readonly hasher: Sha256Worker | undefined;

  constructor(
    readonly storage: Storage,
    options: CheckpointStoreOptions = {},
  ) {
    this.concurrency = Math.max(1, options.concurrency ?? 2);
    this.now = options.now ?? (() => new Date());
    this.hasher = options.hashWorker === false ? undefined : new Sha256Worker();
  }

  /** Stops the hashing worker (the storage is the caller's to close). */
  async close(): Promise<void> {
    await this.hasher?.close();
  }

  private dirOf(ref: CheckpointRef): string {
    if (typeof ref === 'string') {
      parseCheckpointKey(ref);
      return ref;
    }
    return checkpointKey(ref.runId, ref.stage, ref.step);
  }

  /** Writes the files, then commits them with the manifest. Returns the committed manifest. */
  async save(input: SaveCheckpointInput): Promise<CheckpointManifest> {
    assertValidStep(input.step);
    const dir = checkpointKey(input.runId, input.stage, input.step);
    const names = new Set<string>();
    for (const file of input.files) {
      assertValidName('file name', file.name);
      if (names.has(file.name)) throw new TypeError(`save(${dir}): file name ${JSON.stringify(file.name)} is given twice`);
      names.add(file.name);
    }
    for (const [name, value] of Object.entries(input.metrics ?? {})) {
      if (typeof value !== 'number') throw new TypeError(`save(${dir}): metric ${JSON.stringify(name)} must be a number`);
    }
    const attempt = randomBytes(8).toString('hex');
    const entries = new Map<string, CheckpointFileEntry>();
    await forEachLimit(input.files, this.concurrency, async (file) => {
      const relKey = `${attempt}/${file.name}`;
      // The adapter hashes while it writes (and S3 reuses that hash to sign the upload).
      const written = await this.storage.put(`${dir}/${relKey}`, 'data' in file ? file.data : file.stream());
      entries.set(file.name, { name: file.name, key: relKey, size: written.size, sha256: written.sha256 });
    });
    const files = input.files.map((f) => entries.get(f.name)!);
    const manifest: CheckpointManifest = {
      format: MANIFEST_FORMAT,
      runId: input.runId,
      stage: input.stage,
      step: input.step,
      key: dir,
      attempt,
      createdAt: this.now().toISOString(),
      configHash: input.configHash,
      metrics: { ...(input.metrics ?? {}) },
      meta: JSON.parse(JSON.stringify(input.meta ?? {})) as Record<string, unknown>,
      files,
      totalBytes: files.reduce((sum, f) => sum + f.size, 0),
    };
    try {
      await this.storage.put(manifestKey(dir), serializeManifest(manifest), { ifAbsent: true, contentType: 'application/json' });
      return manifest;
    } catch (err) {
      if (!(err instanceof AlreadyExistsError)) throw err;
      // Someone committed this step first. Our files are orphans either way.
      await this.storage.deletePrefix(`${dir}/${attempt}/`);
      const existing = await this.manifest(dir);
      if (sameContent(existing, manifest)) return existing;
      throw new CheckpointConflictError(dir, 'already committed with different file contents');
    }
  }

  /** Reads and validates the manifest of one checkpoint. */
  async manifest(ref: CheckpointRef): Promise<CheckpointManifest> {
    const dir = this.dirOf(ref);
    let bytes: Uint8Array;
    try {
      bytes = await this.storage.get(manifestKey(dir));
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      const files = await this.storage.listAll(`${dir}/`);
      throw new CheckpointNotFoundError(
        files.length > 0
          ? `checkpoint ${dir} is incomplete: ${files.length} file(s) but no manifest.json (the save was interrupted before commit)`
          : `checkpoint ${dir} does not exist in ${this.storage.location}`,
        { hint: 'Use the latest committed checkpoint instead (CheckpointStore.latest or `list`)' },
      );
    }
    return parseManifest(bytes, dir);
  }

  /** Classifies everything under a stage's checkpoints: committed, invalid manifests, incomplete saves, quarantined. */
  async inventory(runId: string, stage: string): Promise<CheckpointInventory> {
    const prefix = `${checkpointsPrefix(runId, stage)}/`;
    const steps = new Map<number, { hasManifest: boolean; quarantined: boolean }>();
    for await (const info of this.storage.list(prefix)) {
      const match = STEP_DIR_RE.exec(info.key.slice(prefix.length));
      if (!match) continue;
      const step = Number(match[1]);
      const entry = steps.get(step) ?? { hasManifest: false, quarantined: false };
      if (match[2] === 'manifest.json') entry.hasManifest = true;
      if (QUARANTINE_RE.test(match[2]!)) entry.quarantined = true;
      steps.set(step, entry);
    }
    const result: CheckpointInventory = { committed: [], invalid: [], incomplete: [], quarantined: [] };
    const ordered = [...steps.entries()].sort(([a], [b]) => a - b);
    for (const [step, { hasManifest, quarantined }] of ordered) {
      if (!hasManifest) {
        (quarantined ? result.quarantined : result.incomplete).push(step);
        continue;
      }
      const dir = checkpointKey(runId, stage, step);
      try {
        result.committed.push(await this.manifest(dir));
      } catch (err) {
        if (err instanceof CorruptCheckpointError) result.invalid.push({ key: dir, error: err });
        else if (!(err instanceof CheckpointNotFoundError)) throw err; // deleted while scanning: skip
      }
    }
    return result;
  }

  /** Committed checkpoints, ascending by step. */
  async list(runId: string, stage: string): Promise<CheckpointManifest[]> {
    return (await this.inventory(runId, stage)).committed;
  }

  /** The committed checkpoint with the highest step, or `undefined` if none was ever committed. */
  async latest(runId: string, stage: string): Promise<CheckpointManifest | undefined> {
    return (await this.list(runId, stage)).at(-1);
  }

  /** Reads one file of a checkpoint, verifying size and sha256 while it streams in. */
  async readFile(ref: CheckpointRef | CheckpointManifest, name: string): Promise<Uint8Array> {
    const manifest = typeof ref === 'object' && 'files' in ref ? ref : await this.manifest(ref);
    const entry = manifest.files.find((f) => f.name === name);
    if (!entry) {
      throw new CheckpointNotFoundError(`checkpoint ${manifest.key} has no file ${JSON.stringify(name)}`, {
        hint: `It has: ${manifest.files.map((f) => f.name).join(', ') || '(no files)'}`,
      });
    }
    return this.readVerified(manifest, entry);
  }

  private async readVerified(manifest: CheckpointManifest, entry: CheckpointFileEntry): Promise<Uint8Array> {
    const key = `${manifest.key}/${entry.key}`;
    // Large files: read into shared memory and hash on the worker thread while the read goes on.
    // Small files: hash on this thread as pieces arrive.
    const offThread = this.hasher !== undefined && entry.size >= OFF_THREAD_MIN_BYTES;
    const into = offThread ? Sha256Worker.allocate(entry.size) : undefined;
    const job = into ? this.hasher!.begin(into) : undefined;
    const digest = job ? undefined : new StreamDigest();
    let bytes: Uint8Array;
    try {
      bytes = await this.storage.get(key, undefined, {
        ...(into ? { into } : {}),
        onChunk: (piece) => (job ? job.update(piece) : digest!.update(piece)),
      });
    } catch (err) {
      job?.abort();
      if (err instanceof NotFoundError) {
        throw new CorruptCheckpointError(manifest.key, `file ${entry.name} (${entry.key}) listed in the manifest is missing`);
      }
      if (err instanceof SizeMismatchError) {
        throw new CorruptCheckpointError(manifest.key, `file ${entry.name} has ${err.actual} bytes, the manifest records ${entry.size}`);
      }
      throw err;
    }
    if (bytes.byteLength !== entry.size) {
      job?.abort();
      throw new CorruptCheckpointError(manifest.key, `file ${entry.name} has ${bytes.byteLength} bytes, the manifest records ${entry.size}`);
    }
    const sha256 = job ? await job.digest() : digest!.sha256;
    if (sha256 !== entry.sha256) {
      throw new CorruptCheckpointError(manifest.key, `file ${entry.name} has sha256 ${sha256}, the manifest records ${entry.sha256}`);
    }
    return bytes;
  }

  /** Loads every file (or the named ones) of a committed checkpoint, verified. */
  async load(ref: CheckpointRef, options: { files?: string[] } = {}): Promise<LoadedCheckpoint> {
    const manifest = await this.manifest(ref);
    const wanted = options.files ?? manifest.files.map((f) => f.name);
    const files = new Map<string, Uint8Array>();
    for (const name of wanted) files.set(name, new Uint8Array()); // keep the caller's order
    await forEachLimit(wanted, this.concurrency, async (name) => {
      files.set(name, await this.readFile(manifest, name));
    });
    return { manifest, files };
  }

  /**
   * Streams every file of a committed checkpoint into the local folder `dir` (created; it must not hold files of
   * the same names), verifying size and sha256 on the way, without holding a file in memory: checkpoints too big
   * for `load` (a 7B policy with its optimizer is ~75 GB). A mismatch is a `CorruptCheckpointError` naming the file.
   * `options.skip`: files not to copy (e.g. an optimizer's state when only the weights are wanted).
   */
  async loadInto(ref: CheckpointRef, dir: string, options: { skip?: (name: string) => boolean } = {}): Promise<LoadedCheckpointOnDisk> {
    const manifest = await this.manifest(ref);
    await mkdir(dir, { recursive: true });
    const wanted = options.skip ? manifest.files.filter((entry) => !options.skip!(entry.name)) : manifest.files;
    const files = wanted.map((entry) => ({ name: entry.name, path: path.join(dir, entry.name), size: entry.size }));
    await forEachLimit(wanted, this.concurrency, async (entry) => {
      const key = `${manifest.key}/${entry.key}`;
      let body: Readable;
      try {
        body = await this.storage.getStream(key);
      } catch (err) {
        if (err instanceof NotFoundError) throw new CorruptCheckpointError(manifest.key, `file ${entry.name} (${entry.key}) listed in the manifest is missing`);
        throw err;
      }
      const digest = new StreamDigest();
      await pipeline(
        body,
        async function* (source: AsyncIterable<Uint8Array>) {
          for await (const chunk of source) {
            digest.update(chunk);
            yield chunk;
          }
        },
        createWriteStream(path.join(dir, entry.name), { flags: 'wx' }),
      );
      if (digest.size !== entry.size) throw new CorruptCheckpointError(manifest.key, `file ${entry.name} has ${digest.size} bytes, the manifest records ${entry.size}`);
      if (digest.sha256 !== entry.sha256) throw new CorruptCheckpointError(manifest.key, `file ${entry.name} has sha256 ${digest.sha256}, the manifest records ${entry.sha256}`);
    });
    return { manifest, files };
  }

  /** Reads every file of a checkpoint and checks it against the manifest; returns the manifest. */
  async verify(ref: CheckpointRef): Promise<CheckpointManifest> {
    return (await this.load(ref)).manifest;
  }

  /** Deletes one checkpoint: the manifest first (it stops existing), then its files; quarantined attempts stay. */
  async delete(ref: CheckpointRef): Promise<void> {
    const dir = this.dirOf(ref);
    await this.storage.delete(manifestKey(dir));
    const kept = await this.quarantinedKeys(dir);
    if (kept.size === 0) {
      await this.storage.deletePrefix(`${dir}/`);
      return;
    }
    for (const info of await this.storage.listAll(`${dir}/`)) {
      if (!kept.has(info.key)) await this.storage.delete(info.key);
    }
  }

  /**
   * Takes a committed checkpoint out of use because it did not read back intact (`reason`: the
   * `CorruptCheckpointError`'s message): writes its quarantine marker, then deletes its manifest if that still
   * commits this very attempt. `latest` then answers the checkpoint before it. The files stay. Returns the marker.
   */
  async quarantine(manifest: CheckpointManifest, reason: string): Promise<QuarantineMarker> {
    const marker: QuarantineMarker = { format: QUARANTINE_FORMAT, key: manifest.key, step: manifest.step, reason, quarantinedAt: this.now().toISOString(), manifest };
    try {
      await this.storage.put(quarantineMarkerKey(manifest.key, manifest.attempt), new TextEncoder().encode(`${JSON.stringify(marker, null, 2)}\n`), {
        ifAbsent: true,
        contentType: 'application/json',
      });
    } catch (err) {
      if (!(err instanceof AlreadyExistsError)) throw err; // another worker quarantined it first
    }
    const current = await this.manifest(manifest.key).catch((err: unknown) => {
      if (err instanceof CheckpointNotFoundError || err instanceof CorruptCheckpointError) return undefined;
      throw err;
    });
    if (current?.attempt === manifest.attempt) await this.storage.delete(manifestKey(manifest.key));
    return marker;
  }

  /** The quarantine markers of a stage's checkpoints, ascending by step. */
  async quarantined(runId: string, stage: string): Promise<QuarantineMarker[]> {
    const markers: QuarantineMarker[] = [];
    for (const info of await this.storage.listAll(`${checkpointsPrefix(runId, stage)}/`)) {
      if (!QUARANTINE_RE.test(info.key.split('/').at(-1) ?? '')) continue;
      markers.push(JSON.parse(new TextDecoder().decode(await this.storage.get(info.key))) as QuarantineMarker);
    }
    return markers.sort((a, b) => a.step - b.step);
  }

  /** Keys in a checkpoint directory that quarantine keeps: the markers and the files of the attempts they name. */
  private async quarantinedKeys(dir: string, listing?: ObjectInfo[]): Promise<Set<string>> {
    const kept = new Set<string>();
    const all = listing ?? (await this.storage.listAll(`${dir}/`));
    for (const info of all) {
      if (!QUARANTINE_RE.test(info.key.slice(dir.length + 1))) continue;
      kept.add(info.key);
      const attempt = /quarantined-([0-9a-f]+)\.json$/.exec(info.key)![1];
      for (const file of all) if (file.key.startsWith(`${dir}/${attempt}/`)) kept.add(file.key);
    }
    return kept;
  }

  /**
   * Keeps the newest `keepLast` committed checkpoints and the best by `keepBest`; deletes the other committed
   * ones, losing attempts inside kept ones, and incomplete saves older than the latest committed step (newer
   * ones may still be in progress).
   */
  async retain(runId: string, stage: string, policy: RetentionPolicy): Promise<RetentionResult> {
    if (!Number.isInteger(policy.keepLast) || policy.keepLast < 1) {
      throw new RangeError(`retention keepLast must be an integer ≥ 1 (got ${policy.keepLast}): the latest checkpoint is always kept`);
    }
    const { committed, incomplete } = await this.inventory(runId, stage);
    const keep = new Set(committed.slice(-policy.keepLast).map((m) => m.step));
    if (policy.keepBest) {
      const { metric, mode } = policy.keepBest;
      let best: CheckpointManifest | undefined;
      for (const m of committed) {
        const value = m.metrics[metric];
        if (value === undefined || !Number.isFinite(value)) continue;
        const bestValue = best?.metrics[metric];
        if (best === undefined || bestValue === undefined || (mode === 'min' ? value < bestValue : value > bestValue)) best = m;
      }
      if (best) keep.add(best.step);
    }
    const result: RetentionResult = { kept: [], deleted: [], orphansRemoved: 0 };
    for (const m of committed) {
      if (keep.has(m.step)) {
        result.kept.push(m.step);
        // Remove files of other attempts at this step (zombie or retried writers that lost the commit), but not
        // quarantined ones.
        const listing = await this.storage.listAll(`${m.key}/`);
        const referenced = new Set([manifestKey(m.key), ...m.files.map((f) => `${m.key}/${f.key}`), ...(await this.quarantinedKeys(m.key, listing))]);
        for (const info of listing) {
          if (!referenced.has(info.key)) {
            await this.storage.delete(info.key);
            result.orphansRemoved++;
          }
        }
      } else {
        await this.delete(m.key);
        result.deleted.push(m.step);
      }
    }
    const latestStep = committed.at(-1)?.step ?? -1;
    for (const step of incomplete) {
      if (step < latestStep) result.orphansRemoved += await this.storage.deletePrefix(`${checkpointKey(runId, stage, step)}/`);
    }
    return result;
  }
}
