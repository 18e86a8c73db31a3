/**
 * `TorchEngineProcess`: one PyTorch engine process (`python -m sophia_torch.server`, engine/README.md "PyTorch
 * engine") spawned from the project's venv and spoken to over its stdin/stdout frames (framing.ts), with typed
 * wrappers for its ops (protocol.ts). This is the process side only; the `Engine` implementation maps the
 * interface's batches onto these ops.
 *
 * Requests are pipelined: each call writes its frame at once, and replies — which the process sends one per
 * request, in order — are matched to the oldest pending request by `id` (a reply out of order is a protocol
 * violation). The engine runs ops one at a time, so pipelining only overlaps this side's encoding and the pipe
 * with the engine's work; callers that need an op's result before the next (a loss before a step) await it.
 *
 * Supervision: if the process exits, is killed, or breaks the framing (it is then killed), every pending
 * request and every later one fails with `EngineProcessDiedError` (retryable, category `unavailable`: exit code
 * or signal and the last stderr lines), until `restart()` starts a new process — whose model must be loaded
 * again. `close()` sends `shutdown` (after whatever is pending), waits, and kills after a grace period.
 * The process runs in its own process group, so a Ctrl-C meant for the worker (which then checkpoints and
 * closes the engine) does not kill the engine mid-step; if this Node process dies, the engine reads end-of-file
 * on stdin and exits on its own.
 *
 * Its stderr (one JSON object per line) reaches `onLog` as { level, message, fields }.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import * as path from 'node:path';
import { EngineProcessDiedError, type ProcessEnd, describeEnd, type ReplyError, TorchEngineError, replyError } from './errors';
import { type Frame, FrameDecoder, type Tensor, type TensorInput, type WIRE_DTYPES, type WireDType, encodeFrame, wireNumber } from './framing';
import {
  type AdamWArgs,
  type ForwardBackwardArgs,
  type ForwardBackwardResult,
  type HelloResult,
  type ImageBytes,
  type LoadArgs,
  type LoadStateArgs,
  type LogprobsArgs,
  type LogprobsResult,
  type LossSpec,
  type ModelInfo,
  type OpName,
  type OptimStepResult,
  PROTOCOL_VERSION,
  type Prompt,
  type PromptLengthsResult,
  type Rows,
  type RowsFor,
  type SampleArgs,
  type SampleResult,
  type SaveResult,
  type ScoreResult,
  type TokenizeResult,
  type TrainStepArgs,
  type TrainStepResult,
} from './protocol';
import { TORCH_PACKAGE_DIR, torchPython } from './venv';

export interface TorchEngineLogEntry {
  level: 'debug' | 'info' | 'warn' | 'error';
  message: string;
  /** The line's other keys (ts, logger, op, ms, field, traceback, …) and the process's pid. */
  fields: Record<string, unknown>;
}

export interface TorchEngineProcessOptions {
  /** The python to run; default the venv install-torch.sh makes (venv.ts: a clear error when it is missing). */
  python?: string;
  /** torch intra-op threads (`--threads`); default torch's own choice. */
  threads?: number;
  /**
   * Processes of the engine (default 1): more than one launches them with torchrun, one per GPU of the worker, the
   * policy sharded across them with FSDP (engine/README.md: training across GPUs); rank 0 speaks the protocol.
   */
  processes?: number;
  /** Added to this process's environment (e.g. CUDA_VISIBLE_DEVICES: one engine process per GPU). */
  env?: Record<string, string>;
  /** Receives each stderr log line. Default: warnings and errors to this process's stderr. */
  onLog?: (entry: TorchEngineLogEntry) => void;
  /** How long `close()` waits after `shutdown` before SIGKILL (default 10 s). */
  closeGraceMs?: number;
}

/** A successful reply: the op's JSON result and its output tensors by name. */
export interface Reply {
  result: Record<string, unknown>;
  tensors: Record<string, Tensor>;
}

