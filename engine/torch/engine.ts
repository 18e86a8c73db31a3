/**
 * `TorchEngine`: the prompt-level `Engine` (engine/types.ts) over one PyTorch engine process (process.ts) that serves
 * a Hugging Face model (Qwen2.5-VL / Qwen2-VL, or a text-only Qwen2 causal LM, which refuses image parts with a
 * RangeError naming the part). Made by `createEngine({ kind: 'torch', … })`; engine/README.md ("PyTorch engine")
 * says what each method maps to.
 *
 * - The process starts on the first call (`createEngine` is synchronous) and `dispose()` closes it.
 * - `init({ kind, pretrained: DIR }, seed)` loads DIR (op `load`); a reward model gets a scalar head fresh from
 *   `seed`. Sophia's own architecture (a `ModelConfig`) is refused with a TypeError naming `model`.
 * - State: `saveState({ dir })` is op `save` into `dir`, whose files (flat: the process refuses to write a
 *   subfolder) come back on disk (`OnDiskEngineFile`); without `dir`, into a temp folder read back into memory.
 *   `loadState` links (files on disk) or writes (in memory) the files into a temp folder for `load_state`,
 *   which checks them against the file list the state carries (a missing, truncated, stray or foreign file is a
 *   RangeError naming it, and the engine keeps its model). Temp folders go under the OS temp dir (TMPDIR).
 * - Prompts: chat messages whose images (`RgbImage`) travel as raw (H, W, 3) uint8 tensors; rows as the protocol's
 *   flat tensors. Rows are checked here (prompt index, token ids inside the vocabulary, per-token array lengths) so
 *   that errors name the caller's field (`rows[2].response[0]`); refusals from the process are re-thrown as the
 *   same RangeError/TypeError with the caller's field in front of the process's message.
 * - Death: when the process dies, the call in flight and every later one fail with `EngineProcessDiedError`
 *   (retryable) — after the first, as `TorchEngineModelLostError` (a subclass), because a new process has no model.
 *   Nothing is reloaded behind the caller's back: `init`, `loadState` or `initRewardFromPolicy` start a new process
 *   and load again (an activity's retry loads its last checkpoint).
 */
