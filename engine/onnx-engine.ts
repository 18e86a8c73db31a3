/**
 * `OnnxEngine`: the built-in `Engine` (see `types.ts`), running Sophia's ONNX graphs on onnxruntime-node.
 *
 * Weights and AdamW moments live on the host as Float32Arrays and are fed to each run; a training step is one
 * run of a fused graph (forward, backward, AdamW) whose outputs become the new state. Graphs are built per
 * batch size and sequence bucket (sequences are right-padded to a multiple of `seqBucket`) and their sessions
 * are created once and reused. Sampling uses a prefill graph and a one-token decode graph over a fixed-size
 * KV cache held here (`sample`).
 */
import * as ort from 'onnxruntime-node';
import { type ModelConfig, type ParamSpec, imageTokens, parameterSpecs, validateModelConfig } from './model/config';
import {
  LOSS_METRICS,
  buildDecodeGraph,
  buildGradGraph,
  buildLogprobsGraph,
  buildOptimGraph,
  buildPrefillGraph,
  buildScoreGraph,
  buildTrainGraph,
  cacheSlots,
} from './model/graphs';
import type { Graph } from './onnx/graph';
import { type ExecutionProvider, type HostTensor, Session } from './onnx/runtime';
import { Rng } from './rng';
import { pickToken } from './sampling';
import { decodeState, encodeState } from './state';
import type {
  AdamWSettings,
  BatchFor,
  Engine,
  EngineInfo,
  ForwardBackwardResult,
  GrpoBatch,
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

export interface OnnxEngineOptions {
  executionProvider?: ExecutionProvider;
  /** Intra-op threads per session (default: one per core). */
  threads?: number;
  /** Training and scoring sequences are right-padded to a multiple of this (fewer distinct graphs). */
  seqBucket?: number;
}

const f32 = (shape: number[], data: Float32Array): HostTensor => ({ dtype: 'float32', shape, data });
const i64 = (shape: number[], data: BigInt64Array): HostTensor => ({ dtype: 'int64', shape, data });
const scalar = (x: number): HostTensor => f32([], Float32Array.of(x));

function checkLength(field: string, array: ArrayLike<unknown>, expected: number): void {
  if (array.length !== expected) throw new RangeError(`batch.${field} has ${array.length} values, expected ${expected}`);
}

export class OnnxEngine implements Engine {
  readonly info: EngineInfo;
  private readonly options: Required<Omit<OnnxEngineOptions, 'threads'>> & { threads: number | undefined };
  private cfg: ModelConfig | undefined;
  private specs: ParamSpec[] = [];
  private params: Float32Array[] = [];
  private m: Float32Array[] = [];
  private v: Float32Array[] = [];
  private steps = 0;
  private rng = new Rng(0);
  private pending: { grads: Float32Array[]; count: number } | undefined;
  private readonly sessions = new Map<string, Promise<Session>>();
  private disposed = false;

  constructor(options: OnnxEngineOptions = {}) {
    this.options = { executionProvider: options.executionProvider ?? 'cpu', threads: options.threads, seqBucket: options.seqBucket ?? 16 };
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

  async init(config: ModelConfig, seed: number): Promise<void> {
    validateModelConfig(config);
    await this.resetSessions();
    this.cfg = structuredClone(config);
    this.specs = parameterSpecs(config);
    this.rng = new Rng(seed);
    this.params = this.specs.map((spec) => {
      const size = spec.shape.reduce((a, b) => a * b, 1);
      if (spec.init === 'zeros') return new Float32Array(size);
      if (spec.init === 'ones') return new Float32Array(size).fill(1);
      return Float32Array.from({ length: size }, () => this.rng.nextNormal() * config.initStd);
    });
    this.m = this.params.map((p) => new Float32Array(p.length));
    this.v = this.params.map((p) => new Float32Array(p.length));
    this.steps = 0;
    this.pending = undefined;
  }

  config(): ModelConfig {
    return structuredClone(this.requireConfig());
  }

  step(): number {
    return this.steps;
  }

  saveState(): Promise<Uint8Array> {
    const config = this.requireConfig();
    return Promise.resolve(encodeState({ config, step: this.steps, rng: this.rng.state(), params: this.params, m: this.m, v: this.v }));
  }

  async loadState(bytes: Uint8Array): Promise<void> {
    const state = decodeState(bytes);
    const sameModel = this.cfg !== undefined && JSON.stringify(this.cfg) === JSON.stringify(state.config);
    if (!sameModel) await this.resetSessions();
    this.cfg = state.config;
    this.specs = parameterSpecs(state.config);
    this.params = state.params;
    this.m = state.m;
    this.v = state.v;
    this.steps = state.step;
    this.rng = new Rng(state.rng);
    this.pending = undefined;
  }

  async dispose(): Promise<void> {
    await this.resetSessions();
    this.disposed = true;
    this.params = this.m = this.v = [];
  }

  private async resetSessions(): Promise<void> {
    const sessions = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of sessions) await (await s).dispose();
  }

  private session(key: string, build: () => Graph): Promise<Session> {
    let session = this.sessions.get(key);
    if (!session) {
      session = Session.create(build().toModel(), { executionProvider: this.options.executionProvider, ...(this.options.threads ? { threads: this.options.threads } : {}) });
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
      feeds.clip_eps = scalar(loss.clipEps);
      feeds.kl_coef = scalar(loss.klCoef);
      feeds.entropy_coef = scalar(loss.entropyCoef);
      feeds.temperature = scalar(loss.temperature);
    }
    return feeds;
  }

  private paramFeeds(prefix: string, arrays: Float32Array[]): Record<string, HostTensor> {
    const feeds: Record<string, HostTensor> = {};
    this.specs.forEach((s, i) => (feeds[`${prefix}:${s.name}`] = f32(s.shape, arrays[i]!)));
    return feeds;
  }

  private optimFeeds(settings: AdamWSettings): Record<string, HostTensor> {
    for (const [k, v] of Object.entries(settings)) {
      if (typeof v !== 'number' || !Number.isFinite(v)) throw new RangeError(`adamw.${k} must be a finite number (got ${String(v)})`);
    }
    const t = this.steps + 1;
    return {
      opt_lr: scalar(settings.lr),
      opt_beta1: scalar(settings.beta1),
      opt_beta2: scalar(settings.beta2),
      opt_eps: scalar(settings.eps),
      opt_weight_decay: scalar(settings.weightDecay),
      opt_max_grad_norm: scalar(settings.maxGradNorm),
      opt_bc1: scalar(1 - settings.beta1 ** t),
      opt_bc2: scalar(1 - settings.beta2 ** t),
    };
  }

  private metrics(out: Record<string, HostTensor>, loss: LossSpec): Record<string, number> {
    return Object.fromEntries(LOSS_METRICS[loss.kind].map((name) => [name, Number(out[`metric:${name}`]!.data[0])]));
  }

  // ---- training ----------------------------------------------------------------------------------------

  async trainStep<L extends LossSpec>(batch: BatchFor<L>, loss: L, settings: AdamWSettings): Promise<TrainStepResult> {
    const config = this.requireConfig();
    const padded = this.bucket(batch.seqLen);
    const feeds = { ...this.lossFeeds(batch, loss, padded), ...this.paramFeeds('p', this.params), ...this.paramFeeds('m', this.m), ...this.paramFeeds('v', this.v), ...this.optimFeeds(settings) };
    const session = await this.session(`train:${loss.kind}:${batch.batchSize}x${padded}`, () => buildTrainGraph(config, loss.kind, batch.batchSize, padded));
    const out = await session.run(feeds);
    const finite = out.finite!.data[0] === 1;
    const result = { loss: Number(out.loss!.data[0]), metrics: this.metrics(out, loss), finite, gradNorm: Number(out.grad_norm!.data[0]) };
    if (finite) {
      this.params = this.specs.map((s) => out[`new_p:${s.name}`]!.data as Float32Array);
      this.m = this.specs.map((s) => out[`new_m:${s.name}`]!.data as Float32Array);
      this.v = this.specs.map((s) => out[`new_v:${s.name}`]!.data as Float32Array);
      this.steps++;
    }
    return { ...result, applied: finite, step: this.steps };
  }

  async forwardBackward<L extends LossSpec>(batch: BatchFor<L>, loss: L): Promise<ForwardBackwardResult> {
    const config = this.requireConfig();
    const padded = this.bucket(batch.seqLen);
    const feeds = { ...this.lossFeeds(batch, loss, padded), ...this.paramFeeds('p', this.params) };
    const session = await this.session(`grad:${loss.kind}:${batch.batchSize}x${padded}`, () => buildGradGraph(config, loss.kind, batch.batchSize, padded));
    const out = await session.run(feeds);
    const finite = out.finite!.data[0] === 1;
    if (finite) {
      const grads = this.specs.map((s) => out[`g:${s.name}`]!.data as Float32Array);
      if (!this.pending) {
        this.pending = { grads, count: 1 };
      } else {
        this.pending.grads.forEach((acc, i) => {
          const g = grads[i]!;
          for (let k = 0; k < acc.length; k++) acc[k]! += g[k]!;
        });
        this.pending.count++;
      }
    }
    return { loss: Number(out.loss!.data[0]), metrics: this.metrics(out, loss), finite };
  }

  async optimStep(settings: AdamWSettings): Promise<OptimStepResult> {
    const config = this.requireConfig();
    const pending = this.pending;
    if (!pending) throw new Error('optimStep: no gradients accumulated (call forwardBackward first)');
    this.pending = undefined;
    const grads = pending.grads.map((g) => (pending.count === 1 ? g : g.map((x) => x / pending.count)));
    const feeds = { ...this.paramFeeds('p', this.params), ...this.paramFeeds('g', grads), ...this.paramFeeds('m', this.m), ...this.paramFeeds('v', this.v), ...this.optimFeeds(settings) };
    const out = await (await this.session('optim', () => buildOptimGraph(config))).run(feeds);
    const applied = out.finite!.data[0] === 1;
    if (applied) {
      this.params = this.specs.map((s) => out[`new_p:${s.name}`]!.data as Float32Array);
      this.m = this.specs.map((s) => out[`new_m:${s.name}`]!.data as Float32Array);
      this.v = this.specs.map((s) => out[`new_v:${s.name}`]!.data as Float32Array);
      this.steps++;
    }
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
      ...this.paramFeeds('p', this.params),
      targets: i64([b, padded], this.padInt('targets', batch.targets, b, t, padded, config.vocabSize)),
      temperature: scalar(temperature),
    };
    const out = await (await this.session(`logprobs:${b}x${padded}`, () => buildLogprobsGraph(config, b, padded))).run(feeds);
    return unpad(out.logprobs!.data as Float32Array, b, padded, t);
  }

  async score(batch: SequenceBatch): Promise<Float32Array> {
    const config = this.requireConfig();
    if (config.kind !== 'reward') throw new TypeError('score needs a reward model');
    const padded = this.bucket(batch.seqLen);
    const feeds = { ...this.sequenceFeeds(batch, padded), ...this.paramFeeds('p', this.params), last_index: i64([batch.batchSize], this.lastIndex(batch)) };
    const out = await (await this.session(`score:${batch.batchSize}x${padded}`, () => buildScoreGraph(config, batch.batchSize, padded))).run(feeds);
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
    const prefillFeeds = { ...this.sequenceFeeds({ batchSize: p, seqLen: promptLen, images: request.images, tokens, attentionMask: mask }, promptLen), ...this.paramFeeds('p', this.params) };
    const prefill = await (await this.session(`prefill:${p}x${promptLen}`, () => buildPrefillGraph(config, p, promptLen))).run(prefillFeeds);

    // Fixed-size cache for the P·n rows: slots [0, N) image, [N, N + promptLen) prompt, then generated tokens.
    const rows = p * n;
    const n0 = imageTokens(config);
    const slots = cacheSlots(config);
    const heads = config.heads;
    const hd = config.width / heads;
    const filled = n0 + promptLen;
    const cacheK: Float32Array[] = [];
    const cacheV: Float32Array[] = [];
    for (let l = 0; l < config.layers; l++) {
      const k = new Float32Array(rows * heads * slots * hd);
      const v = new Float32Array(rows * heads * slots * hd);
      const pk = prefill[`k:${l}`]!.data as Float32Array; // (P, H, filled, hd)
      const pv = prefill[`v:${l}`]!.data as Float32Array;
      for (let r = 0; r < rows; r++) {
        const src = Math.floor(r / n);
        for (let h = 0; h < heads; h++) {
          const from = (src * heads + h) * filled * hd;
          const to = (r * heads + h) * slots * hd;
          k.set(pk.subarray(from, from + filled * hd), to);
          v.set(pv.subarray(from, from + filled * hd), to);
        }
      }
      cacheK.push(k);
      cacheV.push(v);
    }
    const pastMask = new Float32Array(rows * slots);
    for (let r = 0; r < rows; r++) {
      const src = Math.floor(r / n);
      pastMask.fill(1, r * slots, r * slots + n0);
      for (let c = 0; c < promptLen; c++) pastMask[r * slots + n0 + c] = mask[src * promptLen + c]!;
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
    const decodeSession = await this.session(`decode:${rows}`, () => buildDecodeGraph(config, rows));
    const params = this.paramFeeds('p', this.params);
    let generated = 0;
    for (let s = 0; s < maxTokens; s++) {
      const token = new BigInt64Array(rows);
      const position = new BigInt64Array(rows);
      for (let r = 0; r < rows; r++) {
        const promptTokens = prompts[Math.floor(r / n)]!.length;
        position[r] = BigInt(promptTokens + s);
        if (done[r]) continue;
        const pick = pickToken(logits.subarray(r * v, (r + 1) * v), temperature, topP, rng);
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
      const feeds: Record<string, HostTensor> = {
        ...params,
        token: i64([rows, 1], token),
        position: i64([rows, 1], position),
        past_mask: f32([rows, slots], pastMask),
      };
      for (let l = 0; l < config.layers; l++) {
        feeds[`past_k:${l}`] = f32([rows, heads, slots, hd], cacheK[l]!);
        feeds[`past_v:${l}`] = f32([rows, heads, slots, hd], cacheV[l]!);
      }
      const out = await decodeSession.run(feeds);
      const slot = filled + s;
      for (let l = 0; l < config.layers; l++) {
        const nk = out[`k:${l}`]!.data as Float32Array; // (rows, H, 1, hd)
        const nv = out[`v:${l}`]!.data as Float32Array;
        for (let r = 0; r < rows; r++) {
          for (let h = 0; h < heads; h++) {
            const from = (r * heads + h) * hd;
            const to = ((r * heads + h) * slots + slot) * hd;
            cacheK[l]!.set(nk.subarray(from, from + hd), to);
            cacheV[l]!.set(nv.subarray(from, from + hd), to);
          }
        }
      }
      for (let r = 0; r < rows; r++) if (!done[r]) pastMask[r * slots + slot] = 1;
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
}

function unpad(data: Float32Array, b: number, padded: number, t: number): Float32Array {
  if (padded === t) return data;
  const out = new Float32Array(b * t);
  for (let r = 0; r < b; r++) out.set(data.subarray(r * padded, r * padded + t), r * t);
  return out;
}
