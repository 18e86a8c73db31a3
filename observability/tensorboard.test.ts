/**
 * The TensorBoard event-file encoder: CRC32C and TFRecord framing, the Event protobufs (golden bytes serialized by
 * TensorBoard's own `event_pb2`), what a record contributes, and the per-stage keys. That TensorBoard itself reads the
 * files is test/integration/tensorboard.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { InvalidKeyError } from '../common/errors';
import { EVENT_FILE_NAME, type ScalarRecord, crc32c, eventFileBytes, eventFileKey, eventFiles, maskedCrc32c } from './tensorboard';

const ascii = (s: string) => new TextEncoder().encode(s);
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

/** Splits a TFRecord file into its records' data, checking every length and CRC on the way. */
function records(file: Uint8Array): Uint8Array[] {
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const out: Uint8Array[] = [];
  let at = 0;
  while (at < file.length) {
    const length = Number(view.getBigUint64(at, true));
    expect(view.getUint32(at + 8, true)).toBe(maskedCrc32c(file.subarray(at, at + 8)));
    const data = file.subarray(at + 12, at + 12 + length);
    expect(data.length).toBe(length);
    expect(view.getUint32(at + 12 + length, true)).toBe(maskedCrc32c(data));
    out.push(data);
    at += 8 + 4 + length + 4;
  }
  expect(at).toBe(file.length);
  return out;
}

type Field = { field: number; value: bigint | number | Uint8Array };

/** A minimal protobuf reader (varint, fixed64 as double, length-delimited, fixed32 as float): enough for Event. */
function fields(message: Uint8Array): Field[] {
  const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
  const out: Field[] = [];
  let at = 0;
  const varint = () => {
    let v = 0n;
    for (let shift = 0n; ; shift += 7n) {
      const b = message[at++]!;
      v |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return v;
    }
  };
  while (at < message.length) {
    const key = Number(varint());
    const field = key >> 3;
    const wire = key & 7;
    if (wire === 0) out.push({ field, value: varint() });
    else if (wire === 1) {
      out.push({ field, value: view.getFloat64(at, true) });
      at += 8;
    } else if (wire === 5) {
      out.push({ field, value: view.getFloat32(at, true) });
      at += 4;
    } else if (wire === 2) {
      const length = Number(varint());
      out.push({ field, value: message.subarray(at, at + length) });
      at += length;
    } else throw new Error(`unexpected wire type ${wire}`);
  }
  return out;
}

/** An Event's step and its summary's (tag, value) pairs. */
function scalars(event: Uint8Array): { step: bigint | undefined; values: [string, number][] } {
  const f = fields(event);
  const summary = f.find((x) => x.field === 5)?.value as Uint8Array | undefined;
  const values = (summary ? fields(summary) : []).map((v) => {
    const inner = fields(v.value as Uint8Array);
    return [new TextDecoder().decode(inner.find((x) => x.field === 1)!.value as Uint8Array), inner.find((x) => x.field === 2)!.value as number] as [string, number];
  });
  return { step: f.find((x) => x.field === 2)?.value as bigint | undefined, values };
}

const record = (over: Partial<ScalarRecord> & Record<string, string | number>): ScalarRecord => ({ stage: 'sft', kind: 'step', step: 1, time: '2023-11-14T22:13:20.500Z', ...over });