const DEFAULT_CLOSE_GRACE_MS = 10_000;
/** stderr lines kept for the died error. */
const STDERR_TAIL_LINES = 20;
const STDERR_TAIL_CHARS = 400;
/** After 'exit', how long to wait for stderr to drain ('close') before failing the pending requests anyway. */
const EXIT_SETTLE_MS = 1_000;

function defaultLog(entry: TorchEngineLogEntry): void {
  if (entry.level === 'warn' || entry.level === 'error') process.stderr.write(`[torch engine] ${entry.level}: ${entry.message}\n`);
}

const LEVELS: Record<string, TorchEngineLogEntry['level']> = { debug: 'debug', info: 'info', warning: 'warn', warn: 'warn', error: 'error', critical: 'error' };

/** One stderr line as a log entry; a line that is not the engine's JSON (a crash before logging was set up) is a warning. */
export function parseLogLine(line: string, pid: number | undefined): TorchEngineLogEntry {
  try {
    const parsed: unknown = JSON.parse(line);
    if (typeof parsed === 'object' && parsed !== null && typeof (parsed as { msg?: unknown }).msg === 'string') {
      const { level, msg, ...fields } = parsed as { level?: unknown; msg: string } & Record<string, unknown>;
      return { level: LEVELS[String(level)] ?? 'info', message: msg, fields: { ...fields, pid } };
    }
  } catch {
    // not JSON: below
  }
  return { level: 'warn', message: line, fields: { pid, raw: true } };
}

interface PendingCall {
  op: OpName;
  resolve: (reply: Reply) => void;
  reject: (err: Error) => void;
}

/** One spawned engine process and its requests in flight. */
class Connection {
  readonly child: ChildProcessWithoutNullStreams;
  /** Settles once the process has ended and every pending request has failed. */
  readonly ended: Promise<ProcessEnd>;
  end: ProcessEnd | null = null;
  exited = false;
  closing = false;
  private resolveEnded!: (end: ProcessEnd) => void;
  private readonly decoder = new FrameDecoder();
  private readonly pending = new Map<number, PendingCall>();
  private nextId = 1;
  private stderrRest = '';
  private readonly stderrTail: string[] = [];
  private brokenReason: string | undefined;

  constructor(
    python: string,
    args: { launcher: string[]; server: string[] },
    env: Record<string, string> | undefined,
    private readonly onLog: (entry: TorchEngineLogEntry) => void,
  ) {
    this.ended = new Promise((resolve) => (this.resolveEnded = resolve));
    this.child = spawn(python, [...args.launcher, '-m', 'sophia_torch.server', ...args.server], {
      cwd: TORCH_PACKAGE_DIR,
      env: { ...process.env, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    });
    this.child.on('error', (err) => {
      if (this.child.pid === undefined) {
        this.exited = true;
        this.settle(null, null, `could not start ${python}: ${err.message}`);
      }
    });
    this.child.on('exit', () => {
      this.exited = true;
      setTimeout(() => this.settle(this.child.exitCode, this.child.signalCode), EXIT_SETTLE_MS).unref();
    });
    this.child.on('close', (code, signal) => this.settle(code, signal));
    this.child.stdin.on('error', () => undefined); // EPIPE once it died: the exit path reports it
    this.child.stdout.on('data', (chunk: Buffer) => this.onStdout(chunk));
    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (text: string) => this.onStderr(text));
  }

