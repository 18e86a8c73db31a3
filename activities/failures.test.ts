import { ApplicationFailure } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { ConfigError, CorruptCheckpointError, StorageUnavailableError } from '../common/errors';
import { toApplicationFailure, withFailureMapping } from './failures';

describe('toApplicationFailure', () => {
  it('makes permanent errors non-retryable and keeps their type and message', () => {
    const failure = toApplicationFailure(new CorruptCheckpointError('runs/r/sft/checkpoints/00000001', 'bad sha'));
    expect(failure).toBeInstanceOf(ApplicationFailure);
    const f = failure as ApplicationFailure;
    expect(f.type).toBe('CorruptCheckpointError');
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toMatch(/runs\/r\/sft\/checkpoints\/00000001 is corrupt: bad sha/);
    expect(f.details).toEqual([{ category: 'corrupt', hint: expect.stringMatching(/earlier checkpoint/) as unknown }]);
  });

  it('keeps transient errors retryable', () => {
    const f = toApplicationFailure(new StorageUnavailableError('timeout')) as ApplicationFailure;
    expect(f.nonRetryable).toBe(false);
    expect(f.type).toBe('StorageUnavailableError');
  });

  it('passes other errors through untouched', () => {
    const err = new Error('boom');
    expect(toApplicationFailure(err)).toBe(err);
  });
});

describe('withFailureMapping', () => {
  it('wraps each activity, preserving names and results', async () => {
    const acts = withFailureMapping({
      ok: (x: number) => Promise.resolve(x * 2),
      bad: () => Promise.reject(new ConfigError('SOPHIA_X', 'is wrong')),
    });
    expect(acts.ok.name).toBe('ok');
    expect(await acts.ok(21)).toBe(42);
    await expect(acts.bad()).rejects.toMatchObject({ type: 'ConfigError', nonRetryable: true });
  });
});
