/**
 * Models in S3 (`engine.model: s3://bucket/prefix`): uploaded once with `sophia model upload`, downloaded once per
 * machine into a local cache, and verified byte for byte, so the torch engine only ever loads a complete local
 * directory and no worker downloads from the Hugging Face Hub at run time.
 *
 * In S3 a model is a prefix holding the files of a Hugging Face model directory and, written last, its manifest
 * `sophia-model.json`: `{ format: "sophia-model", version: 1, files: [{ path, size, sha256 }] }`. A prefix without
 * the manifest is not a model (an upload that did not finish, or files copied by hand).
 *
 * The cache (`modelCacheDir`: SOPHIA_MODEL_CACHE, else `{SOPHIA_HOME}/models`) holds one folder per manifest,
 * `{bucket}--{prefix, "/" as "--"}@{first 16 hex digits of the manifest's sha256}`: the files and a copy of the
 * manifest. A folder appears only by the rename of a complete temp folder whose every file matched its size and
 * sha256 (`.partial-{pid}-{random}@{host}`, fsynced first), so a crash mid-download never leaves a half model under a
 * final name; the temp folders of dead processes of this host are removed by the next call. A re-upload under the
 * same prefix has another manifest, so another folder: a cache never serves stale bytes. Each call reads the
 * manifest from S3 (one small GET), and a cache hit re-checks the files' sizes (and their sha256 with
 * `verifySha256`); a damaged cached copy is replaced by a fresh download.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, statfs, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { AlreadyExistsError, ConfigError, InvalidKeyError, NotFoundError, SophiaError, StorageFullError } from '../common/errors';
import { parseModelLocation, parseS3ModelUri, readPretrainedShape } from '../config/pretrained';
import { StreamDigest, sha256Hex } from './hashing';
import { assertValidKey } from './keys';
import { openStorage } from './open';
import { makeOwnedFolder, removeDeadFolders } from './owned-folders';
import type { Storage } from './types';

type Env = Readonly<Record<string, string | undefined>>;

/** The manifest's name in a model's prefix (and in its cached copy). */
export const MODEL_MANIFEST = 'sophia-model.json';

export interface ModelManifestFile {
  /** Relative, "/"-separated path inside the model directory. */
  path: string;
  size: number;
  /** Lowercase hex. */
  sha256: string;
}

export interface ModelManifest {
  format: 'sophia-model';
  version: 1;
  files: ModelManifestFile[];
}

/** Files of a model in S3 do not match its manifest (a corrupt or half-replaced upload): not retried. */
export class CorruptModelError extends SophiaError {
  constructor(message: string, options: { hint?: string } = {}) {
    super('corrupt', message, { hint: options.hint ?? 'Upload the model again under a new prefix (`sophia model upload DIR s3://bucket/new-prefix`) and point the run config at it' });
  }
}

const HOW_TO_UPLOAD = (uri: string) => `Upload the model directory with \`sophia model upload DIR ${uri}\` (it writes every file, then ${MODEL_MANIFEST} last)`;

/** Parses and checks a manifest; `where` names it in errors. Paths must be clean relative keys (no "..", no "/" at either end). */
export function parseModelManifest(bytes: Uint8Array, where: string): ModelManifest {
  let data: unknown;
  try {
    data = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw new CorruptModelError(`${where} is not valid JSON: ${(err as Error).message}`);
  }
  const m = data as Partial<ModelManifest>;
  if (typeof m !== 'object' || m === null || m.format !== 'sophia-model' || m.version !== 1 || !Array.isArray(m.files)) {
    throw new CorruptModelError(`${where} is not a Sophia model manifest (format "sophia-model", version 1, files)`);
  }
  const seen = new Set<string>();
  for (const f of m.files as unknown[]) {
    const file = f as Partial<ModelManifestFile>;
    const ok = typeof file === 'object' && file !== null && typeof file.path === 'string' && Number.isSafeInteger(file.size) && file.size! >= 0 && typeof file.sha256 === 'string' && /^[0-9a-f]{64}$/.test(file.sha256);
    if (!ok) throw new CorruptModelError(`${where}: ${JSON.stringify(f)} is not a { path, size, sha256 } entry`);
    try {
      assertValidKey(file.path!);
    } catch (err) {
      // A path that could leave the cache folder ("../x", "/etc/x") is refused before anything is written.
      if (err instanceof InvalidKeyError) throw new CorruptModelError(`${where}: file path ${JSON.stringify(file.path)} is not a clean relative path`);
      throw err;
    }
    if (file.path === MODEL_MANIFEST || seen.has(file.path!)) throw new CorruptModelError(`${where}: file path ${JSON.stringify(file.path)} is listed twice or names the manifest`);
    seen.add(file.path!);
  }
  return { format: 'sophia-model', version: 1, files: m.files };
}

