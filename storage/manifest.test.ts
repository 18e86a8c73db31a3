import { describe, expect, it } from 'vitest';
import { CorruptCheckpointError } from '../common/errors';
import { MANIFEST_FORMAT, parseManifest, sameContent, serializeManifest, type CheckpointManifest } from './manifest';

const KEY = 'runs/r1/sft/checkpoints/00000003';
const good = (): CheckpointManifest => ({
  format: MANIFEST_FORMAT,
  runId: 'r1',
  stage: 'sft',
  step: 3,
  key: KEY,
  attempt: '0123456789abcdef',
  createdAt: '2026-11-27T08:00:00.000Z',
  configHash: 'abc',
  metrics: { loss: 0.5 },
  meta: { note: 'x' },
  files: [
    { name: 'weights.bin', key: '0123456789abcdef/weights.bin', size: 10, sha256: 'a'.repeat(64) },
    { name: 'state.json', key: '0123456789abcdef/state.json', size: 2, sha256: 'b'.repeat(64) },
  ],
  totalBytes: 12,
});

const bytes = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));

describe('parseManifest', () => {
  it('round-trips a valid manifest', () => {
    expect(parseManifest(serializeManifest(good()), KEY)).toEqual(good());
  });

  it.each<[string, (m: Record<string, unknown>) => void, RegExp]>([
    ['wrong format', (m) => (m.format = 'v0'), /format "v0"/],
    ['missing runId', (m) => delete m.runId, /"runId" must be a string/],
    ['fractional step', (m) => (m.step = 1.5), /"step" must be a non-negative integer/],
    ['key of another checkpoint', (m) => (m.key = 'runs/r1/sft/checkpoints/00000004'), /read from runs\/r1\/sft\/checkpoints\/00000003/],
    ['step not matching location', (m) => (m.step = 4), /do not match its location/],
    ['bad time', (m) => (m.createdAt = 'yesterday'), /createdAt/],
    ['non-numeric metric', (m) => (m.metrics = { loss: 'low' }), /metric "loss" must be a number/],
    ['file outside its attempt', (m) => ((m.files as { key: string }[])[0]!.key = 'other/weights.bin'), /files\[0\]\.key/],
    ['bad sha', (m) => ((m.files as { sha256: string }[])[1]!.sha256 = 'XYZ'), /files\[1\]\.sha256/],
    ['negative size', (m) => ((m.files as { size: number }[])[0]!.size = -1), /files\[0\]\.size/],
    ['wrong total', (m) => (m.totalBytes = 13), /totalBytes/],
    ['duplicate names', (m) => ((m.files as { name: string; key: string }[])[1]!.name = 'weights.bin'), /duplicated/],
  ])('rejects %s, naming the field', (_label, mutate, message) => {
    const m = good() as unknown as Record<string, unknown>;
    mutate(m);
    expect(() => parseManifest(bytes(m), KEY)).toThrow(CorruptCheckpointError);
    expect(() => parseManifest(bytes(m), KEY)).toThrow(message);
  });

  it('rejects bytes that are not JSON', () => {
    expect(() => parseManifest(new Uint8Array([0xff, 0xfe]), KEY)).toThrow(/not valid UTF-8 JSON/);
    expect(() => parseManifest(bytes([1, 2]), KEY)).toThrow(/not a JSON object/);
  });
});

describe('sameContent', () => {
  it('compares names, sizes and hashes, not attempts or times', () => {
    const b = { ...good(), attempt: 'ffffffffffffffff', createdAt: '2027-01-01T00:00:00Z' };
    b.files = b.files.map((f) => ({ ...f, key: `ffffffffffffffff/${f.name}` }));
    expect(sameContent(good(), b)).toBe(true);
    b.files[0] = { ...b.files[0]!, sha256: 'c'.repeat(64) };
    expect(sameContent(good(), b)).toBe(false);
    expect(sameContent(good(), { ...good(), files: good().files.slice(1) })).toBe(false);
  });
});
