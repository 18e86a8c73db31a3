/**
 * The storage contract: one suite of behaviours every `Storage` adapter, and the checkpoint store over it,
 * must show. `storage/local.contract.test.ts` runs it on a temp directory; `test/integration/s3.contract.test.ts`
 * runs it against the real S3-compatible server of the local stack.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AlreadyExistsError,
  CheckpointConflictError,
  CheckpointNotFoundError,
  CorruptCheckpointError,
  InvalidKeyError,
  NotFoundError,
  SizeMismatchError,
} from '../common/errors';
import { CheckpointStore } from './checkpoints';
import { sha256Hex } from './hashing';
import { checkpointKey } from './keys';
import type { Storage } from './types';

const MiB = 1 << 20;
const enc = (text: string) => new TextEncoder().encode(text);
const dec = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

/** Deterministic pseudo-random bytes (xorshift), so large payloads need no 64 MiB of entropy. */
function patternBytes(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  const view = new Uint32Array(out.buffer, 0, Math.floor(size / 4));
  let x = seed >>> 0 || 1;
  for (let i = 0; i < view.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    view[i] = x >>> 0;
  }
  for (let i = view.length * 4; i < size; i++) out[i] = i & 0xff;
  return out;
}

function* chunked(data: Uint8Array, chunk: number): Generator<Uint8Array> {
  for (let i = 0; i < data.length; i += chunk) yield data.subarray(i, i + chunk);
}

async function readAll(stream: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const part of stream) parts.push(part);
  return Buffer.concat(parts);
}

