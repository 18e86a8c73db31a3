/**
 * bench/rollout: the PyTorch engine's two rollout backends on the same model — its own decode loop
 * (`rollout: { backend: 'hf' }`) and vLLM in the engine process (`rollout: { backend: 'vllm' }`) — measured in one run:
 * sampling throughput, and where the time of one RL step goes with each.
 *
 * For each `--sizes` entry (bench/torch-engine's random Qwen2.5-VL, `tiny` or `mid`: bench/torch-engine/model.py; on
 * a GPU `--shape qwen2.5-vl-3b|7b`), a model folder and `--prompts` prompts (one user message each: a seeded
 * `--image-size`² RGB image and a question; bench/torch-engine/shared.ts `batchFor`). Then, one engine after the
 * other (hf first; each engine is disposed before the next is made, so they never share the cores):
 *   1. `init` from the folder, timed (the vllm engine's includes vLLM's start: it starts at load);
 *   2. throughput: one untimed `generate` (all prompts, `--n` samples each, temperature 1, top-p 1, up to
 *      `--max-tokens` new tokens), then `--reps` timed calls with the same seeds on both engines; tokens/s =
 *      generatedTokens / (call seconds − its weightSyncSeconds). The samples differ between the backends (each has
 *      its own RNG), so tokens/s are compared, not tokens;
 *   3. `--reps` + 1 RL steps, as activities/rl.ts takes them: rollout (`sampleRollouts`, its time minus the weight
 *      sync), rewards (`grade` of every response against a fixed answer, then group-normalized advantages from
 *      `groupRewards` over rewards made random-ish by seeded noise, since a random model's responses all grade 0),
 *      update (`grpoUpdate` with the rollout logprobs as the reference logprobs), weight sync (the weightSyncSeconds
 *      of the step's rollout: the push of the previous step's update into vLLM). The first step has no update before
 *      it; the table shows the medians of the steps after it.
 * Engine calls are timed in Node around each awaited call, with a pause before each (bench/engine/shared.ts).
 *
 *   npm run bench:rollout                                  # CPU: tiny and mid, 3 repetitions
 *   npm run bench:rollout -- --sizes tiny --reps 1         # the short check (a few minutes on 2 cores)
 *   npm run bench:rollout -- --shape qwen2.5-vl-7b         # on a GPU machine with vllm installed in the torch venv
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { createEngine, type RolloutOptions } from '../engine/factory';
import { Rng } from '../engine/rng';
import type { Engine, GenerateRequest } from '../engine/types';
import { groupRewards } from '../rl/trust';
import { grade } from '../tasks/grading';
import { promptsOf } from '../tasks/prompt';
import type { Example } from '../tasks/types';
import { type GrpoSettings, grpoUpdate } from '../training/grpo';
import { type Rollout, type RolloutTiming, sampleRollouts } from '../training/rollouts';
import { SETTLE_MS } from './engine/shared';
import { machineLine, median, printTable } from './report';
import { ADAMW, type ModelInfo, batchFor, buildModel, count, timed, torchSettings } from './torch-engine/shared';

const { values: args } = parseArgs({
  options: {
    sizes: { type: 'string', default: 'tiny,mid' },
    shape: { type: 'string' },
    reps: { type: 'string', default: '3' },
    prompts: { type: 'string' },
    n: { type: 'string', default: '4' },
    'max-tokens': { type: 'string' },
    'image-size': { type: 'string' },
    'micro-batch': { type: 'string', default: '16' },
    'max-model-len': { type: 'string' },
    'kv-cache-gib': { type: 'string', default: '1' },
    'gpu-memory-utilization': { type: 'string' },
    threads: { type: 'string', default: '1' },
    device: { type: 'string' },
    dtype: { type: 'string' },
  },
});

const GPU = args.shape !== undefined;
const REPS = count('reps', args.reps, 3);
const PROMPTS = count('prompts', args.prompts, GPU ? 64 : 8);
const N = count('n', args.n, 4);
const MAX_TOKENS = count('max-tokens', args['max-tokens'], GPU ? 256 : 32);
const IMAGE = count('image-size', args['image-size'], GPU ? 448 : 112, 28);
const MAX_MODEL_LEN = count('max-model-len', args['max-model-len'], GPU ? 4096 : 512);
const { device: DEVICE, dtype: DTYPE, threads: THREADS } = torchSettings(args, GPU);
/** The fixed answer every response is graded against (a random model's responses fail the format gate: reward 0). */
const ANSWER = '7';
/** The ci preset's RL settings (config/run-config.ts), lr from bench/torch-engine's AdamW. */
const GRPO: GrpoSettings = {
  lr: ADAMW.lr,
  weightDecay: ADAMW.weightDecay,
  maxGradNorm: 4,
  clipEps: 0.2,
  klCoef: 0.04,
  entropyCoef: 1e-3,
  temperature: 1,
  microBatch: count('micro-batch', args['micro-batch'], 16),
};