import { mkdtemp, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { ROLLOUT_WIRE_NAMES, type RolloutOptions, type TorchEngineOptions } from '../factory';
import type {
  AdamWSettings,
  ChatMessage,
  ChatPart,
  ChatPrompt,
  Engine,
  EngineFile,
  EngineInfo,
  ForwardBackwardOptions,
  ForwardBackwardResult,
  GenerateRequest,
  GenerateResult,
  GrpoRow,
  LoadStateOptions,
  LossSpec,
  ModelSpec,
  OnDiskEngineFile,
  OptimStepResult,
  PretrainedModel,
  ReferenceAdapterEngine,
  ResponseBatch,
  ResponseRow,
  RewardRow,
  RgbImage,
  RowFor,
  SaveStateOptions,
  TrainStepResult,
} from '../types';
import { isPretrained } from '../types';
import { inMemory, isOnDisk } from '../state-files';
import { EngineProcessDiedError, type ProcessEnd, TorchEngineRangeError, TorchEngineTypeError, describeEnd } from './errors';
import { TorchEngineHost } from './host';
import type { TorchEngineLogEntry, TorchEngineProcess, TorchModelChannel } from './process';
import type { AdamWArgs, ContentPart, HelloResult, ImageBytes, ModelInfo, OpName, Prompt, RolloutArgs, Rows, RowsFor, LossSpec as WireLossSpec } from './protocol';

/** What `TorchEngine` takes: the factory's settings, plus what only the process owner can give. */
export interface TorchEngineConstructorOptions extends TorchEngineOptions {
  /** Receives the engine process's stderr log lines (default: warnings and errors to this process's stderr). */
  onLog?: (entry: TorchEngineLogEntry) => void;
  /** Added to the process's environment, e.g. `CUDA_VISIBLE_DEVICES` (one engine process per GPU). */
  env?: Record<string, string>;
}

/**
 * A call after the engine process died: the new process has no model. Retryable like the death itself (an
 * `EngineProcessDiedError`); `init`, `loadState` or `initRewardFromPolicy` load one again.
 */
export class TorchEngineModelLostError extends EngineProcessDiedError {
  constructor(op: string, end: ProcessEnd) {
    super(op as OpName, end);
    this.name = 'TorchEngineModelLostError';
    this.message = `torch engine ${op}: no model is loaded: ${describeEnd(end)} and nothing was loaded since; call init, loadState or initRewardFromPolicy (an activity's retry loads its last checkpoint)`;
  }
}

/** The caller's name of a field the process named (its wire name), for re-thrown refusals. */
const CALLER_FIELDS: [RegExp, string][] = [
  [/^args\.prompts(.*)\.tensor$/, 'prompts$1.image'],
  [/^args\.prompts(.*)$/, 'prompts$1'],
  [/^args\.model_dir$/, 'model.pretrained'],
  [/^args\.dir$/, 'files'],
  [/^args\.weight$/, 'options.weight'],
  [/^args\.max_new_tokens$/, 'maxTokens'],
  [/^args\.top_p$/, 'topP'],
  [/^args\.loss\.clip_eps$/, 'loss.clipEps'],
  [/^args\.loss\.kl_coef$/, 'loss.klCoef'],
  [/^args\.loss\.entropy_coef$/, 'loss.entropyCoef'],
  [/^args\.loss\.(.*)$/, 'loss.$1'],
  [/^args\.(lr|eps)$/, 'settings.$1'],
  [/^args\.beta([12])$/, 'settings.beta$1'],
  [/^args\.weight_decay$/, 'settings.weightDecay'],
  [/^args\.max_grad_norm$/, 'settings.maxGradNorm'],
  [/^args\.(.*)$/, '$1'],
  [/^tensors\.prompt_index$/, 'rows[].prompt'],
  [/^tensors\.(response_ids|response_lengths)$/, 'rows[].response'],
  [/^tensors\.old_logprobs$/, 'rows[].oldLogprobs'],
  [/^tensors\.ref_logprobs$/, 'rows[].refLogprobs'],
  [/^tensors\.advantages$/, 'rows[].advantage'],
  [/^tensors\.score_targets$/, 'rows[].score'],
];

function callerField(field: string | undefined): string | undefined {
  if (field === undefined) return undefined;
  for (const [pattern, name] of CALLER_FIELDS) if (pattern.test(field)) return field.replace(pattern, name);
  return field;
}

/** A refusal from the process with the caller's field in front (still a RangeError/TypeError). */
function inCallerTerms(err: unknown, method: string): unknown {
  if (!(err instanceof TorchEngineRangeError || err instanceof TorchEngineTypeError)) return err;
  const field = callerField(err.field);
  const detail = err.message.replace(/^torch engine [a-z_]+: /, '');
  const message = `${method}: ${field && field !== 'op' ? `${field}: ` : ''}${detail}`;
  return err instanceof TorchEngineRangeError ? new TorchEngineRangeError(err.op, field, message) : new TorchEngineTypeError(err.op, field, message);
}

const ROLE_KINDS = { policy: 'policy', reference: 'policy', reward: 'reward' } as const;

/** A list (readonly arrays included: `Array.isArray` would widen them to any[]). */
/** `RolloutOptions` as `load`'s args.rollout: the settings given, under their wire names. */
function rolloutArgs(options: RolloutOptions): RolloutArgs {
  const out: Record<string, unknown> = {};
  for (const [name, wire] of Object.entries(ROLLOUT_WIRE_NAMES)) {
    const value = options[name as keyof RolloutOptions];
    if (value !== undefined) out[wire] = value;
  }
  return out as unknown as RolloutArgs;
}

function isList<T>(value: unknown): value is readonly T[] {
  return Array.isArray(value);
}

function checkSeed(seed: number, field = 'seed'): void {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`${field} must be an integer >= 0 (got ${seed})`);
}

