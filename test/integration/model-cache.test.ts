/**
 * Models in S3 against the local stack's SeaweedFS (storage/model-cache.ts, `sophia model upload`): a small model
 * directory (a tiny config.json and a few MiB of random bytes as "weights": no real weights needed) is uploaded with
 * its manifest last, downloaded once into a cache and verified; a second call is a cache hit; a damaged cached copy is
 * downloaded again; a prefix without manifest, files that differ from the manifest and wrong credentials are refused
 * with what to do; and a download SIGKILLed mid-way (a real child process) leaves nothing that looks complete.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ConfigError, StorageConfigError, StorageFullError } from '../../common/errors';
import { main } from '../../cli/main';
import { TINY_QWEN_NESTED } from '../../config/testing/hf-configs';
import { CorruptModelError, MODEL_MANIFEST, type ModelManifest, resolveModel, uploadModel } from '../../storage/model-cache';
import { S3Storage } from '../../storage/s3';
import { canMountSmallDisk, mountSmallDisk } from '../../storage/testing/small-disk';
import { REPO_ROOT, requireStack, stackS3Options } from './stack';

const s3 = stackS3Options();
const env = {
  SOPHIA_S3_ENDPOINT: s3.endpoint!,
  SOPHIA_S3_REGION: s3.region!,
  SOPHIA_S3_ACCESS_KEY_ID: s3.credentials!.accessKeyId,
  SOPHIA_S3_SECRET_ACCESS_KEY: s3.credentials!.secretAccessKey,
};
const root = `test/model-cache/${randomBytes(4).toString('hex')}`;
const uriOf = (name: string) => `s3://${s3.bucket}/${root}/${name}`;
const work = mkdtempSync(path.join(tmpdir(), 'sophia-model-cache-'));
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** A model directory: config.json, "weights", a tokenizer, a nested file, and a hidden .cache/ that is not uploaded. */
function modelDir(name: string, weightBytes = 3 << 20): string {
  const dir = path.join(work, 'src', name);
  mkdirSync(path.join(dir, 'sub'), { recursive: true });
  mkdirSync(path.join(dir, '.cache', 'huggingface'), { recursive: true });
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(TINY_QWEN_NESTED));
  writeFileSync(path.join(dir, 'model.safetensors'), randomBytes(weightBytes));
  writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify({ model: name }));
  writeFileSync(path.join(dir, 'sub', 'extra.json'), '{}');
  writeFileSync(path.join(dir, '.cache', 'huggingface', 'download.lock'), 'x');
  return dir;
}

/** The stack's bucket at this test's prefix. */
const bucket = () => new S3Storage({ ...s3, prefix: root });

function cacheEntries(cacheDir: string): string[] {
  return existsSync(cacheDir) ? readdirSync(cacheDir).sort() : [];
}

beforeAll(async () => {
  await requireStack();
});

afterAll(async () => {
  const storage = bucket();
  for (const { key } of await storage.listAll('')) await storage.delete(key);
  await storage.close();
  rmSync(work, { recursive: true, force: true });
});

