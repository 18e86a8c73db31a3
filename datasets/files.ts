/**
 * Where a dataset's bytes are: a local file or directory, or an `s3://bucket/prefix` read through the `Storage` port.
 *
 * `DatasetFiles` is the small read-only view the readers need: list the files under a root, read a byte range (parquet
 * footers and row groups), read a whole small object (an image), or stream one (a JSONL file). Paths are
 * "/"-separated and relative to the root, so ids and reports do not depend on the machine that read them.
 *
 * `parseDatasetLocation` parses what a config says, as config/pretrained.ts does for models: absolute local paths and
 * s3:// URIs only, with errors that name the config field.
 */
import { createReadStream, promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { ConfigError, NotFoundError } from '../common/errors';
import { S3_BUCKET_NAME } from '../storage/keys';
import type { Storage } from '../storage/types';

export type DatasetLocation = { kind: 'local'; path: string } | { kind: 's3'; bucket: string; prefix: string; uri: string };

const USAGE = 'Give an absolute local path (a data file or a directory) or s3://BUCKET/PREFIX';

/** Parses a dataset location; throws a `ConfigError` naming `field`. */
export function parseDatasetLocation(value: string, field: string): DatasetLocation {
  const text = value.trim();
  if (text === '') throw new ConfigError(field, 'is empty', { hint: USAGE });
  if (/^s3:\/\//i.test(text)) {
    const match = /^s3:\/\/([^/]*)\/?(.*)$/.exec(text);
    const bucket = match?.[1] ?? '';
    const prefix = (match?.[2] ?? '').replace(/\/+$/, '');
    if (!match || !S3_BUCKET_NAME.test(bucket)) {
      throw new ConfigError(field, `${JSON.stringify(text)}: ${JSON.stringify(bucket)} is not an S3 bucket name (3–63 lowercase letters, digits, "." and "-")`, { hint: USAGE });
    }
    if (prefix.split('/').some((s) => s === '' || s === '.' || s === '..') && prefix !== '') {
      throw new ConfigError(field, `${JSON.stringify(text)}: the prefix has an empty, "." or ".." segment`, { hint: USAGE });
    }
    return { kind: 's3', bucket, prefix, uri: prefix === '' ? `s3://${bucket}` : `s3://${bucket}/${prefix}` };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) throw new ConfigError(field, `${JSON.stringify(text)}: only local paths and s3:// URIs are supported`, { hint: USAGE });
  if (!text.startsWith('/')) {
    throw new ConfigError(field, `${JSON.stringify(text)} is a relative path, which would mean another folder on each worker`, { hint: USAGE });
  }
  return { kind: 'local', path: path.normalize(text).replace(/(.)\/+$/, '$1') };
}

export interface FileEntry {
  /** "/"-separated, relative to the root. */
  path: string;
  size: number;
}

/** A read-only tree of files under one root. */
export abstract class DatasetFiles {
  /** Where the root is, for messages ("/data/geo3k", "s3://bucket/prefix"). */
  abstract readonly location: string;
  /** Every file under the root, sorted by path. */
  abstract list(): Promise<FileEntry[]>;
  /** The file's size, or undefined when it does not exist. */
  abstract size(file: string): Promise<number | undefined>;
  /** Bytes [start, end) of a file. */
  abstract read(file: string, start: number, end: number): Promise<Uint8Array>;
  /** A whole file, or undefined when it does not exist. */
  abstract readAll(file: string): Promise<Uint8Array | undefined>;
  abstract stream(file: string): Promise<Readable>;
}

/** Files under a local directory. */
export class LocalDatasetFiles extends DatasetFiles {
  readonly location: string;
  constructor(readonly root: string) {
    super();
    this.location = root;
  }

  private full(file: string): string {
    return path.join(this.root, ...file.split('/'));
  }

  async list(): Promise<FileEntry[]> {
    const entries = await fs.readdir(this.root, { recursive: true, withFileTypes: true }).catch((err: unknown) => {
      throw new NotFoundError(this.root, 'the local file system', { hint: 'Check the dataset location', cause: err });
    });
    const out: FileEntry[] = [];
    for (const entry of entries) {
      if (!entry.isFile()) continue;
      const abs = path.join(entry.parentPath, entry.name);
      out.push({ path: path.relative(this.root, abs).split(path.sep).join('/'), size: (await fs.stat(abs)).size });
    }
    return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  async size(file: string): Promise<number | undefined> {
    const stat = await fs.stat(this.full(file)).catch(() => undefined);
    return stat?.isFile() ? stat.size : undefined;
  }

  async read(file: string, start: number, end: number): Promise<Uint8Array> {
    const handle = await fs.open(this.full(file), 'r');
    try {
      const out = new Uint8Array(end - start);
      let done = 0;
      while (done < out.length) {
        const { bytesRead } = await handle.read(out, done, out.length - done, start + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return done === out.length ? out : out.subarray(0, done);
    } finally {
      await handle.close();
    }
  }

  async readAll(file: string): Promise<Uint8Array | undefined> {
    return fs.readFile(this.full(file)).catch((err: unknown) => {
      const code = (err as { code?: string }).code;
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') return undefined;
      throw err;
    });
  }

  stream(file: string): Promise<Readable> {
    return Promise.resolve(createReadStream(this.full(file)));
  }
}

/** Files under a key prefix of a `Storage` (an S3 bucket in production; any adapter in tests). */
export class StorageDatasetFiles extends DatasetFiles {
  readonly location: string;
  constructor(
    readonly storage: Storage,
    /** Key prefix without a trailing "/"; "" = the whole store. */
    readonly prefix: string,
    location?: string,
  ) {
    super();
    this.location = location ?? `${storage.location}/${prefix}`;
  }

  private key(file: string): string {
    return this.prefix === '' ? file : `${this.prefix}/${file}`;
  }

  async list(): Promise<FileEntry[]> {
    const base = this.prefix === '' ? '' : `${this.prefix}/`;
    const infos = await this.storage.listAll(base);
    return infos.map((info) => ({ path: info.key.slice(base.length), size: info.size }));
  }

  async size(file: string): Promise<number | undefined> {
    return (await this.storage.head(this.key(file)))?.size;
  }

  read(file: string, start: number, end: number): Promise<Uint8Array> {
    return this.storage.get(this.key(file), { offset: start, length: end - start });
  }

  async readAll(file: string): Promise<Uint8Array | undefined> {
    try {
      return await this.storage.get(this.key(file));
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
  }

  stream(file: string): Promise<Readable> {
    return this.storage.getStream(this.key(file));
  }
}

/** Opens the Storage that holds an S3 bucket's keys (the default opens S3 with the SOPHIA_S3_* environment). */
export type StorageForBucket = (bucket: string) => Storage;

/**
 * The files a location names, and the data files to read among them. A file location reads that one file (its
 * directory is the root); a directory or prefix reads what `selectDataFiles` picks under it.
 */
export async function openLocation(location: DatasetLocation, storageFor: StorageForBucket): Promise<{ files: DatasetFiles; single?: string }> {
  if (location.kind === 'local') {
    const stat = await fs.stat(location.path).catch(() => undefined);
    if (!stat) throw new NotFoundError(location.path, 'the local file system', { hint: 'Check the dataset location (an absolute path on every worker that reads it)' });
    if (stat.isFile()) return { files: new LocalDatasetFiles(path.dirname(location.path)), single: path.basename(location.path) };
    return { files: new LocalDatasetFiles(location.path) };
  }
  const storage = storageFor(location.bucket);
  if (location.prefix !== '' && (await storage.head(location.prefix)) !== undefined) {
    const slash = location.prefix.lastIndexOf('/');
    const dir = slash < 0 ? '' : location.prefix.slice(0, slash);
    return { files: new StorageDatasetFiles(storage, dir, `s3://${location.bucket}/${dir}`), single: location.prefix.slice(slash + 1) };
  }
  return { files: new StorageDatasetFiles(storage, location.prefix, location.uri) };
}

const DATA_FILE = /\.(parquet|jsonl|json)$/i;

/** `*` matches within one path segment; everything else is literal. */
function globToRegExp(glob: string): RegExp {
  const escaped = glob.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp(`^${escaped.join('[^/]*')}$`);
}

/** The data files to read, in path order: those matching `patterns`, or every .parquet/.jsonl/.json file. */
export function selectDataFiles(entries: FileEntry[], patterns: string[] | undefined): FileEntry[] {
  if (patterns === undefined || patterns.length === 0) return entries.filter((e) => DATA_FILE.test(e.path));
  const res = patterns.map(globToRegExp);
  return entries.filter((e) => res.some((re) => re.test(e.path)));
}
