/**
 * Cross-engine equivalence (issue 21): the torch engine runs Sophia's own architecture from an ONNX-engine state
 * (sophia_torch/sophia_arch.py, ops `load_sophia`, `sophia_grad`, `sophia_logprobs`), and the same state and batch
 * give the same losses, metrics and gradients in both engines.
 *
 *  - float64: for `checkConfig` policy and reward models with seeded parameters written to a state.bin (float32 on
 *    disk, so both engines get the same float32-rounded values), the ONNX engine's float64 grad graph
 *    (`buildGradGraph`) run by onnxruntime, against the torch engine loaded with `dtype: float64`: loss and every
 *    metric within 1e-9 relative, the flat gradient (paramLayout order) within 1e-9 of its largest magnitude — for
 *    sft, grpo (some ratios clipped on both sides, a nonzero KL, a loss mask with holes) and rm; padding on the left
 *    and on the right.
 *  - float32: a tiny-preset state.bin loaded by the real ONNX engine (`createEngine({ kind: 'onnx' })`) and by the
 *    torch engine in float32: `logprobs` equal within 1e-5.
 *
 * Skipped, with the reason in the suite's name, when the torch venv is not installed (`bash
 * infra/local/install-torch.sh`; infra/test.sh installs it before vitest runs).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packSft } from '../batch';
import { createEngine } from '../factory';
import { type ModelConfig, paramLayout, parameterSpecs, presetConfig } from '../model/config';
import { LOSS_METRICS, type LossKind, buildGradGraph, buildLogprobsGraph } from '../model/graphs';
import { pseudoRandom } from '../onnx/gradcheck';
import { type HostTensor, Session, hostTensor } from '../onnx/runtime';
import { Rng } from '../rng';
import { encodeState } from '../state';
import { checkConfig, checkParams } from '../testing/fixtures';
import { TorchEngineProcess } from './process';
import type { ForwardBackwardResult, LoadSophiaArgs, SophiaBatch, SophiaModelInfo } from './protocol';
import { INSTALL_COMMAND, torchInstall } from './venv';

const install = torchInstall();
const skipReason = install.ok ? '' : ` (skipped: ${install.reason}; install it with \`${INSTALL_COMMAND}\`)`;
if (!install.ok) console.warn(`engine/torch/cross-engine.test.ts${skipReason}`);

/** Largest relative difference allowed in float64 (the bound). */
const FLOAT64_TOLERANCE = 1e-9;

/** A state.bin of `config` with these parameter values (rounded to float32, as the file stores them), zero moments. */
function stateBin(config: ModelConfig, values: readonly ArrayLike<number>[]): Uint8Array {
  const params = values.map((v) => Float32Array.from(v));
  const zeros = () => params.map((p) => new Float32Array(p.length));
  return encodeState({ config, step: 0, rng: new Rng(0).state(), params, m: zeros(), v: zeros() });
}

/** What the torch engine answers for Sophia's architecture (typed wrappers over `call`). */
async function loadSophia(engine: TorchEngineProcess, args: LoadSophiaArgs): Promise<SophiaModelInfo> {
  return (await engine.call('load_sophia', { ...args, state: path.resolve(args.state) })).result.model as SophiaModelInfo;
}

async function sophiaGrad(engine: TorchEngineProcess, loss: Record<string, unknown>, batch: SophiaBatch): Promise<ForwardBackwardResult & { grad: Float64Array }> {
  const reply = await engine.call('sophia_grad', { loss }, batch);
  return { ...(reply.result as unknown as ForwardBackwardResult), grad: reply.tensors.grad!.data as Float64Array };
}

async function sophiaLogprobs(engine: TorchEngineProcess, temperature: number, batch: SophiaBatch): Promise<Float32Array | Float64Array> {
  const reply = await engine.call('sophia_logprobs', { temperature }, batch);
  return reply.tensors.logprobs!.data as Float32Array | Float64Array;
}

// ---- the float64 batch: 3 rows of 6 positions (row 2 left-padded by two, row 3 right-padded by one) -------------

const B = 3;
const T = 6;
const MASK = [1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0];
const GRPO = { clip_eps: 0.2, kl_coef: 0.04, entropy_coef: 0.001, temperature: 0.9 };

