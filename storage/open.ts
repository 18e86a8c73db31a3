/**
 * Opens the `Storage` a URL names, with S3 settings from the environment:
 *
 *   ./.sophia/storage, /data/sophia, file:///data/sophia   → LocalStorage
 *   s3://bucket, s3://bucket/some/prefix                  → S3Storage
 *
 * S3 environment (all optional; without them the AWS defaults apply):
 *   SOPHIA_S3_ENDPOINT           custom endpoint, e.g. http://127.0.0.1:8333 (S3-compatible servers)
 *   SOPHIA_S3_REGION             region (else AWS_REGION, else us-east-1)
 *   SOPHIA_S3_FORCE_PATH_STYLE   true/false (default: true when an endpoint is set)
 *   SOPHIA_S3_ACCESS_KEY_ID      explicit credentials (else the AWS chain: AWS_ACCESS_KEY_ID, profiles, roles)
 *   SOPHIA_S3_SECRET_ACCESS_KEY
 *   SOPHIA_S3_PART_SIZE_MB       multipart part size (default 16)
 *   SOPHIA_S3_QUEUE_SIZE         parts in flight per upload (default 4)
 */
import { ConfigError } from '../common/errors';
import { LocalStorage } from './local';
import { S3Storage, type S3StorageOptions } from './s3';
import type { Storage } from './types';

type Env = Readonly<Record<string, string | undefined>>;

function positiveInt(env: Env, name: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) {
    throw new ConfigError(name, `${JSON.stringify(raw)} is not a positive integer`);
  }
  return value;
}

/** S3 options for `bucket`/`prefix` from the environment (see the module comment). */
export function s3OptionsFromEnv(bucket: string, prefix: string, env: Env): S3StorageOptions {
  const options: S3StorageOptions = { bucket, prefix };
  const endpoint = env.SOPHIA_S3_ENDPOINT;
  if (endpoint) {
    if (!/^https?:\/\/[^\s/]+(\/.*)?$/.test(endpoint)) {
      throw new ConfigError('SOPHIA_S3_ENDPOINT', `${JSON.stringify(endpoint)} is not an http(s) URL`, {
        hint: 'For example "http://127.0.0.1:8333"',
      });
    }
    options.endpoint = endpoint;
  }
  const region = env.SOPHIA_S3_REGION || env.AWS_REGION;
  if (region) options.region = region;
  const pathStyle = env.SOPHIA_S3_FORCE_PATH_STYLE;
  if (pathStyle) {
    if (!/^(true|false|1|0)$/i.test(pathStyle)) {
      throw new ConfigError('SOPHIA_S3_FORCE_PATH_STYLE', `${JSON.stringify(pathStyle)} is not a boolean`, {
        hint: 'Use "true" or "false"',
      });
    }
    options.forcePathStyle = /^(true|1)$/i.test(pathStyle);
  }
  const id = env.SOPHIA_S3_ACCESS_KEY_ID;
  const secret = env.SOPHIA_S3_SECRET_ACCESS_KEY;
  if (Boolean(id) !== Boolean(secret)) {
    throw new ConfigError(id ? 'SOPHIA_S3_SECRET_ACCESS_KEY' : 'SOPHIA_S3_ACCESS_KEY_ID', 'is missing', {
      hint: 'Set both SOPHIA_S3_ACCESS_KEY_ID and SOPHIA_S3_SECRET_ACCESS_KEY, or neither (AWS credential chain)',
    });
  }
  if (id && secret) options.credentials = { accessKeyId: id, secretAccessKey: secret };
  const partMb = positiveInt(env, 'SOPHIA_S3_PART_SIZE_MB');
  if (partMb !== undefined) {
    if (partMb < 5) throw new ConfigError('SOPHIA_S3_PART_SIZE_MB', `${partMb} is below S3's 5 MiB minimum part size`);
    options.partSize = partMb << 20;
  }
  const queue = positiveInt(env, 'SOPHIA_S3_QUEUE_SIZE');
  if (queue !== undefined) options.queueSize = queue;
  return options;
}

/** Opens the storage a URL or directory path names. */
export function openStorage(url: string, env: Env = {}): Storage {
  if (url.startsWith('s3://')) {
    const rest = url.slice('s3://'.length);
    const slash = rest.indexOf('/');
    const bucket = slash === -1 ? rest : rest.slice(0, slash);
    const prefix = slash === -1 ? '' : rest.slice(slash + 1);
    if (bucket === '') {
      throw new ConfigError('storage', `${JSON.stringify(url)} has no bucket`, { hint: 'Use s3://BUCKET or s3://BUCKET/PREFIX' });
    }
    return new S3Storage(s3OptionsFromEnv(bucket, prefix, env));
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url) && !url.startsWith('file://')) {
    throw new ConfigError('storage', `unsupported storage URL ${JSON.stringify(url)}`, {
      hint: 'Use a directory path, file:///path, or s3://bucket/prefix',
    });
  }
  const dir = url.startsWith('file://') ? decodeURIComponent(new URL(url).pathname) : url;
  if (dir.trim() === '') throw new ConfigError('storage', 'the storage location is empty', { hint: 'Give a directory or s3:// URL' });
  return new LocalStorage(dir);
}
