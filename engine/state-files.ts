/**
 * Reading an engine state's files (`EngineFile`, engine/types.ts) whichever way they are held: bytes in memory, or
 * a file on local disk that an engine saved into the folder its caller gave (`SaveStateOptions.dir`).
 *
 *  - `readEngineFile`: the bytes in memory (small files: a config, an ONNX `state.bin`). A file on disk larger
 *    than `IN_MEMORY_FILE_LIMIT` is refused with a RangeError naming it: it must be streamed (`engineFileStream`).
 *  - `engineFileStream`: the bytes as a stream, without holding them (checkpoint uploads).
 *  - `stateSize`: the state's total bytes.
 */
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { EngineFile, InMemoryEngineFile, OnDiskEngineFile } from './types';

/** The largest file `readEngineFile` reads into memory (Node's `readFile` refuses files of 2 GiB and more). */
export const IN_MEMORY_FILE_LIMIT = 2 ** 31 - 1;

/** Stream chunk size for files on disk: big enough that a multi-GB shard is not millions of callbacks. */
const STREAM_CHUNK_BYTES = 8 << 20;

export function isOnDisk(file: EngineFile): file is OnDiskEngineFile {
  return 'path' in file;
}

export function engineFileSize(file: EngineFile): number {
  return isOnDisk(file) ? file.size : file.data.byteLength;
}

export function stateSize(files: readonly EngineFile[]): number {
  return files.reduce((sum, f) => sum + engineFileSize(f), 0);
}

/** The file's bytes in memory. A file on disk over `IN_MEMORY_FILE_LIMIT` is a RangeError naming it. */
export async function readEngineFile(file: EngineFile): Promise<Uint8Array> {
  if (!isOnDisk(file)) return file.data;
  if (file.size > IN_MEMORY_FILE_LIMIT) {
    throw new RangeError(`engine state file ${file.name} (${file.path}) is ${file.size} bytes, too big to read into memory: stream it (engineFileStream)`);
  }
  return new Uint8Array(await readFile(file.path));
}

/** Every file in memory (an engine whose loadState needs the bytes, given files another caller kept on disk). */
export async function inMemory(files: readonly EngineFile[]): Promise<InMemoryEngineFile[]> {
  return Promise.all(files.map(async (f) => ({ name: f.name, data: await readEngineFile(f) })));
}

/** The file's bytes as a stream (a fresh one per call), read from disk in large chunks. */
export function engineFileStream(file: EngineFile): Readable | Iterable<Uint8Array> {
  return isOnDisk(file) ? createReadStream(file.path, { highWaterMark: STREAM_CHUNK_BYTES }) : [file.data];
}
