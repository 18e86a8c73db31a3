/**
 * Off-thread sha256 for verified reads.
 *
 * Verifying a large checkpoint file costs one sha256 pass over its bytes (~1.2 GB/s on one core). Done on the
 * main thread, that pass competes with the read itself (HTTP parsing, copies), so a verified load runs well
 * below the raw read speed. Here the reader writes into a SharedArrayBuffer-backed buffer and, as pieces land,
 * tells a worker thread which byte ranges are ready; the worker hashes them on another core while the read
 * goes on. No bytes are copied between threads.
 *
 * One worker serves any number of concurrent jobs. The worker is `unref`'d (it never keeps the process alive)
 * and is terminated by `close()`.
 */
import { Worker } from 'node:worker_threads';

// Plain JS so it runs the same under tsx, vitest and compiled output.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const jobs = new Map();
parentPort.on('message', (m) => {
  if (m.type === 'begin') jobs.set(m.id, { hash: createHash('sha256'), view: new Uint8Array(m.buffer, m.offset, m.length) });
  else if (m.type === 'update') jobs.get(m.id).hash.update(jobs.get(m.id).view.subarray(m.start, m.end));
  else if (m.type === 'digest') { const job = jobs.get(m.id); jobs.delete(m.id); parentPort.postMessage({ id: m.id, sha256: job.hash.digest('hex') }); }
  else if (m.type === 'abort') jobs.delete(m.id);
});
`;

/** Posts ranges of at least this many bytes (fewer, larger messages). */
const BATCH_BYTES = 1 << 20;

/** One file being hashed: feed it pieces of its buffer in order, then ask for the digest. */
export interface HashJob {
  /** `piece` must be a view into the job's buffer, following the previous piece. */
  update(piece: Uint8Array): void;
  digest(): Promise<string>;
  abort(): void;
}

export class Sha256Worker {
  private worker: Worker | undefined;
  private nextId = 0;
  private readonly waiting = new Map<number, { resolve: (sha: string) => void; reject: (err: Error) => void }>();

  private ensureWorker(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    worker.unref();
    worker.on('message', (m: { id: number; sha256: string }) => {
      const waiter = this.waiting.get(m.id);
      this.waiting.delete(m.id);
      waiter?.resolve(m.sha256);
    });
    worker.on('error', (err) => this.failAll(err));
    worker.on('exit', () => {
      this.worker = undefined;
      this.failAll(new Error('sha256 worker exited'));
    });
    this.worker = worker;
    return worker;
  }

  private failAll(err: Error): void {
    for (const waiter of this.waiting.values()) waiter.reject(err);
    this.waiting.clear();
  }

  /** A buffer the worker can read: allocate checkpoint files with this to hash them off-thread. */
  static allocate(size: number): Uint8Array {
    return new Uint8Array(new SharedArrayBuffer(size));
  }

  /** Starts hashing `buffer` (which must be SharedArrayBuffer-backed) piece by piece. */
  begin(buffer: Uint8Array): HashJob {
    if (!(buffer.buffer instanceof SharedArrayBuffer)) throw new TypeError('Sha256Worker needs a SharedArrayBuffer-backed buffer');
    const worker = this.ensureWorker();
    const id = this.nextId++;
    worker.postMessage({ type: 'begin', id, buffer: buffer.buffer, offset: buffer.byteOffset, length: buffer.byteLength });
    let posted = 0; // bytes [0, posted) sent to the worker
    let seen = 0; // bytes [0, seen) received from the reader
    const flush = () => {
      if (seen > posted) worker.postMessage({ type: 'update', id, start: posted, end: seen });
      posted = seen;
    };
    return {
      update: (piece) => {
        const start = piece.byteOffset - buffer.byteOffset;
        if (piece.buffer !== buffer.buffer || start !== seen) throw new RangeError('HashJob.update: pieces must be consecutive views into the job buffer');
        seen += piece.byteLength;
        if (seen - posted >= BATCH_BYTES) flush();
      },
      digest: () => {
        flush();
        const result = new Promise<string>((resolve, reject) => this.waiting.set(id, { resolve, reject }));
        worker.postMessage({ type: 'digest', id });
        return result;
      },
      abort: () => worker.postMessage({ type: 'abort', id }),
    };
  }

  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    if (worker) await worker.terminate();
  }
}