export function describeStorageContract(name: string, open: () => Promise<Storage>): void {
  describe(`storage contract: ${name}`, () => {
    let storage: Storage;
    let store: CheckpointStore;
    /** A fresh key namespace per test, so tests never see each other's objects. */
    const ns = () => `contract-${randomBytes(6).toString('hex')}`;

    beforeAll(async () => {
      storage = await open();
      store = new CheckpointStore(storage);
    });
    afterAll(async () => {
      await store?.close();
      await storage?.close();
    });

    describe('objects', () => {
      it('round-trips small objects and overwrites atomically', async () => {
        const key = `${ns()}/a/hello.txt`;
        expect(await storage.put(key, enc('hello'))).toEqual({ key, size: 5, sha256: sha256Hex(enc('hello')) });
        expect(dec(await storage.get(key))).toBe('hello');
        await storage.put(key, enc('hello again'));
        expect(dec(await storage.get(key))).toBe('hello again');
        expect((await storage.head(key))?.size).toBe(11);
        await storage.put(`${ns()}/empty`, new Uint8Array());
      });

      it('reports missing objects clearly and deletes idempotently', async () => {
        const key = `${ns()}/missing.bin`;
        await expect(storage.get(key)).rejects.toBeInstanceOf(NotFoundError);
        await expect(storage.getStream(key)).rejects.toBeInstanceOf(NotFoundError);
        expect(await storage.head(key)).toBeUndefined();
        await storage.delete(key);
        await storage.put(key, enc('x'));
        await storage.delete(key);
        expect(await storage.exists(key)).toBe(false);
      });

      it('serves byte ranges, whole and streamed', async () => {
        const key = `${ns()}/range.bin`;
        await storage.put(key, enc('0123456789'));
        expect(dec(await storage.get(key, { offset: 2, length: 3 }))).toBe('234');
        expect(dec(await storage.get(key, { offset: 7 }))).toBe('789');
        expect(dec(await storage.get(key, { offset: 8, length: 100 }))).toBe('89');
        expect((await storage.get(key, { offset: 4, length: 0 })).length).toBe(0);
        expect(dec(await readAll(await storage.getStream(key, { offset: 1, length: 4 })))).toBe('1234');
        expect(dec(await readAll(await storage.getStream(key)))).toBe('0123456789');
        await expect(storage.get(key, { offset: 11 })).rejects.toBeInstanceOf(RangeError);
        await expect(storage.get(key, { offset: -1 })).rejects.toBeInstanceOf(RangeError);
      });

      it('lists by string prefix; listAll in ascending key order', async () => {
        const root = ns();
        const keys = ['a/2', 'a/1', 'a/b/3', 'ab/4', 'b/5', 'a.c/6'].map((k) => `${root}/${k}`);
        for (const key of keys) await storage.put(key, enc(key));
        const list = async (prefix: string) => (await storage.listAll(prefix)).map((i) => i.key.slice(root.length + 1));
        expect(await list(`${root}/a/`)).toEqual(['a/1', 'a/2', 'a/b/3']);
        expect(await list(`${root}/a`)).toEqual(['a.c/6', 'a/1', 'a/2', 'a/b/3', 'ab/4']);
        expect(await list(`${root}/`)).toEqual(['a.c/6', 'a/1', 'a/2', 'a/b/3', 'ab/4', 'b/5']);
        expect(await list(`${root}/zz/`)).toEqual([]);
        const streamed: string[] = [];
        for await (const info of storage.list(`${root}/a`)) streamed.push(info.key.slice(root.length + 1));
        expect(streamed.sort()).toEqual(['a.c/6', 'a/1', 'a/2', 'a/b/3', 'ab/4']);
        const sizes = (await storage.listAll(`${root}/b/`)).map((i) => i.size);
        expect(sizes).toEqual([`${root}/b/5`.length]);
        expect(await storage.deletePrefix(`${root}/a/`)).toBe(3);
        expect(await list(`${root}/`)).toEqual(['a.c/6', 'ab/4', 'b/5']);
      });

      it('makes conditional puts first-writer-wins', async () => {
        const key = `${ns()}/once.json`;
        await storage.put(key, enc('first'), { ifAbsent: true });
        await expect(storage.put(key, enc('second'), { ifAbsent: true })).rejects.toBeInstanceOf(AlreadyExistsError);
        expect(dec(await storage.get(key))).toBe('first');
      });

      it.each(['../escape', '/abs/key', 'a//b', 'a/./b', 'a/../b', '', 'trailing/', 'back\\slash', '.sophia-tmp/x', 'nul\u0000'])(
        'rejects the key %j before any I/O',
        async (key) => {
          await expect(storage.put(key, enc('x'))).rejects.toBeInstanceOf(InvalidKeyError);
          await expect(storage.get(key)).rejects.toBeInstanceOf(InvalidKeyError);
          await expect(storage.delete(key)).rejects.toBeInstanceOf(InvalidKeyError);
        },
      );

      it('rejects traversal in listing prefixes', async () => {
        await expect(storage.listAll('../')).rejects.toBeInstanceOf(InvalidKeyError);
        await expect(storage.listAll('/etc')).rejects.toBeInstanceOf(InvalidKeyError);
      });

      it('round-trips a 72 MiB in-memory object (multipart on S3) and reads ranges across part boundaries', async () => {
        const key = `${ns()}/large.bin`;
        const data = patternBytes(72 * MiB + 123, 7);
        expect(await storage.put(key, data)).toEqual({ key, size: data.length, sha256: sha256Hex(data) });
        const back = await storage.get(key);
        expect(back.length).toBe(data.length);
        expect(sha256Hex(back)).toBe(sha256Hex(data));
        const offset = 16 * MiB - 10; // straddles the default 16 MiB part boundary
        const slice = await storage.get(key, { offset, length: 20 });
        expect(Buffer.from(slice).equals(Buffer.from(data.subarray(offset, offset + 20)))).toBe(true);
        const streamed = await readAll(await storage.getStream(key));
        expect(sha256Hex(streamed)).toBe(sha256Hex(data));
        // onChunk sees every byte of the result, in order, while it is read.
        const pieces: Uint8Array[] = [];
        const viaChunks = await storage.get(key, { offset: 5, length: 20 * MiB }, { onChunk: (c) => pieces.push(Uint8Array.from(c)) });
        expect(pieces.length).toBeGreaterThan(1);
        expect(sha256Hex(Buffer.concat(pieces))).toBe(sha256Hex(viaChunks));
        expect(sha256Hex(viaChunks)).toBe(sha256Hex(data.subarray(5, 5 + 20 * MiB)));
        // `into` fills the caller's buffer, and refuses one of the wrong size.
        const into = new Uint8Array(new SharedArrayBuffer(data.length));
        expect(await storage.get(key, undefined, { into })).toBe(into);
        expect(sha256Hex(into)).toBe(sha256Hex(data));
        await expect(storage.get(key, undefined, { into: new Uint8Array(10) })).rejects.toBeInstanceOf(SizeMismatchError);
      });

      it('round-trips a 66 MiB streamed object of unknown length', async () => {
        const key = `${ns()}/streamed.bin`;
        const data = patternBytes(66 * MiB + 5, 11);
        expect(await storage.put(key, chunked(data, 1_000_003))).toEqual({ key, size: data.length, sha256: sha256Hex(data) });
        expect((await storage.head(key))?.size).toBe(data.length);
        expect(sha256Hex(await storage.get(key))).toBe(sha256Hex(data));
      });
    });

    describe('checkpoints', () => {
      const files = (seed: number) => [
        { name: 'weights.bin', data: patternBytes(4096 + seed, seed) },
        { name: 'state.json', data: enc(JSON.stringify({ seed })) },
      ];

      it('saves, lists and loads a checkpoint with a manifest written last', async () => {
        const runId = ns();
        const manifest = await store.save({ runId, stage: 'sft', step: 10, files: files(1), configHash: 'c0ffee', metrics: { loss: 1.5 }, meta: { layers: 2 } });
        expect(manifest).toMatchObject({ runId, stage: 'sft', step: 10, key: `runs/${runId}/sft/checkpoints/00000010`, configHash: 'c0ffee', metrics: { loss: 1.5 }, meta: { layers: 2 } });
        expect(manifest.files.map((f) => f.name)).toEqual(['weights.bin', 'state.json']);
        expect(manifest.totalBytes).toBe(4097 + enc(JSON.stringify({ seed: 1 })).length);
        expect(await storage.exists(`${manifest.key}/manifest.json`)).toBe(true);
        expect((await store.latest(runId, 'sft'))?.step).toBe(10);
        const loaded = await store.load(manifest.key);
        expect(sha256Hex(loaded.files.get('weights.bin')!)).toBe(sha256Hex(files(1)[0]!.data));
        expect(dec(loaded.files.get('state.json')!)).toBe('{"seed":1}');
        expect(dec(await store.readFile({ runId, stage: 'sft', step: 10 }, 'state.json'))).toBe('{"seed":1}');
      });

      it('keeps an interrupted checkpoint (files, no manifest) invisible to latest', async () => {
        const runId = ns();
        await store.save({ runId, stage: 'rl', step: 2, files: files(2), configHash: 'h' });
        const dir3 = checkpointKey(runId, 'rl', 3);
        await storage.put(`${dir3}/deadbeef00000000/weights.bin`, patternBytes(100, 3)); // crash before the manifest
        expect((await store.latest(runId, 'rl'))?.step).toBe(2);
        expect((await store.list(runId, 'rl')).map((m) => m.step)).toEqual([2]);
        expect((await store.inventory(runId, 'rl')).incomplete).toEqual([3]);
        await expect(store.load(dir3)).rejects.toThrow(CheckpointNotFoundError);
        await expect(store.load(dir3)).rejects.toThrow(/incomplete: 1 file\(s\) but no manifest/);
        await expect(store.load(checkpointKey(runId, 'rl', 4))).rejects.toThrow(/does not exist/);
        expect(await store.latest(ns(), 'rl')).toBeUndefined();
      });

      it('detects a flipped byte, a truncated file and a missing file at load', async () => {
        const runId = ns();
        const m = await store.save({ runId, stage: 'sft', step: 1, files: files(5), configHash: 'h' });
        const weightsKey = `${m.key}/${m.files[0]!.key}`;
        const good = await storage.get(weightsKey);
        const flipped = Uint8Array.from(good);
        flipped[1234] = flipped[1234]! ^ 0x01;
        await storage.put(weightsKey, flipped);
        await expect(store.load(m.key)).rejects.toThrow(CorruptCheckpointError);
        await expect(store.load(m.key)).rejects.toThrow(/weights\.bin has sha256 [0-9a-f]{64}, the manifest records/);
        // Loading only the intact file still works.
        expect(dec((await store.load(m.key, { files: ['state.json'] })).files.get('state.json')!)).toBe('{"seed":5}');
        await storage.put(weightsKey, good.subarray(0, 100));
        await expect(store.load(m.key)).rejects.toThrow(/weights\.bin has 100 bytes, the manifest records 4101/);
        await storage.delete(weightsKey);
        await expect(store.verify(m.key)).rejects.toThrow(/weights\.bin .* listed in the manifest is missing/);
      });

      it('detects corruption in large files verified off-thread', async () => {
        const runId = ns();
        const big = patternBytes(9 * MiB + 7, 21);
        const m = await store.save({ runId, stage: 'sft', step: 1, files: [{ name: 'state.bin', data: big }], configHash: 'h' });
        expect(sha256Hex((await store.load(m.key)).files.get('state.bin')!)).toBe(sha256Hex(big));
        const key = `${m.key}/${m.files[0]!.key}`;
        const flipped = Uint8Array.from(big);
        flipped[8 * MiB + 3] = flipped[8 * MiB + 3]! ^ 0x80;
        await storage.put(key, flipped);
        await expect(store.load(m.key)).rejects.toThrow(/state\.bin has sha256 [0-9a-f]{64}, the manifest records/);
        await storage.put(key, big.subarray(0, 5 * MiB));
        await expect(store.load(m.key)).rejects.toThrow(/state\.bin has 5242880 bytes, the manifest records 9437191/);
        // The same checks on the main thread give the same verdicts.
        const plain = new CheckpointStore(storage, { hashWorker: false });
        await expect(plain.load(m.key)).rejects.toThrow(/state\.bin has 5242880 bytes/);
        await storage.put(key, big);
        expect((await plain.load(m.key)).manifest.step).toBe(1);
      });

      it('treats an unreadable manifest as corrupt and skips it for latest', async () => {
        const runId = ns();
        await store.save({ runId, stage: 'sft', step: 1, files: files(6), configHash: 'h' });
        const m2 = await store.save({ runId, stage: 'sft', step: 2, files: files(7), configHash: 'h' });
        await storage.put(`${m2.key}/manifest.json`, enc('{"format": "sophia.checkpoint.v1", "trunc'));
        await expect(store.manifest(m2.key)).rejects.toThrow(/manifest\.json is not valid UTF-8 JSON/);
        const inventory = await store.inventory(runId, 'sft');
        expect(inventory.invalid.map((i) => i.key)).toEqual([m2.key]);
        expect((await store.latest(runId, 'sft'))?.step).toBe(1);
      });

      it('makes a re-save idempotent and refuses to overwrite a committed step with other bytes', async () => {
        const runId = ns();
        const first = await store.save({ runId, stage: 'sft', step: 4, files: files(8), configHash: 'h' });
        const again = await store.save({ runId, stage: 'sft', step: 4, files: files(8), configHash: 'h' });
        expect(again).toEqual(first);
        await expect(store.save({ runId, stage: 'sft', step: 4, files: files(9), configHash: 'h' })).rejects.toBeInstanceOf(CheckpointConflictError);
        await store.verify(first.key); // the committed checkpoint is untouched
        const objects = await storage.listAll(`${first.key}/`);
        expect(objects.length).toBe(3); // manifest + 2 files: the losers cleaned up after themselves
      });

      it('lets exactly one of two racing writers commit a step', async () => {
        const runId = ns();
        const results = await Promise.allSettled([
          store.save({ runId, stage: 'rl', step: 7, files: files(10), configHash: 'h' }),
          store.save({ runId, stage: 'rl', step: 7, files: files(11), configHash: 'h' }),
        ]);
        const won = results.filter((r) => r.status === 'fulfilled');
        const lost = results.filter((r) => r.status === 'rejected');
        expect(won.length).toBe(1);
        expect(lost.length).toBe(1);
        expect((lost[0] as PromiseRejectedResult).reason).toBeInstanceOf(CheckpointConflictError);
        const loaded = await store.load(checkpointKey(runId, 'rl', 7));
        expect(loaded.manifest.attempt).toBe((won[0] as PromiseFulfilledResult<{ attempt: string }>).value.attempt);
      });

      it('retains the last K and the best by a metric, and removes orphans', async () => {
        const runId = ns();
        const losses = [5, 1, 4, 3, 2.5, 2];
        for (const [i, loss] of losses.entries()) {
          await store.save({ runId, stage: 'sft', step: i + 1, files: files(i), configHash: 'h', metrics: { loss, acc: i } });
        }
        const dir = (s: number) => checkpointKey(runId, 'sft', s);
        await storage.put(`${dir(6)}/0123456789abcdef/weights.bin`, enc('loser of a race')); // orphan attempt
        await storage.put(`${dir(0)}/0123456789abcdef/weights.bin`, enc('interrupted')); // incomplete, older than latest
        await storage.put(`${dir(9)}/0123456789abcdef/weights.bin`, enc('in progress')); // incomplete, newer: may still be running
        const result = await store.retain(runId, 'sft', { keepLast: 2, keepBest: { metric: 'loss', mode: 'min' } });
        expect(result.kept).toEqual([2, 5, 6]);
        expect(result.deleted).toEqual([1, 3, 4]);
        expect(result.orphansRemoved).toBe(2);
        expect((await store.list(runId, 'sft')).map((m) => m.step)).toEqual([2, 5, 6]);
        expect(await storage.listAll(`${dir(1)}/`)).toEqual([]);
        expect(await storage.listAll(`${dir(3)}/`)).toEqual([]);
        expect(await storage.listAll(`${dir(0)}/`)).toEqual([]);
        expect((await storage.listAll(`${dir(6)}/`)).length).toBe(3);
        expect((await storage.listAll(`${dir(9)}/`)).length).toBe(1);
        for (const s of [2, 5, 6]) await store.verify(dir(s));
        const max = await store.retain(runId, 'sft', { keepLast: 1, keepBest: { metric: 'acc', mode: 'max' } });
        expect(max.kept).toEqual([6]);
        await expect(store.retain(runId, 'sft', { keepLast: 0 })).rejects.toBeInstanceOf(RangeError);
      });

      it('quarantines a corrupt checkpoint: out of latest, files kept through retention and a re-save of its step', async () => {
        const runId = ns();
        const dir = (s: number) => checkpointKey(runId, 'sft', s);
        for (const step of [1, 2, 3]) await store.save({ runId, stage: 'sft', step, files: files(step), configHash: 'h', metrics: { loss: 4 - step } });
        const bad = (await store.latest(runId, 'sft'))!;
        const weightsKey = `${bad.key}/${bad.files[0]!.key}`;
        const flipped = Uint8Array.from(await storage.get(weightsKey));
        flipped[7] = flipped[7]! ^ 0x01;
        await storage.put(weightsKey, flipped);
        const error = await store.load(bad.key).catch((err: unknown) => err);
        expect(error).toBeInstanceOf(CorruptCheckpointError);
        const marker = await store.quarantine(bad, (error as Error).message);
        expect(marker).toMatchObject({ key: dir(3), step: 3, manifest: { attempt: bad.attempt } });
        // Out of use: latest is the step before; the quarantined step is neither committed nor an incomplete save.
        expect((await store.latest(runId, 'sft'))?.step).toBe(2);
        expect(await store.inventory(runId, 'sft')).toMatchObject({ incomplete: [], quarantined: [3] });
        expect((await store.quarantined(runId, 'sft')).map((m) => [m.step, m.reason])).toEqual([[3, expect.stringMatching(/weights\.bin has sha256/)]]);
        // Quarantining it again (a second worker) changes nothing.
        await store.quarantine(bad, 'again');
        expect((await store.quarantined(runId, 'sft')).map((m) => m.reason)).toEqual([expect.stringMatching(/weights\.bin has sha256/)]);
        // Training goes on from step 2 and commits step 3 again, beside the quarantined attempt.
        const redone = await store.save({ runId, stage: 'sft', step: 3, files: files(3), configHash: 'h', metrics: { loss: 1 } });
        expect(redone.attempt).not.toBe(bad.attempt);
        await store.save({ runId, stage: 'sft', step: 4, files: files(4), configHash: 'h', metrics: { loss: 0.5 } });
        // Retention keeps the quarantined files, whether it keeps the step's new checkpoint or deletes it.
        await store.retain(runId, 'sft', { keepLast: 2 });
        expect(sha256Hex(await storage.get(weightsKey))).toBe(sha256Hex(flipped));
        await store.retain(runId, 'sft', { keepLast: 1 });
        expect((await store.list(runId, 'sft')).map((m) => m.step)).toEqual([4]);
        expect(sha256Hex(await storage.get(weightsKey))).toBe(sha256Hex(flipped));
        expect((await store.quarantined(runId, 'sft')).map((m) => m.step)).toEqual([3]);
        expect(await store.inventory(runId, 'sft')).toMatchObject({ incomplete: [], quarantined: [3] });
      });

      it('saves and loads a 68 MiB checkpoint file streamed from a factory', async () => {
        const runId = ns();
        const big = patternBytes(68 * MiB, 13);
        const m = await store.save({ runId, stage: 'rm', step: 0, files: [{ name: 'weights.bin', stream: () => chunked(big, 3 * MiB) }], configHash: 'h' });
        expect(m.files[0]).toMatchObject({ size: big.length, sha256: sha256Hex(big) });
        const loaded = await store.load(m.key);
        expect(sha256Hex(loaded.files.get('weights.bin')!)).toBe(m.files[0]!.sha256);
      });

      it('streams a checkpoint into a local folder (loadInto), verifying each file: a flipped byte, a truncated and a missing file are named', async () => {
        const runId = ns();
        const big = patternBytes(9 * MiB + 5, 17);
        const m = await store.save({ runId, stage: 'sft', step: 1, files: [{ name: 'weights.bin', stream: () => chunked(big, 2 * MiB) }, ...files(3).slice(1)], configHash: 'h' });
        const root = mkdtempSync(path.join(tmpdir(), 'sophia-load-into-'));
        try {
          const loaded = await store.loadInto(m.key, path.join(root, 'a'));
          expect(loaded.manifest.step).toBe(1);
          expect(loaded.files.map((f) => [f.name, f.size])).toEqual(m.files.map((f) => [f.name, f.size]));
          expect(sha256Hex(readFileSync(path.join(root, 'a', 'weights.bin')))).toBe(sha256Hex(big));
          expect(readFileSync(loaded.files[1]!.path, 'utf8')).toBe('{"seed":3}');
          const key = `${m.key}/${m.files[0]!.key}`;
          const flipped = Uint8Array.from(big);
          flipped[9 * MiB] = flipped[9 * MiB]! ^ 0x10;
          await storage.put(key, flipped);
          await expect(store.loadInto(m.key, path.join(root, 'b'))).rejects.toThrow(/weights\.bin has sha256 [0-9a-f]{64}, the manifest records/);
          await storage.put(key, big.subarray(0, 1000));
          await expect(store.loadInto(m.key, path.join(root, 'c'))).rejects.toThrow(/weights\.bin has 1000 bytes, the manifest records 9437189/);
          await storage.delete(key);
          await expect(store.loadInto(m.key, path.join(root, 'd'))).rejects.toThrow(CorruptCheckpointError);
        } finally {
          rmSync(root, { recursive: true, force: true });
        }
      });

      it('rejects bad run ids, stages, steps and file names before writing', async () => {
        await expect(store.save({ runId: '../x', stage: 'sft', step: 1, files: [], configHash: 'h' })).rejects.toBeInstanceOf(InvalidKeyError);
        await expect(store.save({ runId: 'r', stage: 'a/b', step: 1, files: [], configHash: 'h' })).rejects.toBeInstanceOf(InvalidKeyError);
        await expect(store.save({ runId: 'r', stage: 'sft', step: -1, files: [], configHash: 'h' })).rejects.toBeInstanceOf(InvalidKeyError);
        await expect(store.save({ runId: 'r', stage: 'sft', step: 1, files: [{ name: '../w', data: enc('x') }], configHash: 'h' })).rejects.toBeInstanceOf(InvalidKeyError);
        await expect(store.load('runs/r/sft/checkpoints/../../x')).rejects.toBeInstanceOf(InvalidKeyError);
      });
    });
  });
}
