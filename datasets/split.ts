/**
 * Train / validation / test splits by a stable hash of the example id, so that an example's split never depends on
 * the order rows were read, on which other rows exist, or on the machine: retraining on a grown dataset keeps every
 * old test example in test.
 *
 * u = the first 48 bits of sha256(id, UTF-8) / 2^48, uniform in [0, 1):
 *   u < test                  → 'test'
 *   u ≥ 1 − validation        → 'validation'
 *   otherwise                 → 'train'
 * Test takes the bottom of the interval and validation the top, so raising either share only takes examples from
 * train: no test or validation example ever moves into training when a share changes.
 */
import { createHash } from 'node:crypto';

export type DataSplit = 'train' | 'validation' | 'test';

export interface SplitShares {
  /** Share of examples held out for test, in [0, 1]. */
  test: number;
  /** Share held out for validation, in [0, 1]; test + validation ≤ 1. */
  validation: number;
}

/** Throws a RangeError unless both shares are in [0, 1] and sum to at most 1. */
export function assertSplitShares(shares: SplitShares): void {
  for (const [name, value] of Object.entries(shares)) {
    if (!Number.isFinite(value) || value < 0 || value > 1) throw new RangeError(`split share ${name} must be in [0, 1] (got ${value})`);
  }
  if (shares.test + shares.validation > 1) throw new RangeError(`split shares test + validation must be at most 1 (got ${shares.test} + ${shares.validation})`);
}

/** The id's position in [0, 1): the first 6 bytes of its sha256, big-endian, over 2^48. */
export function splitPosition(id: string): number {
  return createHash('sha256').update(id, 'utf8').digest().readUIntBE(0, 6) / 2 ** 48;
}

export function splitOf(id: string, shares: SplitShares): DataSplit {
  assertSplitShares(shares);
  const u = splitPosition(id);
  if (u < shares.test) return 'test';
  if (u >= 1 - shares.validation) return 'validation';
  return 'train';
}
