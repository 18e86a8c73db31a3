import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { sha256Hex } from './hashing';
import { Sha256Worker } from './sha256-worker';

describe('Sha256Worker', () => {
  const hasher = new Sha256Worker();
  afterAll(() => hasher.close());

  function fill(size: number): Uint8Array {
    const buffer = Sha256Worker.allocate(size);
    buffer.set(randomBytes(size));
    return buffer;
  }

  it('hashes a shared buffer fed in uneven pieces, like a read in progress', async () => {
    const buffer = fill(3_000_001);
    const job = hasher.begin(buffer);
    for (let offset = 0; offset < buffer.length; offset += 65_537) job.update(buffer.subarray(offset, Math.min(buffer.length, offset + 65_537)));
    expect(await job.digest()).toBe(sha256Hex(buffer));
  });

  it('runs concurrent jobs independently', async () => {
    const a = fill(2_500_000);
    const b = fill(1_700_000);
    const ja = hasher.begin(a);
    const jb = hasher.begin(b);
    for (let i = 0; i < 5; i++) {
      ja.update(a.subarray(i * 500_000, (i + 1) * 500_000));
      if (i < 4) jb.update(b.subarray(i * 425_000, (i + 1) * 425_000));
    }
    const [da, db] = await Promise.all([ja.digest(), jb.digest()]);
    expect(da).toBe(sha256Hex(a));
    expect(db).toBe(sha256Hex(b));
    expect(await hasher.begin(Sha256Worker.allocate(0)).digest()).toBe(sha256Hex(new Uint8Array()));
  });

  it('rejects non-shared buffers and out-of-order pieces', () => {
    expect(() => hasher.begin(new Uint8Array(4))).toThrow(/SharedArrayBuffer/);
    const buffer = fill(100);
    const job = hasher.begin(buffer);
    expect(() => job.update(buffer.subarray(10, 20))).toThrow(/consecutive/);
    job.abort();
  });
});
