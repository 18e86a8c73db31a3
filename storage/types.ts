/**
 * The byte-level storage port (docs/architecture.md §2; house rule 4 in §6).
 *
 * Abstractions:
 *  - `Storage`: put/get/list/delete of opaque objects under "/"-separated keys, with ranged reads, streaming
 *    reads and streaming (multipart) writes. Adapters: `LocalStorage` (a directory; the embedded default) and
 *    `S3Storage` (AWS S3 and S3-compatible servers).
 *  - `ObjectInfo`: what a listing returns.
 *
 * Semantics every adapter guarantees (the contract suite in `storage/contract.ts` checks them):
 *  - a `put` is atomic: readers see the old object or the whole new one, never a partial write;
 *  - `put(..., { ifAbsent: true })` fails with `AlreadyExistsError` when the key exists (first writer wins);
 *  - `get` of a missing key fails with `NotFoundError`; `head` returns `undefined`; `delete` is a no-op;
 *  - `list(prefix)` yields every object whose key starts with `prefix` (order is adapter-specific: S3-compatible
 *    servers differ, e.g. SeaweedFS lists directory by directory); `listAll` returns them in ascending key order;
 *  - keys are validated by `assertValidKey` before any I/O.
 *
 * Typed records (checkpoints, datasets, metrics) live a layer above, in `storage/checkpoints.ts` and friends.
 */
import type { Readable } from 'node:stream';

/** A body to store: bytes in memory, or a stream of chunks (written with multipart/streaming I/O). */
export type PutBody = Uint8Array | Readable | AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

export interface PutOptions {
  /** Fail with `AlreadyExistsError` if the key exists. Only for in-memory bodies (manifests, markers). */
  ifAbsent?: boolean;
  contentType?: string;
}

export interface PutResult {
  key: string;
  /** Bytes written. */
  size: number;
  /** Lowercase hex sha256 of the bytes written, computed while writing (checkpoint manifests record it). */
  sha256: string;
}

/** Bytes `[offset, offset + length)` of an object; `length` omitted = to the end. */
export interface ByteRange {
  offset: number;
  length?: number;
}

export interface GetOptions {
  /**
   * Read into this buffer instead of allocating one (it is returned). Its length must equal the object's (or
   * range's) size, else `SizeMismatchError`. Lets callers supply e.g. a SharedArrayBuffer-backed buffer that a
   * worker thread hashes while the read goes on.
   */
  into?: Uint8Array;
  /**
   * Called with each piece of the result (a view into the returned buffer, in order) as soon as it has arrived,
   * while the next piece is still being read: lets callers hash during the read instead of after it.
   */
  onChunk?: (chunk: Uint8Array) => void;
}

export interface ObjectInfo {
  key: string;
  size: number;
  lastModified: Date | undefined;
}

export abstract class Storage {
  /** Where the bytes live, for logs and errors ("local:/data/sophia", "s3://bucket/prefix"). No secrets. */
  abstract readonly location: string;

  abstract put(key: string, body: PutBody, options?: PutOptions): Promise<PutResult>;

  /** The whole object, or a range of it, in memory. */
  abstract get(key: string, range?: ByteRange, options?: GetOptions): Promise<Uint8Array>;

  /** The object, or a range of it, as a stream (for objects too large to hold twice in memory). */
  abstract getStream(key: string, range?: ByteRange): Promise<Readable>;

  /** Size and modification time, or `undefined` if the key does not exist. */
  abstract head(key: string): Promise<ObjectInfo | undefined>;

  /** Every object whose key starts with `prefix`, streamed page by page, in an adapter-specific order. */
  abstract list(prefix: string): AsyncIterable<ObjectInfo>;

  /** Removes the object; removing a missing key is not an error. */
  abstract delete(key: string): Promise<void>;

  /** Releases connections and handles. */
  async close(): Promise<void> {}

  async exists(key: string): Promise<boolean> {
    return (await this.head(key)) !== undefined;
  }

  /** Every object under `prefix`, in ascending key order (UTF-16 code unit order, = byte order for ASCII keys). */
  async listAll(prefix: string): Promise<ObjectInfo[]> {
    const out: ObjectInfo[] = [];
    for await (const info of this.list(prefix)) out.push(info);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /** Deletes every object under `prefix`; returns how many. */
  async deletePrefix(prefix: string): Promise<number> {
    const infos = await this.listAll(prefix);
    for (const info of infos) await this.delete(info.key);
    return infos.length;
  }
}

/** Checks a requested range against an object size; returns the inclusive end offset. */
export function resolveRange(range: ByteRange, size: number, describe: () => string): { start: number; end: number } {
  const { offset, length } = range;
  if (!Number.isInteger(offset) || offset < 0) {
    throw new RangeError(`range.offset must be a non-negative integer (got ${offset}) for ${describe()}`);
  }
  if (length !== undefined && (!Number.isInteger(length) || length < 0)) {
    throw new RangeError(`range.length must be a non-negative integer (got ${length}) for ${describe()}`);
  }
  if (offset > size) {
    throw new RangeError(`range.offset ${offset} is past the end of ${describe()} (${size} bytes)`);
  }
  const end = length === undefined ? size : Math.min(size, offset + length);
  return { start: offset, end: end - 1 };
}
