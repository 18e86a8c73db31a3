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
import { createReadStream, createWriteStream, type Dirent, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AlreadyExistsError, NotFoundError, SophiaError } from '../common/errors';
import { assertValidKey, assertValidPrefix, RESERVED_SEGMENT_PREFIX } from './keys';
import { type ByteRange, type ObjectInfo, type PutBody, type PutOptions, type PutResult, resolveRange, Storage } from './types';

export interface LocalStorageOptions {
  /** fsync files and directories on put (default true). Off only for scratch data. */
  fsync?: boolean;
}

const TMP_DIR = `${RESERVED_SEGMENT_PREFIX}tmp`;

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
    await fs.mkdir(tmpDir, { recursive: true });
    const tmp = path.join(tmpDir, `${randomBytes(8).toString('hex')}.part`);
    try {
      const size = await this.writeFile(tmp, body);
      await this.moveIntoPlace(tmp, target, key, options.ifAbsent ?? false);
      return { key, size };
    } finally {
      await fs.rm(tmp, { force: true });
    }
  }

  private async writeFile(file: string, body: PutBody): Promise<number> {
    if (body instanceof Uint8Array) {
      const handle = await fs.open(file, 'w');
      try {
        await handle.writeFile(body);
        if (this.fsync) await handle.sync();
      } finally {
        await handle.close();
      }
      return body.byteLength;
    }
    let size = 0;
    const counted = Readable.from(
      (async function* () {
        for await (const chunk of body as AsyncIterable<Uint8Array> | Iterable<Uint8Array>) {
          size += chunk.byteLength;
          yield chunk;
        }
      })(),
    );
    await pipeline(counted, createWriteStream(file, { highWaterMark: 1 << 20 }));
    if (this.fsync) {
      const handle = await fs.open(file, 'r+');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
    return size;
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

  async get(key: string, range?: ByteRange): Promise<Uint8Array> {
    const { handle, size } = await this.openForRead(key);
    try {
      const { start, end } = range ? resolveRange(range, size, () => key) : { start: 0, end: size - 1 };
      const out = Buffer.allocUnsafe(end - start + 1);
      let done = 0;
      while (done < out.length) {
        const { bytesRead } = await handle.read(out, done, out.length - done, start + done);
        if (bytesRead === 0) throw new SophiaError('unavailable', `${key} shrank while being read from ${this.location}`);
        done += bytesRead;
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
