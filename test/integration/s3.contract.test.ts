/**
 * The storage contract against the real S3-compatible server of the local stack (SeaweedFS), under a fresh
 * prefix per run so repeated runs never see each other's objects.
 */
import { randomBytes } from 'node:crypto';
import { S3Storage } from '../../storage/s3';
import { describeStorageContract } from '../../storage/storage.contract';
import { requireStack, stackS3Options } from './stack';

describeStorageContract('S3Storage (SeaweedFS from the local stack)', async () => {
  await requireStack();
  return new S3Storage({ ...stackS3Options(), prefix: `test/${randomBytes(6).toString('hex')}` });
});
