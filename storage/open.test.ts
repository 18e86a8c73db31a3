import { describe, expect, it } from 'vitest';
import { ConfigError } from '../common/errors';
import { LocalStorage } from './local';
import { openStorage, s3OptionsFromEnv } from './open';
import { S3Storage } from './s3';

describe('openStorage', () => {
  it('opens directories and file:// URLs as local storage', () => {
    const a = openStorage('/tmp/sophia-x');
    expect(a).toBeInstanceOf(LocalStorage);
    expect(a.location).toBe('local:/tmp/sophia-x');
    expect(openStorage('file:///tmp/sophia%20y').location).toBe('local:/tmp/sophia y');
  });

  it('opens s3:// URLs with bucket and prefix', async () => {
    const s = openStorage('s3://my-bucket/team/vision/', { SOPHIA_S3_ENDPOINT: 'http://127.0.0.1:8333' });
    expect(s).toBeInstanceOf(S3Storage);
    expect(s.location).toBe('s3://my-bucket/team/vision');
    await s.close();
  });

  it('rejects unknown schemes and empty buckets with the fix', () => {
    expect(() => openStorage('gs://bucket')).toThrow(/unsupported storage URL.*s3:\/\/bucket\/prefix/);
    expect(() => openStorage('s3:///x')).toThrow(/has no bucket/);
    expect(() => openStorage('s3://Bad_Bucket')).toThrow(/invalid S3 bucket name/);
  });
});

describe('s3OptionsFromEnv', () => {
  it('reads endpoint, region, path style, credentials and multipart tuning', () => {
    expect(
      s3OptionsFromEnv('b', 'p', {
        SOPHIA_S3_ENDPOINT: 'http://localhost:8333',
        SOPHIA_S3_REGION: 'eu-west-1',
        SOPHIA_S3_FORCE_PATH_STYLE: 'false',
        SOPHIA_S3_ACCESS_KEY_ID: 'id',
        SOPHIA_S3_SECRET_ACCESS_KEY: 'secret',
        SOPHIA_S3_PART_SIZE_MB: '32',
        SOPHIA_S3_QUEUE_SIZE: '8',
      }),
    ).toEqual({
      bucket: 'b',
      prefix: 'p',
      endpoint: 'http://localhost:8333',
      region: 'eu-west-1',
      forcePathStyle: false,
      credentials: { accessKeyId: 'id', secretAccessKey: 'secret' },
      partSize: 32 << 20,
      queueSize: 8,
    });
    expect(s3OptionsFromEnv('b', '', { AWS_REGION: 'us-west-2' }).region).toBe('us-west-2');
  });

  it.each([
    [{ SOPHIA_S3_ENDPOINT: 'localhost:8333' }, 'SOPHIA_S3_ENDPOINT'],
    [{ SOPHIA_S3_FORCE_PATH_STYLE: 'yes please' }, 'SOPHIA_S3_FORCE_PATH_STYLE'],
    [{ SOPHIA_S3_ACCESS_KEY_ID: 'id' }, 'SOPHIA_S3_SECRET_ACCESS_KEY'],
    [{ SOPHIA_S3_SECRET_ACCESS_KEY: 's' }, 'SOPHIA_S3_ACCESS_KEY_ID'],
    [{ SOPHIA_S3_PART_SIZE_MB: '4' }, 'SOPHIA_S3_PART_SIZE_MB'],
    [{ SOPHIA_S3_QUEUE_SIZE: 'many' }, 'SOPHIA_S3_QUEUE_SIZE'],
  ])('names the bad variable in %j', (env, field) => {
    let caught: unknown;
    try {
      s3OptionsFromEnv('b', '', env);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as ConfigError).field).toBe(field);
  });
});
