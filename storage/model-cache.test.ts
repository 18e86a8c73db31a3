/**
 * The model cache without a server: manifests are checked before anything is written (a path that could leave the
 * cache folder is refused), where the cache is (SOPHIA_MODEL_CACHE), and local models pass through unchanged. The
 * S3 side (upload, download, cache hits, damaged copies, crashes, access errors) is tested against the local stack's
 * SeaweedFS in test/integration/model-cache.test.ts.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../common/errors';
import { TINY_QWEN_NESTED } from '../config/testing/hf-configs';
import { loadTemporalConfig } from '../temporal.config';
import { CorruptModelError, modelCacheDir, parseModelManifest, resolveModel } from './model-cache';

const sha = 'a'.repeat(64);
const manifest = (files: unknown) => Buffer.from(JSON.stringify({ format: 'sophia-model', version: 1, files }));

describe('model manifests', () => {
  it('accepts clean relative paths with size and sha256', () => {
    expect(parseModelManifest(manifest([{ path: 'config.json', size: 10, sha256: sha }, { path: 'sub/x.bin', size: 0, sha256: sha }]), 'm').files).toHaveLength(2);
  });

  it.each([
    [[{ path: '../escape', size: 1, sha256: sha }], /file path "\.\.\/escape" is not a clean relative path/],
    [[{ path: '/etc/passwd', size: 1, sha256: sha }], /file path "\/etc\/passwd" is not a clean relative path/],
    [[{ path: 'a//b', size: 1, sha256: sha }], /is not a clean relative path/],
    [[{ path: 'a', size: 1, sha256: sha }, { path: 'a', size: 1, sha256: sha }], /file path "a" is listed twice/],
    [[{ path: 'sophia-model.json', size: 1, sha256: sha }], /names the manifest/],
    [[{ path: 'a', size: -1, sha256: sha }], /is not a \{ path, size, sha256 \} entry/],
    [[{ path: 'a', size: 1, sha256: 'ABC' }], /is not a \{ path, size, sha256 \} entry/],
  ])('refuses %j', (files, message) => {
    expect(() => parseModelManifest(manifest(files), 's3://b/p/sophia-model.json')).toThrow(CorruptModelError);
    expect(() => parseModelManifest(manifest(files), 's3://b/p/sophia-model.json')).toThrow(message);
  });

  it('refuses what is not a manifest', () => {
    expect(() => parseModelManifest(Buffer.from('{'), 'm')).toThrow(/m is not valid JSON/);
    expect(() => parseModelManifest(Buffer.from('{"files": []}'), 'm')).toThrow(/m is not a Sophia model manifest/);
  });
});

describe('the model cache folder', () => {
  it('is SOPHIA_MODEL_CACHE (an absolute path), else {SOPHIA_HOME}/models', () => {
    expect(modelCacheDir(loadTemporalConfig({}), '/home/me/.sophia')).toBe('/home/me/.sophia/models');
    expect(modelCacheDir(loadTemporalConfig({ SOPHIA_MODEL_CACHE: '/var/cache/sophia/models' }), '/x')).toBe('/var/cache/sophia/models');
    expect(() => loadTemporalConfig({ SOPHIA_MODEL_CACHE: 'models' })).toThrow(/^SOPHIA_MODEL_CACHE: "models" is not an absolute path/);
  });
});

describe('resolveModel of a local directory', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sophia-model-local-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('returns it as it is, after checking its config.json; refuses a bad location naming the field', async () => {
    const model = path.join(dir, 'tiny');
    mkdirSync(model);
    writeFileSync(path.join(model, 'config.json'), JSON.stringify(TINY_QWEN_NESTED));
    await expect(resolveModel(model, { cacheDir: path.join(dir, 'cache') })).resolves.toBe(model);
    await expect(resolveModel(path.join(dir, 'none'), { cacheDir: dir, field: 'engine.rewardModel' })).rejects.toThrow(/^engine\.rewardModel: ".*none" does not exist here/);
    const err: unknown = await resolveModel('s3://Bad/x', { cacheDir: dir }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).field).toBe('engine.model');
  });
});