describe('CRC32C', () => {
  it('matches the standard check value and TFRecord masking', () => {
    expect(crc32c(ascii('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(0))).toBe(0);
    // (TensorBoard's compat.tensorflow_stub masked_crc32c(b"123456789"))
    expect(maskedCrc32c(ascii('123456789'))).toBe(0xc78ab0e5);
  });
});

describe('eventFileBytes', () => {
  it('writes the file-version event, then one event per record, framed as TFRecords', () => {
    // 2023-11-14T22:13:20.500Z = 1700000000.5 s; golden bytes from tensorboard.compat.proto.event_pb2 (2.21.0).
    const file = eventFileBytes([record({ step: 3, loss: 0.25 })]);
    const [header, event, ...rest] = records(file);
    expect(rest).toEqual([]);
    expect(hex(header!)).toBe('0900002040fc54d9411a0d627261696e2e4576656e743a32'); // wall_time, file_version "brain.Event:2"
    expect(hex(event!)).toBe('0900002040fc54d94110032a120a100a09737465702f6c6f7373150000803e'); // wall_time, step 3, step/loss 0.25
    expect(file.length).toBe(16 + header!.length + 16 + event!.length);
  });

  it('keeps finite numbers only, tagged kind/metric, rounded to float32', () => {
    const [, ...events] = records(
      eventFileBytes([
        record({ step: 7, loss: 0.1, note: 'text', nan: NaN, inf: Infinity, accuracy: 1 }),
        record({ kind: 'validation', step: 8, valLoss: -2.5 }),
        record({ kind: 'eval', step: 9, label: 'only strings' }),
        record({ step: 1.5, loss: 1 }),
      ]),
    );
    expect(events.map(scalars)).toEqual([
      { step: 7n, values: [['step/loss', Math.fround(0.1)], ['step/accuracy', 1]] },
      { step: 8n, values: [['validation/valLoss', -2.5]] },
    ]);
  });

  it('takes wall times from the records, the header from the first', () => {
    const [header, event] = records(eventFileBytes([record({ time: '1970-01-01T00:00:02.250Z', loss: 1 })]));
    expect(fields(header!)[0]).toEqual({ field: 1, value: 2.25 });
    expect(fields(event!)[0]).toEqual({ field: 1, value: 2.25 });
    expect(fields(records(eventFileBytes([]))[0]!)[0]).toEqual({ field: 1, value: 0 });
    expect(fields(records(eventFileBytes([], 12))[0]!)[0]).toEqual({ field: 1, value: 12 });
  });

  it('is deterministic, and an append keeps the old file as its prefix', () => {
    const first = [record({ step: 1, loss: 1 }), record({ step: 2, loss: 0.5 })];
    const more = [...first, record({ kind: 'validation', step: 2, valLoss: 0.7 }), record({ step: 3, loss: 0.4 })];
    const before = eventFileBytes(first);
    const after = eventFileBytes(more);
    expect(after.subarray(0, before.length)).toEqual(before);
    expect(eventFileBytes(more)).toEqual(after);
  });

  it('encodes large steps as int64 varints', () => {
    const [, event] = records(eventFileBytes([record({ step: 2 ** 40 + 1, loss: 1 })]));
    expect(scalars(event!).step).toBe(2n ** 40n + 1n);
  });
});

describe('eventFiles', () => {
  it('writes one file per stage under runs/{runId}/tensorboard/{stage}/, from that stage’s records', () => {
    const files = eventFiles('run-1', [record({ stage: 'sft', step: 1, loss: 1 }), record({ stage: 'grpo', step: 1, reward: 0.5 }), record({ stage: 'sft', step: 2, loss: 0.5 })]);
    expect(files.map((f) => f.key)).toEqual([`runs/run-1/tensorboard/sft/${EVENT_FILE_NAME}`, `runs/run-1/tensorboard/grpo/${EVENT_FILE_NAME}`]);
    expect(EVENT_FILE_NAME).toContain('tfevents');
    expect(records(files[0]!.bytes).slice(1).map((e) => scalars(e).values)).toEqual([[['step/loss', 1]], [['step/loss', 0.5]]]);
    expect(records(files[1]!.bytes).slice(1).map((e) => scalars(e).values)).toEqual([[['step/reward', 0.5]]]);
    expect(eventFiles('run-1', [])).toEqual([]);
  });

  it('refuses run ids and stages that are not key segments', () => {
    expect(eventFileKey('r', 'rm')).toBe(`runs/r/tensorboard/rm/${EVENT_FILE_NAME}`);
    expect(() => eventFileKey('../x', 'sft')).toThrow(InvalidKeyError);
    expect(() => eventFileKey('r', '..')).toThrow(InvalidKeyError);
    expect(() => eventFileKey('r', 'a/b')).toThrow(InvalidKeyError);
  });
});
