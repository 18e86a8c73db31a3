/**
 * bench/torch-engine: Sophia's PyTorch engine (`createEngine({ kind: 'torch' })`, a TorchEngine over its engine
 * process) against plain PyTorch/transformers on the same model, batch, settings and threads, measured in one run.
 *
 * CPU mode (default): for each `--sizes` entry (tiny: sophia_torch.tiny_qwen's model; mid: its tokenizer and
 * processor with text hidden 512 × 4 layers and vision hidden 256 × 4 blocks; bench/torch-engine/model.py), a random
 * Qwen2.5-VL is written to a temp folder with one batch: `--rows` prompts (one user message each: a seeded
 * `--image-size`² RGB image and a question) and one response per prompt (`--response-tokens` random byte tokens +
 * the end token). Each repetition starts a Sophia engine (init from the folder) and a plain-transformers process
 * (bench/torch-engine/baseline.py), and alternates them command by command (the order flips every pair):
 *   - sampling: greedy generation for every prompt, up to `--max-tokens` new tokens, ending at an eos id, the
 *     vision tokens suppressed (Sophia: `generate`; baseline: processor + `model.generate`); 2 untimed calls each,
 *     then `--samples` timed pairs, before any training so that both hold the same weights and must give the same
 *     tokens (checked);
 *   - train step: SFT forward + backward + clip + AdamW on the batch (Sophia: `trainStepResponses`; baseline: the
 *     processor, a labels forward, backward, clip_grad_norm_, AdamW); 2 untimed steps each, then `--steps` timed
 *     pairs. Both train their own copy from the same weights in lockstep: step k's loss is printed from both.
 * Sophia is timed here, around each awaited call (so its time includes TS packing, framing, the pipe and the
 * process's prompt rendering); the baseline inside its process, from the raw images and texts (the processor's
 * time is part of it, as rendering is part of Sophia's). The table's ratios are medians of the per-pair ratios
 * Sophia / baseline over all repetitions (in brackets the lowest and highest repetition median). Target ≤ 1.05:
 * the engine's protocol must cost almost nothing.
 *
 * GPU mode (`--shape qwen2.5-vl-3b|qwen2.5-vl-7b`, device cuda, bfloat16 by default): a random-init model of that
 * published shape (config only, no download), Sophia's engine only: update tokens/s (every real token of the rows
 * per step), MFU (bench/torch-engine/mfu.ts: 6 · matrix parameters · tokens, vision over patches, per second over
 * the GPU's dense bf16 peak from `--peak-tflops` or its data sheet), and the checkpoint stall: the time
 * `saveState()` takes between two steps (training waits for it).
 *
 *   npm run bench:torch-engine                                   # tiny and mid, 3 repetitions
 *   npm run bench:torch-engine -- --sizes mid --reps 5
 *   npm run bench:torch-engine -- --shape qwen2.5-vl-7b --rows 8 --response-tokens 512   # on a GPU machine
 */