const f64 = (shape: number[], values: ArrayLike<number>) => ({ dtype: 'float64' as const, shape, data: Float64Array.from(values) });
const i64 = (shape: number[], values: ArrayLike<number>) => ({ dtype: 'int64' as const, shape, data: BigInt64Array.from(Array.from(values, (x) => BigInt(x))) });

/** The sequence tensors every loss takes, and the per-loss ones (grpo's old logprobs are set from the model below). */
function baseBatch(): SophiaBatch {
  return {
    image: f64([B, 3, 4, 4], pseudoRandom(B * 48, 5).map((x) => (x + 1) / 2)),
    tokens: i64([B, T], [1, 2, 3, 4, 5, 6, 0, 0, 6, 2, 1, 3, 2, 5, 4, 1, 3, 0]),
    positions: i64([B, T], [0, 1, 2, 3, 4, 5, 0, 0, 0, 1, 2, 3, 0, 1, 2, 3, 4, 4]),
    attention_mask: f64([B, T], MASK),
    targets: i64([B, T], [2, 3, 4, 5, 6, 1, 0, 0, 2, 1, 3, 4, 5, 4, 1, 3, 6, 0]),
    // Holes in the loss mask, and none on padding.
    loss_mask: f64([B, T], [0, 1, 1, 0, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 0]),
    advantages: f64([B], [0.8, -1.1, 0.5]),
    score_targets: f64([B], [0.3, 0.9, 0.6]),
  };
}

/** The ONNX graph's inputs for a batch: `p:<name>` parameters and the batch tensors, all float64/int64. */
function onnxFeeds(config: ModelConfig, values: readonly Float32Array[], batch: SophiaBatch, lastIndex: number[]): Record<string, HostTensor> {
  const feeds: Record<string, HostTensor> = {};
  parameterSpecs(config).forEach((spec, i) => (feeds[`p:${spec.name}`] = hostTensor('float64', spec.shape, Float64Array.from(values[i]!))));
  for (const [name, t] of Object.entries(batch)) {
    const tensor = t as { dtype: string; shape: number[]; data: Float64Array | BigInt64Array };
    feeds[name] = hostTensor(tensor.dtype === 'int64' ? 'int64' : 'float64', tensor.shape, tensor.data);
  }
  feeds.last_index = hostTensor('int64', [B], BigInt64Array.from(lastIndex.map(BigInt)));
  for (const [k, v] of Object.entries(GRPO)) feeds[k] = hostTensor('float64', [], Float64Array.of(v));
  return feeds;
}

async function runGraph(model: ReturnType<typeof buildGradGraph>, feeds: Record<string, HostTensor>): Promise<Record<string, Float64Array>> {
  const session = await Session.create(model.toModel());
  try {
    const out = await session.run(Object.fromEntries(session.inputNames.map((name) => [name, feeds[name]!])));
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.data as Float64Array]));
  } finally {
    await session.dispose();
  }
}

const relative = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-300);

