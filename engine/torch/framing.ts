/**
 * The torch engine process's wire format, TypeScript side (engine/README.md, "PyTorch engine" → "Framing"; the
 * Python side is engine/torch/sophia_torch/protocol.py). Every message, both ways, is one frame:
 *
 *     u32 little-endian   header length H
 *     H bytes             UTF-8 JSON header, whose `tensors` lists { name, dtype, shape, nbytes } per tensor
 *     tensor buffers      each tensor's raw little-endian bytes, in `tensors` order, no padding
 *
 * Tensors travel as typed arrays (a bare typed array is 1-D; `{ dtype, shape, data }` gives a shape). No float
 * array is ever JSON. JSON has no NaN or ±Infinity: a non-finite number travels as the string "NaN", "Infinity" or
 * "-Infinity" (`encodeFrame` writes them so, `wireNumber` reads them back where a number is expected — never
 * blindly, since a sample's text may well be the string "NaN").
 *
 * `FrameDecoder` reassembles frames from stream chunks of any size (a frame split across chunks, several frames
 * in one chunk), concatenating each frame's bytes once.
 */
import { endianness } from 'node:os';

// Typed arrays use the platform's byte order; the wire is little-endian. Every platform Node supports for this
// engine (x86_64, arm64) is little-endian; refuse to run rather than swap bytes silently wrong.
if (endianness() !== 'LE') throw new Error('the torch engine protocol needs a little-endian platform');

/** Wire dtype → typed array constructor (the dtypes protocol.py's DTYPES accepts). */
export const WIRE_DTYPES = {
  uint8: Uint8Array,
  int32: Int32Array,
  int64: BigInt64Array,
  float32: Float32Array,
  float64: Float64Array,
} as const;

export type WireDType = keyof typeof WIRE_DTYPES;
export type WireArray = Uint8Array | Int32Array | BigInt64Array | Float32Array | Float64Array;

/** A tensor on the wire: its dtype, its shape ([] for a scalar) and its values, flat and row-major. */
export interface Tensor<A extends WireArray = WireArray> {
  dtype: WireDType;
  shape: number[];
  data: A;
}

/** What a request may carry: a bare typed array (1-D) or a shaped tensor. */
export type TensorInput = WireArray | Tensor;

export interface TensorSpec {
  name: string;
  dtype: WireDType;
  shape: number[];
  nbytes: number;
}

/** A decoded frame: its JSON header and its tensors by name (fresh, aligned copies). */
export interface Frame {
  header: Record<string, unknown>;
  tensors: Record<string, Tensor>;
}

/** The largest header either side accepts (protocol.py's MAX_HEADER_BYTES). */
export const MAX_HEADER_BYTES = 64 << 20;

/** The byte stream cannot be read further (a bad length, a header that is not JSON, specs that lie). */
export class FramingError extends Error {
  override name = 'FramingError';
}

/** The wire dtype of a typed array (a Buffer is uint8). */
export function dtypeOf(data: WireArray): WireDType {
  if (data instanceof Uint8Array) return 'uint8';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof BigInt64Array) return 'int64';
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  throw new TypeError(`not a wire typed array: ${Object.prototype.toString.call(data)}`);
}

function isTypedArray(value: unknown): value is WireArray {
  return ArrayBuffer.isView(value) && !(value instanceof DataView);
}

function elementCount(shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}

/** The typed array of a tensor input, checked against its dtype and shape; errors name `tensors.<name>`. */
function normalize(name: string, input: TensorInput): Tensor {
  const field = `tensors.${name}`;
  if (isTypedArray(input)) return { dtype: dtypeOf(input), shape: [input.length], data: input };
  if (typeof input !== 'object' || input === null || !isTypedArray(input.data)) {
    throw new TypeError(`${field} must be a typed array or { dtype, shape, data } with a typed array as data`);
  }
  const actual = dtypeOf(input.data);
  if (input.dtype !== actual) throw new TypeError(`${field}: dtype is ${input.dtype} but data is a ${actual} array`);
  if (!Array.isArray(input.shape) || !input.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new RangeError(`${field}.shape must be a list of integers >= 0 (got ${JSON.stringify(input.shape)})`);
  }
  if (elementCount(input.shape) !== input.data.length) {
    throw new RangeError(`${field}: shape [${input.shape.join(', ')}] holds ${elementCount(input.shape)} values, data has ${input.data.length}`);
  }
  return input;
}

/** JSON.stringify's replacer: non-finite numbers as the protocol's strings (JSON.stringify would write null). */
function nonFiniteAsString(_key: string, value: unknown): unknown {
  if (typeof value === 'number' && !Number.isFinite(value)) {
    return Number.isNaN(value) ? 'NaN' : value > 0 ? 'Infinity' : '-Infinity';
  }
  return value;
}

/**
 * One frame as a list of buffers to write in order: the length prefix and header, then each tensor's bytes as a
 * view of its typed array (no copy). `header.tensors` is filled in from `tensors`.
 */
export function encodeFrame(header: Record<string, unknown>, tensors: Record<string, TensorInput> = {}): Buffer[] {
  const specs: TensorSpec[] = [];
  const bodies: Buffer[] = [];
  for (const [name, input] of Object.entries(tensors)) {
    const t = normalize(name, input);
    const bytes = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    specs.push({ name, dtype: t.dtype, shape: [...t.shape], nbytes: bytes.length });
    bodies.push(bytes);
  }
  const json = Buffer.from(JSON.stringify({ ...header, tensors: specs }, nonFiniteAsString), 'utf8');
  if (json.length > MAX_HEADER_BYTES) throw new RangeError(`the request header is ${json.length} bytes, over the ${MAX_HEADER_BYTES}-byte limit`);
  const prefix = Buffer.allocUnsafe(4);
  prefix.writeUInt32LE(json.length, 0);
  return [Buffer.concat([prefix, json]), ...bodies];
}

