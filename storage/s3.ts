/**
 * `S3Storage`: the `Storage` port over AWS S3 or any S3-compatible server (SeaweedFS, MinIO, Ceph RGW, R2).
 *
 * - Small in-memory bodies go up in one PutObject (with `If-None-Match: *` for `ifAbsent`).
 * - Large or streamed bodies go up as multipart uploads through `@aws-sdk/lib-storage` (`Upload`), `partSize`
 *   bytes per part, `queueSize` parts in flight; a failed upload aborts its parts.
 * - Reads stream the response body; `get` fills one preallocated buffer of the object's length.
 * - The bucket is checked (HeadBucket) before the first request: a missing one is a `StorageConfigError`. A write
 *   alone would not tell: some S3-compatible servers (SeaweedFS) create a missing bucket on the first PUT, and on
 *   AWS a HEAD of an object in a missing bucket is a plain 404, read as "no such object".
 * - Errors are mapped onto Sophia's: missing key → `NotFoundError`, existing key on a conditional write →
 *   `AlreadyExistsError`, auth/bucket problems → `StorageConfigError` (not retryable; the message names the
 *   bucket, the endpoint and the fix), a full server (HTTP 507) → `StorageFullError` (retryable), network and 5xx →
 *   `StorageUnavailableError` (retryable).
 */
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Readable } from 'node:stream';
import {
  AlreadyExistsError,
  NotFoundError,
  SizeMismatchError,
  SophiaError,
  StorageConfigError,
  StorageFullError,
  StorageUnavailableError,
} from '../common/errors';
import { StreamDigest, hashInterleaved, hashedStream, sha256Hex } from './hashing';
import { S3_BUCKET_NAME, assertValidKey, assertValidPrefix } from './keys';
import { type ByteRange, type GetOptions, type ObjectInfo, type PutBody, type PutOptions, type PutResult, resolveRange, Storage } from './types';

export interface S3StorageOptions {
  bucket: string;
  /** Key prefix inside the bucket ("" or e.g. "teams/vision"); objects are stored under `{prefix}/{key}`. */
  prefix?: string;
  /** Custom endpoint for S3-compatible servers, e.g. "http://127.0.0.1:8333". Omit for AWS. */
  endpoint?: string;
  region?: string;
  /** Path-style URLs (`endpoint/bucket/key`); needed by most S3-compatible servers. */
  forcePathStyle?: boolean;
  /** Explicit credentials; omitted = the AWS default chain (env, profile, instance role). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** In-memory bodies up to this size use a single PutObject (default 16 MiB). */
  multipartThreshold?: number;
  /** Multipart part size (default 16 MiB; S3 requires ≥ 5 MiB). */
  partSize?: number;
  /** Parts uploaded concurrently (default 4). */
  queueSize?: number;
  /** Attempts per request inside the SDK (default 3). */
  maxAttempts?: number;
  /**
   * Extra per-request CRC checksums: `when-required` (default here) or `when-supported` (the SDK's default).
   * Uploads are already covered by the SigV4 payload sha256, which the server verifies, and every checkpoint
   * byte is verified against its manifest's sha256 on load; the CRC pass only costs CPU on top.
   */
  requestChecksums?: 'when-supported' | 'when-required';
}

const MiB = 1 << 20;

interface AwsErrorShape {
  name?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
  $fault?: string;
  code?: string;
}

function awsError(err: unknown): AwsErrorShape {
  return typeof err === 'object' && err !== null ? (err) : {};
}

export class S3Storage extends Storage {
  readonly location: string;
  readonly client: S3Client;
  readonly bucket: string;
  /** Where the bucket is, in messages: the custom endpoint, or AWS S3 and the region. */
  readonly endpoint: string;
  private readonly prefix: string;
  /** The bucket check, made once before the first request (again after one that failed retryably). */
  private bucketChecked: Promise<void> | undefined;
  private readonly multipartThreshold: number;
  private readonly partSize: number;
  private readonly queueSize: number;

  constructor(options: S3StorageOptions) {
    super();
    if (!S3_BUCKET_NAME.test(options.bucket)) {
      throw new StorageConfigError(`invalid S3 bucket name ${JSON.stringify(options.bucket)}`, {
        hint: 'Bucket names are 3–63 lowercase letters, digits, "." and "-"',
      });
    }
    const prefix = (options.prefix ?? '').replace(/^\/+|\/+$/g, '');
    if (prefix !== '') assertValidKey(prefix);
    this.bucket = options.bucket;
    this.prefix = prefix === '' ? '' : `${prefix}/`;
    this.location = `s3://${options.bucket}${prefix === '' ? '' : `/${prefix}`}`;
    this.endpoint = options.endpoint ?? `AWS S3 (${options.region ?? 'us-east-1'})`;
    this.multipartThreshold = options.multipartThreshold ?? 16 * MiB;
    this.partSize = Math.max(5 * MiB, options.partSize ?? 16 * MiB);
    this.queueSize = options.queueSize ?? 4;
    const config: S3ClientConfig = {
      region: options.region ?? 'us-east-1',
      forcePathStyle: options.forcePathStyle ?? options.endpoint !== undefined,
      maxAttempts: options.maxAttempts ?? 3,
    };
    if (options.endpoint !== undefined) config.endpoint = options.endpoint;
    if (options.credentials !== undefined) config.credentials = options.credentials;
    config.requestChecksumCalculation = options.requestChecksums === 'when-supported' ? 'WHEN_SUPPORTED' : 'WHEN_REQUIRED';
    config.responseChecksumValidation = config.requestChecksumCalculation;
    this.client = new S3Client(config);
  }

