import { describe, expect, it } from 'vitest';
import { seedFromRunId } from './model-lines';

describe('model-line runs', () => {
  it('gives each run its own stable data seed', () => {
    expect(seedFromRunId('nightly-20261127-030000')).toBe(seedFromRunId('nightly-20261127-030000'));
    expect(seedFromRunId('nightly-20261127-030000')).not.toBe(seedFromRunId('nightly-20261128-030000'));
    expect(seedFromRunId('x')).toBeLessThan(2 ** 31);
  });
});