  send(op: OpName, args: Record<string, unknown>, tensors: Record<string, TensorInput>, model?: string): Promise<Reply> {
    if (this.end) return Promise.reject(new EngineProcessDiedError(op, this.end));
    const id = this.nextId++;
    let frame: Buffer[];
    try {
      frame = encodeFrame({ op, id, args, ...(model !== undefined ? { model } : {}) }, tensors); // bad tensor input: refused before anything is sent
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    return new Promise<Reply>((resolve, reject) => {
      this.pending.set(id, { op, resolve, reject });
      if (this.exited || this.brokenReason) return; // fails when the end settles
      for (const part of frame) this.child.stdin.write(part);
      if (op === 'shutdown') this.child.stdin.end();
    });
  }

  kill(signal: NodeJS.Signals): void {
    if (!this.exited) this.child.kill(signal);
  }

  /** The stream is unusable (a reply that cannot be framed or matched): kill the process; its end fails everything. */
  private break(reason: string): void {
    this.brokenReason ??= `protocol violation: ${reason}`;
    this.kill('SIGKILL');
  }

  private onStdout(chunk: Buffer): void {
    if (this.brokenReason) return;
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.break((err as Error).message);
      return;
    }
    for (const frame of frames) this.onFrame(frame);
  }

  private onFrame({ header, tensors }: Frame): void {
    if (this.brokenReason) return;
    const oldest = this.pending.entries().next();
    if (oldest.done) return this.break(`a reply (id ${JSON.stringify(header.id)}) with no request pending`);
    const [id, call] = oldest.value;
    // A frame the engine could not read gets a ProtocolError reply with id null (it could not read the id).
    const unreadable = header.id === null && header.ok === false;
    if (header.id !== id && !unreadable) return this.break(`reply id ${JSON.stringify(header.id)}, but the oldest pending request is ${id} (${call.op})`);
    this.pending.delete(id);
    if (header.ok === true) {
      call.resolve({ result: (header.result ?? {}) as Record<string, unknown>, tensors });
      return;
    }
    const error = header.error as Partial<ReplyError> | undefined;
    if (typeof error?.type !== 'string' || typeof error.message !== 'string') {
      call.reject(new TorchEngineError(call.op, 'ProtocolError', undefined, `torch engine ${call.op}: an error reply without type and message`, 'input'));
      return this.break('an error reply without type and message');
    }
    call.reject(replyError(call.op, { type: error.type, message: error.message, field: typeof error.field === 'string' ? error.field : undefined }));
  }

  private onStderr(text: string): void {
    const lines = (this.stderrRest + text).split('\n');
    this.stderrRest = lines.pop() ?? '';
    for (const line of lines) this.logLine(line);
  }

  private logLine(line: string): void {
    if (!line.trim()) return;
    this.stderrTail.push(line.length > STDERR_TAIL_CHARS ? `${line.slice(0, STDERR_TAIL_CHARS)}…` : line);
    if (this.stderrTail.length > STDERR_TAIL_LINES) this.stderrTail.shift();
    this.onLog(parseLogLine(line, this.child.pid));
  }

  private settle(code: number | null, signal: NodeJS.Signals | null, reason?: string): void {
    if (this.end) return;
    if (this.stderrRest) this.logLine(this.stderrRest);
    this.stderrRest = '';
    const end: ProcessEnd = {
      pid: this.child.pid,
      code,
      signal,
      closed: this.closing,
      reason: reason ?? this.brokenReason,
      stderrTail: [...this.stderrTail],
    };
    this.end = end;
    for (const call of this.pending.values()) call.reject(new EngineProcessDiedError(call.op, end));
    this.pending.clear();
    if (!end.closed) this.onLog({ level: 'error', message: describeEnd(end), fields: { pid: end.pid, code, signal, stderrTail: end.stderrTail } });
    this.resolveEnded(end);
  }
}

type ArrayOf<D extends WireDType> = InstanceType<(typeof WIRE_DTYPES)[D]>;

/** A reply's output tensor, which the op always sends with this dtype. */
function output<D extends WireDType>(reply: Reply, op: OpName, name: string, dtype: D): ArrayOf<D> {
  const tensor = reply.tensors[name];
  if (!tensor || tensor.dtype !== dtype) {
    throw new TorchEngineError(op, 'ProtocolError', undefined, `torch engine ${op}: the reply has no ${dtype} tensor ${JSON.stringify(name)}`, 'input');
  }
  return tensor.data as ArrayOf<D>;
}