/** A number from a JSON result: a number, or one of the strings "NaN", "Infinity", "-Infinity". */
export function wireNumber(value: unknown, field: string): number {
  if (typeof value === 'number') return value;
  if (value === 'NaN') return Number.NaN;
  if (value === 'Infinity') return Number.POSITIVE_INFINITY;
  if (value === '-Infinity') return Number.NEGATIVE_INFINITY;
  throw new FramingError(`${field} should be a number (or "NaN"/"Infinity"/"-Infinity"), got ${JSON.stringify(value)}`);
}

function parseSpecs(header: Record<string, unknown>): TensorSpec[] {
  const raw = header.tensors ?? [];
  if (!Array.isArray(raw)) throw new FramingError('header.tensors must be a list');
  const seen = new Set<string>();
  return raw.map((spec: unknown, i): TensorSpec => {
    const s = (spec ?? {}) as Record<string, unknown>;
    const where = `header.tensors[${i}]`;
    if (typeof s.name !== 'string' || !s.name || seen.has(s.name)) throw new FramingError(`${where}.name must be a unique non-empty string`);
    seen.add(s.name);
    if (typeof s.dtype !== 'string' || !Object.hasOwn(WIRE_DTYPES, s.dtype)) {
      throw new FramingError(`${where}.dtype must be one of ${Object.keys(WIRE_DTYPES).join(', ')} (got ${JSON.stringify(s.dtype)})`);
    }
    const dtype = s.dtype as WireDType;
    const shape = s.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
      throw new FramingError(`${where}.shape must be a list of integers >= 0`);
    }
    const nbytes = elementCount(shape as number[]) * WIRE_DTYPES[dtype].BYTES_PER_ELEMENT;
    if (s.nbytes !== nbytes) throw new FramingError(`${where}: shape [${shape.join(', ')}] of ${dtype} is ${nbytes} bytes, nbytes says ${String(s.nbytes)}`);
    return { name: s.name, dtype, shape: shape as number[], nbytes };
  });
}

/** Reassembles frames from a byte stream. `push` returns the frames each chunk completes, in order. */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private head = 0; // index of the first chunk not yet consumed
  private buffered = 0;
  private headerLength = -1;
  private pending: { header: Record<string, unknown>; specs: TensorSpec[]; bodyBytes: number } | null = null;

  /** True between frames (nothing of a next frame received yet). */
  get idle(): boolean {
    return this.buffered === 0 && this.headerLength < 0;
  }

  push(chunk: Uint8Array): Frame[] {
    if (chunk.length > 0) {
      this.chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      this.buffered += chunk.length;
    }
    const frames: Frame[] = [];
    for (;;) {
      if (this.headerLength < 0) {
        if (this.buffered < 4) break;
        this.headerLength = this.take(4).readUInt32LE(0);
        if (this.headerLength === 0 || this.headerLength > MAX_HEADER_BYTES) {
          throw new FramingError(`header length ${this.headerLength} is outside [1, ${MAX_HEADER_BYTES}]`);
        }
      }
      if (!this.pending) {
        if (this.buffered < this.headerLength) break;
        const text = this.take(this.headerLength).toString('utf8');
        let header: unknown;
        try {
          header = JSON.parse(text);
        } catch (err) {
          throw new FramingError(`header is not JSON: ${(err as Error).message}`);
        }
        if (typeof header !== 'object' || header === null || Array.isArray(header)) throw new FramingError('header must be a JSON object');
        const specs = parseSpecs(header as Record<string, unknown>);
        this.pending = { header: header as Record<string, unknown>, specs, bodyBytes: specs.reduce((n, s) => n + s.nbytes, 0) };
      }
      if (this.buffered < this.pending.bodyBytes) break;
      const body = this.take(this.pending.bodyBytes);
      frames.push({ header: this.pending.header, tensors: decodeTensors(this.pending.specs, body) });
      this.pending = null;
      this.headerLength = -1;
    }
    return frames;
  }

  /** The next n buffered bytes (a view when one chunk holds them, else one copy). */
  private take(n: number): Buffer {
    this.buffered -= n;
    const first = this.chunks[this.head];
    if (n === 0) return Buffer.alloc(0);
    if (first && first.length >= n) {
      this.consume(first, n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    while (at < n) {
      const c = this.chunks[this.head]!;
      const k = Math.min(c.length, n - at);
      c.copy(out, at, 0, k);
      this.consume(c, k);
      at += k;
    }
    return out;
  }

  private consume(chunk: Buffer, k: number): void {
    if (k < chunk.length) {
      this.chunks[this.head] = chunk.subarray(k);
      return;
    }
    this.head += 1;
    if (this.head === this.chunks.length) {
      this.chunks = [];
      this.head = 0;
    } else if (this.head > 1024) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
  }
}

function decodeTensors(specs: TensorSpec[], body: Buffer): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  let at = 0;
  for (const spec of specs) {
    // A copy into a fresh ArrayBuffer: aligned for the typed array, and not a view of a pooled stream chunk.
    const bytes = new Uint8Array(spec.nbytes);
    bytes.set(body.subarray(at, at + spec.nbytes));
    at += spec.nbytes;
    out[spec.name] = { dtype: spec.dtype, shape: spec.shape, data: new WIRE_DTYPES[spec.dtype](bytes.buffer) };
  }
  return out;
}
