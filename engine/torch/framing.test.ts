/**
 * The frame encoder and decoder alone (no Python): every dtype round-trips bit for bit, a frame split into
 * pieces of any size and several frames in one chunk decode the same, non-finite numbers travel as the
 * protocol's strings, and a stream that lies about its sizes is refused.
 */
import { describe, expect, it } from 'vitest';
import { FrameDecoder, FramingError, MAX_HEADER_BYTES, type TensorInput, encodeFrame, wireNumber } from './framing';

function bytesOf(parts: Buffer[]): Buffer {
  return Buffer.concat(parts);
}

const TENSORS: Record<string, TensorInput> = {
  u8: new Uint8Array([0, 1, 127, 128, 255]),
  i32: { dtype: 'int32', shape: [2, 3], data: new Int32Array([-2147483648, -1, 0, 1, 2, 2147483647]) },
  i64: new BigInt64Array([-(2n ** 63n), -1n, 0n, 2n ** 53n + 1n, 2n ** 63n - 1n]),
  f32: { dtype: 'float32', shape: [2, 2], data: new Float32Array([1.5, -0, Number.NaN, Number.NEGATIVE_INFINITY]) },
  f64: new Float64Array([Math.PI, Number.MIN_VALUE, Number.MAX_VALUE, Number.POSITIVE_INFINITY]),
  scalar: { dtype: 'float64', shape: [], data: new Float64Array([42]) },
  empty: { dtype: 'int32', shape: [0, 4], data: new Int32Array(0) },
};

function expectRoundTrip(frame: { header: Record<string, unknown>; tensors: Record<string, { dtype: string; shape: number[]; data: ArrayBufferView }> }): void {
  expect(frame.header).toMatchObject({ op: 'x', id: 7, args: { a: [1, 'b'] } });
  for (const [name, input] of Object.entries(TENSORS)) {
    const want = ArrayBuffer.isView(input) ? { shape: [input.length], data: input } : input;
    const got = frame.tensors[name]!;
    expect(got.shape, name).toEqual(want.shape);
    expect(got.data.constructor, name).toBe(want.data.constructor);
    // Bit for bit (NaN and -0 included): compare the bytes.
    expect(Buffer.from(got.data.buffer, got.data.byteOffset, got.data.byteLength), name).toEqual(
      Buffer.from(want.data.buffer, want.data.byteOffset, want.data.byteLength),
    );
  }
}