/** Chat prompts on the wire: image parts name (H, W, 3) uint8 tensors, one per distinct `RgbImage` object. */
export function wirePrompts(prompts: readonly ChatPrompt[]): { prompts: Prompt[]; images: ImageBytes } {
  if (!isList<ChatPrompt>(prompts) || prompts.length === 0) throw new RangeError('prompts: at least one prompt is needed');
  const names = new Map<RgbImage, string>();
  const images: ImageBytes = {};
  const wire = prompts.map((prompt, i): Prompt => {
    const messages: unknown = prompt?.messages;
    if (!isList<ChatMessage>(messages) || messages.length === 0) throw new RangeError(`prompts[${i}].messages: at least one message is needed`);
    return {
      messages: messages.map((message, j) => {
        const field = `prompts[${i}].messages[${j}]`;
        if (!['system', 'user', 'assistant'].includes(message?.role)) throw new RangeError(`${field}.role must be system, user or assistant (got ${JSON.stringify(message?.role)})`);
        if (typeof message.content === 'string') return { role: message.role, content: message.content };
        if (!isList<ChatPart>(message.content)) throw new TypeError(`${field}.content must be a string or a list of parts`);
        const parts = message.content.map((part, k): ContentPart => {
          const partField = `${field}.content[${k}]`;
          if (part?.type === 'text') {
            if (typeof part.text !== 'string') throw new TypeError(`${partField}.text must be a string`);
            return { type: 'text', text: part.text };
          }
          if (part?.type !== 'image') throw new RangeError(`${partField}.type must be text or image (got ${JSON.stringify((part as { type?: unknown })?.type)})`);
          const image = part.image;
          let name = names.get(image);
          if (name === undefined) {
            const { width, height, rgb } = image ?? {};
            if (!Number.isSafeInteger(width) || !Number.isSafeInteger(height) || width < 1 || height < 1 || !(rgb instanceof Uint8Array) || rgb.length !== width * height * 3) {
              throw new RangeError(`${partField}.image must be { width, height, rgb } with width × height × 3 bytes of RGB (got ${width}×${height}, ${rgb instanceof Uint8Array ? `${rgb.length} bytes` : typeof rgb})`);
            }
            name = `image.${names.size}`;
            names.set(image, name);
            images[name] = { dtype: 'uint8', shape: [height, width, 3], data: rgb };
          }
          return { type: 'image', tensor: name };
        });
        return { role: message.role, content: parts };
      }),
    };
  });
  return { prompts: wire, images };
}

/** The rows' tensors, checked: each row continues one of the prompts with token ids inside the vocabulary. */
function wireRows(rows: readonly ResponseRow[], promptCount: number, vocabSize: number): Rows {
  if (!isList<ResponseRow>(rows) || rows.length === 0) throw new RangeError('rows: at least one row is needed');
  let total = 0;
  rows.forEach((row, r) => {
    if (!Number.isInteger(row?.prompt) || row.prompt < 0 || row.prompt >= promptCount) {
      throw new RangeError(`rows[${r}].prompt: ${row?.prompt} is not the index of one of the ${promptCount} prompts`);
    }
    if (typeof row.response?.length !== 'number') throw new TypeError(`rows[${r}].response must be an array of token ids`);
    total += row.response.length;
  });
  const ids = new Int32Array(total);
  let at = 0;
  rows.forEach((row, r) => {
    for (let j = 0; j < row.response.length; j++) {
      const id = row.response[j]!;
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new RangeError(`rows[${r}].response[${j}]: token id ${id} is outside the vocabulary [0, ${vocabSize})`);
      ids[at++] = id;
    }
  });
  return {
    prompt_index: Int32Array.from(rows, (row) => row.prompt),
    response_lengths: Int32Array.from(rows, (row) => row.response.length),
    response_ids: ids,
  };
}

