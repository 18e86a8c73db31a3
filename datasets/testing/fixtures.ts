/**
 * Test fixtures for the dataset adapters, generated in each source's exact layout: PNG/JPEG images, EasyR1-style
 * parquet files (the `images` column as Hugging Face writes a `Sequence(Image())`: list<struct<bytes, path>>),
 * SophiaVL-R1 JSON arrays and JSONL files, and a `Storage` that counts its reads (a real LocalStorage underneath).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { parquetWriteBuffer } from 'hyparquet-writer';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { LocalStorage } from '../../storage/local';
import type { ByteRange, GetOptions } from '../../storage/types';

export function tempDir(name: string): string {
  return mkdtempSync(path.join(tmpdir(), `sophia-datasets-${name}-`));
}

/** A width × height PNG filled with one colour (or a gradient when `rgb` is omitted). */
export function pngBytes(width: number, height: number, rgb?: [number, number, number]): Uint8Array {
  const png = new PNG({ width, height });
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const p = (y * width + x) * 4;
      png.data[p] = rgb ? rgb[0] : (x * 7) & 255;
      png.data[p + 1] = rgb ? rgb[1] : (y * 5) & 255;
      png.data[p + 2] = rgb ? rgb[2] : 128;
      png.data[p + 3] = 255;
    }
  }
  return PNG.sync.write(png);
}

/** A PNG of pseudo-random pixels (incompressible: its size is about width × height × 3 bytes). */
export function noisePng(width: number, height: number, seed: number): Uint8Array {
  const png = new PNG({ width, height });
  let state = seed >>> 0 || 1;
  for (let i = 0; i < png.data.length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    png.data[i] = i % 4 === 3 ? 255 : state & 255;
  }
  return PNG.sync.write(png);
}

export function jpegBytes(width: number, height: number): Uint8Array {
  const data = Buffer.alloc(width * height * 4, 200);
  return jpeg.encode({ data, width, height }, 90).data;
}

/** The first bytes of a GIF: a format Sophia does not read. */
export const GIF_BYTES = new Uint8Array([0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 1, 0, 1, 0, 0, 0, 0]);

/** A PNG cut in half: the signature is right, the data is not. */
export function truncatedPng(): Uint8Array {
  const full = pngBytes(40, 40);
  return full.subarray(0, Math.floor(full.length / 2));
}

export interface EasyR1ParquetRow {
  images: { bytes: Uint8Array | null; path: string | null }[] | null;
  problem: string | null;
  answer: string | null;
  problem_type?: string | null;
}

/**
 * An EasyR1 parquet file (geometry3k's layout: images, problem, answer; plus problem_type when any row has one).
 * `codec: 'GZIP'` writes gzip pages, which only hyparquet-compressors can read.
 */
export function easyR1Parquet(rows: EasyR1ParquetRow[], options: { rowGroupSize?: number; codec?: 'SNAPPY' | 'GZIP' } = {}): Uint8Array {
  const withType = rows.some((r) => r.problem_type !== undefined);
  const text = (name: string) => ({ name, type: 'BYTE_ARRAY' as const, converted_type: 'UTF8' as const, repetition_type: 'OPTIONAL' as const });
  const buffer = parquetWriteBuffer({
    columnData: [
      { name: 'images', data: rows.map((r) => r.images) },
      { name: 'problem', data: rows.map((r) => r.problem) },
      { name: 'answer', data: rows.map((r) => r.answer) },
      ...(withType ? [{ name: 'problem_type', data: rows.map((r) => r.problem_type ?? null) }] : []),
    ],
    schema: [
      { name: 'root', num_children: withType ? 4 : 3 },
      { name: 'images', repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 },
      { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
      { name: 'element', repetition_type: 'OPTIONAL', num_children: 2 },
      { name: 'bytes', type: 'BYTE_ARRAY', repetition_type: 'OPTIONAL' },
      text('path'),
      text('problem'),
      text('answer'),
      ...(withType ? [text('problem_type')] : []),
    ],
    rowGroupSize: options.rowGroupSize ?? 1000,
    codec: options.codec ?? 'SNAPPY',
    compressors: { GZIP: (input: Uint8Array) => new Uint8Array(gzipSync(input)) },
  });
  return new Uint8Array(buffer);
}

/** A SophiaVL-R1 record (Video-R1 layout) with defaults for the fields a test does not care about. */
export function sophiaRecord(overrides: Record<string, unknown>): Record<string, unknown> {
  return {
    problem_id: 1,
    problem: 'How many objects are left?',
    data_type: 'image',
    problem_type: 'numerical',
    options: [],
    solution: '<answer>3</answer>',
    path: './Math/clevr/images/1.png',
    data_source: 'CLEVR-Math',
    ...overrides,
  };
}

/** A LocalStorage that counts ranged reads, whole reads and streamed bytes: the streaming tests' witness. */
export class CountingStorage extends LocalStorage {
  rangedGets = 0;
  wholeGets = 0;
  bytesRead = 0;
  streamedBytes = 0;

  override async get(key: string, range?: ByteRange, options?: GetOptions): Promise<Uint8Array> {
    const out = await super.get(key, range, options);
    if (range) this.rangedGets++;
    else this.wholeGets++;
    this.bytesRead += out.length;
    return out;
  }

  override async getStream(key: string, range?: ByteRange): Promise<Readable> {
    const source = await super.getStream(key, range);
    const counted = new PassThrough({ highWaterMark: 16 * 1024 });
    source.on('data', (chunk: Buffer) => {
      this.streamedBytes += chunk.length;
    });
    counted.on('close', () => source.destroy());
    return source.pipe(counted);
  }
}

/**
 * A small EasyR1 training set: `count` rows with one generated image each (sizes vary, not square), a question, an
 * answer and a problem type (numerical and OCR alternating), and `broken` rows after them (alternately without an
 * image and with an empty answer) to be skipped and counted.
 */
export function trainingSetRows(count: number, broken = 0): EasyR1ParquetRow[] {
  const rows: EasyR1ParquetRow[] = [];
  for (let i = 0; i < count; i++) {
    const ocr = i % 2 === 1;
    const image = pngBytes(28 + 14 * (i % 3), 28 + 14 * ((i + 1) % 2), [(i * 37) & 255, (i * 91) & 255, 128]);
    rows.push({
      images: [{ bytes: image, path: null }],
      problem: ocr ? `<image>What number is written in panel ${i}?` : `<image>How many shapes are in picture ${i}?`,
      answer: ocr ? String(1000 + i) : String(i % 7),
      problem_type: ocr ? 'OCR' : 'numerical',
    });
  }
  for (let i = 0; i < broken; i++) {
    rows.push(i % 2 === 0 ? { images: null, problem: `<image>Row without an image ${i}?`, answer: '1', problem_type: 'numerical' } : { images: [{ bytes: pngBytes(28, 28), path: null }], problem: `<image>Row without an answer ${i}?`, answer: ' ', problem_type: 'numerical' });
  }
  return rows;
}
