/**
 * How the S3 adapter reports server-side problems: wrong credentials and a missing bucket are configuration
 * errors (not retried, with the fix), an unreachable endpoint is retryable. SeaweedFS creates a missing bucket on
 * the first write; the adapter checks the bucket (HeadBucket) before its first request instead, so a missing
 * bucket is refused there as on AWS, by the pre-flight probe and by an activity alike, and is not created.
 */
import { randomBytes } from 'node:crypto';
import { DeleteBucketCommand, DeleteObjectCommand, HeadBucketCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { ApplicationFailure } from '@temporalio/common';
import { afterEach, describe, expect, it } from 'vitest';
import { StorageConfigError, StorageUnavailableError } from '../../common/errors';
import { withFailureMapping } from '../../activities/failures';
import { probeStorage } from '../../storage/probe';
import { S3Storage } from '../../storage/s3';
import { requireStack, stackS3Options } from './stack';

/** Whether `bucket` exists on the stack's server, asked with the stack's own credentials. */
async function bucketExists(bucket: string): Promise<boolean> {
  const client = new S3Client({ ...stackS3Options(), maxAttempts: 1 });
  try {
    await client.send(new HeadBucketCommand({ Bucket: bucket }));
    return true;
  } catch (err) {
    if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return false;
    throw err;
  } finally {
    client.destroy();
  }
}

/** Removes `bucket` if a test (or the old adapter) created it, objects first. */
async function dropBucket(bucket: string): Promise<void> {
  if (!(await bucketExists(bucket))) return;
  const client = new S3Client({ ...stackS3Options(), maxAttempts: 1 });
  try {
    const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
    for (const o of listed.Contents ?? []) await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: o.Key }));
    await client.send(new DeleteBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
}

const missing: string[] = [];
afterEach(async () => {
  for (const bucket of missing.splice(0)) await dropBucket(bucket);
});

/** A bucket name no one created (dropped after the test, should a test create it after all). */
function missingBucket(): string {
  const bucket = `sophia-missing-${randomBytes(4).toString('hex')}`;
  missing.push(bucket);
  return bucket;
}

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

  it('the pre-flight probe refuses a missing bucket, naming bucket, endpoint and fix, and does not create it', async () => {
    await requireStack();
    const bucket = missingBucket();
    const { endpoint } = stackS3Options();
    const s3 = new S3Storage({ ...stackS3Options(), bucket, maxAttempts: 1 });
    const err: unknown = await probeStorage(s3, 'run-1').catch((e: unknown) => e);
    await s3.close();
    expect(err).toBeInstanceOf(StorageConfigError);
    expect((err as StorageConfigError).retryable).toBe(false);
    expect((err as Error).message).toContain(`bucket ${bucket} does not exist at ${endpoint}`);
    expect((err as Error).message).toMatch(/Create the bucket .*or fix the storage URL/);
    expect(await bucketExists(bucket)).toBe(false);
  });

  it('the pre-flight probe refuses wrong credentials non-retryably, naming bucket and endpoint', async () => {
    await requireStack();
    const { bucket, endpoint } = stackS3Options();
    const s3 = new S3Storage({ ...stackS3Options(), credentials: { accessKeyId: 'nobody', secretAccessKey: 'wrong' }, maxAttempts: 1 });
    const err: unknown = await probeStorage(s3, 'run-1').catch((e: unknown) => e);
    await s3.close();
    expect(err).toBeInstanceOf(StorageConfigError);
    expect((err as StorageConfigError).retryable).toBe(false);
    expect((err as Error).message).toContain(`bucket ${bucket} at ${endpoint}`);
    expect((err as Error).message).toMatch(/access denied.*SOPHIA_S3_ACCESS_KEY_ID/);
  });

  it('an activity that meets a missing bucket fails non-retryably, and reads do not pass for missing objects', async () => {
    await requireStack();
    const bucket = missingBucket();
    const s3 = new S3Storage({ ...stackS3Options(), bucket, maxAttempts: 1 });
    // The activities' own failure mapping (every activity group is wrapped in it), over a real write and a real read.
    const acts = withFailureMapping({
      write: () => s3.put('runs/r/data/x.json', new TextEncoder().encode('{}')),
      read: () => s3.head('runs/r/data/x.json'),
    });
    for (const attempt of [acts.write, acts.read]) {
      const failure: unknown = await attempt().catch((e: unknown) => e);
      expect(failure).toBeInstanceOf(ApplicationFailure);
      expect(failure).toMatchObject({ type: 'StorageConfigError', nonRetryable: true });
      expect((failure as Error).message).toContain(`bucket ${bucket} does not exist`);
    }
    await s3.close();
    expect(await bucketExists(bucket)).toBe(false);
  });
});