/** Per-token values of every row, flat, each row's array as long as its response. */
function perToken(rows: readonly GrpoRow[], key: 'oldLogprobs' | 'refLogprobs', total: number): Float64Array {
  const out = new Float64Array(total);
  let at = 0;
  rows.forEach((row, r) => {
    const values = row[key];
    if (values?.length !== row.response.length) throw new RangeError(`rows[${r}].${key} has ${values?.length} values, expected ${row.response.length} (one per response token)`);
    for (let j = 0; j < values.length; j++) out[at++] = values[j]!;
  });
  return out;
}

function perRow<R extends ResponseRow>(rows: readonly R[], key: string, value: (row: R) => unknown): Float64Array {
  return Float64Array.from(rows, (row, r) => {
    const x = value(row);
    if (typeof x !== 'number') throw new TypeError(`rows[${r}].${key} must be a number`);
    return x;
  });
}

function wireLoss(loss: LossSpec): WireLossSpec {
  switch (loss?.kind) {
    case 'sft':
      return { kind: 'sft' };
    case 'rm':
      return { kind: 'rm' };
    case 'grpo':
      return { kind: 'grpo', clip_eps: loss.clipEps, kl_coef: loss.klCoef, entropy_coef: loss.entropyCoef, temperature: loss.temperature, ...(loss.tisCap !== undefined ? { tis_cap: loss.tisCap } : {}) };
    default:
      throw new TypeError(`loss.kind: ${JSON.stringify((loss as { kind?: unknown })?.kind)} is not sft, grpo or rm`);
  }
}

function wireAdamW(s: AdamWSettings): AdamWArgs {
  return { lr: s.lr, beta1: s.beta1, beta2: s.beta2, eps: s.eps, weight_decay: s.weightDecay, max_grad_norm: s.maxGradNorm };
}

/** Each row's slice of a flat per-token array. */
function splitRows<A extends Float32Array | Int32Array>(flat: A, lengths: ArrayLike<number>): A[] {
  const out: A[] = [];
  let at = 0;
  for (let r = 0; r < lengths.length; r++) {
    out.push(flat.slice(at, at + lengths[r]!) as A);
    at += lengths[r]!;
  }
  return out;
}

/** A state's files, checked to be plain, unique names. */
function checkFiles(files: readonly EngineFile[]): void {
  if (!isList<EngineFile>(files)) throw new TypeError('files must be an array of { name, data } or { name, path, size }');
  const seen = new Set<string>();
  files.forEach((file, i) => {
    const name = file?.name;
    if (typeof name !== 'string' || name === '' || name === '.' || name === '..' || /[/\\\0]/.test(name)) {
      throw new RangeError(`files[${i}].name ${JSON.stringify(name)} is not a plain file name: not a state this engine saved`);
    }
    if (seen.has(name)) throw new RangeError(`files[${i}].name ${JSON.stringify(name)} appears twice`);
    if (isOnDisk(file)) {
      if (typeof file.path !== 'string' || file.path === '') throw new TypeError(`files[${i}].path (${name}) must be a file path`);
    } else if (!(file.data instanceof Uint8Array)) {
      throw new TypeError(`files[${i}].data (${name}) must be a Uint8Array`);
    }
    seen.add(name);
  });
}

export class TorchEngine implements Engine, ReferenceAdapterEngine {
  private proc: TorchEngineProcess | undefined;
  private readonly host: TorchEngineHost;
  /** This engine's model's name in the process. */
  private readonly name: string;
  /** The host's process generation the model was loaded in (0: never loaded). */
  private generation = 0;
  private helloResult: HelloResult | undefined;
  /** The model the current process holds (null: none; after a death, the process that had it is gone). */
  private model: ModelInfo | null = null;
  private spec: PretrainedModel | undefined;
  private steps = 0;
  private disposed = false;

