import { describe, expect, it } from 'vitest';
import { InvalidKeyError } from '../common/errors';
import {
  assertValidKey,
  assertValidPrefix,
  checkpointKey,
  dataKey,
  formatStep,
  manifestKey,
  metricsKey,
  parseCheckpointKey,
  reportKey,
  rolloutKey,
} from './keys';

describe('assertValidKey', () => {
  it.each(['a', 'runs/r1/sft/checkpoints/00000010/manifest.json', 'a.b/c-d_e', 'ünïcode/ok'])('accepts %j', (key) => {
    expect(() => assertValidKey(key)).not.toThrow();
  });

  it.each([
    ['', /empty/],
    ['/etc/passwd', /absolute/],
    ['a/', /ends with/],
    ['a//b', /empty segment/],
    ['a/./b', /"\." segment/],
    ['../up', /"\.\." segment/],
    ['a/b/..', /"\.\." segment/],
    ['a\\..\\b', /backslash/],
    ['a\nb', /control character/],
    ['.sophia-tmp/x', /reserved/],
    ['x'.repeat(1025), /longer than 1024/],
  ])('rejects %j', (key, reason) => {
    expect(() => assertValidKey(key)).toThrow(InvalidKeyError);
    expect(() => assertValidKey(key)).toThrow(reason);
  });

  it('tells the user what a valid key looks like', () => {
    expect(() => assertValidKey('../x')).toThrow(/Keys are relative/);
  });
});

describe('assertValidPrefix', () => {
  it('accepts "" and prefixes ending with "/"', () => {
    expect(() => assertValidPrefix('')).not.toThrow();
    expect(() => assertValidPrefix('runs/')).not.toThrow();
    expect(() => assertValidPrefix('runs/r')).not.toThrow();
  });
  it('rejects traversal', () => {
    expect(() => assertValidPrefix('../')).toThrow(InvalidKeyError);
    expect(() => assertValidPrefix('runs//')).toThrow(InvalidKeyError);
  });
});

describe('key layout (docs/architecture.md §2)', () => {
  it('builds the documented keys', () => {
    expect(checkpointKey('r1', 'sft', 42)).toBe('runs/r1/sft/checkpoints/00000042');
    expect(manifestKey(checkpointKey('r1', 'sft', 42))).toBe('runs/r1/sft/checkpoints/00000042/manifest.json');
    expect(dataKey('r1', 'train/shard-000.jsonl')).toBe('runs/r1/data/train/shard-000.jsonl');
    expect(rolloutKey('r1', 7, 'rollouts.jsonl')).toBe('runs/r1/rollouts/7/rollouts.jsonl');
    expect(reportKey('r1', 'report.md')).toBe('runs/r1/reports/report.md');
    expect(metricsKey('r1')).toBe('runs/r1/metrics.jsonl');
  });

  it('rejects run ids, stages, steps and paths that would escape or be ambiguous', () => {
    expect(() => checkpointKey('..', 'sft', 1)).toThrow(InvalidKeyError);
    expect(() => checkpointKey('a/b', 'sft', 1)).toThrow(InvalidKeyError);
    expect(() => checkpointKey('r', '', 1)).toThrow(InvalidKeyError);
    expect(() => checkpointKey('r', 'sft', 1.5)).toThrow(InvalidKeyError);
    expect(() => formatStep(100_000_000)).toThrow(/\[0, 99999999\]/);
    expect(() => dataKey('r', '../../etc/passwd')).toThrow(InvalidKeyError);
    expect(() => reportKey('r', '/abs')).toThrow(InvalidKeyError);
  });

  it('parses checkpoint keys back', () => {
    expect(parseCheckpointKey('runs/r1/trust-grpo/checkpoints/00000100')).toEqual({ runId: 'r1', stage: 'trust-grpo', step: 100 });
    expect(() => parseCheckpointKey('runs/r1/sft/checkpoints/100')).toThrow(InvalidKeyError);
    expect(() => parseCheckpointKey('runs/../sft/checkpoints/00000001')).toThrow(InvalidKeyError);
    expect(() => parseCheckpointKey('elsewhere/r1/sft/checkpoints/00000001')).toThrow(InvalidKeyError);
  });
});