  private fullKey(key: string): string {
    assertValidKey(key);
    return this.prefix + key;
  }

  /** Maps SDK failures onto Sophia's error classes; `key` names the object in the message. */
  private mapError(err: unknown, op: string, key: string): Error {
    if (err instanceof SophiaError) return err;
    const e = awsError(err);
    const status = e.$metadata?.httpStatusCode;
    const name = e.name ?? e.Code ?? '';
    const what = `S3 ${op} ${this.location}/${key}`;
    if (name === 'NoSuchKey' || name === 'NotFound' || (status === 404 && name !== 'NoSuchBucket')) {
      return new NotFoundError(key, this.location, { cause: err });
    }
    if (name === 'PreconditionFailed' || status === 412) return new AlreadyExistsError(key, this.location);
    if (name === 'NoSuchBucket') return this.noSuchBucket(what, err);
    if (name === 'CredentialsProviderError') {
      return new StorageConfigError(`${what}: no S3 credentials found`, {
        cause: err,
        hint: 'Set SOPHIA_S3_ACCESS_KEY_ID and SOPHIA_S3_SECRET_ACCESS_KEY, or configure the AWS credential chain (AWS_ACCESS_KEY_ID, a profile, an instance role)',
      });
    }
    if (status === 401 || status === 403 || name === 'InvalidAccessKeyId' || name === 'SignatureDoesNotMatch' || name === 'AccessDenied') {
      return new StorageConfigError(`${what}: access denied (${name || status}) to bucket ${this.bucket} at ${this.endpoint}`, {
        cause: err,
        hint: `Check SOPHIA_S3_ACCESS_KEY_ID / SOPHIA_S3_SECRET_ACCESS_KEY (or the AWS credential chain) and the policy of bucket ${this.bucket}`,
      });
    }
    if (status === 507) {
      return new StorageFullError(`${what}: the S3 server at ${this.endpoint} is out of space (${name || 'HTTP 507'})`, {
        cause: err,
        hint: 'Free space on the S3 server (or raise its quota); the write is retried',
      });
    }
    if (status === 416 || name === 'InvalidRange') return new RangeError(`${what}: requested range is not satisfiable`);
    const message = err instanceof Error ? err.message : String(err);
    return new StorageUnavailableError(`${what} failed: ${name || 'error'}${status ? ` (HTTP ${status})` : ''}: ${message}`, {
      cause: err,
    });
  }

  private noSuchBucket(what: string, err: unknown): StorageConfigError {
    return new StorageConfigError(`${what}: bucket ${this.bucket} does not exist at ${this.endpoint}`, {
      cause: err,
      hint: `Create the bucket (aws s3 mb s3://${this.bucket}; the local stack makes its own in \`npm run stack:up\`) or fix the storage URL and SOPHIA_S3_ENDPOINT`,
    });
  }

  /**
   * Checks once that the bucket exists, before the first request. A 404 is a missing bucket (a HEAD has no body to
   * name it); anything else that is not retryable, a 403 included, is left to the request itself: credentials that
   * may read and write objects need not be allowed HeadBucket (s3:ListBucket), and wrong ones fail there too.
   */
  private ensureBucket(): Promise<void> {
    this.bucketChecked ??= this.client.send(new HeadBucketCommand({ Bucket: this.bucket })).then(
      () => undefined,
      (err: unknown) => {
        if (awsError(err).$metadata?.httpStatusCode === 404 || awsError(err).name === 'NoSuchBucket') {
          throw this.noSuchBucket(`S3 ${this.location}`, err);
        }
        const mapped = this.mapError(err, 'check', '');
        if (mapped instanceof SophiaError && mapped.retryable) {
          this.bucketChecked = undefined; // ask again next time
          throw mapped;
        }
      },
    );
    return this.bucketChecked;
  }