/** Row tensors and image bytes as one request's tensors; an image named like a row tensor is refused. */
function requestTensors(rows: Partial<Rows>, images: ImageBytes): Record<string, TensorInput> {
  const tensors: Record<string, TensorInput> = {};
  for (const [name, value] of Object.entries(rows) as [string, TensorInput | undefined][]) if (value !== undefined) tensors[name] = value;
  for (const [name, image] of Object.entries(images)) {
    const raw = !(image instanceof Uint8Array);
    if (raw && !(image?.data instanceof Uint8Array && image.dtype === 'uint8' && image.shape?.length === 3 && image.shape[2] === 3)) {
      throw new TypeError(`images.${name} must be a Uint8Array (a PNG or JPEG file's bytes) or { dtype: 'uint8', shape: [height, width, 3], data } (RGB pixels)`);
    }
    if (Object.hasOwn(tensors, name)) throw new RangeError(`images.${name}: the name is a row tensor's; name the image otherwise`);
    tensors[name] = raw ? { dtype: 'uint8', shape: [...image.shape], data: image.data } : image;
  }
  return tensors;
}

/** The typed ops of one model of an engine process (`call` says which model). */
abstract class ModelCalls {
  abstract call(op: OpName, args?: Record<string, unknown>, tensors?: Record<string, TensorInput>): Promise<Reply>;

  async hello(): Promise<HelloResult> {
    return (await this.call('hello')).result as unknown as HelloResult;
  }

  /** Loads a model directory (made absolute: the process runs in engine/torch). */
  async load(args: LoadArgs): Promise<ModelInfo> {
    const reply = await this.call('load', { ...args, model_dir: path.resolve(args.model_dir) });
    return reply.result.model as ModelInfo;
  }

  /** Loads a directory `save` wrote: exactly (weights, AdamW moments, step, RNG) or with a fresh optimizer. */
  async loadState(args: LoadStateArgs): Promise<ModelInfo> {
    const reply = await this.call('load_state', { ...args, dir: path.resolve(args.dir) });
    return reply.result.model as ModelInfo;
  }

  /** A LoRA policy takes the adapter of the state in `dir` (same base) as its frozen reference adapter. */
  async loadReference(dir: string): Promise<ModelInfo> {
    return (await this.call('load_reference', { dir: path.resolve(dir) })).result.model as ModelInfo;
  }

  /** Saves the model (Hugging Face format), optimizer and RNG into `dir` (new or empty). */
  async save(dir: string): Promise<SaveResult> {
    return (await this.call('save', { dir: path.resolve(dir) })).result as unknown as SaveResult;
  }

  async tokenize(texts: string[]): Promise<TokenizeResult> {
    const reply = await this.call('tokenize', { texts });
    return { ids: output(reply, 'tokenize', 'ids', 'int32'), lengths: output(reply, 'tokenize', 'lengths', 'int32') };
  }

  /** Each prompt's tokens once rendered (its images expanded to their tokens). */
  async promptLengths(prompts: Prompt[], images: ImageBytes = {}): Promise<PromptLengthsResult> {
    const reply = await this.call('prompt_lengths', { prompts }, requestTensors({}, images));
    return { prompt_tokens: reply.result.prompt_tokens as number[] };
  }

  /** n samples per prompt with per-token logprobs; `images` holds the images the prompts' image parts name. */
  async sample(args: SampleArgs, images: ImageBytes = {}): Promise<SampleResult> {
    const reply = await this.call('sample', { ...args }, requestTensors({}, images));
    const result = reply.result as Pick<SampleResult, 'samples' | 'generated_tokens' | 'prompt_tokens' | 'backend' | 'weight_sync_seconds'>;
    return {
      samples: result.samples,
      generated_tokens: result.generated_tokens,
      prompt_tokens: result.prompt_tokens,
      backend: result.backend,
      weight_sync_seconds: result.weight_sync_seconds,
      token_ids: output(reply, 'sample', 'token_ids', 'int32'),
      logprobs: output(reply, 'sample', 'logprobs', 'float32'),
      lengths: output(reply, 'sample', 'lengths', 'int32'),
    };
  }

