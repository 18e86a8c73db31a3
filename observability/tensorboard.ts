/**
 * TensorBoard event files of a run's metrics, so `tensorboard --logdir …/runs/{runId}/tensorboard` (a local storage
 * folder, or s3://) shows the curves of `metrics.jsonl`. Pure: records in, bytes out; `storage/metrics-log.ts`
 * writes them next to `metrics.jsonl` on every append.
 *
 *   runs/{runId}/tensorboard/{stage}/events.out.tfevents.0000000000.sophia    one file per stage (a TensorBoard "run")
 *
 * Format (no protobuf library; field numbers from TensorBoard's `compat/proto/event.proto` and `summary.proto`):
 *  - the file is a TFRecord stream: per record, uint64 LE length, uint32 LE masked CRC32C of those 8 bytes, the data,
 *    uint32 LE masked CRC32C of the data (TensorBoard's reader checks both);
 *  - each record is an `Event`: the first one carries `file_version = "brain.Event:2"` (version 2: steps that go
 *    backwards are not taken as a restart that discards data), then one `Event { wall_time, step, summary }` per
 *    metric record, its `Summary` holding one `Value { tag: "{kind}/{metric}", simple_value }` per finite number
 *    (e.g. `step/loss`, `validation/valLoss`, `eval/testAccuracy`; `simple_value` is a float32).
 *
 * The bytes depend on the records alone (the first event's wall time is the first record's), in their order: an
 * append that only adds records yields a file whose old bytes are its prefix, which is how TensorBoard expects a
 * file to grow. The name is fixed so that every rewrite replaces the one file.
 */
import { assertValidName, joinKey, runPrefix } from '../storage/keys';

/** What the encoder reads of a `MetricRecord` (storage/metrics-log.ts), declared here so that no import cycle forms. */
export interface ScalarRecord {
  stage: string;
  /** `step`, `validation`, `eval`, …: the first part of every tag. */
  kind: string;
  step: number;
  /** ISO 8601; the event's wall time. */
  time: string;
  [metric: string]: string | number;
}

/** One event file to write. */
export interface EventFile {
  key: string;
  bytes: Uint8Array;
}

/** Fixed: each rewrite replaces the file. TensorBoard reads files whose name contains `tfevents`. */
export const EVENT_FILE_NAME = 'events.out.tfevents.0000000000.sophia';

const FILE_VERSION = 'brain.Event:2';

/** Record fields that are not metrics. */
const NOT_METRICS = new Set(['stage', 'kind', 'step', 'time']);

/**
 * A record's metrics: its finite numbers besides `step`, by name, in the record's order (strings and NaN/∞ left out).
 * What every exporter of `metrics.jsonl` sends (these event files, MLflow: tracking/sync.ts).
 */
export function metricValues(record: ScalarRecord): [string, number][] {
  const out: [string, number][] = [];
  for (const [name, value] of Object.entries(record)) if (!NOT_METRICS.has(name) && typeof value === 'number' && Number.isFinite(value)) out.push([name, value]);
  return out;
}

/** `runs/{runId}/tensorboard`: the folder to give `tensorboard --logdir`. */
export function tensorBoardPrefix(runId: string): string {
  return joinKey(runPrefix(runId), 'tensorboard');
}

/** The event file of one stage: `runs/{runId}/tensorboard/{stage}/events.out.tfevents.0000000000.sophia`. */
export function eventFileKey(runId: string, stage: string): string {
  assertValidName('stage', stage);
  return joinKey(tensorBoardPrefix(runId), stage, EVENT_FILE_NAME);
}

/**
 * The event files of a run: one per stage in `records`, each from that stage's records in the order given.
 * Give it every record of the stages to (re)write, not only new ones: each file is written whole.
 */
export function eventFiles(runId: string, records: readonly ScalarRecord[]): EventFile[] {
  const byStage = new Map<string, ScalarRecord[]>();
  for (const r of records) {
    const list = byStage.get(r.stage);
    if (list) list.push(r);
    else byStage.set(r.stage, [r]);
  }
  return [...byStage].map(([stage, list]) => ({ key: eventFileKey(runId, stage), bytes: eventFileBytes(list) }));
}