  async put(key: string, body: PutBody, options: PutOptions = {}): Promise<PutResult> {
    const Key = this.fullKey(key);
    const single = body instanceof Uint8Array && body.byteLength <= this.multipartThreshold;
    if (options.ifAbsent && !single) {
      throw new TypeError(`put(${key}): ifAbsent needs an in-memory body of at most ${this.multipartThreshold} bytes`);
    }
    const ContentType = options.contentType ?? 'application/octet-stream';
    await this.ensureBucket();
    try {
      if (single) {
        // One pass of sha256 serves twice: it is the SigV4 payload hash (the signer uses a preset
        // x-amz-content-sha256 instead of hashing the body again, and the server verifies it), and it is
        // returned for the caller's manifest.
        const sha256 = sha256Hex(body);
        const command = new PutObjectCommand({
          Bucket: this.bucket,
          Key,
          Body: body,
          ContentLength: body.byteLength,
          ContentType,
          ...(options.ifAbsent ? { IfNoneMatch: '*' } : {}),
        });
        command.middlewareStack.add(
          (next) => (args) => {
            const request = args.request as { headers?: Record<string, string> };
            if (request.headers) request.headers['x-amz-content-sha256'] = sha256;
            return next(args);
          },
          { step: 'build', name: 'sophiaPayloadSha256' },
        );
        await this.client.send(command);
        return { key, size: body.byteLength, sha256 };
      }
      // Multipart through lib-storage. An in-memory body is uploaded as is (parts are zero-copy slices) while
      // this thread hashes it in slices between upload events; a stream is hashed as it flows by.
      const digest = new StreamDigest();
      const uploadBody =
        body instanceof Uint8Array
          ? Buffer.from(body.buffer, body.byteOffset, body.byteLength)
          : Readable.from(hashedStream(body, digest), { objectMode: false });
      const upload = new Upload({
        client: this.client,
        params: { Bucket: this.bucket, Key, Body: uploadBody, ContentType },
        partSize: this.partSize,
        queueSize: this.queueSize,
        leavePartsOnError: false,
      });
      await Promise.all([upload.done(), body instanceof Uint8Array ? hashInterleaved(body, digest) : undefined]);
      return { key, size: digest.size, sha256: digest.sha256 };
    } catch (err) {
      throw this.mapError(err, 'put', key);
    }
  }

  private async fetch(key: string, range: ByteRange | undefined): Promise<{ body: Readable; length: number }> {
    let Range: string | undefined;
    await this.ensureBucket();
    if (range) {
      const info = await this.head(key);
      if (!info) throw new NotFoundError(key, this.location);
      const { start, end } = resolveRange(range, info.size, () => `${this.location}/${key}`);
      if (end < start) return { body: Readable.from([]), length: 0 };
      Range = `bytes=${start}-${end}`;
    }
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key), Range }));
      if (!(out.Body instanceof Readable)) throw new StorageUnavailableError(`S3 get ${key}: response has no body stream`);
      return { body: out.Body, length: out.ContentLength ?? -1 };
    } catch (err) {
      throw this.mapError(err, 'get', key);
    }
  }

  async get(key: string, range?: ByteRange, options: GetOptions = {}): Promise<Uint8Array> {
    const { body, length } = await this.fetch(key, range);
    try {
      if (options.into && options.into.byteLength !== length) {
        body.destroy();
        throw new SizeMismatchError(key, options.into.byteLength, length);
      }
      if (length >= 0) {
        const out = options.into ?? Buffer.allocUnsafe(length);
        let offset = 0;
        for await (const chunk of body as AsyncIterable<Buffer>) {
          if (offset + chunk.length > length) throw new StorageUnavailableError(`S3 get ${key}: more bytes than Content-Length`);
          out.set(chunk, offset);
          options.onChunk?.(out.subarray(offset, offset + chunk.length));
          offset += chunk.length;
        }
        if (offset !== length) throw new StorageUnavailableError(`S3 get ${key}: body ended after ${offset} of ${length} bytes`);
        return out;
      }
      const chunks: Buffer[] = [];
      for await (const chunk of body as AsyncIterable<Buffer>) {
        chunks.push(chunk);
        options.onChunk?.(chunk);
      }
      return Buffer.concat(chunks);
    } catch (err) {
      throw this.mapError(err, 'get', key);
    }
  }

  async getStream(key: string, range?: ByteRange): Promise<Readable> {
    return (await this.fetch(key, range)).body;
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    await this.ensureBucket();
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) }));
      return { key, size: out.ContentLength ?? 0, lastModified: out.LastModified };
    } catch (err) {
      const mapped = this.mapError(err, 'head', key);
      if (mapped instanceof NotFoundError) return undefined;
      throw mapped;
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    assertValidPrefix(prefix);
    await this.ensureBucket();
    let ContinuationToken: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix + prefix, ContinuationToken }),
        );
      } catch (err) {
        throw this.mapError(err, 'list', prefix);
      }
      for (const item of page.Contents ?? []) {
        if (item.Key === undefined || !item.Key.startsWith(this.prefix)) continue;
        const key = item.Key.slice(this.prefix.length);
        // Servers that model directories may list "dir/" markers; they are not objects.
        if (key === '' || key.endsWith('/')) continue;
        yield { key, size: item.Size ?? 0, lastModified: item.LastModified };
      }
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (ContinuationToken);
  }

  async delete(key: string): Promise<void> {
    await this.ensureBucket();
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) }));
    } catch (err) {
      const mapped = this.mapError(err, 'delete', key);
      if (mapped instanceof NotFoundError) return;
      throw mapped;
    }
  }

  override close(): Promise<void> {
    this.client.destroy();
    return Promise.resolve();
  }
}