/** Where this machine keeps downloaded models: SOPHIA_MODEL_CACHE (`temporal.config.ts`), else `{sophiaHome}/models`. */
export function modelCacheDir(config: { modelCacheDir?: string | undefined }, sophiaHome: string): string {
  return config.modelCacheDir ?? path.join(sophiaHome, 'models');
}

export interface ResolveModelOptions {
  /** The cache folder (`modelCacheDir`). */
  cacheDir: string;
  /** S3 settings (SOPHIA_S3_*; storage/open.ts). */
  env?: Env;
  /** On a cache hit, re-hash every file too (default: sizes only). */
  verifySha256?: boolean;
  /** The run-config field named in errors (default engine.model). */
  field?: string;
  /** Called as bytes arrive (a heartbeat for the activity that waits): bytes so far of the whole model. */
  onProgress?: (progress: { file: string; bytes: number; totalBytes: number }) => void;
  /** Files downloaded at once (default 4). */
  concurrency?: number;
}

/**
 * The local directory of the model `uri` names: a local directory as it is (after checking its config.json), an
 * s3:// prefix downloaded into the cache once and verified (see the module comment). Errors name `field`: a prefix
 * without manifest (with how to make one), a file whose size or sha256 differs (naming the file), access problems
 * (`StorageConfigError` from the S3 adapter, naming bucket and endpoint; network trouble is retryable).
 */
export async function resolveModel(uri: string, options: ResolveModelOptions): Promise<string> {
  const field = options.field ?? 'engine.model';
  const location = parseModelLocation(uri, field);
  if (location.kind === 'local') {
    readPretrainedShape(location.dir, field);
    return location.dir;
  }
  const storage = openStorage(location.uri, options.env ?? {});
  try {
    const manifestBytes = await readManifest(storage, location.uri, field);
    const manifest = parseModelManifest(manifestBytes, `${location.uri}/${MODEL_MANIFEST}`);
    const slug = `${location.bucket}--${location.prefix.replaceAll('/', '--')}`.slice(0, 150);
    const final = path.join(options.cacheDir, `${slug}@${sha256Hex(manifestBytes).slice(0, 16)}`);
    await mkdir(options.cacheDir, { recursive: true }).catch((err: unknown) => rethrowLocal(err, options.cacheDir));
    await removeDeadFolders(options.cacheDir, PARTIAL); // left by crashed downloads of this host
    if (!(await cachedCopyIsWhole(final, manifest, options.verifySha256 ?? false))) {
      await rm(final, { recursive: true, force: true }); // a damaged copy (or none): download afresh
      const temp = await download(storage, location.uri, manifest, manifestBytes, options);
      try {
        await rename(temp, final);
      } catch (err) {
        await rm(temp, { recursive: true, force: true });
        // Another process of this machine finished the same model first: use its copy.
        const code = (err as NodeJS.ErrnoException).code;
        if (!((code === 'ENOTEMPTY' || code === 'EEXIST') && (await cachedCopyIsWhole(final, manifest, false)))) rethrowLocal(err, final);
      }
    }
    // The same checks as a local directory's: a config.json of a supported class.
    readPretrainedShape(final, field);
    return final;
  } finally {
    await storage.close();
  }
}

async function readManifest(storage: Storage, uri: string, field: string): Promise<Uint8Array> {
  try {
    return await storage.get(MODEL_MANIFEST);
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
    let files = 0;
    for await (const _ of storage.list('')) {
      files++;
      break;
    }
    throw new ConfigError(field, `${uri} has no ${MODEL_MANIFEST}: ${files > 0 ? 'its upload did not finish, or its files were copied there by hand' : 'there is nothing under that prefix'}`, {
      hint: HOW_TO_UPLOAD(uri),
    });
  }
}

