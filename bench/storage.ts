/**
 * bench/storage: checkpoint save/load throughput against the raw throughput of the same disk or server,
 * measured in the same run, for both storage adapters.
 *
 *   local  raw write = `dd bs=4M conv=fsync` of one 256 MiB file;
 *          raw read  = a plain read of one 256 MiB file into memory (`fs.readFile`, no verification), the local
 *                      equivalent of the S3 GetObject baseline. `dd` to /dev/null is shown next to it as the
 *                      disk's ceiling: it never touches fresh memory, which a load must fill (page faults alone
 *                      cost ~0.2 s per 256 MiB on these VMs);
 *          checkpoint = CheckpointStore.save (sha256 while writing, fsync, manifest) and .load (verified).
 *   s3     raw = one plain PutObject / GetObject of a 256 MiB object through the same S3 client;
 *          checkpoint = CheckpointStore.save (multipart, sha256) and .load (streamed, verified).
 *
 * The checkpoint is 256 MiB. `--layout engine` (default) is what Sophia's engine writes: one `state.bin` from
 * `saveState()` (weights, AdamW moments, step, RNG) plus a small JSON file; `--layout sharded` splits the same
 * bytes into 4 files of 64 MiB (per-tensor-group shards).
 * Page caches are dropped before every read when the OS allows it (root on Linux), so reads hit the disk in
 * both the raw and the checkpoint case. Each measurement is repeated; the table shows medians and the ratio
 * checkpoint / raw. Target: ≥ 0.8.
 *
 *   npm run bench:storage                      # both adapters (S3 needs `npm run stack:up`)
 *   npm run bench:storage -- --reps 7 --only local
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { CheckpointStore } from '../storage/checkpoints';
import { LocalStorage } from '../storage/local';
import { S3Storage } from '../storage/s3';
import { REPO_ROOT, requireStack, stackS3Options } from '../test/integration/stack';
import { machineLine, median, printTable } from './report';

const MiB = 1 << 20;
const TARGET = 0.8;

const { values: args } = parseArgs({
  options: {
    reps: { type: 'string', default: '5' },
    only: { type: 'string' },
    'size-mib': { type: 'string', default: '256' },
    layout: { type: 'string', default: 'engine' },
  },
});
const reps = Number(args.reps);
const totalMiB = Number(args['size-mib']);
if (args.layout !== 'engine' && args.layout !== 'sharded') throw new Error('--layout must be "engine" or "sharded"');
const layout = args.layout;

async function timeMiBps(mib: number, fn: () => unknown): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  return mib / seconds;
}

let canDropCaches: boolean | undefined;
/** Flushes dirty pages and drops the page cache, so the next read comes from disk. */
function dropCaches(): void {
  execFileSync('sync');
  if (canDropCaches === false) return;
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '3');
    canDropCaches = true;
  } catch {
    canDropCaches = false;
  }
}

function makeFiles(seed: number): { name: string; data: Uint8Array }[] {
  const names = layout === 'engine' ? ['state.bin'] : ['weights.bin', 'adam-m.bin', 'adam-v.bin', 'ema.bin'];
  const files = names.map((name) => {
    const data = randomBytes((totalMiB * MiB) / names.length);
    data[0] = seed; // distinct content per repetition
    return { name, data };
  });
  // The engine's small sidecar (model config, data position); part of the checkpoint, not of the 256 MiB.
  if (layout === 'engine') files.push({ name: 'meta.json', data: Buffer.from(JSON.stringify({ seed, layers: 4 })) });
  return files;
}

function describeLayout(): string {
  return layout === 'engine' ? '1 × state.bin + meta.json' : `4 × ${totalMiB / 4} MiB files`;
}

interface Row {
  adapter: string;
  op: string;
  raw: string;
  rawMiBps: number[];
  ckptMiBps: number[];
  /** Extra reference measurement shown beside the baseline (e.g. dd to /dev/null). */
  reference?: { name: string; MiBps: number[] };
}