/**
 * A TFRecord file of `Event`s: the file-version event (at `fileWallTime` seconds, default the first record's time),
 * then one event per record that has a finite number besides `step`. Strings, non-finite numbers and records whose
 * step is not a safe integer are skipped.
 */
export function eventFileBytes(records: readonly ScalarRecord[], fileWallTime: number = wallTime(records[0]?.time)): Uint8Array {
  const out: Uint8Array[] = [frame(encodeEvent(fileWallTime, undefined, [], FILE_VERSION))];
  for (const r of records) {
    if (!Number.isSafeInteger(r.step)) continue;
    const values = metricValues(r).map(([name, value]): [string, number] => [`${r.kind}/${name}`, value]);
    if (values.length > 0) out.push(frame(encodeEvent(wallTime(r.time), r.step, values)));
  }
  return concat(out);
}

/** Seconds since the epoch of an ISO time; 0 for a missing or unparsable one. */
function wallTime(iso: string | undefined): number {
  const ms = iso === undefined ? NaN : Date.parse(iso);
  return Number.isFinite(ms) ? ms / 1000 : 0;
}

// --- TFRecord framing --------------------------------------------------------------------------------------------

/** One TFRecord: length, its masked CRC, the data, the data's masked CRC. */
function frame(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + 4 + data.length + 4);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(data.length), true);
  view.setUint32(8, maskedCrc32c(out.subarray(0, 8)), true);
  out.set(data, 12);
  view.setUint32(12 + data.length, maskedCrc32c(data), true);
  return out;
}

/** CRC32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord uses. */
export function crc32c(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) crc = CRC32C_TABLE[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** TFRecord's masked CRC: rotate right by 15 bits, add a constant (mod 2^32). */
export function maskedCrc32c(data: Uint8Array): number {
  const crc = crc32c(data);
  return (((crc >>> 15) | (crc << 17)) + 0xa282ead8) >>> 0;
}

const CRC32C_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

// --- protobuf encoding of Event / Summary / Summary.Value ----------------------------------------------------------

// Wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32. A field's key is (number << 3) | wire type.
const EVENT_WALL_TIME = (1 << 3) | 1; // double
const EVENT_STEP = (2 << 3) | 0; // int64
const EVENT_FILE_VERSION = (3 << 3) | 2; // string
const EVENT_SUMMARY = (5 << 3) | 2; // Summary
const SUMMARY_VALUE = (1 << 3) | 2; // repeated Summary.Value
const VALUE_TAG = (1 << 3) | 2; // string
const VALUE_SIMPLE_VALUE = (2 << 3) | 5; // float

function encodeEvent(wallTimeS: number, step: number | undefined, values: readonly [string, number][], fileVersion?: string): Uint8Array {
  const parts: Uint8Array[] = [Uint8Array.of(EVENT_WALL_TIME), float64(wallTimeS)];
  if (step !== undefined) parts.push(Uint8Array.of(EVENT_STEP), varint(BigInt.asUintN(64, BigInt(step))));
  if (fileVersion !== undefined) parts.push(lengthDelimited(EVENT_FILE_VERSION, utf8.encode(fileVersion)));
  if (values.length > 0) {
    const summary = values.map(([tag, value]) => lengthDelimited(SUMMARY_VALUE, concat([lengthDelimited(VALUE_TAG, utf8.encode(tag)), Uint8Array.of(VALUE_SIMPLE_VALUE), float32(value)])));
    parts.push(lengthDelimited(EVENT_SUMMARY, concat(summary)));
  }
  return concat(parts);
}

const utf8 = new TextEncoder();

function lengthDelimited(key: number, body: Uint8Array): Uint8Array {
  return concat([Uint8Array.of(key), varint(BigInt(body.length)), body]);
}

/** Base-128 varint of an unsigned 64-bit value (a negative int64 arrives as its two's complement: 10 bytes). */
function varint(value: bigint): Uint8Array {
  const bytes: number[] = [];
  let v = value;
  while (v >= 0x80n) {
    bytes.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  bytes.push(Number(v));
  return Uint8Array.from(bytes);
}

function float64(value: number): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setFloat64(0, value, true);
  return out;
}

function float32(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setFloat32(0, value, true);
  return out;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}
