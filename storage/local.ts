/**
 * `LocalStorage`: the `Storage` port over a directory (the embedded default, and what tests use without S3).
 *
 * Atomicity: every put writes a temp file under `{root}/.sophia-tmp/`, fsyncs it, then renames it into place
 * (or hard-links it, for `ifAbsent`, so that the existence check and the write are one atomic step). Readers
 * never see partial objects and a crash leaves at most a stray temp file, which listings ignore.
 *
 * Limitation of any filesystem: a key cannot be both an object and a prefix of other keys ("a" and "a/b").
 * Sophia's key layout never needs that; such a put fails with a clear error.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, type Dirent, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { AlreadyExistsError, NotFoundError, SizeMismatchError, SophiaError, StorageConfigError, StorageFullError } from '../common/errors';
import { StreamDigest, hashedSlices, hashedStream } from './hashing';
import { assertValidKey, assertValidPrefix, RESERVED_SEGMENT_PREFIX } from './keys';
import { type ByteRange, type GetOptions, type ObjectInfo, type PutBody, type PutOptions, type PutResult, resolveRange, Storage } from './types';

export interface LocalStorageOptions {
  /** fsync files and directories on put (default true). Off only for scratch data. */
  fsync?: boolean;
}

const TMP_DIR = `${RESERVED_SEGMENT_PREFIX}tmp`;
/** Piece size of pipelined reads and writes. */
const READ_CHUNK_BYTES = 4 << 20;

function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err).code) : undefined;
}

export class LocalStorage extends Storage {
  readonly root: string;
  readonly location: string;
  private readonly fsync: boolean;

  constructor(root: string, options: LocalStorageOptions = {}) {
    super();
    this.root = path.resolve(root);
    this.location = `local:${this.root}`;
    this.fsync = options.fsync ?? true;
  }

  /** Maps a validated key to a path, and double-checks that it stays inside the root. */
  private pathOf(key: string): string {
    assertValidKey(key);
    const full = path.resolve(this.root, ...key.split('/'));
    if (!full.startsWith(this.root + path.sep)) {
      throw new SophiaError('input', `key ${JSON.stringify(key)} resolves outside ${this.root}`);
    }
    return full;
  }

  async put(key: string, body: PutBody, options: PutOptions = {}): Promise<PutResult> {
    const target = this.pathOf(key);
    if (options.ifAbsent && !(body instanceof Uint8Array)) {
      throw new TypeError(`put(${key}): ifAbsent needs an in-memory Uint8Array body`);
    }
    const tmpDir = path.join(this.root, TMP_DIR);
    await fs.mkdir(tmpDir, { recursive: true }).catch((err: unknown) => {
      throw this.writeError(key, err);
    });
    const tmp = path.join(tmpDir, `${randomBytes(8).toString('hex')}.part`);
    try {
      const digest = new StreamDigest();
      await this.writeFile(tmp, body instanceof Uint8Array ? hashedSlices(body, digest) : hashedStream(body, digest));
      await this.moveIntoPlace(tmp, target, key, options.ifAbsent ?? false);
      return { key, size: digest.size, sha256: digest.sha256 };
    } catch (err) {
      // ENOENT here is a race with a delete (moveIntoPlace retries it), not a folder that cannot exist.
      throw errnoCode(err) === 'ENOENT' ? err : this.writeError(key, err);
    } finally {
      await fs.rm(tmp, { force: true });
    }
  }

