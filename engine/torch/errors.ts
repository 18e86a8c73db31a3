/**
 * What a call to the torch engine process can fail with, and how each maps to Sophia's errors (house rule 7):
 *
 * | the engine's reply / event              | thrown here                    | retryable | why |
 * |-----------------------------------------|--------------------------------|-----------|-----|
 * | `RangeError` (a bad value, shape, path) | `TorchEngineRangeError`        | —         | bad input, as the `Engine` contract says: a RangeError naming the field |
 * | `TypeError` (wrong type/dtype, role)    | `TorchEngineTypeError`         | —         | likewise, a TypeError naming the field |
 * | `StateError` (no model, no gradients)   | `TorchEngineError` (input)     | no        | the caller's sequence of ops is wrong; retrying repeats it |
 * | `InternalError` (a torch failure)       | `TorchEngineError` (unavailable) | yes     | e.g. CUDA out of memory; the retry starts again from the last checkpoint, bounded by the activity's attempts |
 * | `ProtocolError` (a frame it cannot read) | `TorchEngineError` (input)    | no        | a bug in this client's encoder; the process exits 2 after it |
 * | the process exits, is killed, or breaks the framing | `EngineProcessDiedError` (unavailable) | yes | a new process (`restart()`) and the run's last checkpoint continue the work |
 * | no venv installed / a stale one         | `TorchEngineNotInstalledError` (config) | no | the fix is to run the install command |
 *
 * Refusals (the first three) change no engine state and the process keeps serving.
 */
import { SophiaError } from '../../common/errors';
import type { OpName } from './protocol';

/** The error object of an `ok: false` reply. */
export interface ReplyError {
  type: string;
  message: string;
  field?: string;
}

function describe(op: string, error: ReplyError): string {
  const field = error.field && !error.message.includes(error.field) ? ` (field ${error.field})` : '';
  return `torch engine ${op}: ${error.message}${field}`;
}

/** A value the engine refused: its message and `field` name what was wrong (`args.temperature`, `tensors.response_ids`). */
export class TorchEngineRangeError extends RangeError {
  override name = 'TorchEngineRangeError';
  constructor(
    readonly op: OpName,
    readonly field: string | undefined,
    message: string,
  ) {
    super(message);
  }
}

/** A type the engine refused (a wrong JSON type or dtype; an op the loaded model's role cannot run). */
export class TorchEngineTypeError extends TypeError {
  override name = 'TorchEngineTypeError';
  constructor(
    readonly op: OpName,
    readonly field: string | undefined,
    message: string,
  ) {
    super(message);
  }
}

/** Any other error reply (`StateError`, `InternalError`, `ProtocolError`); `type` is the engine's. */
export class TorchEngineError extends SophiaError {
  constructor(
    readonly op: OpName,
    readonly type: string,
    readonly field: string | undefined,
    message: string,
    category: 'input' | 'unavailable',
  ) {
    super(category, message, {
      hint:
        type === 'InternalError'
          ? "The engine process's stderr log has the traceback"
          : type === 'StateError'
            ? 'Load a model (op load or load_state) first, and call forward_backward before optim_step'
            : undefined,
    });
  }
}

/** The error an `ok: false` reply maps to (table above). */
export function replyError(op: OpName, error: ReplyError): Error {
  const message = describe(op, error);
  switch (error.type) {
    case 'RangeError':
      return new TorchEngineRangeError(op, error.field, message);
    case 'TypeError':
      return new TorchEngineTypeError(op, error.field, message);
    case 'InternalError':
      return new TorchEngineError(op, error.type, error.field, message, 'unavailable');
    default:
      return new TorchEngineError(op, error.type, error.field, message, 'input');
  }
}

/** How an engine process ended. */
export interface ProcessEnd {
  pid: number | undefined;
  /** Exit status, or null when a signal ended it. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** true when `close()` ended it. */
  closed: boolean;
  /** Why, when this side saw it break ("protocol violation: …", "could not start: …"). */
  reason?: string;
  /** Its last stderr lines, oldest first. */
  stderrTail: string[];
}

/** "the engine process (pid N) died: killed by SIGKILL" (or "was closed: exit code 0", "died: protocol violation: … (…)"). */
export function describeEnd(end: ProcessEnd): string {
  const how = end.signal ? `killed by ${end.signal}` : end.code === null ? 'ended' : `exit code ${end.code}`;
  const pid = end.pid ? ` (pid ${end.pid})` : '';
  return `the engine process${pid} ${end.closed ? 'was closed' : 'died'}: ${end.reason ? `${end.reason} (${how})` : how}`;
}

/**
 * The engine process is gone: every request pending when it ended, and every later one, fails with this until
 * `restart()`. Retryable: the work continues in a new process from the last checkpoint.
 */
export class EngineProcessDiedError extends SophiaError {
  readonly end: ProcessEnd;
  constructor(op: OpName, end: ProcessEnd) {
    const tail = end.stderrTail.slice(-5);
    super('unavailable', `torch engine ${op}: ${describeEnd(end)}` + (tail.length > 0 ? `; last stderr lines:\n  ${tail.join('\n  ')}` : ''), {
      hint: end.closed ? 'Start a new engine process (restart())' : 'Restart the engine process (restart()) and load the last checkpoint',
    });
    this.end = end;
  }
}

/** The PyTorch engine's venv is missing or was built from another lock. */
export class TorchEngineNotInstalledError extends SophiaError {
  constructor(message: string, installCommand: string) {
    super('config', message, { hint: `Install it with \`${installCommand}\` (first time: a few minutes; ~6.4 GB, or ~9.9 GB with vLLM's CUDA build on a GPU machine)` });
  }
}
