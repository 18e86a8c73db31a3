/**
 * `OnnxEngine`: the built-in `Engine` (see `types.ts`), running Sophia's ONNX graphs on onnxruntime-node.
 *
 * Weights and AdamW moments live on the host as Float32Arrays and are fed to each run; a training step is one
 * run of a fused graph (forward, backward, AdamW) whose outputs become the new state. Graphs are built per
 * batch size and sequence bucket (sequences are right-padded to a multiple of `seqBucket`) and their sessions
 * are created once and reused. Sampling (`sample`) runs a prefill graph over the P distinct prompts and then a
 * one-token decode graph per step over a KV cache held here: each prompt's prefix (image + prompt) is stored
 * once and shared by its n samples, and each row's generated tokens grow in a cache of their own.
 */
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { type ModelConfig, type ParamLayout, imageTokens, paramLayout, validateModelConfig } from './model/config';
import {
  LOSS_METRICS,
  buildDecodeGraph,
  buildGradGraph,
  buildLogprobsGraph,
  buildOptimGraph,
  buildPrefillGraph,
  buildScoreGraph,
  buildTrainGraph,
  lastIndexStart,
  lossStart,
} from './model/graphs';
import type { Graph } from './onnx/graph';
import { type ExecutionProvider, type HostTensor, Session, SessionDisposedError, type SpinPolicy } from './onnx/runtime';

import { Rng } from './rng';
import { pickToken } from './sampling';
import { adamwFeeds } from './onnx/optim';
import { inMemory } from './state-files';
import { type EngineState, rewardStateFromPolicy, stateFiles, stateFromFiles, withFreshOptimizer } from './state';
import { SOPHIA_TOKENIZER, lossBatchOf, renderPrompts, scoreBatchOf, sftBatchOf } from './onnx-prompts';
import { EOS } from './model/tokenizer';
import type {
  AdamWSettings,
  BatchFor,
  ChatPrompt,
  EngineFile,
  InMemoryEngineFile,
  GenerateRequest,
  GenerateResult,
  ModelSpec,
  ResponseBatch,
  RowFor,
  TokenEngine,
  EngineInfo,
  ForwardBackwardOptions,
  ForwardBackwardResult,
  GrpoBatch,
  LoadStateOptions,
  LossSpec,
  OptimStepResult,
  RewardBatch,
  SampleRequest,
  SampleResult,
  SampledSequence,
  SequenceBatch,
  SftBatch,
  TargetBatch,
  TrainStepResult,
} from './types';
import { isPretrained } from './types';

export interface OnnxEngineOptions {
  executionProvider?: ExecutionProvider;
  /** Intra-op threads per session (default: one per core). */
  threads?: number;
  /** Training and scoring sequences are right-padded to a multiple of this (fewer distinct graphs). */
  seqBucket?: number;
  /**
   * SFT and GRPO graphs start at the first text position that has loss in any row of the batch, reward-model
   * graphs (rm loss, `score`) at the earliest last real token, rounded down to a multiple of this (default
   * `DEFAULT_LOSS_START_STEP`; 0: always start at 0): the positions before it skip the LM head and the last block.
   * Same losses, scores and gradients; fewer distinct graphs with a coarser step.
   */
  lossStartStep?: number;
  /**
   * How onnxruntime's worker threads wait for work (default `DEFAULT_SPINNING`): `always` for training graphs
   * (large kernels back to back: ~15 % faster steps), `during-run` for inference graphs: the sampler's many short
   * runs leave the cores to the JS thread between runs (`always` made sampling 1.5–2.5× slower on 2 cores) but
   * still spin inside a run (~5 % more tokens/s than `never`, measured alternating in one process).
   */
  spinning?: { training: SpinPolicy; inference: SpinPolicy };
  /**
   * Sessions kept at most (default `DEFAULT_MAX_SESSIONS`); beyond that the least recently used one is freed
   * (after its runs in flight) and rebuilt if asked for again. Each batch size, sequence bucket, prompt length
   * and cache size gets a session of its own, and each holds its graph's activations: without a bound a long
   * run that meets many prompt lengths keeps them all (the small preset: ~45 MB per prompt-length bucket).
   */
  maxSessions?: number;
  /**
   * Record onnxruntime's profile of every session into this folder (one JSON file per session, named after its
   * graph, complete once the session is freed: on eviction or `dispose`). Off by default; `npm run
   * bench:engine-profile` reads these files.
   */
  profileDir?: string;
}

const DEFAULT_MAX_SESSIONS = 32;

export const DEFAULT_SPINNING: Readonly<{ training: SpinPolicy; inference: SpinPolicy }> = { training: 'always', inference: 'during-run' };

const f32 = (shape: number[], data: Float32Array): HostTensor => ({ dtype: 'float32', shape, data });
const i64 = (shape: number[], data: BigInt64Array): HostTensor => ({ dtype: 'int64', shape, data });
const scalar = (x: number): HostTensor => f32([], Float32Array.of(x));

/** See `OnnxEngineOptions.lossStartStep`: batches of similar prompt lengths share one graph. */
const DEFAULT_LOSS_START_STEP = 8;

