/**
 * How the S3 adapter reports server-side problems: wrong credentials and a missing bucket are configuration
 * errors (not retried, with the fix), an unreachable endpoint is retryable.
 */
import { describe, expect, it } from 'vitest';
import { StorageConfigError, StorageUnavailableError } from '../../common/errors';
import { S3Storage } from '../../storage/s3';
import { requireStack, stackS3Options } from './stack';

describe('S3Storage errors against a real server', () => {
  it('rejects wrong credentials as a non-retryable config error naming the variables', async () => {
    await requireStack();
    const s3 = new S3Storage({ ...stackS3Options(), credentials: { accessKeyId: 'nobody', secretAccessKey: 'wrong' }, maxAttempts: 1 });
    const err: unknown = await s3.put('x/y', new Uint8Array([1])).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageConfigError);
    expect((err as StorageConfigError).retryable).toBe(false);
    expect((err as Error).message).toMatch(/access denied.*SOPHIA_S3_ACCESS_KEY_ID/);
    await s3.close();
  });

  it('reports a missing bucket with the fix', async () => {
    const s3 = new S3Storage({ ...stackS3Options(), bucket: 'no-such-bucket-sophia', maxAttempts: 1 });
    const err: unknown = await s3.get('a').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageConfigError);
    expect((err as Error).message).toMatch(/bucket no-such-bucket-sophia does not exist/);
    await s3.close();
  });

  it('reports an unreachable endpoint as retryable', async () => {
    const s3 = new S3Storage({ ...stackS3Options(), endpoint: 'http://127.0.0.1:1', maxAttempts: 1 });
    const err: unknown = await s3.get('a').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageUnavailableError);
    expect((err as StorageUnavailableError).retryable).toBe(true);
    await s3.close();
  });
});