describe('torch engine framing', () => {
  it('round-trips every dtype, shaped and bare, bit for bit', () => {
    const wire = bytesOf(encodeFrame({ op: 'x', id: 7, args: { a: [1, 'b'] } }, TENSORS));
    const frames = new FrameDecoder().push(wire);
    expect(frames).toHaveLength(1);
    expectRoundTrip(frames[0]!);
    expect(frames[0]!.header.tensors).toEqual([
      { name: 'u8', dtype: 'uint8', shape: [5], nbytes: 5 },
      { name: 'i32', dtype: 'int32', shape: [2, 3], nbytes: 24 },
      { name: 'i64', dtype: 'int64', shape: [5], nbytes: 40 },
      { name: 'f32', dtype: 'float32', shape: [2, 2], nbytes: 16 },
      { name: 'f64', dtype: 'float64', shape: [4], nbytes: 32 },
      { name: 'scalar', dtype: 'float64', shape: [], nbytes: 8 },
      { name: 'empty', dtype: 'int32', shape: [0, 4], nbytes: 0 },
    ]);
  });

  it('sends a view of a typed array that is part of a larger buffer as just its bytes', () => {
    const big = new Float32Array([9, 1, 2, 3, 9]);
    const frames = new FrameDecoder().push(bytesOf(encodeFrame({ id: 1 }, { v: big.subarray(1, 4) })));
    expect(Array.from(frames[0]!.tensors.v!.data as Float32Array)).toEqual([1, 2, 3]);
  });

  it('decodes a frame split across chunks of every size, one byte at a time included', () => {
    const wire = bytesOf(encodeFrame({ op: 'x', id: 7, args: { a: [1, 'b'] } }, TENSORS));
    for (const size of [1, 2, 3, 5, 17, 64, wire.length - 1]) {
      const decoder = new FrameDecoder();
      const frames = [];
      for (let at = 0; at < wire.length; at += size) {
        frames.push(...decoder.push(wire.subarray(at, at + size)));
        if (at + size < wire.length) expect(decoder.idle, `size ${size} at ${at}`).toBe(false);
      }
      expect(frames, `size ${size}`).toHaveLength(1);
      expectRoundTrip(frames[0]!);
      expect(decoder.idle).toBe(true);
    }
  });

  it('decodes two frames in one chunk, and a chunk that ends inside the third', () => {
    const a = bytesOf(encodeFrame({ id: 1, ok: true, result: { n: 1 } }, { x: new Int32Array([1, 2]) }));
    const b = bytesOf(encodeFrame({ id: 2, ok: true, result: { n: 2 } }));
    const c = bytesOf(encodeFrame({ id: 3, ok: true }, { y: new Float64Array([0.5]) }));
    const decoder = new FrameDecoder();
    const first = decoder.push(Buffer.concat([a, b, c.subarray(0, 6)]));
    expect(first.map((f) => f.header.id)).toEqual([1, 2]);
    expect(Array.from(first[0]!.tensors.x!.data as Int32Array)).toEqual([1, 2]);
    expect(first[1]!.tensors).toEqual({});
    const rest = decoder.push(c.subarray(6));
    expect(rest.map((f) => f.header.id)).toEqual([3]);
    expect(Array.from(rest[0]!.tensors.y!.data as Float64Array)).toEqual([0.5]);
  });

  it('writes non-finite numbers in JSON as "NaN"/"Infinity"/"-Infinity", and wireNumber reads them back', () => {
    const wire = bytesOf(encodeFrame({ id: 1, args: { a: Number.NaN, b: Number.POSITIVE_INFINITY, c: [Number.NEGATIVE_INFINITY, 1] } }));
    const header = JSON.parse(wire.subarray(4).toString('utf8')) as { args: Record<string, unknown> };
    expect(header.args).toEqual({ a: 'NaN', b: 'Infinity', c: ['-Infinity', 1] });
    expect(wireNumber('NaN', 'loss')).toBeNaN();
    expect(wireNumber('Infinity', 'loss')).toBe(Number.POSITIVE_INFINITY);
    expect(wireNumber('-Infinity', 'loss')).toBe(Number.NEGATIVE_INFINITY);
    expect(wireNumber(0.25, 'loss')).toBe(0.25);
    expect(() => wireNumber('nan', 'result.loss')).toThrow(/result\.loss should be a number/);
  });

  it('refuses tensor inputs whose dtype or shape does not match their data, naming the tensor', () => {
    expect(() => encodeFrame({}, { ids: { dtype: 'int64', shape: [2], data: new Int32Array(2) } })).toThrow(TypeError);
    expect(() => encodeFrame({}, { ids: { dtype: 'int32', shape: [3], data: new Int32Array(2) } })).toThrow(/tensors\.ids: shape \[3\] holds 3 values, data has 2/);
    expect(() => encodeFrame({}, { ids: { dtype: 'int32', shape: [-1], data: new Int32Array(2) } })).toThrow(RangeError);
    expect(() => encodeFrame({}, { ids: [1, 2] as unknown as Int32Array })).toThrow(/tensors\.ids must be a typed array/);
  });

  it('refuses a stream it cannot follow: a bad length, a header that is not JSON, specs whose sizes lie', () => {
    const frame = (header: string, extra = Buffer.alloc(0)) => {
      const body = Buffer.from(header);
      const prefix = Buffer.alloc(4);
      prefix.writeUInt32LE(body.length);
      return Buffer.concat([prefix, body, extra]);
    };
    expect(() => new FrameDecoder().push(Buffer.from([0, 0, 0, 0]))).toThrow(FramingError);
    const tooLong = Buffer.alloc(4);
    tooLong.writeUInt32LE(MAX_HEADER_BYTES + 1);
    expect(() => new FrameDecoder().push(tooLong)).toThrow(/outside/);
    expect(() => new FrameDecoder().push(frame('{not json'))).toThrow(/not JSON/);
    expect(() => new FrameDecoder().push(frame('[1]'))).toThrow(/JSON object/);
    expect(() => new FrameDecoder().push(frame('{"tensors":[{"name":"a","dtype":"float16","shape":[1],"nbytes":2}]}'))).toThrow(/dtype/);
    expect(() => new FrameDecoder().push(frame('{"tensors":[{"name":"a","dtype":"float32","shape":[2],"nbytes":4}]}'))).toThrow(/8 bytes, nbytes says 4/);
    expect(() => new FrameDecoder().push(frame('{"tensors":[{"name":"a","dtype":"uint8","shape":[1],"nbytes":1},{"name":"a","dtype":"uint8","shape":[1],"nbytes":1}]}'))).toThrow(/unique/);
  });
});