  /**
   * A write the file system refused for a reason retrying will not fix (no permission, a read-only file system, a
   * root folder that cannot be created) as a `StorageConfigError`; a full disk as a retryable error that says so.
   */
  private writeError(key: string, err: unknown): unknown {
    const code = errnoCode(err);
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS' || code === 'ENOENT' || code === 'ENOTDIR') {
      return new StorageConfigError(`cannot write ${key} under ${this.root} (${code})`, {
        cause: err,
        hint: 'Use a storage folder this process can create and write (--storage DIR or SOPHIA_STORAGE)',
      });
    }
    if (code === 'ENOSPC' || code === 'EDQUOT') {
      return new StorageFullError(`cannot write ${key} under ${this.root}: the disk is full (${code})`, { cause: err, hint: 'Free space on that disk; the write is retried' });
    }
    return err;
  }

  /**
   * Writes chunks to `file` and fsyncs it. Pipelined: writing piece k (thread pool) overlaps producing piece
   * k+1 (hashing it) on this thread.
   */
  private async writeFile(file: string, chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<void> {
    const handle = await fs.open(file, 'w');
    let position = 0;
    let pending: Promise<void> = Promise.resolve();
    const writeFully = async (chunk: Uint8Array, at: number): Promise<void> => {
      let done = 0;
      while (done < chunk.byteLength) {
        const { bytesWritten } = await handle.write(chunk, done, chunk.byteLength - done, at + done);
        done += bytesWritten;
      }
    };
    try {
      for await (const chunk of chunks) {
        await pending;
        pending = writeFully(chunk, position);
        position += chunk.byteLength;
      }
      await pending;
      if (this.fsync) await handle.sync();
    } finally {
      await pending.catch(() => undefined);
      await handle.close();
    }
  }

  private async moveIntoPlace(tmp: string, target: string, key: string, ifAbsent: boolean): Promise<void> {
    const dir = path.dirname(target);
    // A concurrent delete may remove an empty parent between mkdir and rename: retry once.
    for (let attempt = 0; ; attempt++) {
      await fs.mkdir(dir, { recursive: true });
      try {
        if (ifAbsent) await fs.link(tmp, target);
        else await fs.rename(tmp, target);
        break;
      } catch (err) {
        const code = errnoCode(err);
        if (code === 'EEXIST' && ifAbsent) throw new AlreadyExistsError(key, this.location);
        if (code === 'ENOENT' && attempt === 0) continue;
        if (code === 'EISDIR' || code === 'ENOTDIR' || code === 'EEXIST') {
          throw new SophiaError('input', `key ${JSON.stringify(key)} collides with a prefix of other keys in ${this.location}`, {
            cause: err,
            hint: 'On a local directory a key cannot also be the prefix of other keys',
          });
        }
        throw err;
      }
    }
    if (this.fsync) await this.syncDir(dir);
  }

  private async syncDir(dir: string): Promise<void> {
    const handle = await fs.open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  private async openForRead(key: string): Promise<{ handle: fs.FileHandle; size: number }> {
    const file = this.pathOf(key);
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(file, 'r');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') throw new NotFoundError(key, this.location);
      throw err;
    }
    const stat = await handle.stat();
    if (!stat.isFile()) {
      await handle.close();
      throw new NotFoundError(key, this.location);
    }
    return { handle, size: stat.size };
  }

  async get(key: string, range?: ByteRange, options: GetOptions = {}): Promise<Uint8Array> {
    const { handle, size } = await this.openForRead(key);
    try {
      const { start, end } = range ? resolveRange(range, size, () => key) : { start: 0, end: size - 1 };
      const length = end - start + 1;
      if (options.into && options.into.byteLength !== length) throw new SizeMismatchError(key, options.into.byteLength, length);
      const out = options.into ?? Buffer.allocUnsafe(length);
      // Pipelined: the read of piece k+1 (thread pool) overlaps onChunk(piece k) on this thread.
      const readAt = async (offset: number): Promise<number> => {
        const { bytesRead } = await handle.read(out, offset, Math.min(READ_CHUNK_BYTES, out.length - offset), start + offset);
        if (bytesRead === 0) throw new SophiaError('unavailable', `${key} shrank while being read from ${this.location}`);
        return bytesRead;
      };
      let done = 0;
      let pending = out.length > 0 ? readAt(0) : undefined;
      while (pending) {
        const n = await pending;
        const pieceStart = done;
        done += n;
        pending = done < out.length ? readAt(done) : undefined;
        options.onChunk?.(out.subarray(pieceStart, done));
      }
      return out;
    } finally {
      await handle.close();
    }
  }

  async getStream(key: string, range?: ByteRange): Promise<Readable> {
    const { handle, size } = await this.openForRead(key);
    let bounds: { start: number; end: number };
    try {
      bounds = range ? resolveRange(range, size, () => key) : { start: 0, end: size - 1 };
    } catch (err) {
      await handle.close();
      throw err;
    }
    if (bounds.end < bounds.start) {
      await handle.close();
      return Readable.from([]);
    }
    return createReadStream('', { fd: handle, start: bounds.start, end: bounds.end, highWaterMark: 1 << 20 });
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const stat = await fs.stat(this.pathOf(key));
      return stat.isFile() ? { key, size: stat.size, lastModified: stat.mtime } : undefined;
    } catch (err) {
      if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') return undefined;
      throw err;
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    assertValidPrefix(prefix);
    // Walk from the deepest directory the prefix fully names; filter by string prefix like S3 does.
    const slash = prefix.lastIndexOf('/');
    const baseKey = slash === -1 ? '' : prefix.slice(0, slash);
    const found: ObjectInfo[] = [];
    await this.walk(baseKey, prefix, found);
    found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    yield* found;
  }

  private async walk(dirKey: string, prefix: string, out: ObjectInfo[]): Promise<void> {
    const dir = dirKey === '' ? this.root : path.join(this.root, ...dirKey.split('/'));
    let entries: Dirent[];
    try {
      entries = await fs.readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') return;
      throw err;
    }
    for (const entry of entries) {
      if (entry.name.startsWith(RESERVED_SEGMENT_PREFIX)) continue;
      const key = dirKey === '' ? entry.name : `${dirKey}/${entry.name}`;
      if (entry.isDirectory()) {
        // Descend only where keys below can still match the prefix.
        if (prefix.startsWith(`${key}/`) || key.startsWith(prefix) || `${key}/`.startsWith(prefix)) {
          await this.walk(key, prefix, out);
        }
      } else if (entry.isFile() && key.startsWith(prefix)) {
        try {
          const stat = await fs.stat(path.join(dir, entry.name));
          out.push({ key, size: stat.size, lastModified: stat.mtime });
        } catch (err) {
          if (errnoCode(err) !== 'ENOENT') throw err; // deleted while listing: skip it
        }
      }
    }
  }

  async delete(key: string): Promise<void> {
    const file = this.pathOf(key);
    try {
      await fs.unlink(file);
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      if (code === 'EISDIR' || code === 'EPERM') return; // a prefix, not an object
      throw err;
    }
    // Remove parents that became empty, so listings and disk stay tidy.
    let dir = path.dirname(file);
    while (dir.startsWith(this.root + path.sep)) {
      try {
        await fs.rmdir(dir);
      } catch {
        break; // not empty (or already gone): stop climbing
      }
      dir = path.dirname(dir);
    }
  }
}
