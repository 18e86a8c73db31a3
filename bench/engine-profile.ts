/**
 * bench/engine-profile: where the engine's training step spends its time, from onnxruntime's own profiler, on
 * bench/engine's batch — matrix-product kernels (with their FLOP rate), every other kernel by op type, and the
 * time outside onnxruntime's run (feeding, the binding's copies of the outputs, JS). For comparison it times one
 * 2048 × 2048 × 2048 product on the same machine: what onnxruntime's matrix product reaches on a large, easy
 * shape.
 *
 *   npm run bench:engine-profile                              # small preset, 8 steps after 2 warm-up steps
 *   npm run bench:engine-profile -- --presets tiny,small --steps 12
 *   npm run bench:engine-profile -- --nodes 40                 # the 40 slowest non-product kernels, by graph node
 *
 * Profiling adds a little time per kernel, so these steps run slightly slower than bench/engine's.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { type ModelPreset, MODEL_PRESETS, parameterCount, presetConfig } from '../engine/model/config';
import { Graph, OnnxEngine, Session, op } from '../engine/onnx-bench';
import { SETTLE_MS, VOCAB, benchSpec, engineInputs } from './engine/shared';
import { PRODUCT_OPS, type ProfileEvent, type RunProfile, runProfiles } from './engine/profile';
import { machineLine, median, printTable } from './report';

const { values: args } = parseArgs({
  options: {
    presets: { type: 'string', default: 'small' },
    steps: { type: 'string', default: '8' },
    threads: { type: 'string', default: '2' },
    nodes: { type: 'string', default: '15' },
  },
});
const WARMUP = 2;

/** A whole-number option at least `min`. */
function wholeNumber(name: string, value: string, min = 1): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be a whole number ≥ ${min} (got ${value})`);
  return n;
}

/** The runs recorded in the one profile file `dir` holds (its only session's). */
function readRuns(dir: string): RunProfile[] {
  const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
  if (files.length !== 1) throw new Error(`expected one profile in ${dir}, found ${files.length}: ${files.join(', ')}`);
  return runProfiles(JSON.parse(readFileSync(path.join(dir, files[0]!), 'utf8')) as ProfileEvent[]);
}

async function profiled<T>(body: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(path.join(tmpdir(), 'sophia-profile-'));
  try {
    return await body(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** GFLOP/s of one 2048³ product (median of 5 runs after 2), on `threads` threads. */
async function referenceProduct(threads: number): Promise<number> {
  const n = 2048;
  const g = new Graph('reference_product');
  g.output(op.matmul(g, g.input('a', 'float32', [n, n]), g.input('b', 'float32', [n, n])), 'c');
  return profiled(async (dir) => {
    const session = await Session.create(g.toModel(), { threads, profilePrefix: path.join(dir, 'reference') });
    const feed = () => ({ dtype: 'float32' as const, shape: [n, n], data: Float32Array.from({ length: n * n }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5) });
    const feeds = { a: feed(), b: feed() };
    for (let i = 0; i < 7; i++) await session.run(feeds);
    await session.dispose();
    return median(readRuns(dir).slice(2).map((r) => r.productFlop / r.productMs / 1e6));
  });
}

interface StepProfile {
  wallMs: number[];
  runs: RunProfile[];
}

async function profileSteps(preset: ModelPreset, steps: number, threads: number): Promise<StepProfile> {
  return profiled(async (dir) => {
    const config = presetConfig(preset, 'policy', VOCAB);
    const engine = new OnnxEngine({ threads, profileDir: dir });
    await engine.init(config, 1);
    const { batch, adamw } = engineInputs(benchSpec(config));
    const wallMs: number[] = [];
    for (let i = 0; i < WARMUP + steps; i++) {
      await sleep(SETTLE_MS);
      const t0 = performance.now();
      await engine.trainStep(batch, { kind: 'sft' }, adamw);
      wallMs.push(performance.now() - t0);
    }
    await engine.dispose();
    const runs = readRuns(dir);
    if (runs.length !== WARMUP + steps) throw new Error(`the profile holds ${runs.length} runs, expected one per step (${WARMUP + steps})`);
    return { wallMs: wallMs.slice(WARMUP), runs: runs.slice(WARMUP) };
  });
}

const ms = (x: number) => x.toFixed(1);
const pct = (x: number, whole: number) => `${Math.round((100 * x) / whole)} %`;

function report(preset: ModelPreset, threads: number, p: StepProfile, referenceGflops: number, nodes: number): void {
  // The top table is one step's — the step of median wall time — so that its rows add up; the tables below are
  // medians over all steps.
  const order = p.wallMs.map((_, i) => i).sort((a, b) => p.wallMs[a]! - p.wallMs[b]!);
  const mid = order[Math.floor((order.length - 1) / 2)]!;
  const wall = p.wallMs[mid]!;
  const step = p.runs[mid]!;
  const row = (part: string, t: number) => [part, ms(t), pct(t, wall)];
  const params = (parameterCount(presetConfig(preset, 'policy', VOCAB)) / 1e6).toFixed(2);
  console.log(`\n### ${preset} (${params} M parameters): train step, ${threads} threads\n`);
  console.log(`The step of median wall time of ${p.runs.length} (all: ${ms(Math.min(...p.wallMs))}–${ms(Math.max(...p.wallMs))} ms):\n`);
  printTable(
    ['part of the step', 'ms', 'share'],
    [
      row('whole step (`trainStep`, timed in JS)', wall),
      row('onnxruntime run (`model_run`)', step.runMs),
      row(`· matrix-product kernels (${(step.productFlop / step.productMs / 1e6).toFixed(0)} GFLOP/s)`, step.productMs),
      row('· every other kernel', step.kernelMs - step.productMs),
      row('· between kernels', step.runMs - step.kernelMs),
      row('outside the run: feeds, the binding copying outputs out, JS', wall - step.runMs),
    ],
  );
  const ops = new Set(p.runs.flatMap((r) => [...r.byOp.keys()]));
  const byOp = [...ops]
    .map((o) => ({ o, t: median(p.runs.map((r) => r.byOp.get(o)?.ms ?? 0)), n: p.runs[0]!.byOp.get(o)?.count ?? 0 }))
    .sort((a, b) => b.t - a.t)
    .slice(0, 12);
  console.log('\nKernels by op type (top 12; medians over the steps):\n');
  printTable(['op', 'ms per step', 'kernels per step'], byOp.map(({ o, t, n }) => [o, ms(t), String(n)]));
  const shapes = new Set(p.runs.flatMap((r) => [...r.products.keys()]));
  const byShape = [...shapes]
    .map((s) => {
      const first = p.runs[0]!.products.get(s);
      const t = median(p.runs.map((r) => r.products.get(s)?.ms ?? 0));
      return { s, t, n: first?.count ?? 0, rate: (first?.flop ?? 0) / t / 1e6 };
    })
    .sort((a, b) => b.t - a.t)
    .slice(0, 10);
  console.log('\nMatrix products by input shapes (top 10; medians over the steps):\n');
  printTable(['product', 'ms per step', 'kernels per step', 'GFLOP/s'], byShape.map(({ s, t, n, rate }) => [s, ms(t), String(n), rate.toFixed(0)]));
  // The products are listed by shape above; what is left, node by node, is where fusing or folding could save.
  const others = [...p.runs[0]!.nodes.entries()]
    .filter(([, n]) => !PRODUCT_OPS.has(n.op))
    .map(([name, n]) => ({ name, n, t: median(p.runs.map((r) => r.nodes.get(name)?.ms ?? 0)) }))
    .sort((a, b) => b.t - a.t)
    .slice(0, nodes);
  if (others.length > 0) {
    console.log(`\nOther kernels by graph node (top ${others.length}; medians over the steps):\n`);
    printTable(['node', 'op', 'ms per step', 'inputs → output'], others.map(({ name, n, t }) => [name, n.op, t.toFixed(2), n.shapes]));
  }
  console.log(`\nFor comparison, one 2048 × 2048 × 2048 product on this machine and thread count: ${referenceGflops.toFixed(0)} GFLOP/s.`);
  console.log(machineLine());
}

async function main(): Promise<void> {
  const presets = args.presets.split(',').map((s) => s.trim());
  for (const p of presets) {
    if (!(p in MODEL_PRESETS)) throw new Error(`--presets: unknown preset ${p} (known: ${Object.keys(MODEL_PRESETS).join(', ')})`);
  }
  const steps = wholeNumber('steps', args.steps);
  const threads = wholeNumber('threads', args.threads);
  const nodes = wholeNumber('nodes', args.nodes, 0); // 0 leaves the table out
  const reference = await referenceProduct(threads);
  for (const preset of presets as ModelPreset[]) report(preset, threads, await profileSteps(preset, steps, threads), reference, nodes);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