type Backend = RolloutOptions['backend'];
const BACKENDS: readonly Backend[] = ['hf', 'vllm'];

function rolloutOptions(backend: Backend): RolloutOptions {
  if (backend === 'hf') return { backend };
  const gpuShare = args['gpu-memory-utilization'];
  return {
    backend,
    maxNumSeqs: PROMPTS * N,
    maxModelLen: MAX_MODEL_LEN,
    ...(GPU ? {} : { cpuKvCacheGib: Number(args['kv-cache-gib']) }),
    ...(gpuShare !== undefined ? { gpuMemoryUtilization: Number(gpuShare) } : {}),
  };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, SETTLE_MS));

/** The bench's prompts as examples (tasks/prompt.ts `promptOf` gives back batchFor's prompts), all answered ANSWER. */
function examplesFor(model: ModelInfo): Example[] {
  const { prompts, texts } = batchFor(model, { rows: PROMPTS, image: IMAGE, response: 1 });
  return prompts.map((p, i) => {
    const { image } = p.messages[0]!.content[0] as { image: { width: number; height: number; rgb: Uint8Array } };
    return { id: `train-counting-${i}`, family: 'counting', split: 'train', seed: i, image: { width: image.width, height: image.height, rgb: image.rgb }, question: texts[i]!, answer: ANSWER, answerType: 'numeric', steps: [], facts: {} };
  });
}

/** One RL step's parts, in seconds. */
interface RlStep {
  rollout: number;
  rewards: number;
  update: number;
  sync: number;
  logprobDiffMax: number;
}

/** What one backend gave on one model. */
interface Measured {
  initS: number;
  warmS: number;
  callS: number[];
  tokens: number[];
  steps: RlStep[];
}

/** The rewards part of an RL step: every response graded, then group-normalized advantages (rl/trust.ts, grpo). */
function advantagesOf(examples: readonly Example[], rollouts: readonly Rollout[], step: number): number[] {
  const graded = rollouts.map((r) => grade(examples[r.group]!.answerType, r.text, examples[r.group]!.answer).reward);
  // Random-ish rewards in [0, 1]: the grade (0 for a random model) mixed with seeded noise, so that groups vary.
  const rng = new Rng(step);
  const outcome = graded.map((g) => (g + rng.nextFloat()) / 2);
  const advantages = new Array<number>(rollouts.length).fill(0);
  for (let g = 0; g < examples.length; g++) {
    const members = rollouts.map((r, i) => (r.group === g ? i : -1)).filter((i) => i >= 0);
    const result = groupRewards({ outcome: members.map((i) => outcome[i]!), thinking: [], step: 0, totalSteps: 1, alpha: 0, variant: 'grpo' });
    members.forEach((i, k) => (advantages[i] = result.advantages[k]!));
  }
  return advantages;
}