describe.skipIf(!install.ok)(`the torch engine runs Sophia's architecture from an ONNX-engine state${skipReason}`, () => {
  let dir: string;
  let engine: TorchEngineProcess;
  /** The largest relative difference seen per loss (printed for engine/README.md). */
  const measured: Record<string, number> = {};

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'sophia-cross-engine-'));
    engine = await TorchEngineProcess.start({ threads: 2 });
  }, 60_000);

  afterAll(async () => {
    await engine?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (Object.keys(measured).length) console.info(`cross-engine float64 max relative difference: ${JSON.stringify(measured)}`);
  });

  /** A float64 model's state.bin with `checkParams` values (as float32) written into `dir`; the values as stored. */
  function writeCheckState(kind: ModelConfig['kind'], seed: number): { file: string; config: ModelConfig; values: Float32Array[] } {
    const config = checkConfig(kind, 8);
    const values = checkParams(config, seed).map((p) => Float32Array.from(p.values));
    const file = path.join(dir, `${kind}-${seed}.bin`);
    writeFileSync(file, stateBin(config, values));
    return { file, config, values };
  }

  it.each<[LossKind, ModelConfig['kind']]>([
    ['sft', 'policy'],
    ['grpo', 'policy'],
    ['rm', 'reward'],
  ])('%s: the same loss, metrics and flat gradient in float64 (≤ 1e-9 relative)', async (loss, kind) => {
    const { file, config, values } = writeCheckState(kind, 300);
    const info = await loadSophia(engine, { state: file, dtype: 'float64' });
    expect(info).toMatchObject({ kind, dtype: 'float64', step: 0, parameters: paramLayout(config).total });

    const batch = baseBatch();
    const lastIndex = [5, 5, 4]; // each row's last real token (the ONNX engine's `lastIndex`)
    if (loss === 'grpo') {
      // log π of the batch's targets under this model, from the ONNX float64 logprobs graph, then π_old off it by
      // ±0.5 (clipped when the advantage's sign agrees), ±0.1 (inside the clip range) and π_ref off it by ±0.3.
      const logp = (await runGraph(buildLogprobsGraph(config, B, T, 'float64'), { ...onnxFeeds(config, values, batch, lastIndex), temperature: hostTensor('float64', [], Float64Array.of(GRPO.temperature)) })).logprobs!;
      const offsets = [0.5, -0.5, 0.1, -0.1, 0.05, 0.45];
      batch.old_logprobs = f64([B, T], Array.from(logp, (x, i) => x + offsets[i % offsets.length]!));
      batch.ref_logprobs = f64([B, T], Array.from(logp, (x, i) => x + 0.3 * pseudoRandom(B * T, 13)[i]!));
    }
    const needed: (keyof SophiaBatch)[] = ['image', 'tokens', 'positions', 'attention_mask', ...((loss === 'rm' ? ['score_targets'] : loss === 'sft' ? ['targets', 'loss_mask'] : ['targets', 'loss_mask', 'old_logprobs', 'ref_logprobs', 'advantages']) as (keyof SophiaBatch)[])];
    const sent = Object.fromEntries(needed.map((k) => [k, batch[k]])) as unknown as SophiaBatch;

    const onnx = await runGraph(buildGradGraph(config, loss, B, T, 'float64'), onnxFeeds(config, values, batch, lastIndex));
    const torch = await sophiaGrad(engine, loss === 'grpo' ? { kind: loss, ...GRPO } : { kind: loss }, sent);

    expect(torch.finite).toBe(true);
    expect(Object.keys(torch.metrics).sort()).toEqual([...LOSS_METRICS[loss]].sort());
    const diffs: Record<string, number> = { loss: relative(torch.loss, onnx.loss![0]!) };
    for (const m of LOSS_METRICS[loss]) diffs[m] = onnx[`metric:${m}`]![0] === 0 ? Math.abs(torch.metrics[m]!) : relative(torch.metrics[m]!, onnx[`metric:${m}`]![0]!);
    const grad = onnx.grad!;
    expect(torch.grad.length).toBe(grad.length);
    const scale = Math.max(...Array.from(grad, Math.abs));
    diffs.grad = Math.max(...Array.from(grad, (g, i) => Math.abs(torch.grad[i]! - g))) / scale;
    measured[loss] = Math.max(...Object.values(diffs));
    for (const [name, d] of Object.entries(diffs)) expect(d, name).toBeLessThanOrEqual(FLOAT64_TOLERANCE);

    // The comparison can tell: the batch has gradient everywhere it should, and for grpo both sides of the clip.
    expect(scale).toBeGreaterThan(1e-3);
    expect(grad.filter((g) => g !== 0).length).toBeGreaterThan(grad.length / 2);
    if (loss === 'grpo') {
      expect(onnx['metric:clip_fraction']![0]).toBeGreaterThan(0);
      expect(onnx['metric:clip_fraction']![0]).toBeLessThan(1);
      expect(onnx['metric:kl']![0]).toBeGreaterThan(1e-3);
    }
    // Another parameter set gives another gradient (a check that both engines read the state they were given).
    const other = writeCheckState(kind, 301);
    await loadSophia(engine, { state: other.file, dtype: 'float64' });
    const moved = await sophiaGrad(engine, loss === 'grpo' ? { kind: loss, ...GRPO } : { kind: loss }, sent);
    expect(Math.max(...Array.from(grad, (g, i) => Math.abs(moved.grad[i]! - g))) / scale).toBeGreaterThan(1e-3);
  });

  it('float32: the torch engine gives the ONNX engine’s logprobs on a tiny-preset state (within 1e-5)', async () => {
    const config = presetConfig('tiny', 'policy', 32);
    // Weights of ±0.15 and gains near 1: logits far from uniform (the initial 0.02 would make every logprob ≈ −log V).
    const values = parameterSpecs(config).map((s, i) => {
      const x = pseudoRandom(s.shape.reduce((a, b) => a * b, 1), 50 + i);
      return Float32Array.from(x, (v) => (s.init === 'ones' ? 1 + 0.2 * v : s.init === 'zeros' ? 0.05 * v : 0.15 * v));
    });
    const data = stateBin(config, values);
    const file = path.join(dir, 'tiny.bin');
    writeFileSync(file, data);
    const onnx = createEngine({ kind: 'onnx', threads: 2 });
    await onnx.loadState([{ name: 'state.bin', data }]);
    const rows = [
      { prompt: [0, 3, 7], response: [5, 9, 2, 31, 4] },
      { prompt: [0, 11], response: [1, 2] },
      { prompt: [0, 20, 21, 22], response: [8, 8, 30, 6, 17, 12, 1] },
    ];
    const pixels = 3 * 16 * 16;
    const images = Float32Array.from(pseudoRandom(rows.length * pixels, 9), (x) => (x + 1) / 2);
    const batch = packSft(rows, images, pixels);
    const temperature = 0.8;
    const expected = await onnx.logprobs(batch, temperature);
    await onnx.dispose();

    const info = await loadSophia(engine, { state: file });
    expect(info).toMatchObject({ kind: 'policy', dtype: 'float32' });
    const { batchSize: b, seqLen: t } = batch;
    // No positions: the torch op's default is the ONNX engine's (real tokens before each token).
    const got = await sophiaLogprobs(engine, temperature, {
      image: { dtype: 'float32', shape: [b, 3, 16, 16], data: images },
      tokens: { dtype: 'int32', shape: [b, t], data: batch.tokens },
      attention_mask: { dtype: 'uint8', shape: [b, t], data: batch.attentionMask },
      targets: { dtype: 'int32', shape: [b, t], data: batch.targets },
    });
    expect(got).toBeInstanceOf(Float32Array);
    let worst = 0;
    let spread = 0;
    for (let i = 0; i < b * t; i++) {
      if (!batch.attentionMask[i]) continue;
      worst = Math.max(worst, Math.abs(got[i]! - expected[i]!));
      spread = Math.max(spread, Math.abs(expected[i]! + Math.log(config.vocabSize)));
    }
    console.info(`cross-engine float32 logprobs max |difference|: ${worst.toExponential(2)}`);
    expect(worst).toBeLessThanOrEqual(1e-5);
    expect(spread).toBeGreaterThan(0.5); // far from uniform: the check can tell
  });

  it('refuses what is not an ONNX-engine state, naming the field, and serves on', async () => {
    const bad = path.join(dir, 'not-a-state.bin');
    writeFileSync(bad, new TextEncoder().encode('{"format": "safetensors"}'));
    await expect(loadSophia(engine, { state: bad })).rejects.toMatchObject({ name: 'TorchEngineRangeError', field: 'args.state', message: expect.stringMatching(/bad magic/) as unknown });
    const { file } = writeCheckState('reward', 1);
    await loadSophia(engine, { state: file, dtype: 'float64' });
    await expect(sophiaGrad(engine, { kind: 'sft' }, baseBatch())).rejects.toMatchObject({ name: 'TorchEngineTypeError', field: 'args.loss.kind' });
    const batch = baseBatch();
    expect((await sophiaGrad(engine, { kind: 'rm' }, { image: batch.image, tokens: batch.tokens, attention_mask: batch.attention_mask, score_targets: batch.score_targets })).finite).toBe(true);
  });
});