describe('models in S3 (real SeaweedFS)', () => {
  it('uploads files, then the manifest last; downloads once into the cache, verified; the second call is a cache hit', async () => {
    const src = modelDir('a');
    const manifest = await uploadModel(src, uriOf('a'), { env });
    expect(manifest.files.map((f) => f.path)).toEqual(['config.json', 'model.safetensors', 'sub/extra.json', 'tokenizer.json']);
    for (const f of manifest.files) expect(f).toEqual({ path: f.path, size: readFileSync(path.join(src, f.path)).length, sha256: sha256(readFileSync(path.join(src, f.path))) });
    const storage = bucket();
    expect(JSON.parse((await storage.get(`a/${MODEL_MANIFEST}`)).toString()) as ModelManifest).toEqual(manifest);

    const cacheDir = path.join(work, 'cache-a');
    const dir = await resolveModel(uriOf('a'), { cacheDir, env });
    expect(path.basename(dir)).toMatch(new RegExp(`^${s3.bucket}--test--model-cache--[0-9a-f]{8}--a@[0-9a-f]{16}$`));
    for (const f of manifest.files) expect(readFileSync(path.join(dir, f.path)).equals(readFileSync(path.join(src, f.path)))).toBe(true);
    expect(existsSync(path.join(dir, '.cache'))).toBe(false);
    expect(cacheEntries(cacheDir)).toEqual([path.basename(dir)]); // no temp folder left

    // Cache hit: only the manifest is read from S3 (the weights object is gone now, and the call still succeeds).
    await storage.delete('a/model.safetensors');
    await storage.close();
    await expect(resolveModel(uriOf('a'), { cacheDir, env })).resolves.toBe(dir);
  });

  it('downloads a damaged cached copy again: sizes are always checked, sha256 when asked', async () => {
    const src = modelDir('b');
    await uploadModel(src, uriOf('b'), { env });
    const cacheDir = path.join(work, 'cache-b');
    const dir = await resolveModel(uriOf('b'), { cacheDir, env });
    const weights = path.join(dir, 'model.safetensors');
    const original = readFileSync(path.join(src, 'model.safetensors'));

    truncateSync(weights, 1000);
    await expect(resolveModel(uriOf('b'), { cacheDir, env })).resolves.toBe(dir);
    expect(readFileSync(weights).equals(original)).toBe(true);

    const flipped = Buffer.from(original);
    flipped[12345] = flipped[12345]! ^ 0xff;
    writeFileSync(weights, flipped);
    await resolveModel(uriOf('b'), { cacheDir, env });
    expect(readFileSync(weights).equals(flipped)).toBe(true); // same size: a plain hit does not hash
    await resolveModel(uriOf('b'), { cacheDir, env, verifySha256: true });
    expect(readFileSync(weights).equals(original)).toBe(true);
  });

  it('refuses a prefix without manifest, saying how to make one', async () => {
    const storage = bucket();
    await storage.put('c/config.json', Buffer.from(JSON.stringify(TINY_QWEN_NESTED)));
    await storage.close();
    const cacheDir = path.join(work, 'cache-c');
    const half: unknown = await resolveModel(uriOf('c'), { cacheDir, env, field: 'engine.rewardModel' }).catch((e: unknown) => e);
    expect(half).toBeInstanceOf(ConfigError);
    expect((half as Error).message).toMatch(new RegExp(`^engine\\.rewardModel: ${uriOf('c')} has no sophia-model\\.json: its upload did not finish, or its files were copied there by hand\\. Upload the model directory with \`sophia model upload DIR ${uriOf('c')}\``));
    await expect(resolveModel(uriOf('nothing'), { cacheDir, env })).rejects.toThrow(/has no sophia-model\.json: there is nothing under that prefix/);
    expect(cacheEntries(cacheDir)).toEqual([]);
  });

  it('refuses files that differ from the manifest, naming the file, and leaves nothing in the cache', async () => {
    const src = modelDir('d');
    await uploadModel(src, uriOf('d'), { env });
    const storage = bucket();
    const original = readFileSync(path.join(src, 'model.safetensors'));
    await storage.put('d/model.safetensors', randomBytes(original.length));
    const cacheDir = path.join(work, 'cache-d');
    const err: unknown = await resolveModel(uriOf('d'), { cacheDir, env }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CorruptModelError);
    expect((err as Error).message).toMatch(new RegExp(`^${uriOf('d')}/model\\.safetensors has sha256 [0-9a-f]{64}; sophia-model\\.json says ${sha256(original)}\\. Upload the model again under a new prefix`));
    expect(cacheEntries(cacheDir)).toEqual([]);
    await storage.put('d/tokenizer.json', Buffer.from('{}'));
    await storage.put('d/model.safetensors', original);
    await expect(resolveModel(uriOf('d'), { cacheDir, env })).rejects.toThrow(/d\/tokenizer\.json has 2 bytes; sophia-model\.json says \d+/);
    expect(cacheEntries(cacheDir)).toEqual([]);
    await storage.close();
  });

  it('leaves no model that looks complete when the downloading process is SIGKILLed; the next call cleans up and completes', async () => {
    const src = modelDir('e', 16 << 20);
    await uploadModel(src, uriOf('e'), { env });
    const cacheDir = path.join(work, 'cache-e');
    // The script runs in this node process (tsx registered in it, as bin/sophia.js does), so SIGKILL reaches the download.
    const script = `require('tsx/cjs/api').register(); require(${JSON.stringify(path.join(REPO_ROOT, 'test/integration/model-cache-child.ts'))});`;
    const child = spawn(process.execPath, ['-e', script, uriOf('e'), cacheDir], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (chunk: Buffer) => chunk.toString().includes('downloading') && resolve());
        child.on('exit', () => reject(new Error('the child exited before it started downloading')));
      });
    } finally {
      child.kill('SIGKILL');
    }
    expect(await exited).toBe('SIGKILL');
    // Only the dead process's temp folder: nothing under a model's name.
    const left = cacheEntries(cacheDir);
    expect(left).toHaveLength(1);
    expect(left[0]).toMatch(new RegExp(`^\\.partial-${child.pid}-[0-9a-f]+@`));

    const dir = await resolveModel(uriOf('e'), { cacheDir, env });
    expect(cacheEntries(cacheDir)).toEqual([path.basename(dir)]);
    expect(readFileSync(path.join(dir, 'model.safetensors')).equals(readFileSync(path.join(src, 'model.safetensors')))).toBe(true);
  });

  it('refuses wrong credentials (non-retryable, naming bucket and endpoint), an existing model and a folder that is not a model', async () => {
    const src = modelDir('f');
    await uploadModel(src, uriOf('f'), { env });
    const denied: unknown = await resolveModel(uriOf('f'), { cacheDir: path.join(work, 'cache-f'), env: { ...env, SOPHIA_S3_SECRET_ACCESS_KEY: 'wrong' } }).catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(StorageConfigError);
    expect((denied as StorageConfigError).retryable).toBe(false);
    expect((denied as Error).message).toMatch(new RegExp(`access denied .* to bucket ${s3.bucket} at ${s3.endpoint!.replace(/[.]/g, '\\.')}`));
    await expect(uploadModel(src, uriOf('f'), { env })).rejects.toThrow(new RegExp(`^URI: ${uriOf('f')} already holds a model \\(sophia-model\\.json\\)\\. Models are immutable`));
    const notModel = path.join(work, 'src', 'not-a-model');
    mkdirSync(notModel, { recursive: true });
    await expect(uploadModel(notModel, uriOf('g'), { env })).rejects.toThrow(/^DIR: ".*not-a-model" has no readable config\.json/);
    await expect(uploadModel(src, `s3://${s3.bucket}`, { env })).rejects.toThrow(/^URI: .* names a bucket but no prefix/);
  });

  it.skipIf(!canMountSmallDisk())('refuses, retryably, a model larger than the cache disk has free, and leaves nothing there (tmpfs; root only)', async () => {
    await uploadModel(modelDir('full'), uriOf('full'), { env });
    const disk = mountSmallDisk(1 << 20);
    try {
      const err: unknown = await resolveModel(uriOf('full'), { cacheDir: disk.dir, env }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StorageFullError);
      expect((err as StorageFullError).retryable).toBe(true);
      expect((err as Error).message).toMatch(new RegExp(`^${uriOf('full')} is 3\\.0 MiB but the model cache ${disk.dir} has [\\d.]+ MiB free\\. Free space there, or point SOPHIA_MODEL_CACHE at a larger disk`));
      expect(cacheEntries(disk.dir)).toEqual([]);
    } finally {
      disk.unmount();
    }
  });

  it('sophia model upload: prints each file and how to name the model; refuses bad arguments with the usage', async () => {
    const out = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const error = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      expect(await main(['model', 'upload', modelDir('h'), uriOf('h')], env)).toBe(0);
      const printed = out.mock.calls.map((c) => String(c[0])).join('');
      expect(printed).toMatch(/ {2}model\.safetensors {2}3\.0 MiB {2}sha256 [0-9a-f]{12}…/);
      expect(printed).toContain(`${uriOf('h')}: 4 files, 3.0 MiB, then sophia-model.json (4 entries).\nName it in a run config: engine: { kind: torch, model: ${uriOf('h')} }`);
      expect(await main(['model', 'upload', 'only-one'], env)).toBe(2);
      expect(String(error.mock.calls.at(-1)?.[0])).toMatch(/model upload needs DIR and s3:\/\/BUCKET\/PREFIX \(got 1 arguments\)/);
      expect(await main(['model', 'download'], env)).toBe(2);
      expect(String(error.mock.calls.at(-1)?.[0])).toMatch(/model "download": the only model command is upload/);
    } finally {
      out.mockRestore();
      error.mockRestore();
    }
  });
});