async function rlStep(engine: Engine, examples: Example[], step: number): Promise<RlStep> {
  const timing: RolloutTiming = { seconds: 0, weightSyncSeconds: 0, generatedTokens: 0 };
  await settle();
  const rollouts = await sampleRollouts(engine, examples, { n: N, temperature: 1, topP: 1, maxTokens: MAX_TOKENS, seed: 1000 + step, promptsPerBatch: examples.length }, { timing });
  await settle();
  // Timed like the engine calls (the work runs before Promise.resolve, inside the timer).
  const rewards = await timed(() => Promise.resolve(advantagesOf(examples, rollouts, step)));
  await settle();
  const update = await timed(() => grpoUpdate(engine, examples, rollouts, rollouts.map((r) => r.logprobs), rewards.value, GRPO));
  if (!update.value.applied) throw new Error(`RL step ${step}: the update was not applied (gradients not finite)`);
  return {
    rollout: timing.seconds - timing.weightSyncSeconds,
    rewards: rewards.ms / 1000,
    update: update.ms / 1000,
    sync: timing.weightSyncSeconds,
    logprobDiffMax: update.value.logprobDiffMax,
  };
}

async function measure(model: ModelInfo, examples: Example[], backend: Backend): Promise<Measured> {
  const engine = createEngine({ kind: 'torch', device: DEVICE, dtype: DTYPE, threads: THREADS, rollout: rolloutOptions(backend) });
  try {
    const init = await timed(() => engine.init({ kind: 'policy', pretrained: model.dir }, 0));
    const request = (seed: number): GenerateRequest => ({ prompts: promptsOf(examples), n: N, temperature: 1, topP: 1, maxTokens: MAX_TOKENS, seed });
    const warm = await timed(() => engine.generate(request(0)));
    const out: Measured = { initS: init.ms / 1000, warmS: warm.ms / 1000, callS: [], tokens: [], steps: [] };
    for (let i = 0; i < REPS; i++) {
      await settle();
      const { ms, value } = await timed(() => engine.generate(request(100 + i)));
      out.callS.push(ms / 1000 - (value.weightSyncSeconds ?? 0));
      out.tokens.push(value.generatedTokens);
    }
    for (let step = 0; step <= REPS; step++) out.steps.push(await rlStep(engine, examples, step));
    const s = (x: number) => x.toFixed(2);
    console.error(
      `[bench] ${model.name} ${backend}: init ${s(out.initS)} s, calls ${out.callS.map(s).join(', ')} s, ` +
        `RL steps (rollout/rewards/update/sync s) ${out.steps.map((t) => [t.rollout, t.rewards, t.update, t.sync].map(s).join('/')).join(', ')}`,
    );
    return out;
  } finally {
    await engine.dispose();
  }
}