/** Whether `dir` holds every file of `manifest` at its size (and sha256 when asked). */
async function cachedCopyIsWhole(dir: string, manifest: ModelManifest, verifySha256: boolean): Promise<boolean> {
  try {
    if (!(await stat(dir)).isDirectory()) return false;
  } catch {
    return false;
  }
  for (const file of manifest.files) {
    const local = path.join(dir, ...file.path.split('/'));
    try {
      if ((await stat(local)).size !== file.size) return false;
      if (verifySha256 && (await sha256OfFile(local)) !== file.sha256) return false;
    } catch {
      return false;
    }
  }
  return true;
}

async function sha256OfFile(file: string): Promise<string> {
  const digest = new StreamDigest();
  for await (const chunk of createReadStream(file)) digest.update(chunk as Buffer);
  return digest.sha256;
}

/** Temp folders of downloads in progress (`makeOwnedFolder`): `.partial-{pid}-{random}@{host}`. */
const PARTIAL = '.partial-';

/** Downloads every file of `manifest` into a fresh temp folder, verified and fsynced; returns the folder. */
async function download(storage: Storage, uri: string, manifest: ModelManifest, manifestBytes: Uint8Array, options: ResolveModelOptions): Promise<string> {
  const totalBytes = manifest.files.reduce((sum, f) => sum + f.size, 0);
  const free = await statfs(options.cacheDir).then((s) => s.bavail * s.bsize, () => Number.POSITIVE_INFINITY);
  if (free < totalBytes) {
    throw new StorageFullError(`${uri} is ${formatSize(totalBytes)} but the model cache ${options.cacheDir} has ${formatSize(free)} free`, {
      hint: 'Free space there, or point SOPHIA_MODEL_CACHE at a larger disk',
    });
  }
  const temp = await makeOwnedFolder(options.cacheDir, PARTIAL).catch((err: unknown) => rethrowLocal(err, options.cacheDir));
  try {
    let bytes = 0;
    const queue = [...manifest.files];
    const worker = async () => {
      for (let file = queue.shift(); file !== undefined; file = queue.shift()) {
        try {
          await downloadFile(storage, uri, file, temp, (n) => {
            bytes += n;
            options.onProgress?.({ file: file.path, bytes, totalBytes });
          });
        } catch (err) {
          queue.length = 0; // the other workers take no new file
          throw err;
        }
      }
    };
    // Every worker has stopped writing into `temp` before it is removed (a rejection of Promise.all would leave the
    // others writing while `rm` empties the folder: ENOTEMPTY, seen in CI).
    const settled = await Promise.allSettled(Array.from({ length: Math.max(1, options.concurrency ?? 4) }, worker));
    const failure = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failure) throw failure.reason;
    await writeFile(path.join(temp, MODEL_MANIFEST), manifestBytes);
    await fsyncPath(path.join(temp, MODEL_MANIFEST));
    await fsyncPath(temp);
    return temp;
  } catch (err) {
    await rm(temp, { recursive: true, force: true });
    throw err;
  }
}

async function downloadFile(storage: Storage, uri: string, file: ModelManifestFile, dir: string, onBytes: (n: number) => void): Promise<void> {
  const local = path.join(dir, ...file.path.split('/'));
  await mkdir(path.dirname(local), { recursive: true });
  const digest = new StreamDigest();
  let body;
  try {
    body = await storage.getStream(file.path);
  } catch (err) {
    if (err instanceof NotFoundError) throw new CorruptModelError(`${uri}/${file.path} is listed in ${MODEL_MANIFEST} but missing`);
    throw err;
  }
  await pipeline(
    body,
    async function* (source: AsyncIterable<Buffer>) {
      for await (const chunk of source) {
        digest.update(chunk);
        onBytes(chunk.length);
        yield chunk;
      }
    },
    createWriteStream(local, { flags: 'wx' }),
  ).catch((err: unknown) => rethrowLocal(err, local));
  if (digest.size !== file.size) throw new CorruptModelError(`${uri}/${file.path} has ${digest.size} bytes; ${MODEL_MANIFEST} says ${file.size}`);
  if (digest.sha256 !== file.sha256) throw new CorruptModelError(`${uri}/${file.path} has sha256 ${digest.sha256}; ${MODEL_MANIFEST} says ${file.sha256}`);
  await fsyncPath(local);
}