  /**
   * `host`: the engine process to share with other engines (a worker's `TorchEngineHosts`); without one the engine
   * has a process of its own.
   */
  constructor(
    private readonly options: TorchEngineConstructorOptions = {},
    host?: TorchEngineHost,
  ) {
    const { python, threads, env, onLog, processes } = options;
    this.host = host ?? new TorchEngineHost({ python, threads, env, onLog, ...(processes ? { processes } : {}) });
    this.name = this.host.join();
  }

  /**
   * False once the engine process died (or the engine was disposed): calls reject until `init`, `loadState` or
   * `initRewardFromPolicy` load a model into a new process. The engine pool then makes a new engine instead.
   */
  healthy(): boolean {
    if (this.disposed || (this.proc?.end && !this.proc.end.closed)) return false;
    return this.generation === 0 || this.generation === this.host.generation; // not a model a restart took away
  }

  /** The engine process's pid (undefined before the first call starts it). */
  get pid(): number | undefined {
    return this.proc?.pid;
  }

  get info(): EngineInfo {
    const h = this.helloResult;
    const m = this.model;
    return {
      description: h
        ? `torch ${h.versions.torch}, transformers ${h.versions.transformers}${m ? ` (${m.architecture}, ${m.dtype} on ${m.device})` : ''}`
        : 'torch engine (process not started)',
      executionProvider: m?.device ?? this.options.device ?? h?.default_device ?? 'auto',
    };
  }

  // ---- process and model ---------------------------------------------------------------------------------

  /** This engine's model in the engine process, started on first use; `fresh` restarts one that died (a load follows). */
  private async process(fresh = false): Promise<TorchModelChannel> {
    if (this.disposed) throw new Error('torch engine: the engine was disposed');
    const { proc } = await this.host.start(fresh);
    this.proc = proc;
    this.helloResult = proc.started;
    return proc.model(this.name);
  }

  /** The process, holding this engine's model. */
  private async loaded(op: string): Promise<{ proc: TorchModelChannel; model: ModelInfo }> {
    const channel = await this.process();
    const proc = channel.process;
    if (proc.end && !proc.end.closed) {
      this.model = null;
      throw new TorchEngineModelLostError(op, proc.end);
    }
    if (this.generation !== 0 && this.generation !== this.host.generation) {
      // Another engine of the process restarted it after it died: this engine's model died with it.
      this.model = null;
      const end = this.host.previousEnd;
      if (end) throw new TorchEngineModelLostError(op, end);
    }
    if (!this.model) throw new Error(`torch engine ${op}: the engine has no model: call init() or loadState() first`);
    return { proc: channel, model: this.model };
  }