import { type ChildProcessByStdio, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import { createEngine } from '../engine/factory';
import { stateSize } from '../engine/state-files';
import { torchVenvPython } from '../engine/testing/tiny-qwen';
import type { ChatPrompt, Engine, ResponseBatch } from '../engine/types';
import { SETTLE_MS } from './engine/shared';
import { machineLine, median, printTable } from './report';
import { mfu, peakTflops, qwenImagePatches, trainStepFlops } from './torch-engine/mfu';
import { ADAMW, type ModelInfo, batchFor, batchShape, buildModel, count, timed, torchSettings } from './torch-engine/shared';

const { values: args } = parseArgs({
  options: {
    sizes: { type: 'string', default: 'tiny,mid' },
    reps: { type: 'string', default: '3' },
    steps: { type: 'string' },
    samples: { type: 'string', default: '5' },
    threads: { type: 'string' },
    rows: { type: 'string' },
    'image-size': { type: 'string' },
    'response-tokens': { type: 'string' },
    'max-tokens': { type: 'string', default: '32' },
    shape: { type: 'string' },
    device: { type: 'string' },
    dtype: { type: 'string' },
    'peak-tflops': { type: 'string' },
    'gradient-checkpointing': { type: 'boolean', default: false },
  },
});

const GPU = args.shape !== undefined;
const BATCH = batchShape(args, GPU);
const { rows: ROWS, image: IMAGE, response: RESPONSE } = BATCH;
const STEPS = count('steps', args.steps, GPU ? 5 : 10);
const { device: DEVICE, dtype: DTYPE, threads: THREADS } = torchSettings(args, GPU);

function sophiaEngine(): Engine {
  return createEngine({ kind: 'torch', device: DEVICE, dtype: DTYPE, threads: THREADS, gradientCheckpointing: args['gradient-checkpointing'] });
}

const settle = () => new Promise((resolve) => setTimeout(resolve, SETTLE_MS));

// ---- CPU mode: Sophia against plain transformers ------------------------------------------------------------

type TrainReply = { ms: number; inputs_ms: number; loss: number; tokens: number };
type SampleReply = { ms: number; tokens: number; ids: number[][] };

/** The plain-transformers process (bench/torch-engine/baseline.py), one JSON command and reply at a time. */
class Baseline {
  private readonly lines: AsyncIterator<string, undefined>;

  private constructor(private readonly child: ChildProcessByStdio<Writable, Readable, null>) {
    this.lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]() as AsyncIterator<string, undefined>;
  }

  static async start(spec: string): Promise<Baseline> {
    const child = spawn(torchVenvPython(), [path.join(__dirname, 'torch-engine', 'baseline.py'), spec], { stdio: ['pipe', 'pipe', 'inherit'] });
    const baseline = new Baseline(child);
    await baseline.next(); // {"ready": true}
    return baseline;
  }

  private async next<R>(): Promise<R> {
    const { value, done } = await this.lines.next();
    if (done) throw new Error('bench: the baseline process exited before answering (its stderr is above)');
    return JSON.parse(value) as R;
  }

  async ask<R>(cmd: 'train' | 'sample'): Promise<R> {
    this.child.stdin.write(`${JSON.stringify({ cmd })}\n`);
    return this.next<R>();
  }

  async end(): Promise<void> {
    this.child.stdin.write(`${JSON.stringify({ cmd: 'end' })}\n`);
    await this.next();
    this.child.stdin.end();
  }
}

type Side = 'sophia' | 'baseline';

/** One repetition, in pairs: index i of each side's list was taken next to the other's. */
interface Rep {
  stepMs: Record<Side, number[]>;
  sampleMs: Record<Side, number[]>;
  inputsMs: number[];
  losses: Record<Side, number[]>;
  trainTokens: Record<Side, number>;
  sampled: Record<Side, number[][]>;
}