/** The part of a session key that names where a loss or score graph starts (`lossStartStep`). */
const fromKey = (from: number) => (from ? `:from${from}` : '');

/** The sampler's KV cache grows by this many slots at a time. */
const CACHE_STEP = 16;

function checkLength(field: string, array: ArrayLike<unknown>, expected: number): void {
  if (array.length !== expected) throw new RangeError(`batch.${field} has ${array.length} values, expected ${expected}`);
}

export class OnnxEngine implements TokenEngine {
  readonly info: EngineInfo;
  private readonly options: Required<Omit<OnnxEngineOptions, 'threads' | 'profileDir'>> & Pick<OnnxEngineOptions, 'threads' | 'profileDir'>;
  private cfg: ModelConfig | undefined;
  private layout: ParamLayout | undefined;
  /** All parameters, flat in `layout` order; AdamW moments alike. */
  private params: Float32Array = new Float32Array(0);
  private m: Float32Array = new Float32Array(0);
  private v: Float32Array = new Float32Array(0);
  private steps = 0;
  private rng = new Rng(0);
  /** Gradients accumulated since the last optimizer step: the first one, and Σ wᵢ·gᵢ once there are two. */
  private pending: { first: Float32Array; firstWeight: number; sum: Float64Array | undefined; weight: number } | undefined;
  private readonly sessions = new Map<string, Promise<Session>>();
  private disposed = false;

  constructor(options: OnnxEngineOptions = {}) {
    this.options = {
      executionProvider: options.executionProvider ?? 'cpu',
      threads: options.threads,
      seqBucket: options.seqBucket ?? 16,
      lossStartStep: options.lossStartStep ?? DEFAULT_LOSS_START_STEP,
      spinning: options.spinning ?? { ...DEFAULT_SPINNING },
      maxSessions: options.maxSessions ?? DEFAULT_MAX_SESSIONS,
      profileDir: options.profileDir,
    };
    if (!Number.isInteger(this.options.maxSessions) || this.options.maxSessions < 1) {
      throw new RangeError(`maxSessions must be an integer ≥ 1 (got ${options.maxSessions})`);
    }
    if (!Number.isInteger(this.options.lossStartStep) || this.options.lossStartStep < 0) {
      throw new RangeError(`lossStartStep must be an integer ≥ 0 (0: loss graphs start at position 0) (got ${options.lossStartStep})`);
    }
    this.info = {
      description: `onnxruntime ${ort.env.versions.common} (${this.options.executionProvider})`,
      executionProvider: this.options.executionProvider,
    };
  }

  // ---- state -------------------------------------------------------------------------------------------

  private requireConfig(): ModelConfig {
    if (this.disposed) throw new Error('engine was disposed');
    if (!this.cfg) throw new Error('engine has no model: call init() or loadState() first');
    return this.cfg;
  }

  async init(model: ModelSpec, seed: number): Promise<void> {
    if (isPretrained(model)) {
      throw new TypeError(`model: the ONNX engine runs Sophia's own architecture (a ModelConfig), not a pretrained model (${model.pretrained}); use engine.kind torch for Hugging Face models`);
    }
    const config = validateModelConfig(model);
    await this.resetSessions();
    this.cfg = structuredClone(config);
    const layout = (this.layout = paramLayout(config));
    this.rng = new Rng(seed);
    this.params = new Float32Array(layout.total);
    layout.specs.forEach((spec, i) => {
      const at = layout.offsets[i]!;
      const end = at + layout.sizes[i]!;
      if (spec.init === 'ones') this.params.fill(1, at, end);
      else if (spec.init === 'normal') for (let k = at; k < end; k++) this.params[k] = this.rng.nextNormal() * config.initStd;
    });
    this.m = new Float32Array(layout.total);
    this.v = new Float32Array(layout.total);
    this.steps = 0;
    this.pending = undefined;
  }

  config(): ModelConfig {
    return structuredClone(this.requireConfig());
  }

  maxLength(): number {
    return this.requireConfig().maxLength;
  }

  step(): number {
    return this.steps;
  }

  // eslint-disable-next-line @typescript-eslint/require-await -- async so that a disposed engine rejects, as the protocol's other calls do
  async saveState(): Promise<InMemoryEngineFile[]> {
    const config = this.requireConfig();
    const split = (flat: Float32Array) => this.layout!.offsets.map((at, i) => flat.subarray(at, at + this.layout!.sizes[i]!));
    return stateFiles({ config, step: this.steps, rng: this.rng.state(), params: split(this.params), m: split(this.m), v: split(this.v) });
  }

  async loadState(files: readonly EngineFile[], options: LoadStateOptions = {}): Promise<void> {
    const state = stateFromFiles(await inMemory(files));
    await this.setState(options.freshOptimizer ? withFreshOptimizer(state) : state);
  }

  async initRewardFromPolicy(policy: readonly EngineFile[], seed: number): Promise<void> {
    await this.setState(rewardStateFromPolicy(stateFromFiles(await inMemory(policy)), seed));
  }

