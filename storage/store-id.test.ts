/**
 * A store's identity marker: created once, agreed on by concurrent first users, read back unchanged, and a clear
 * non-retryable error when it is not a marker.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { StorageConfigError } from '../common/errors';
import { LocalStorage } from './local';
import { STORE_MARKER_KEY, identifyStore, readStoreId } from './store-id';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function freshStore(): LocalStorage {
  const dir = mkdtempSync(path.join(tmpdir(), 'sophia-store-id-'));
  dirs.push(dir);
  return new LocalStorage(dir);
}

describe('store identity', () => {
  it('gives a new store a random id on first use and the same id ever after', async () => {
    const storage = freshStore();
    expect(await readStoreId(storage)).toBeUndefined();
    const first = await identifyStore(storage);
    expect(first.location).toBe(storage.location);
    expect(first.id).toMatch(/^[0-9a-f]{32}$/);
    expect(await identifyStore(storage)).toEqual(first);
    expect(await readStoreId(new LocalStorage(storage.root))).toBe(first.id);
    const marker = JSON.parse(new TextDecoder().decode(await storage.get(STORE_MARKER_KEY))) as { id: string; createdAt: string };
    expect(marker.id).toBe(first.id);
    expect(Number.isNaN(Date.parse(marker.createdAt))).toBe(false);
    // Another store has another id, whatever its location.
    expect((await identifyStore(freshStore())).id).not.toBe(first.id);
  });

  it('lets concurrent first users agree on one id (put-if-absent: the first writer wins)', async () => {
    const storage = freshStore();
    // Separate adapters on the same folder, as separate processes would have.
    const ids = await Promise.all(Array.from({ length: 16 }, () => identifyStore(new LocalStorage(storage.root)).then((s) => s.id)));
    expect(new Set(ids).size).toBe(1);
    expect(await readStoreId(storage)).toBe(ids[0]);
  });

  it.each([
    ['not JSON', '{"id": "ab'],
    ['no id', '{"createdAt": "2026-01-01T00:00:00.000Z"}'],
    ['an id that is not 32 hex digits', '{"id": "../x", "createdAt": "2026-01-01T00:00:00.000Z"}'],
    ['an array', '[]'],
  ])('refuses a marker with %s, non-retryably, naming the object and the fix', async (_what, body) => {
    const storage = freshStore();
    await storage.put(STORE_MARKER_KEY, new TextEncoder().encode(body));
    for (const read of [() => readStoreId(storage), () => identifyStore(storage)]) {
      const err: unknown = await read().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StorageConfigError);
      expect((err as StorageConfigError).retryable).toBe(false);
      expect((err as Error).message).toContain(`${storage.location}/${STORE_MARKER_KEY}`);
      expect((err as Error).message).toMatch(/restore it.*or delete it/i);
    }
    // Nothing was overwritten.
    expect(new TextDecoder().decode(await storage.get(STORE_MARKER_KEY))).toBe(body);
  });
});