  /** log π of each response token (teacher-forced), flat over the rows' responses. */
  async logprobs(args: LogprobsArgs, rows: Rows, images: ImageBytes = {}): Promise<LogprobsResult> {
    const reply = await this.call('logprobs', { ...args }, requestTensors(rows, images));
    return { prompt_tokens: reply.result.prompt_tokens as number[], logprobs: output(reply, 'logprobs', 'logprobs', 'float32') };
  }

  /** The reward model's score of each row, in (0, 1). */
  async score(prompts: Prompt[], rows: Rows, images: ImageBytes = {}): Promise<ScoreResult> {
    const reply = await this.call('score', { prompts }, requestTensors(rows, images));
    return { prompt_tokens: reply.result.prompt_tokens as number[], scores: output(reply, 'score', 'scores', 'float32') };
  }

  /** Forward + backward of one loss; accumulates weight × gradient until `optimStep`. */
  async forwardBackward<L extends LossSpec>(args: ForwardBackwardArgs<L>, rows: RowsFor<L>, images: ImageBytes = {}): Promise<ForwardBackwardResult> {
    const reply = await this.call('forward_backward', { ...args }, requestTensors(rows, images));
    const { loss, metrics, finite } = reply.result as { loss: unknown; metrics: Record<string, unknown>; finite: boolean };
    return {
      loss: wireNumber(loss, 'forward_backward result.loss'),
      metrics: Object.fromEntries(Object.entries(metrics).map(([k, v]) => [k, wireNumber(v, `forward_backward result.metrics.${k}`)])),
      finite,
    };
  }

  /** forward_backward + optim_step in one op (the AdamW settings checked first, so a bad one accumulates nothing). */
  async trainStep<L extends LossSpec>(args: TrainStepArgs<L>, rows: RowsFor<L>, images: ImageBytes = {}): Promise<TrainStepResult> {
    const reply = await this.call('train_step', { ...args }, requestTensors(rows, images));
    const r = reply.result as { loss: unknown; metrics: Record<string, unknown>; finite: boolean; step: number; grad_norm: unknown; applied: boolean };
    return {
      loss: wireNumber(r.loss, 'train_step result.loss'),
      metrics: Object.fromEntries(Object.entries(r.metrics).map(([k, v]) => [k, wireNumber(v, `train_step result.metrics.${k}`)])),
      finite: r.finite,
      step: r.step,
      grad_norm: wireNumber(r.grad_norm, 'train_step result.grad_norm'),
      applied: r.applied,
    };
  }

  /** AdamW over the accumulated gradients (global-norm clipped); a non-finite norm is reported, not applied. */
  async optimStep(args: AdamWArgs): Promise<OptimStepResult> {
    const { step, grad_norm, applied } = (await this.call('optim_step', { ...args })).result as { step: number; grad_norm: unknown; applied: boolean };
    return { step, grad_norm: wireNumber(grad_norm, 'optim_step result.grad_norm'), applied };
  }

}

/** One named model of an engine process (`TorchEngineProcess.model(name)`). */
export class TorchModelChannel extends ModelCalls {
  constructor(
    readonly process: TorchEngineProcess,
    readonly name: string,
  ) {
    super();
  }

  call(op: OpName, args: Record<string, unknown> = {}, tensors: Record<string, TensorInput> = {}): Promise<Reply> {
    return this.process.callModel(this.name, op, args, tensors);
  }

  /** Drops the model (and its memory) from the process; the names of the models still loaded. */
  async unload(): Promise<string[]> {
    return (await this.call('unload')).result.models as string[];
  }
}