async function fsyncPath(p: string): Promise<void> {
  const handle = await open(p, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Local file-system failures of the cache: a full disk is retryable, permissions are the operator's to fix. */
function rethrowLocal(err: unknown, where: string): never {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') throw new StorageFullError(`model cache ${where}: the disk is full (${code})`, { cause: err, hint: 'Free space there, or point SOPHIA_MODEL_CACHE at a larger disk' });
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS' || code === 'ENOTDIR') {
    throw new ConfigError('SOPHIA_MODEL_CACHE', `cannot write ${where} (${code})`, { cause: err, hint: 'Point SOPHIA_MODEL_CACHE at a folder this worker can write' });
  }
  throw err;
}

const formatSize = (n: number) => (n >= 1024 ** 3 ? `${(n / 1024 ** 3).toFixed(1)} GiB` : `${(n / 1024 ** 2).toFixed(1)} MiB`);

// ---- upload -------------------------------------------------------------------------------------------------

export interface UploadModelOptions {
  env?: Env;
  /** Called after each file is stored. */
  onFile?: (file: ModelManifestFile) => void;
}

/**
 * Uploads a local Hugging Face model directory to `uri` (s3://bucket/prefix): every file (hidden entries such as
 * `.cache/` skipped, symbolic links followed), each hashed while it is written, then the manifest last, written only
 * if absent. A prefix that already holds a model is refused: models are immutable, so caches keyed by manifest stay
 * right.
 */
export async function uploadModel(dir: string, uri: string, options: UploadModelOptions = {}): Promise<ModelManifest> {
  const location = parseS3ModelUri(uri, 'URI');
  readPretrainedShape(path.resolve(dir), 'DIR');
  const files = await listModelFiles(path.resolve(dir));
  const storage = openStorage(location.uri, options.env ?? {});
  try {
    if (await storage.head(MODEL_MANIFEST)) {
      throw new ConfigError('URI', `${location.uri} already holds a model (${MODEL_MANIFEST})`, {
        hint: `Models are immutable: upload to a new prefix, or delete this one first (aws s3 rm --recursive ${location.uri})`,
      });
    }
    const entries: ModelManifestFile[] = [];
    for (const file of files) {
      const size = (await stat(file.local)).size;
      const put = await storage.put(file.key, createReadStream(file.local));
      if (put.size !== size) throw new ConfigError('DIR', `${file.local} changed while it was uploaded (${size} bytes before, ${put.size} sent)`, { hint: 'Upload a directory nothing writes to' });
      const entry = { path: file.key, size: put.size, sha256: put.sha256 };
      entries.push(entry);
      options.onFile?.(entry);
    }
    const manifest: ModelManifest = { format: 'sophia-model', version: 1, files: entries };
    try {
      await storage.put(MODEL_MANIFEST, Buffer.from(`${JSON.stringify(manifest, null, 1)}\n`), { ifAbsent: true, contentType: 'application/json' });
    } catch (err) {
      if (err instanceof AlreadyExistsError) throw new ConfigError('URI', `${location.uri} got a ${MODEL_MANIFEST} from another upload while this one ran`, { hint: 'Upload to a new prefix' });
      throw err;
    }
    return manifest;
  } finally {
    await storage.close();
  }
}

/** The files of a model directory as storage keys, sorted; hidden entries and a copied-in manifest are skipped. */
async function listModelFiles(root: string): Promise<{ key: string; local: string }[]> {
  const out: { key: string; local: string }[] = [];
  const walk = async (dir: string, prefix: string): Promise<void> => {
    for (const name of (await readdir(dir)).sort()) {
      if (name.startsWith('.') || (prefix === '' && name === MODEL_MANIFEST)) continue;
      const local = path.join(dir, name);
      const info = await stat(local); // follows symbolic links (the Hub's cache links snapshots to blobs)
      const key = prefix === '' ? name : `${prefix}/${name}`;
      if (info.isDirectory()) await walk(local, key);
      else if (info.isFile()) {
        assertValidKey(key);
        out.push({ key, local });
      }
    }
  };
  await walk(root, '');
  return out;
}