  /** Runs a call; a death forgets the model, refusals come back in the caller's terms. */
  private async run<T>(method: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      if (err instanceof EngineProcessDiedError) this.model = null;
      throw inCallerTerms(err, method);
    }
  }

  private setModel(model: ModelInfo): void {
    this.model = model;
    this.generation = this.host.generation;
    this.spec = { kind: ROLE_KINDS[model.role], pretrained: model.base_model_dir };
    this.steps = model.step;
  }

  private loadSettings() {
    const { device, dtype, gradientCheckpointing, lora, offload, rollout } = this.options;
    // lora: what `init` and `initRewardFromPolicy` attach; a saved state keeps the adapter it holds.
    const adapter = lora && !offload ? { rank: lora.rank, alpha: lora.alpha, dropout: lora.dropout, target_modules: lora.targetModules } : undefined;
    // rollout: how a policy samples (a reward model ignores it; an offloaded model never samples).
    const sampler = rollout && !offload ? rolloutArgs(rollout) : undefined;
    return { device, dtype, gradient_checkpointing: gradientCheckpointing, ...(adapter ? { lora: adapter } : {}), ...(offload ? { offload } : {}), ...(sampler ? { rollout: sampler } : {}) };
  }

  async init(model: ModelSpec, seed: number): Promise<void> {
    if (!isPretrained(model)) {
      throw new TypeError("model: the torch engine runs Hugging Face models: pass { kind, pretrained: DIR } (Sophia's own architecture, a ModelConfig, runs on the onnx engine)");
    }
    if (model.kind !== 'policy' && model.kind !== 'reward') throw new RangeError(`model.kind must be policy or reward (got ${JSON.stringify(model.kind)})`);
    if (!model.pretrained) throw new RangeError('model.pretrained must name a Hugging Face model directory');
    checkSeed(seed);
    const proc = await this.process(true);
    const info = await this.run('init', () => proc.load({ model_dir: model.pretrained, role: model.kind, seed, ...this.loadSettings() }));
    this.setModel(info);
    this.spec = { kind: model.kind, pretrained: model.pretrained };
  }

  config(): PretrainedModel {
    if (!this.spec || !this.model) throw new Error('torch engine: the engine has no model: call init() or loadState() first');
    return { ...this.spec };
  }

  maxLength(): number {
    if (!this.model) throw new Error('torch engine: the engine has no model: call init() or loadState() first');
    return this.model.max_length;
  }

  step(): number {
    return this.steps;
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    this.model = null;
    await this.host.leave(this.name);
  }

  // ---- state ---------------------------------------------------------------------------------------------

  async saveState(options: SaveStateOptions = {}): Promise<EngineFile[]> {
    const { proc } = await this.loaded('saveState');
    if (options.dir !== undefined) return this.saveInto(proc, path.resolve(options.dir));
    const dir = await mkdtemp(path.join(tmpdir(), 'sophia-torch-save-'));
    try {
      // Only the files the state lists come back; in memory, so each must fit in a Buffer.
      return await inMemory(await this.saveInto(proc, path.join(dir, 'state')));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** Op `save` into `dir` (absent or empty): the state's files, on disk, sorted by name. */
  private async saveInto(proc: TorchModelChannel, dir: string): Promise<OnDiskEngineFile[]> {
    await this.run('saveState', () => proc.save(dir));
    const entries = await readdir(dir, { withFileTypes: true });
    const files: OnDiskEngineFile[] = [];
    for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      if (!entry.isFile()) throw new Error(`torch engine saveState: the state holds ${entry.name}, which is not a plain file`);
      const file = path.join(dir, entry.name);
      files.push({ name: entry.name, path: file, size: (await stat(file)).size });
    }
    return files;
  }

  /**
   * Puts the files in a temp folder, runs `load`, removes the folder. Files on disk are linked, not copied (a 7B
   * state is tens of GB); files in memory are written.
   */
  private async fromFiles(method: string, files: readonly EngineFile[], load: (proc: TorchModelChannel, dir: string) => Promise<ModelInfo>): Promise<void> {
    checkFiles(files);
    const proc = await this.process(true);
    await this.inFolder(files, async (dir) => this.setModel(await this.run(method, () => load(proc, dir))));
  }

  /** `use` of a temp folder holding the files (on disk: linked, in memory: written), removed afterwards. */
  private async inFolder(files: readonly EngineFile[], use: (dir: string) => Promise<void>): Promise<void> {
    const dir = await mkdtemp(path.join(tmpdir(), 'sophia-torch-load-'));
    try {
      await Promise.all(files.map((f) => (isOnDisk(f) ? symlink(path.resolve(f.path), path.join(dir, f.name)) : writeFile(path.join(dir, f.name), f.data))));
      await use(dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  async loadState(files: readonly EngineFile[], options: LoadStateOptions = {}): Promise<void> {
    await this.fromFiles('loadState', files, (proc, dir) => proc.loadState({ dir, fresh_optimizer: options.freshOptimizer ?? false, ...this.loadSettings() }));
  }

  async initRewardFromPolicy(policy: readonly EngineFile[], seed: number): Promise<void> {
    checkSeed(seed);
    await this.fromFiles('initRewardFromPolicy', policy, (proc, dir) => proc.loadState({ dir, reward_from_policy: true, seed, ...this.loadSettings() }));
  }

  // ---- the reference adapter (ReferenceAdapterEngine) ----------------------------------------------------

  async loadReferenceAdapter(files: readonly EngineFile[]): Promise<void> {
    checkFiles(files);
    const { proc } = await this.loaded('loadReferenceAdapter');
    await this.inFolder(files, async (dir) => this.setModel(await this.run('loadReferenceAdapter', () => proc.loadReference(dir))));
  }

  hasReferenceAdapter(): boolean {
    return this.model?.reference_adapter != null;
  }

  async referenceLogprobs(batch: ResponseBatch, temperature: number): Promise<Float32Array[]> {
    return this.logprobsOf('referenceLogprobs', batch, temperature, 'reference');
  }

  // ---- prompts -------------------------------------------------------------------------------------------

  async promptLengths(prompts: readonly ChatPrompt[]): Promise<number[]> {
    const wire = wirePrompts(prompts);
    const { proc } = await this.loaded('promptLengths');
    return (await this.run('promptLengths', () => proc.promptLengths(wire.prompts, wire.images))).prompt_tokens;
  }

  async encodeResponses(texts: readonly string[]): Promise<Int32Array[]> {
    if (!isList<string>(texts)) throw new TypeError('texts must be an array of strings');
    texts.forEach((t, i) => {
      if (typeof t !== 'string') throw new TypeError(`texts[${i}] must be a string`);
    });
    const { proc, model } = await this.loaded('encodeResponses');
    if (texts.length === 0) return [];
    const { ids, lengths } = await this.run('encodeResponses', () => proc.tokenize([...texts]));
    return splitRows(ids, lengths).map((t) => Int32Array.from([...t, model.end_token_id]));
  }

  async generate(request: GenerateRequest): Promise<GenerateResult> {
    const wire = wirePrompts(request.prompts);
    if (!Number.isSafeInteger(request.n) || request.n < 1) throw new RangeError(`n must be an integer >= 1 (got ${request.n})`);
    if (!Number.isSafeInteger(request.maxTokens) || request.maxTokens < 1) throw new RangeError(`maxTokens must be an integer >= 1 (got ${request.maxTokens})`);
    checkSeed(request.seed);
    const { proc } = await this.loaded('generate');
    const args = {
      prompts: wire.prompts,
      n: request.n,
      temperature: request.temperature,
      top_p: request.topP,
      max_new_tokens: request.maxTokens,
      seed: request.seed,
      clip_to_max_length: true,
    };
    const out = await this.run('generate', () => proc.sample(args, wire.images));
    const tokens = splitRows(out.token_ids, out.lengths);
    const logprobs = splitRows(out.logprobs, out.lengths);
    return {
      sequences: out.samples.map((s, i) => ({ promptIndex: s.prompt_index, tokens: tokens[i]!, logprobs: logprobs[i]!, text: s.text, stopped: s.finish_reason === 'eos' })),
      generatedTokens: out.generated_tokens,
      weightSyncSeconds: out.weight_sync_seconds,
    };
  }

  async responseLogprobs(batch: ResponseBatch, temperature: number): Promise<Float32Array[]> {
    return this.logprobsOf('responseLogprobs', batch, temperature, 'default');
  }

  private async logprobsOf(op: string, batch: ResponseBatch, temperature: number, adapter: 'default' | 'reference'): Promise<Float32Array[]> {
    const wire = wirePrompts(batch.prompts);
    const { proc, model } = await this.loaded(op);
    const rows = wireRows(batch.rows, wire.prompts.length, model.vocab_size);
    const args = { prompts: wire.prompts, temperature, ...(adapter === 'reference' ? { adapter } : {}) };
    const out = await this.run(op, () => proc.logprobs(args, rows, wire.images));
    return splitRows(out.logprobs, rows.response_lengths as Int32Array);
  }

  async scoreResponses(batch: ResponseBatch): Promise<Float32Array> {
    const wire = wirePrompts(batch.prompts);
    const { proc, model } = await this.loaded('scoreResponses');
    const rows = wireRows(batch.rows, wire.prompts.length, model.vocab_size);
    return (await this.run('scoreResponses', () => proc.score(wire.prompts, rows, wire.images))).scores;
  }

  /** The rows a loss needs, checked and flattened. */
  private lossRows<L extends LossSpec>(batch: ResponseBatch<RowFor<L>>, loss: L, promptCount: number, model: ModelInfo): RowsFor<WireLossSpec> {
    const needs = loss.kind === 'rm' ? 'reward' : 'policy';
    if (model.role !== needs) throw new TypeError(`loss.kind: the ${loss.kind} loss needs a ${needs} model; this engine holds a ${model.role} model`);
    const rows = wireRows(batch.rows, promptCount, model.vocab_size);
    if (loss.kind === 'grpo') {
      const grpo = batch.rows as readonly GrpoRow[];
      const total = rows.response_ids.length;
      return { ...rows, old_logprobs: perToken(grpo, 'oldLogprobs', total), ref_logprobs: perToken(grpo, 'refLogprobs', total), advantages: perRow(grpo, 'advantage', (r) => r.advantage) };
    }
    if (loss.kind === 'rm') return { ...rows, score_targets: perRow(batch.rows as readonly RewardRow[], 'score', (r) => r.score) };
    return rows;
  }

  async forwardBackwardResponses<L extends LossSpec>(batch: ResponseBatch<RowFor<L>>, loss: L, options: ForwardBackwardOptions = {}): Promise<ForwardBackwardResult> {
    const weight = options.weight ?? 1;
    if (!(Number.isFinite(weight) && weight > 0)) throw new RangeError(`forwardBackwardResponses: options.weight must be a finite number > 0 (got ${weight})`);
    const wireLossSpec = wireLoss(loss);
    const wire = wirePrompts(batch.prompts);
    const { proc, model } = await this.loaded('forwardBackwardResponses');
    const rows = this.lossRows(batch, loss, wire.prompts.length, model);
    const result = await this.run('forwardBackwardResponses', () => proc.forwardBackward({ prompts: wire.prompts, loss: wireLossSpec, weight }, rows, wire.images));
    return result;
  }

  async optimStep(settings: AdamWSettings): Promise<OptimStepResult> {
    const { proc } = await this.loaded('optimStep');
    const out = await this.run('optimStep', () => proc.optimStep(wireAdamW(settings)));
    this.steps = out.step;
    return { step: out.step, gradNorm: out.grad_norm, applied: out.applied };
  }

  /**
   * forward_backward + optim_step as one op (`train_step`): the process checks the AdamW settings before the
   * forward pass, so a bad setting leaves no gradient accumulated.
   */
  async trainStepResponses<L extends LossSpec>(batch: ResponseBatch<RowFor<L>>, loss: L, settings: AdamWSettings): Promise<TrainStepResult> {
    const wireLossSpec = wireLoss(loss);
    const wire = wirePrompts(batch.prompts);
    const { proc, model } = await this.loaded('trainStepResponses');
    const rows = this.lossRows(batch, loss, wire.prompts.length, model);
    const r = await this.run('trainStepResponses', () => proc.trainStep({ prompts: wire.prompts, loss: wireLossSpec, ...wireAdamW(settings) }, rows, wire.images));
    this.steps = r.step;
    return { loss: r.loss, metrics: r.metrics, finite: r.finite, step: r.step, gradNorm: r.grad_norm, applied: r.applied };
  }
}
