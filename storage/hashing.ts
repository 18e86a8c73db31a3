/**
 * Hashing helpers for integrity checks: sha256 of bytes and of streams as they flow, and a stable hash of
 * JSON-like configs (key order does not matter) for checkpoint manifests.
 */
import { createHash, type Hash } from 'node:crypto';
import { setImmediate as nextTurn } from 'node:timers/promises';

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Accumulates sha256 and byte count over chunks as they pass by. */
export class StreamDigest {
  private readonly hash: Hash = createHash('sha256');
  private digestHex: string | undefined;
  size = 0;

  update(chunk: Uint8Array): void {
    if (this.digestHex !== undefined) throw new Error('StreamDigest.update after digest');
    this.hash.update(chunk);
    this.size += chunk.byteLength;
  }

  get sha256(): string {
    this.digestHex ??= this.hash.digest('hex');
    return this.digestHex;
  }
}

/** Default slice for streaming in-memory buffers: large enough for throughput, small enough to overlap I/O. */
const STREAM_CHUNK_BYTES = 4 << 20;

/**
 * Yields `data` in slices (views, no copies), feeding each slice to `digest` first: hashing the next slice
 * overlaps with the I/O of the previous one.
 */
export function* hashedSlices(data: Uint8Array, digest: StreamDigest, chunkBytes = STREAM_CHUNK_BYTES): Generator<Uint8Array> {
  for (let offset = 0; offset < data.byteLength; offset += chunkBytes) {
    const slice = data.subarray(offset, Math.min(data.byteLength, offset + chunkBytes));
    digest.update(slice);
    yield slice;
  }
}

/**
 * Hashes an in-memory buffer slice by slice, yielding to the event loop between slices, so that concurrent
 * I/O on the same thread (e.g. a multipart upload of the same buffer) keeps making progress.
 */
export async function hashInterleaved(data: Uint8Array, digest: StreamDigest, chunkBytes = STREAM_CHUNK_BYTES): Promise<void> {
  for (const _slice of hashedSlices(data, digest, chunkBytes)) await nextTurn();
}

/** Passes a stream through unchanged while feeding `digest`. */
export async function* hashedStream(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, digest: StreamDigest): AsyncGenerator<Uint8Array> {
  for await (const chunk of source) {
    digest.update(chunk);
    yield chunk;
  }
}

/** JSON with object keys sorted at every level, so equal configs serialize (and hash) equally. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      return Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    }
    return v;
  });
}

/** sha256 of the canonical JSON of a config: what manifests record as `configHash`. */
export function hashConfig(config: unknown): string {
  return createHash('sha256').update(canonicalJson(config)).digest('hex');
}