async function repetition(model: ModelInfo, spec: string, batch: ResponseBatch, prompts: ChatPrompt[]): Promise<Rep> {
  const engine = sophiaEngine();
  await engine.init({ kind: 'policy', pretrained: model.dir }, 0);
  const baseline = await Baseline.start(spec);
  const rep: Rep = {
    stepMs: { sophia: [], baseline: [] },
    sampleMs: { sophia: [], baseline: [] },
    inputsMs: [],
    losses: { sophia: [], baseline: [] },
    trainTokens: { sophia: 0, baseline: 0 },
    sampled: { sophia: [], baseline: [] },
  };
  const promptTokens = await engine.promptLengths(prompts);
  rep.trainTokens.sophia = batch.rows.reduce((n, r) => n + promptTokens[r.prompt]! + r.response.length, 0);
  const maxTokens = Number(args['max-tokens']);
  const side: Record<Side, { train: () => Promise<{ ms: number; loss: number; inputsMs?: number; tokens?: number }>; sample: () => Promise<{ ms: number; ids: number[][] }> }> = {
    sophia: {
      train: async () => {
        const { ms, value } = await timed(() => engine.trainStepResponses(batch, { kind: 'sft' }, ADAMW));
        return { ms, loss: value.loss };
      },
      sample: async () => {
        const { ms, value } = await timed(() => engine.generate({ prompts, n: 1, temperature: 0, topP: 1, maxTokens, seed: 0 }));
        return { ms, ids: value.sequences.map((s) => Array.from(s.tokens)) };
      },
    },
    baseline: {
      train: async () => {
        const r = await baseline.ask<TrainReply>('train');
        return { ms: r.ms, loss: r.loss, inputsMs: r.inputs_ms, tokens: r.tokens };
      },
      sample: async () => baseline.ask<SampleReply>('sample'),
    },
  };
  // `total` pairs, the first `warm` untimed; pair i runs Sophia first when i is even, the baseline first when odd.
  const pairs = async (total: number, warm: number, run: (s: Side, i: number, timedPair: boolean) => Promise<void>) => {
    for (let i = 0; i < total; i++) {
      for (const s of (i % 2 === 0 ? ['sophia', 'baseline'] : ['baseline', 'sophia']) as Side[]) {
        await settle();
        await run(s, i, i >= warm);
      }
    }
  };
  try {
    await pairs(2 + Number(args.samples), 2, async (s, i, t) => {
      const r = await side[s].sample();
      if (i === 0) rep.sampled[s] = r.ids;
      if (t) rep.sampleMs[s].push(r.ms);
    });
    await pairs(2 + STEPS, 2, async (s, _i, t) => {
      const r = await side[s].train();
      rep.losses[s].push(r.loss);
      if (r.tokens !== undefined) rep.trainTokens.baseline = r.tokens;
      if (t) rep.stepMs[s].push(r.ms);
      if (t && r.inputsMs !== undefined) rep.inputsMs.push(r.inputsMs);
    });
  } finally {
    await baseline.end().catch(() => undefined);
    await engine.dispose();
  }
  return rep;
}

/** Medians of each side and of the per-pair ratios (Sophia / baseline) over every pair of every repetition. */
function paired(reps: Rep[], pick: (r: Rep) => Record<Side, number[]>) {
  const ratios = reps.map((r) => pick(r).sophia.map((x, i) => x / pick(r).baseline[i]!));
  const perRep = ratios.map(median);
  return {
    sophia: median(reps.flatMap((r) => pick(r).sophia)),
    baseline: median(reps.flatMap((r) => pick(r).baseline)),
    ratio: median(ratios.flat()),
    lo: Math.min(...perRep),
    hi: Math.max(...perRep),
  };
}