async function benchLocal(rows: Row[]): Promise<void> {
  const dir = path.join(REPO_ROOT, '.sophia', 'bench', `storage-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  try {
    const storage = new LocalStorage(path.join(dir, 'store'));
    const store = new CheckpointStore(storage);
    const source = path.join(dir, 'raw-source.bin');
    writeFileSync(source, randomBytes(totalMiB * MiB));
    const write: Row = { adapter: 'local', op: 'save', raw: 'dd conv=fsync', rawMiBps: [], ckptMiBps: [] };
    const read: Row = {
      adapter: 'local',
      op: 'load',
      raw: 'readFile 256 MiB',
      rawMiBps: [],
      ckptMiBps: [],
      reference: { name: 'dd → /dev/null', MiBps: [] },
    };
    for (let rep = 0; rep < reps; rep++) {
      const rawTarget = path.join(dir, `raw-${rep}.bin`);
      const files = makeFiles(rep);
      execFileSync('sync');
      write.rawMiBps.push(await timeMiBps(totalMiB, () => execFileSync('dd', [`if=${source}`, `of=${rawTarget}`, 'bs=4M', 'conv=fsync'], { stdio: 'ignore' })));
      execFileSync('sync');
      let key = '';
      write.ckptMiBps.push(
        await timeMiBps(totalMiB, async () => {
          key = (await store.save({ runId: 'bench', stage: 'local', step: rep, files, configHash: 'bench' })).key;
        }),
      );
      dropCaches();
      read.reference!.MiBps.push(await timeMiBps(totalMiB, () => execFileSync('dd', [`if=${rawTarget}`, 'of=/dev/null', 'bs=4M'], { stdio: 'ignore' })));
      dropCaches();
      read.rawMiBps.push(await timeMiBps(totalMiB, () => readFile(rawTarget)));
      dropCaches();
      read.ckptMiBps.push(await timeMiBps(totalMiB, () => store.load(key)));
      rmSync(rawTarget);
      await store.delete(key);
    }
    rows.push(write, read);
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function benchS3(rows: Row[]): Promise<void> {
  await requireStack();
  const prefix = `bench/${randomBytes(4).toString('hex')}`;
  const storage = new S3Storage({ ...stackS3Options(), prefix });
  const store = new CheckpointStore(storage);
  const write: Row = { adapter: 's3', op: 'save', raw: 'PutObject 256 MiB', rawMiBps: [], ckptMiBps: [] };
  const read: Row = { adapter: 's3', op: 'load', raw: 'GetObject 256 MiB', rawMiBps: [], ckptMiBps: [] };
  const rawBody = randomBytes(totalMiB * MiB);
  try {
    for (let rep = 0; rep < reps; rep++) {
      const files = makeFiles(rep);
      const rawKey = `${prefix}/raw-${rep}.bin`;
      write.rawMiBps.push(
        await timeMiBps(totalMiB, () =>
          storage.client.send(new PutObjectCommand({ Bucket: storage.bucket, Key: rawKey, Body: rawBody, ContentLength: rawBody.length })),
        ),
      );
      let key = '';
      write.ckptMiBps.push(
        await timeMiBps(totalMiB, async () => {
          key = (await store.save({ runId: 'bench', stage: 's3', step: rep, files, configHash: 'bench' })).key;
        }),
      );
      dropCaches();
      read.rawMiBps.push(
        await timeMiBps(totalMiB, async () => {
          const out = await storage.client.send(new GetObjectCommand({ Bucket: storage.bucket, Key: rawKey }));
          const bytes = await out.Body!.transformToByteArray();
          if (bytes.length !== rawBody.length) throw new Error('short raw read');
        }),
      );
      dropCaches();
      read.ckptMiBps.push(await timeMiBps(totalMiB, () => store.load(key)));
      await storage.deletePrefix(''); // the raw object and the checkpoint: everything under this run's prefix
    }
    rows.push(write, read);
  } finally {
    await store.close();
    await storage.deletePrefix('');
    await storage.close();
  }
}

function report(rows: Row[]): boolean {
  const header = ['adapter', 'op', 'raw baseline', 'raw MiB/s', 'checkpoint MiB/s', 'ratio', `target ≥ ${TARGET}`, 'reference'];
  const lines = rows.map((r) => {
    const raw = median(r.rawMiBps);
    const ckpt = median(r.ckptMiBps);
    const ratio = ckpt / raw;
    const reference = r.reference
      ? `${r.reference.name} ${median(r.reference.MiBps).toFixed(0)} MiB/s (ratio ${(ckpt / median(r.reference.MiBps)).toFixed(2)})`
      : '';
    return [r.adapter, r.op, r.raw, raw.toFixed(0), ckpt.toFixed(0), ratio.toFixed(2), ratio >= TARGET ? 'pass' : 'FAIL', reference];
  });
  printTable(header, lines);
  console.log(
    `\n${totalMiB} MiB checkpoint (layout ${layout}: ${describeLayout()}), medians of ${reps} repetitions; ` +
      `page cache ${canDropCaches ? 'dropped before every read' : 'NOT dropped (not root): reads may come from memory'}.`,
  );
  console.log(machineLine());
  console.log('per-repetition MiB/s (raw / checkpoint):');
  for (const r of rows) {
    console.log(`  ${r.adapter} ${r.op}: ${r.rawMiBps.map((x) => x.toFixed(0)).join(' ')} / ${r.ckptMiBps.map((x) => x.toFixed(0)).join(' ')}`);
    if (r.reference) console.log(`    ${r.reference.name}: ${r.reference.MiBps.map((x) => x.toFixed(0)).join(' ')}`);
  }
  return lines.every((l) => l[6] === 'pass');
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  if (args.only !== 's3') await benchLocal(rows);
  if (args.only !== 'local') await benchS3(rows);
  const ok = report(rows);
  process.exitCode = ok ? 0 : 1;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 2;
});