export class TorchEngineProcess extends ModelCalls {
  private conn: Connection;
  /** The current process's answer to the `hello` that `start()`/`restart()` checked. */
  started: HelloResult | undefined;

  private constructor(
    private readonly python: string,
    private readonly options: TorchEngineProcessOptions,
  ) {
    super();
    this.conn = this.spawn();
  }

  /**
   * Spawns an engine process and checks that it answers `hello` with this client's protocol version. Throws
   * `TorchEngineNotInstalledError` (naming the install command) when no python is given and the venv is missing.
   */
  static async start(options: TorchEngineProcessOptions = {}): Promise<TorchEngineProcess> {
    const engine = new TorchEngineProcess(options.python ?? torchPython(), options);
    try {
      await engine.checkHello();
    } catch (err) {
      engine.conn.kill('SIGKILL');
      await engine.conn.ended;
      throw err;
    }
    return engine;
  }

  /** The current process's pid (undefined if it could not start). */
  get pid(): number | undefined {
    return this.conn.child.pid;
  }

  /** How the current process ended, or null while it runs. */
  get end(): ProcessEnd | null {
    return this.conn.end;
  }

  /** Ends the current process (gracefully when it is alive) and starts a new one, with no model loaded. */
  async restart(): Promise<HelloResult> {
    await this.close();
    this.conn = this.spawn();
    return this.checkHello();
  }

  /**
   * Sends `shutdown` (answered after the requests already pending), waits up to `graceMs` for the process to exit,
   * then kills it. Later calls fail with `EngineProcessDiedError` ("was closed") until `restart()`.
   */
  async close(graceMs = this.options.closeGraceMs ?? DEFAULT_CLOSE_GRACE_MS): Promise<ProcessEnd> {
    const conn = this.conn;
    if (conn.end || conn.exited) return conn.ended;
    conn.closing = true;
    conn.send('shutdown', {}, {}).catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), graceMs)));
    const end = await Promise.race([conn.ended, graceOver]);
    clearTimeout(timer);
    if (end) return end;
    conn.kill('SIGKILL');
    return conn.ended;
  }

  /** Any op to the process's default model, untyped: its JSON result and output tensors. Error replies throw (errors.ts). */
  call(op: OpName, args: Record<string, unknown> = {}, tensors: Record<string, TensorInput> = {}): Promise<Reply> {
    return this.conn.send(op, args, tensors);
  }

  /** Any op to the model named `model` in this process. */
  callModel(model: string, op: OpName, args: Record<string, unknown> = {}, tensors: Record<string, TensorInput> = {}): Promise<Reply> {
    return this.conn.send(op, args, tensors, model);
  }

  /**
   * The model named `name` in this process (one process serves several: each name its own model, state and RNG; see
   * engine/README.md). Its calls go to whichever process this object runs, a restarted one included.
   */
  model(name: string): TorchModelChannel {
    if (!/^[A-Za-z0-9_.:/-]{1,128}$/.test(name)) throw new RangeError(`model name ${JSON.stringify(name)}: 1-128 letters, digits or _.:/-`);
    return new TorchModelChannel(this, name);
  }

  private spawn(): Connection {
    const { threads, env, onLog, processes = 1 } = this.options;
    const launcher = processes > 1 ? ['-m', 'torch.distributed.run', '--standalone', `--nproc-per-node=${processes}`] : [];
    return new Connection(this.python, { launcher, server: threads ? ['--threads', String(threads)] : [] }, env, onLog ?? defaultLog);
  }

  private async checkHello(): Promise<HelloResult> {
    const hello = (this.started = await this.hello());
    if (hello.protocol !== PROTOCOL_VERSION) {
      throw new TorchEngineError('hello', 'ProtocolError', undefined, `the engine process speaks protocol ${hello.protocol}, this client ${PROTOCOL_VERSION}`, 'input');
    }
    return hello;
  }
}