async function cpuMain(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'sophia-bench-torch-engine-'));
  const rows: string[][] = [];
  let ok = true;
  try {
    for (const size of args.sizes.split(',')) {
      if (size !== 'tiny' && size !== 'mid') throw new RangeError(`--sizes: ${JSON.stringify(size)} is not a size: use tiny and/or mid (GPU shapes: --shape)`);
      const model = buildModel(path.join(dir, size), { size }, DTYPE);
      const { batch, prompts, texts, responses } = batchFor(model, BATCH);
      // The baseline's copy of the batch: the same texts, RGB bytes and response ids.
      const images = Buffer.concat(prompts.map((p) => (p.messages[0]!.content[0] as { image: { rgb: Uint8Array } }).image.rgb));
      writeFileSync(path.join(dir, `${size}.rgb`), images);
      const spec = path.join(dir, `${size}.json`);
      writeFileSync(
        spec,
        JSON.stringify({
          model_dir: model.dir,
          threads: THREADS,
          device: DEVICE,
          dtype: DTYPE,
          images: path.join(dir, `${size}.rgb`),
          prompts: texts.map((text, i) => ({ text, width: IMAGE, height: IMAGE, offset: i * IMAGE * IMAGE * 3 })),
          rows: responses.map((response, i) => ({ prompt: i, response })),
          adamw: { lr: ADAMW.lr, beta1: ADAMW.beta1, beta2: ADAMW.beta2, eps: ADAMW.eps, weight_decay: ADAMW.weightDecay, max_grad_norm: ADAMW.maxGradNorm },
          max_new_tokens: Number(args['max-tokens']),
        }),
      );
      const reps: Rep[] = [];
      for (let i = 0; i < Number(args.reps); i++) {
        const rep = await repetition(model, spec, batch, prompts);
        reps.push(rep);
        const m = (xs: number[]) => median(xs).toFixed(1);
        console.error(`[bench] ${size} rep ${i + 1}: train ${m(rep.stepMs.sophia)} / ${m(rep.stepMs.baseline)} ms, sample ${m(rep.sampleMs.sophia)} / ${m(rep.sampleMs.baseline)} ms (Sophia / transformers)`);
      }
      const step = paired(reps, (r) => r.stepMs);
      const sample = paired(reps, (r) => r.sampleMs);
      const first = reps[0]!;
      const tokens = first.trainTokens;
      const sampledTokens = { sophia: first.sampled.sophia.flat().length, baseline: first.sampled.baseline.flat().length };
      const differing = first.sampled.sophia.filter((ids, i) => JSON.stringify(ids) !== JSON.stringify(first.sampled.baseline[i])).length;
      const lossSame = (k: number) => Math.abs(first.losses.sophia[k]! - first.losses.baseline[k]!) <= 1e-4 * Math.abs(first.losses.baseline[k]!);
      const last = first.losses.sophia.length - 1;
      ok &&= step.ratio <= 1.05 && sample.ratio <= 1.05 && lossSame(0) && differing === 0 && tokens.sophia === tokens.baseline;
      const spread = (x: { lo: number; hi: number }) => (reps.length > 1 ? ` (reps ${x.lo.toFixed(2)}–${x.hi.toFixed(2)})` : '');
      const p = `${size} (${(model.parameters / 1e6).toFixed(2)} M)`;
      rows.push(
        [p, 'train step (ms, median)', step.sophia.toFixed(1), step.baseline.toFixed(1), `${step.ratio.toFixed(3)}${spread(step)}`, '≤ 1.05', step.ratio <= 1.05 ? 'pass' : 'FAIL'],
        [p, '  of which inputs (processor) (ms)', '', median(reps.flatMap((r) => r.inputsMs)).toFixed(1), '', '', ''],
        [p, 'train tokens/s', ((tokens.sophia / step.sophia) * 1000).toFixed(0), ((tokens.baseline / step.baseline) * 1000).toFixed(0), '', '', ''],
        [p, 'tokens per step (same batch?)', String(tokens.sophia), String(tokens.baseline), '', '', tokens.sophia === tokens.baseline ? 'same' : 'DIFFERENT'],
        [p, 'loss, step 1 (same model?)', first.losses.sophia[0]!.toFixed(6), first.losses.baseline[0]!.toFixed(6), '', '', lossSame(0) ? 'same' : 'DIFFERENT'],
        [p, `loss, step ${last + 1} (same update?)`, first.losses.sophia[last]!.toFixed(6), first.losses.baseline[last]!.toFixed(6), '', '', lossSame(last) ? 'same' : 'differs'],
        [p, 'sampling call (ms, median)', sample.sophia.toFixed(1), sample.baseline.toFixed(1), `${sample.ratio.toFixed(3)}${spread(sample)}`, '≤ 1.05', sample.ratio <= 1.05 ? 'pass' : 'FAIL'],
        [p, 'sampled tokens/s', ((sampledTokens.sophia / sample.sophia) * 1000).toFixed(0), ((sampledTokens.baseline / sample.baseline) * 1000).toFixed(0), '', '', ''],
        [p, 'sampled tokens (same tokens?)', String(sampledTokens.sophia), String(sampledTokens.baseline), '', '', differing === 0 ? 'same' : `${differing} of ${ROWS} rows differ`],
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  printTable(['size (params)', 'measure', 'Sophia (TorchEngine)', 'transformers', 'ratio (median of pairs)', 'target', ''], rows);
  console.log(
    `\n${THREADS} threads each, ${DTYPE} on ${DEVICE}; batch ${ROWS} prompts (one ${IMAGE}×${IMAGE} image + a question each) × 1 response of ${RESPONSE} tokens; ` +
      `AdamW lr ${ADAMW.lr}, clip ${ADAMW.maxGradNorm}, decay ${ADAMW.weightDecay}; sampling greedy, ${ROWS} prompts, up to ${args['max-tokens']} new tokens; ` +
      `${args.reps} repetitions × (${args.samples} sampling pairs, then ${STEPS} train-step pairs), 2 untimed of each first; ` +
      'ratio = median of the per-pair ratios Sophia / transformers (in brackets: lowest and highest repetition median).',
  );
  console.log(machineLine());
  process.exitCode = ok ? 0 : 1;
}

// ---- GPU mode: update tokens/s, MFU, checkpoint stall --------------------------------------------------------

async function gpuMain(shape: string): Promise<void> {
  if (shape !== 'qwen2.5-vl-3b' && shape !== 'qwen2.5-vl-7b') throw new RangeError(`--shape must be qwen2.5-vl-3b or qwen2.5-vl-7b (got ${JSON.stringify(shape)})`);
  const { patches } = qwenImagePatches(IMAGE, IMAGE);
  const dir = mkdtempSync(path.join(tmpdir(), 'sophia-bench-torch-engine-'));
  let sophia: Engine | undefined;
  try {
    const model = buildModel(path.join(dir, shape), { shape }, DTYPE);
    const peak = peakTflops(model.gpu, args['peak-tflops']);
    const { batch, prompts } = batchFor(model, BATCH);
    sophia = sophiaEngine();
    const load = await timed(() => sophia!.init({ kind: 'policy', pretrained: model.dir }, 0));
    const promptTokens = await sophia.promptLengths(prompts);
    const tokens = batch.rows.reduce((n, r) => n + promptTokens[r.prompt]! + r.response.length, 0);
    const flops = trainStepFlops({ textMatrixParameters: model.text_matrix_parameters, visionParameters: model.vision_parameters }, tokens, patches * ROWS);
    const step = () => timed(() => sophia!.trainStepResponses(batch, { kind: 'sft' }, ADAMW));
    for (let i = 0; i < 2; i++) await step();
    const stepMs: number[] = [];
    for (let i = 0; i < STEPS; i++) stepMs.push((await step()).ms);
    const ms = median(stepMs);
    let stall: string;
    let stateLine = '';
    try {
      const save = await timed(() => sophia!.saveState({ dir: path.join(dir, 'state') }));
      const bytes = stateSize(save.value);
      stall = `${(save.ms / 1000).toFixed(1)} s`;
      stateLine = `${(bytes / 1e9).toFixed(1)} GB in ${save.value.length} files, ${(bytes / 1e9 / (save.ms / 1000)).toFixed(2)} GB/s`;
    } catch (err) {
      stall = `failed: ${(err as Error).message.slice(0, 160)}`;
    }
    const after = await step();
    const rows = [
      ['model', `${shape} shape, random init, ${(model.parameters / 1e9).toFixed(2)} B parameters, ${model.dtype}${args['gradient-checkpointing'] ? ', gradient checkpointing' : ''}`],
      ['batch', `${ROWS} rows × (${IMAGE}×${IMAGE} image + question + ${RESPONSE} response tokens) = ${tokens} tokens, ${patches * ROWS} image patches`],
      ['load (init)', `${(load.ms / 1000).toFixed(1)} s`],
      ['train step (median of ' + STEPS + ')', `${ms.toFixed(0)} ms (all: ${stepMs.map((x) => x.toFixed(0)).join(', ')})`],
      ['update tokens/s', ((tokens / ms) * 1000).toFixed(0)],
      ['model FLOPs per step', `${(flops / 1e12).toPrecision(4)} TFLOP`],
      ['MFU', `${(100 * mfu(flops, ms / 1000, peak.tflops)).toFixed(1)} % of ${peak.tflops} TFLOP/s (${peak.source})`],
      ['checkpoint stall (saveState)', stall],
      ['state', stateLine],
      ['train step after the save', `${after.ms.toFixed(0)} ms, loss ${after.value.loss.toFixed(4)}`],
    ];
    printTable(['measure', 'Sophia (TorchEngine)'], rows);
    console.log(`\nGPU: ${model.gpu ?? 'none seen by torch'}`);
    console.log(machineLine());
  } finally {
    await sophia?.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
}

(GPU ? gpuMain(args.shape!) : cpuMain()).catch((err: unknown) => {
  console.error(err);
  process.exitCode = 2;
});