async function main(): Promise<void> {
  const which: ({ size: string } | { shape: string })[] = GPU ? [{ shape: args.shape! }] : args.sizes.split(',').map((size) => ({ size }));
  for (const w of which) {
    if ('size' in w && w.size !== 'tiny' && w.size !== 'mid') throw new RangeError(`--sizes: ${JSON.stringify(w.size)} is not a size: use tiny and/or mid (GPU shapes: --shape)`);
    if ('shape' in w && w.shape !== 'qwen2.5-vl-3b' && w.shape !== 'qwen2.5-vl-7b') throw new RangeError(`--shape must be qwen2.5-vl-3b or qwen2.5-vl-7b (got ${JSON.stringify(w.shape)})`);
  }
  const dir = mkdtempSync(path.join(tmpdir(), 'sophia-bench-rollout-'));
  const throughput: string[][] = [];
  const steps: string[][] = [];
  let gpu: string | undefined;
  try {
    for (const w of which) {
      const name = 'size' in w ? w.size : w.shape;
      const model = buildModel(path.join(dir, name), w, DTYPE);
      gpu ??= model.gpu;
      const examples = examplesFor(model);
      const got = {} as Record<Backend, Measured>;
      for (const backend of BACKENDS) got[backend] = await measure(model, examples, backend);
      const label = `${name} (${model.parameters >= 1e9 ? `${(model.parameters / 1e9).toFixed(2)} B` : `${(model.parameters / 1e6).toFixed(2)} M`})`;
      const tps = (m: Measured) => median(m.callS.map((s, i) => m.tokens[i]! / s));
      const ratio = tps(got.vllm) / tps(got.hf);
      const perRep = got.hf.callS.map((_, i) => got.vllm.tokens[i]! / got.vllm.callS[i]! / (got.hf.tokens[i]! / got.hf.callS[i]!));
      const spread = REPS > 1 ? ` (reps ${Math.min(...perRep).toFixed(2)}–${Math.max(...perRep).toFixed(2)})` : '';
      const both = (f: (m: Measured) => string) => [f(got.hf), f(got.vllm)];
      throughput.push(
        [label, 'init (s)', ...both((m) => m.initS.toFixed(2)), '', ''],
        [label, '  vLLM start: init vllm − init hf (s)', '', (got.vllm.initS - got.hf.initS).toFixed(2), '', ''],
        [label, 'first (untimed) generate (s)', ...both((m) => m.warmS.toFixed(2)), '', ''],
        [label, 'generate call (s, median)', ...both((m) => median(m.callS).toFixed(3)), '', ''],
        [label, 'generated tokens per call (median)', ...both((m) => median(m.tokens).toFixed(0)), '', ''],
        [label, 'generated tokens/s (median)', ...both((m) => tps(m).toFixed(0)), `${ratio.toFixed(2)}${spread}`, GPU ? `≥ 5: ${ratio >= 5 ? 'pass' : 'FAIL'}` : '(≥ 5 on a GPU)'],
      );
      for (const backend of BACKENDS) {
        const after = got[backend].steps.slice(1); // the steps with an update before them
        const m = (f: (s: RlStep) => number) => median(after.map(f));
        const total = m((s) => s.rollout + s.rewards + s.update + s.sync);
        steps.push([
          label,
          backend,
          m((s) => s.rollout).toFixed(3),
          m((s) => s.rewards).toFixed(4),
          m((s) => s.update).toFixed(3),
          m((s) => s.sync).toFixed(3),
          total.toFixed(3),
          Math.max(...after.map((s) => s.logprobDiffMax)).toExponential(1),
        ]);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  printTable(['size (params)', 'measure', 'hf', 'vllm', 'vllm / hf', 'target'], throughput);
  console.log('');
  printTable(['size (params)', 'backend', 'rollout s', 'rewards s', 'update s', 'weight sync s', 'total s', 'max |logπ − logπ_old|'], steps);
  console.log(
    `\n${THREADS} thread${THREADS === 1 ? '' : 's'}, ${DTYPE} on ${DEVICE}${gpu ? ` (${gpu})` : ''}; ${PROMPTS} prompts (one ${IMAGE}×${IMAGE} image + a question each) × ${N} samples, ` +
      `temperature 1, top-p 1, up to ${MAX_TOKENS} new tokens; vllm: maxNumSeqs ${PROMPTS * N}, maxModelLen ${MAX_MODEL_LEN}` +
      `${GPU ? '' : `, CPU KV cache ${args['kv-cache-gib']} GiB`}; ${REPS} timed generate call${REPS === 1 ? '' : 's'} per engine after an untimed one ` +
      `(tokens/s: median; ratio of the medians, in brackets the lowest and highest per-call ratio); RL steps: medians of the ${REPS} step${REPS === 1 ? '' : 's'} ` +
      `after the first (weight sync = the push of the previous step's update), GRPO micro-batch ${GRPO.microBatch}, lr ${GRPO.lr}.`,
  );
  console.log(machineLine());
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 2;
});