  private async setState(state: EngineState): Promise<void> {
    if (this.disposed) throw new Error('engine was disposed');
    const sameModel = this.cfg !== undefined && JSON.stringify(this.cfg) === JSON.stringify(state.config);
    if (!sameModel) await this.resetSessions();
    this.cfg = state.config;
    const layout = (this.layout = paramLayout(state.config));
    const join = (parts: Float32Array[]) => {
      const flat = new Float32Array(layout.total);
      parts.forEach((part, i) => flat.set(part, layout.offsets[i]));
      return flat;
    };
    this.params = join(state.params);
    this.m = join(state.m);
    this.v = join(state.v);
    this.steps = state.step;
    this.rng = new Rng(state.rng);
    this.pending = undefined;
  }

  async dispose(): Promise<void> {
    await this.resetSessions();
    this.disposed = true;
    this.params = this.m = this.v = new Float32Array(0);
  }

  private async resetSessions(): Promise<void> {
    const sessions = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of sessions) await (await s).dispose();
  }

  /**
   * Runs the graph `key` (built by `build` if its session is not kept). A session evicted between lookup and run
   * (only possible when calls overlap) is looked up again, once.
   */
  private async run(key: string, build: () => Graph, feeds: Readonly<Record<string, HostTensor>>): Promise<Record<string, HostTensor>> {
    try {
      return await (await this.session(key, build)).run(feeds);
    } catch (err) {
      if (!(err instanceof SessionDisposedError)) throw err;
      return (await this.session(key, build)).run(feeds);
    }
  }

  /** The keys of the sessions kept now, least recently used first. */
  sessionKeys(): string[] {
    return [...this.sessions.keys()];
  }

  private session(key: string, build: () => Graph): Promise<Session> {
    let session = this.sessions.get(key);
    if (session) {
      // Most recently used last.
      this.sessions.delete(key);
      this.sessions.set(key, session);
    } else {
      while (this.sessions.size >= this.options.maxSessions) {
        const [oldKey, old] = this.sessions.entries().next().value as [string, Promise<Session>];
        this.sessions.delete(oldKey);
        void old.then((s) => s.dispose()).catch(() => undefined);
      }
      const training = /^(train|grad|optim)/.test(key);
      session = Session.create(build().toModel(), {
        executionProvider: this.options.executionProvider,
        spinning: training ? this.options.spinning.training : this.options.spinning.inference,
        ...(this.options.threads ? { threads: this.options.threads } : {}),
        ...(this.options.profileDir ? { profilePrefix: path.join(this.options.profileDir, key.replace(/[^\w.-]+/g, '-')) } : {}),
      });
      this.sessions.set(key, session);
      session.catch(() => this.sessions.delete(key));
    }
    return session;
  }

  // ---- batches -----------------------------------------------------------------------------------------

  private bucket(seqLen: number): number {
    const config = this.requireConfig();
    if (!Number.isInteger(seqLen) || seqLen < 1) throw new RangeError(`batch.seqLen must be a positive integer (got ${seqLen})`);
    if (seqLen > config.maxLength) throw new RangeError(`batch.seqLen ${seqLen} exceeds model.maxLength ${config.maxLength}`);
    return Math.min(config.maxLength, Math.ceil(seqLen / this.options.seqBucket) * this.options.seqBucket);
  }

  /** Validates a sequence batch and builds its padded feeds (image, tokens, positions, attention mask). */
  private sequenceFeeds(batch: SequenceBatch, padded: number): Record<string, HostTensor> {
    const config = this.requireConfig();
    const { batchSize: b, seqLen: t } = batch;
    if (!Number.isInteger(b) || b < 1) throw new RangeError(`batch.batchSize must be a positive integer (got ${b})`);
    const { size, channels } = config.image;
    checkLength('images', batch.images, b * channels * size * size);
    checkLength('tokens', batch.tokens, b * t);
    checkLength('attentionMask', batch.attentionMask, b * t);
    if (batch.positions) checkLength('positions', batch.positions, b * t);
    const tokens = new BigInt64Array(b * padded);
    const positions = new BigInt64Array(b * padded);
    const mask = new Float32Array(b * padded);
    for (let r = 0; r < b; r++) {
      let real = 0;
      for (let c = 0; c < t; c++) {
        const id = batch.tokens[r * t + c]!;
        const isReal = batch.attentionMask[r * t + c] !== 0;
        if (isReal && (id < 0 || id >= config.vocabSize || !Number.isInteger(id))) {
          throw new RangeError(`batch.tokens[${r}][${c}] = ${id} is outside the vocabulary [0, ${config.vocabSize})`);
        }
        const pos = batch.positions ? batch.positions[r * t + c]! : Math.max(0, real - (isReal ? 0 : 1));
        if (isReal && (pos < 0 || pos >= config.maxLength)) {
          throw new RangeError(`batch.positions[${r}][${c}] = ${pos} is outside [0, ${config.maxLength})`);
        }
        tokens[r * padded + c] = BigInt(isReal ? id : 0);
        positions[r * padded + c] = BigInt(Math.max(0, Math.min(config.maxLength - 1, pos)));
        mask[r * padded + c] = isReal ? 1 : 0;
        if (isReal) real++;
      }
    }
    return {
      image: f32([b, channels, size, size], batch.images),
      tokens: i64([b, padded], tokens),
      positions: i64([b, padded], positions),
      attention_mask: f32([b, padded], mask),
    };
  }

  private padInt(field: string, data: Int32Array, b: number, t: number, padded: number, max: number): BigInt64Array {
    checkLength(field, data, b * t);
    const out = new BigInt64Array(b * padded);
    for (let r = 0; r < b; r++) {
      for (let c = 0; c < t; c++) {
        const x = data[r * t + c]!;
        if (x < 0 || x >= max) throw new RangeError(`batch.${field}[${r}][${c}] = ${x} is outside [0, ${max})`);
        out[r * padded + c] = BigInt(x);
      }
    }
    return out;
  }

  private padFloat(field: string, data: Float32Array, b: number, t: number, padded: number): Float32Array {
    checkLength(field, data, b * t);
    if (t === padded) return data;
    const out = new Float32Array(b * padded);
    for (let r = 0; r < b; r++) out.set(data.subarray(r * t, (r + 1) * t), r * padded);
    return out;
  }

  /** Index of each row's last real token (the reward model reads its hidden state there). */
  private lastIndex(batch: SequenceBatch): BigInt64Array {
    const out = new BigInt64Array(batch.batchSize);
    for (let r = 0; r < batch.batchSize; r++) {
      let last = -1;
      for (let c = 0; c < batch.seqLen; c++) if (batch.attentionMask[r * batch.seqLen + c]) last = c;
      if (last < 0) throw new RangeError(`batch.attentionMask row ${r} has no real token`);
      out[r] = BigInt(last);
    }
    return out;
  }

  private lossFeeds(batch: SequenceBatch, loss: LossSpec, padded: number): Record<string, HostTensor> {
    const config = this.requireConfig();
    const needs = loss.kind === 'rm' ? 'reward' : 'policy';
    if (config.kind !== needs) throw new TypeError(`the ${loss.kind} loss needs a ${needs} model (this engine holds a ${config.kind} model)`);
    const { batchSize: b, seqLen: t } = batch;
    const feeds = this.sequenceFeeds(batch, padded);
    if (loss.kind === 'rm') {
      const rb = batch as RewardBatch;
      checkLength('scoreTargets', rb.scoreTargets, b);
      feeds.last_index = i64([b], this.lastIndex(batch));
      feeds.score_targets = f32([b], rb.scoreTargets);
      return feeds;
    }
    const sb = batch as SftBatch;
    feeds.targets = i64([b, padded], this.padInt('targets', sb.targets, b, t, padded, config.vocabSize));
    feeds.loss_mask = f32([b, padded], this.padFloat('lossMask', sb.lossMask, b, t, padded));
    if (loss.kind === 'grpo') {
      const gb = batch as GrpoBatch;
      feeds.old_logprobs = f32([b, padded], this.padFloat('oldLogprobs', gb.oldLogprobs, b, t, padded));
      feeds.ref_logprobs = f32([b, padded], this.padFloat('refLogprobs', gb.refLogprobs, b, t, padded));
      checkLength('advantages', gb.advantages, b);
      feeds.advantages = f32([b], gb.advantages);
      if (!(loss.temperature > 0)) throw new RangeError(`loss.temperature must be > 0 (got ${loss.temperature})`);
      if (loss.tisCap !== undefined) {
        throw new RangeError('loss.tisCap: the onnx engine samples with the graphs it trains with (no sampler–trainer mismatch to correct); truncated importance sampling is the torch engine\'s');
      }
      feeds.clip_eps = scalar(loss.clipEps);
      feeds.kl_coef = scalar(loss.klCoef);
      feeds.entropy_coef = scalar(loss.entropyCoef);
      feeds.temperature = scalar(loss.temperature);
    }
    return feeds;
  }

  /**
   * The text position a loss graph for these feeds starts at (`lossStart`; for the rm loss `lastIndexStart`, and
   * `last_index` is rewritten to count from it).
   */
  private lossFrom(feeds: Record<string, HostTensor>, loss: LossSpec, rows: number, padded: number): number {
    const step = this.options.lossStartStep;
    if (loss.kind === 'rm') return this.lastIndexFrom(feeds);
    return step === 0 ? 0 : lossStart(feeds.loss_mask!.data as Float32Array, rows, padded, step);
  }

  /** Where a reward-model graph for these feeds starts (`lastIndexStart`); rewrites `last_index` to count from there. */
  private lastIndexFrom(feeds: Record<string, HostTensor>): number {
    const last = feeds.last_index!.data as BigInt64Array;
    const from = this.options.lossStartStep === 0 ? 0 : lastIndexStart(last, this.options.lossStartStep);
    if (from > 0) feeds.last_index = i64([...feeds.last_index!.shape], last.map((x) => x - BigInt(from)));
    return from;
  }

  private vector(data: Float32Array): HostTensor {
    return f32([this.layout!.total], data);
  }

  private paramFeeds(): Record<string, HostTensor> {
    return { params: this.vector(this.params) };
  }

  private viewCache: { of: Float32Array; feeds: Record<string, HostTensor> } | undefined;

  /** One zero-copy view per parameter (`p:<name>`), for every graph; rebuilt when the weights change. */
  private paramViews(): Record<string, HostTensor> {
    if (this.viewCache?.of !== this.params) {
      const layout = this.layout!;
      const feeds: Record<string, HostTensor> = {};
      layout.specs.forEach((spec, i) => {
        feeds[`p:${spec.name}`] = f32(spec.shape, this.params.subarray(layout.offsets[i], layout.offsets[i]! + layout.sizes[i]!));
      });
      this.viewCache = { of: this.params, feeds };
    }
    return this.viewCache.feeds;
  }

  /** Takes the updated parameters and moments from a training or optimizer run. */
  private applyUpdate(out: Record<string, HostTensor>): void {
    this.params = out.new_params!.data as Float32Array;
    this.m = out.new_m!.data as Float32Array;
    this.v = out.new_v!.data as Float32Array;
    this.steps++;
  }

  private optimFeeds(settings: AdamWSettings): Record<string, HostTensor> {
    for (const [k, v] of Object.entries(settings)) {
      if (typeof v !== 'number' || !Number.isFinite(v)) throw new RangeError(`adamw.${k} must be a finite number (got ${String(v)})`);
    }
    const within = (k: 'beta1' | 'beta2', lo: number, hi: number) => {
      if (!(settings[k] >= lo && settings[k] < hi)) throw new RangeError(`adamw.${k} must be in [${lo}, ${hi}) (got ${settings[k]})`);
    };
    within('beta1', 0, 1);
    within('beta2', 0, 1);
    if (!(settings.eps > 0)) throw new RangeError(`adamw.eps must be > 0 (got ${settings.eps})`);
    if (!(settings.lr >= 0)) throw new RangeError(`adamw.lr must be ≥ 0 (got ${settings.lr})`);
    if (!(settings.weightDecay >= 0)) throw new RangeError(`adamw.weightDecay must be ≥ 0 (got ${settings.weightDecay})`);
    if (!(settings.maxGradNorm > 0)) throw new RangeError(`adamw.maxGradNorm must be > 0 (got ${settings.maxGradNorm})`);
    return adamwFeeds(settings, this.steps + 1);
  }

  private metrics(out: Record<string, HostTensor>, loss: LossSpec): Record<string, number> {
    return Object.fromEntries(LOSS_METRICS[loss.kind].map((name) => [name, Number(out[`metric:${name}`]!.data[0])]));
  }

  // ---- training ----------------------------------------------------------------------------------------

  async trainStep<L extends LossSpec>(batch: BatchFor<L>, loss: L, settings: AdamWSettings): Promise<TrainStepResult> {
    const config = this.requireConfig();
    const padded = this.bucket(batch.seqLen);
    const feeds = { ...this.lossFeeds(batch, loss, padded), ...this.paramViews(), ...this.paramFeeds(), m: this.vector(this.m), v: this.vector(this.v), ...this.optimFeeds(settings) };
    const from = this.lossFrom(feeds, loss, batch.batchSize, padded);
    const out = await this.run(`train:${loss.kind}:${batch.batchSize}x${padded}${fromKey(from)}`, () => buildTrainGraph(config, loss.kind, batch.batchSize, padded, 'float32', from), feeds);
    const finite = out.finite!.data[0] === 1;
    const result = { loss: Number(out.loss!.data[0]), metrics: this.metrics(out, loss), finite, gradNorm: Number(out.grad_norm!.data[0]) };
    if (finite) this.applyUpdate(out);
    return { ...result, applied: finite, step: this.steps };
  }

  async forwardBackward<L extends LossSpec>(batch: BatchFor<L>, loss: L, options: ForwardBackwardOptions = {}): Promise<ForwardBackwardResult> {
    const config = this.requireConfig();
    const weight = options.weight ?? 1;
    if (!(Number.isFinite(weight) && weight > 0)) throw new RangeError(`forwardBackward: options.weight must be a finite number > 0 (got ${weight})`);
    const padded = this.bucket(batch.seqLen);
    const feeds = { ...this.lossFeeds(batch, loss, padded), ...this.paramViews() };
    const from = this.lossFrom(feeds, loss, batch.batchSize, padded);
    const out = await this.run(`grad:${loss.kind}:${batch.batchSize}x${padded}${fromKey(from)}`, () => buildGradGraph(config, loss.kind, batch.batchSize, padded, 'float32', from), feeds);
    const finite = out.finite!.data[0] === 1;
    if (finite) this.accumulate(out.grad!.data as Float32Array, weight);
    return { loss: Number(out.loss!.data[0]), metrics: this.metrics(out, loss), finite };
  }

  /**
   * Adds a gradient to the pending Σ wᵢ·gᵢ (in float64 from the second call on, so uneven micro-batches sum as
   * exactly as the one-batch graph does) and Σ wᵢ. A single call keeps its float32 gradient as it is.
   */
  private accumulate(grad: Float32Array, weight: number): void {
    const pending = this.pending;
    if (!pending) {
      this.pending = { first: grad, firstWeight: weight, sum: undefined, weight };
      return;
    }
    if (!pending.sum) {
      pending.sum = new Float64Array(grad.length);
      for (let k = 0; k < grad.length; k++) pending.sum[k] = pending.first[k]! * pending.firstWeight;
    }
    const sum = pending.sum;
    for (let k = 0; k < grad.length; k++) sum[k]! += grad[k]! * weight;
    pending.weight += weight;
  }

  async optimStep(settings: AdamWSettings): Promise<OptimStepResult> {
    const config = this.requireConfig();
    const pending = this.pending;
    if (!pending) throw new Error('optimStep: no gradients accumulated (call forwardBackward first)');
    const optim = this.optimFeeds(settings);
    this.pending = undefined;
    const grad = pending.sum ? Float32Array.from(pending.sum, (x) => x / pending.weight) : pending.first;
    const feeds = { ...this.paramFeeds(), grad: this.vector(grad), m: this.vector(this.m), v: this.vector(this.v), ...optim };
    const out = await this.run('optim', () => buildOptimGraph(config), feeds);
    const applied = out.finite!.data[0] === 1;
    if (applied) this.applyUpdate(out);
    return { step: this.steps, gradNorm: Number(out.grad_norm!.data[0]), applied };
  }

  // ---- inference ---------------------------------------------------------------------------------------

  async logprobs(batch: TargetBatch, temperature: number): Promise<Float32Array> {
    const config = this.requireConfig();
    if (config.kind !== 'policy') throw new TypeError('logprobs needs a policy model');
    if (!(temperature > 0)) throw new RangeError(`temperature must be > 0 (got ${temperature})`);
    const padded = this.bucket(batch.seqLen);
    const { batchSize: b, seqLen: t } = batch;
    const feeds = {
      ...this.sequenceFeeds(batch, padded),
      ...this.paramViews(),
      targets: i64([b, padded], this.padInt('targets', batch.targets, b, t, padded, config.vocabSize)),
      temperature: scalar(temperature),
    };
    const out = await this.run(`logprobs:${b}x${padded}`, () => buildLogprobsGraph(config, b, padded), feeds);
    return unpad(out.logprobs!.data as Float32Array, b, padded, t);
  }

  async score(batch: SequenceBatch): Promise<Float32Array> {
    const config = this.requireConfig();
    if (config.kind !== 'reward') throw new TypeError('score needs a reward model');
    const padded = this.bucket(batch.seqLen);
    const feeds = { ...this.sequenceFeeds(batch, padded), ...this.paramViews(), last_index: i64([batch.batchSize], this.lastIndex(batch)) };
    const from = this.lastIndexFrom(feeds);
    const out = await this.run(`score:${batch.batchSize}x${padded}${fromKey(from)}`, () => buildScoreGraph(config, batch.batchSize, padded, 'float32', from), feeds);
    return out.score!.data as Float32Array;
  }

  async sample(request: SampleRequest): Promise<SampleResult> {
    const config = this.requireConfig();
    if (config.kind !== 'policy') throw new TypeError('sample needs a policy model');
    const { prompts, n, temperature, topP, maxTokens, stopToken } = request;
    const p = prompts.length;
    const { size, channels } = config.image;
    const pixels = channels * size * size;
    if (p < 1) throw new RangeError('sample: prompts is empty');
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`sample: n must be an integer ≥ 1 (got ${n})`);
    if (!(temperature >= 0)) throw new RangeError(`sample: temperature must be ≥ 0 (got ${temperature})`);
    if (!(topP > 0 && topP <= 1)) throw new RangeError(`sample: topP must be in (0, 1] (got ${topP})`);
    if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new RangeError(`sample: maxTokens must be an integer ≥ 1 (got ${maxTokens})`);
    if (!Number.isInteger(stopToken) || stopToken < 0 || stopToken >= config.vocabSize) throw new RangeError(`sample: stopToken ${stopToken} is outside the vocabulary`);
    checkLength('images', request.images, p * pixels);
    const longest = Math.max(...prompts.map((q) => q.length));
    if (prompts.some((q) => q.length === 0)) throw new RangeError('sample: every prompt needs at least one token');
    if (longest + maxTokens > config.maxLength) {
      throw new RangeError(`sample: the longest prompt (${longest} tokens) + maxTokens (${maxTokens}) exceeds model.maxLength ${config.maxLength}`);
    }
    const promptLen = Math.min(config.maxLength - maxTokens, Math.ceil(longest / 8) * 8);

    // Prefill the P distinct prompts once (left-padded so every row's last prompt token is at promptLen − 1).
    const tokens = new Int32Array(p * promptLen);
    const mask = new Uint8Array(p * promptLen);
    prompts.forEach((q, r) => {
      const pad = promptLen - q.length;
      tokens.set(q, r * promptLen + pad);
      mask.fill(1, r * promptLen + pad, (r + 1) * promptLen);
    });
    const prefillFeeds = { ...this.sequenceFeeds({ batchSize: p, seqLen: promptLen, images: request.images, tokens, attentionMask: mask }, promptLen), ...this.paramViews() };
    const prefill = await this.run(`prefill:${p}x${promptLen}`, () => buildPrefillGraph(config, p, promptLen), prefillFeeds);

    // The cache, per layer: the prompts' prefixes as the prefill returned them, (P, H, N + promptLen, hd), shared
    // by each prompt's n samples; and the rows' generated tokens, slot-major (capacity, rows, H, hd) so that a
    // step's new keys/values go in as one block, whose size grows in steps of CACHE_STEP slots (one decode graph
    // per capacity), so each step reads only as much cache as it holds.
    const rows = p * n;
    const n0 = imageTokens(config);
    const heads = config.heads;
    const hd = config.width / heads;
    const prefixMask = new Float32Array(p * (n0 + promptLen));
    for (let r = 0; r < p; r++) {
      const row = prefixMask.subarray(r * (n0 + promptLen), (r + 1) * (n0 + promptLen));
      row.fill(1, 0, n0);
      for (let c = 0; c < promptLen; c++) row[n0 + c] = mask[r * promptLen + c]!;
    }
    const prefixShape = [p, heads, n0 + promptLen, hd];
    const prefixFeeds: Record<string, HostTensor> = { prefix_mask: f32([p, n0 + promptLen], prefixMask) };
    for (let l = 0; l < config.layers; l++) {
      prefixFeeds[`prefix_k:${l}`] = f32(prefixShape, prefill[`k:${l}`]!.data as Float32Array);
      prefixFeeds[`prefix_v:${l}`] = f32(prefixShape, prefill[`v:${l}`]!.data as Float32Array);
    }
    // The last decode step only picks a token, so at most maxTokens − 1 generated tokens enter the cache.
    const capacityFor = (needed: number) => Math.min(config.maxLength, Math.ceil(needed / CACHE_STEP) * CACHE_STEP);
    let capacity = capacityFor(1);
    const maxCapacity = capacityFor(Math.max(1, maxTokens - 1));
    const slot = rows * heads * hd; // one slot of every row
    // Allocated once for the most slots this request can use; a decode graph for `capacity` slots is fed the
    // first `capacity` of them (a prefix, as the cache is slot-major), so growing copies nothing.
    const cacheK = Array.from({ length: config.layers }, () => new Float32Array(maxCapacity * slot));
    const cacheV = Array.from({ length: config.layers }, () => new Float32Array(maxCapacity * slot));
    let genMask = new Float32Array(rows * capacity);
    let feeds: Record<string, HostTensor> | undefined; // the decode feeds, for the current cache size
    const grow = (next: number) => {
      const mask2 = new Float32Array(rows * next);
      for (let r = 0; r < rows; r++) mask2.set(genMask.subarray(r * capacity, (r + 1) * capacity), r * next);
      genMask = mask2;
      capacity = next;
      feeds = undefined; // new shapes
    };
    const decodeKey = (c: number) => `decode:${p}x${n}:${promptLen}:${c}`;
    const decodeGraph = (c: number) => () => buildDecodeGraph(config, p, n, promptLen, c);

    // Create every decode session this request can need before timing-sensitive work starts (cached after).
    if (maxTokens > 1) {
      for (let c = capacity; ; c = capacityFor(c + 1)) {
        await this.session(decodeKey(c), decodeGraph(c));
        if (c >= maxCapacity) break;
      }
    }

    const rng = new Rng(request.seed);
    const v = config.vocabSize;
    const prefillLogits = prefill.logits!.data as Float32Array;
    let logits: Float32Array = new Float32Array(rows * v);
    for (let r = 0; r < rows; r++) logits.set(prefillLogits.subarray(Math.floor(r / n) * v, (Math.floor(r / n) + 1) * v), r * v);
    const outTokens = Array.from({ length: rows }, () => [] as number[]);
    const outLogprobs = Array.from({ length: rows }, () => [] as number[]);
    const done = new Array<boolean>(rows).fill(false);
    const stopped = new Array<boolean>(rows).fill(false);
    const rowPromptLength = Array.from({ length: rows }, (_, r) => prompts[Math.floor(r / n)]!.length);
    const scratch = new Float64Array(v);
    // The decode loop reuses its feeds: the token and position buffers are rewritten in place each step, and
    // the feed record is rebuilt only after the cache grows (`grow` drops it).
    const token = new BigInt64Array(rows);
    const position = new BigInt64Array(rows);
    const decodeFeeds = (): Record<string, HostTensor> => {
      if (!feeds) {
        feeds = { ...this.paramViews(), ...prefixFeeds, token: i64([rows, 1], token), position: i64([rows, 1], position), gen_mask: f32([rows, capacity], genMask) };
        for (let l = 0; l < config.layers; l++) {
          feeds[`gen_k:${l}`] = f32([capacity, rows, heads, hd], cacheK[l]!.subarray(0, capacity * slot));
          feeds[`gen_v:${l}`] = f32([capacity, rows, heads, hd], cacheV[l]!.subarray(0, capacity * slot));
        }
      }
      return feeds;
    };
    let generated = 0;
    for (let s = 0; s < maxTokens; s++) {
      for (let r = 0; r < rows; r++) {
        position[r] = BigInt(rowPromptLength[r]! + s);
        if (done[r]) {
          token[r] = 0n;
          continue;
        }
        const pick = pickToken(logits.subarray(r * v, (r + 1) * v), temperature, topP, rng, scratch);
        outTokens[r]!.push(pick.token);
        outLogprobs[r]!.push(pick.logprob);
        generated++;
        token[r] = BigInt(pick.token);
        if (pick.token === stopToken) {
          done[r] = true;
          stopped[r] = true;
        }
      }
      if (s === maxTokens - 1 || done.every(Boolean)) break;
      // Step s feeds token s, which sees the s generated tokens before it; its keys/values go to slot s.
      if (s >= capacity) grow(capacityFor(s + 1));
      const out = await this.run(decodeKey(capacity), decodeGraph(capacity), decodeFeeds());
      // This step's keys/values, (rows, H, 1, hd), are slot s of the cache: one block each.
      for (let l = 0; l < config.layers; l++) {
        cacheK[l]!.set(out[`k:${l}`]!.data as Float32Array, s * slot);
        cacheV[l]!.set(out[`v:${l}`]!.data as Float32Array, s * slot);
      }
      for (let r = 0; r < rows; r++) if (!done[r]) genMask[r * capacity + s] = 1;
      logits = out.logits!.data as Float32Array;
    }
    const sequences: SampledSequence[] = outTokens.map((toks, r) => ({
      promptIndex: Math.floor(r / n),
      tokens: Int32Array.from(toks),
      logprobs: Float32Array.from(outLogprobs[r]!),
      stopped: stopped[r]!,
    }));
    return { sequences, generatedTokens: generated };
  }

  // ---- prompt-level surface (onnx-prompts.ts renders prompts and packs rows into the batches above) ----------

  // eslint-disable-next-line @typescript-eslint/require-await -- async so that a disposed engine rejects, as the protocol's other calls do
  async promptLengths(prompts: readonly ChatPrompt[]): Promise<number[]> {
    return renderPrompts(prompts, this.requireConfig()).map((p) => p.tokens.length);
  }

  // eslint-disable-next-line @typescript-eslint/require-await -- as promptLengths
  async encodeResponses(texts: readonly string[]): Promise<Int32Array[]> {
    this.requireConfig();
    return texts.map((text) => Int32Array.from(SOPHIA_TOKENIZER.response(text)));
  }

  async generate(request: GenerateRequest): Promise<GenerateResult> {
    const config = this.requireConfig();
    if (!Number.isInteger(request.maxTokens) || request.maxTokens < 1) throw new RangeError(`maxTokens must be an integer ≥ 1 (got ${request.maxTokens})`);
    const rendered = renderPrompts(request.prompts, config);
    const pixels = 3 * config.image.size ** 2;
    const images = new Float32Array(rendered.length * pixels);
    rendered.forEach((p, i) => images.set(p.pixels, i * pixels));
    const lengths = rendered.map((p) => p.tokens.length);
    const longest = Math.max(...lengths);
    const maxTokens = Math.min(request.maxTokens, config.maxLength - longest);
    if (maxTokens < 1) throw new RangeError(`prompts[${lengths.indexOf(longest)}]: ${longest} tokens leave no room for a response within the model's ${config.maxLength} positions (model.maxLength)`);
    const out = await this.sample({ images, prompts: rendered.map((p) => Int32Array.from(p.tokens)), n: request.n, temperature: request.temperature, topP: request.topP, maxTokens, seed: request.seed, stopToken: EOS });
    return {
      generatedTokens: out.generatedTokens,
      sequences: out.sequences.map((s) => ({ ...s, text: SOPHIA_TOKENIZER.decode(s.tokens.filter((t) => t !== EOS)) })),
    };
  }

  async responseLogprobs(batch: ResponseBatch, temperature: number): Promise<Float32Array[]> {
    const packed = sftBatchOf(batch, this.requireConfig());
    const logprobs = await this.logprobs(packed, temperature);
    // The target at column c is full[c + 1]: response token j of row i is predicted at column prompt + j − 1.
    return batch.rows.map((row, i) => {
      const from = i * packed.seqLen + packed.promptLengths[i]! - 1;
      return logprobs.slice(from, from + row.response.length);
    });
  }

  async scoreResponses(batch: ResponseBatch): Promise<Float32Array> {
    return this.score(scoreBatchOf(batch, this.requireConfig()));
  }

  async forwardBackwardResponses<L extends LossSpec>(batch: ResponseBatch<RowFor<L>>, loss: L, options: ForwardBackwardOptions = {}): Promise<ForwardBackwardResult> {
    return this.forwardBackward(lossBatchOf(batch, loss, this.requireConfig()), loss, options);
  }

  async trainStepResponses<L extends LossSpec>(batch: ResponseBatch<RowFor<L>>, loss: L, settings: AdamWSettings): Promise<TrainStepResult> {
    return this.trainStep(lossBatchOf(batch, loss, this.requireConfig()), loss, settings);
  }
}

function unpad(data: Float32Array, b: number, padded: number, t: number): Float32Array {
  if (padded === t) return data;
  const out = new Float32Array(b * t);
  for (let r = 0; r < b; r++) out.set(data.subarray(r * padded, r * padded + t), r * t);
  return out;
}
