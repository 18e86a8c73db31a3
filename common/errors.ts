/**
 * Errors that say what went wrong and what to do about it.
 *
 * Every error Sophia raises on purpose is a `SophiaError` with
 *  - a `category` (what kind of failure it is, used by workers to decide retryability and by the API to pick
 *    an HTTP status),
 *  - an explicit `retryable` flag (a worker lost or a storage timeout is worth retrying; a bad config or a corrupt
 *    checkpoint is not: retrying only burns time),
 *  - an optional `hint`: the fix, in one sentence, appended to the message.
 *
 * Subclasses exist so callers can `instanceof` them and so Temporal failures carry a precise `type`
 * (the class name) that retry policies can list in `nonRetryableErrorTypes`.
 */

export type ErrorCategory =
  | 'config' // invalid configuration or environment variable
  | 'input' // invalid argument from a caller (bad key, bad range, bad manifest field)
  | 'not-found' // the object/checkpoint does not exist
  | 'conflict' // something already exists with different content
  | 'corrupt' // stored bytes do not match their manifest
  | 'unavailable'; // a dependency (storage, server) could not be reached: retry

export interface SophiaErrorOptions {
  /** One sentence telling the user how to fix it. */
  hint?: string;
  /** Override the category default (only `unavailable` is retryable by default). */
  retryable?: boolean;
  cause?: unknown;
}

export class SophiaError extends Error {
  readonly category: ErrorCategory;
  readonly retryable: boolean;
  readonly hint: string | undefined;

  constructor(category: ErrorCategory, message: string, options: SophiaErrorOptions = {}) {
    super(options.hint ? `${message}. ${options.hint}` : message, { cause: options.cause });
    this.name = new.target.name;
    this.category = category;
    this.retryable = options.retryable ?? category === 'unavailable';
    this.hint = options.hint;
  }
}

/** A configuration value (env var, config file field) is missing or invalid. */
export class ConfigError extends SophiaError {
  /** The env var or config path at fault, e.g. `SOPHIA_GPU_HEARTBEAT_TIMEOUT` or `activities.gpu.retry`. */
  readonly field: string;
  constructor(field: string, message: string, options: SophiaErrorOptions = {}) {
    super('config', `${field}: ${message}`, options);
    this.field = field;
  }
}

/** A storage key is malformed or tries to escape its root (path traversal). */
export class InvalidKeyError extends SophiaError {
  readonly key: string;
  constructor(key: string, reason: string, hint?: string) {
    super('input', `invalid storage key ${JSON.stringify(key)}: ${reason}`, {
      hint:
        hint ??
        'Keys are relative, "/"-separated, without empty, "." or ".." segments (e.g. "runs/r1/sft/checkpoints/00000010/manifest.json")',
    });
    this.key = key;
  }
}

/** The requested object does not exist. */
export class NotFoundError extends SophiaError {
  readonly key: string;
  constructor(key: string, where: string, options: SophiaErrorOptions = {}) {
    super('not-found', `no object at ${JSON.stringify(key)} in ${where}`, options);
    this.key = key;
  }
}

/** An object's size differs from the size the caller expected (e.g. a destination buffer's length). */
export class SizeMismatchError extends SophiaError {
  readonly key: string;
  readonly expected: number;
  readonly actual: number;
  constructor(key: string, expected: number, actual: number) {
    super('input', `${JSON.stringify(key)} has ${actual} bytes, expected ${expected}`);
    this.key = key;
    this.expected = expected;
    this.actual = actual;
  }
}

/** A conditional write found the key already present. */
export class AlreadyExistsError extends SophiaError {
  readonly key: string;
  constructor(key: string, where: string) {
    super('conflict', `an object already exists at ${JSON.stringify(key)} in ${where}`);
    this.key = key;
  }
}

/** Storage could not be reached or timed out; safe to retry with backoff. */
export class StorageUnavailableError extends SophiaError {
  constructor(message: string, options: SophiaErrorOptions = {}) {
    super('unavailable', message, options);
  }
}

/**
 * The storage is out of space (a full disk or quota: ENOSPC, EDQUOT, HTTP 507). Retryable: space can be freed. A
 * checkpoint save that meets it waits and saves again, keeping the engine state it has (activities/engine-checkpoints.ts).
 */
export class StorageFullError extends StorageUnavailableError {}

/** Storage refused the request for a reason retrying will not fix (credentials, missing bucket, permissions). */
export class StorageConfigError extends SophiaError {
  constructor(message: string, options: SophiaErrorOptions = {}) {
    super('config', message, options);
  }
}

/** A checkpoint was asked for that was never committed (no manifest). */
export class CheckpointNotFoundError extends SophiaError {
  constructor(message: string, options: SophiaErrorOptions = {}) {
    super('not-found', message, options);
  }
}

/** A committed checkpoint's files do not match its manifest (missing file, wrong size, wrong sha256). */
export class CorruptCheckpointError extends SophiaError {
  /** Key of the checkpoint directory. */
  readonly checkpointKey: string;
  constructor(checkpointKey: string, message: string, options: SophiaErrorOptions = {}) {
    super('corrupt', `checkpoint ${checkpointKey} is corrupt: ${message}`, {
      hint: 'Load an earlier checkpoint (list them with the checkpoint store) or delete this one and re-run the stage',
      ...options,
    });
    this.checkpointKey = checkpointKey;
  }
}

/** The same checkpoint step was committed twice with different contents. */
export class CheckpointConflictError extends SophiaError {
  readonly checkpointKey: string;
  constructor(checkpointKey: string, message: string) {
    super('conflict', `checkpoint ${checkpointKey}: ${message}`, {
      hint: 'Another worker committed this step first (a retried or zombie activity); resume from the committed checkpoint instead of re-saving it',
    });
    this.checkpointKey = checkpointKey;
  }
}

/** Error class names that Temporal retry policies must never retry. */
export const NON_RETRYABLE_ERROR_TYPES: readonly string[] = [
  'ConfigError',
  'InvalidKeyError',
  'StorageConfigError',
  'CorruptCheckpointError',
  'CheckpointConflictError',
  'TorchEngineNotInstalledError',
];
