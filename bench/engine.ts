/**
 * bench/engine: Sophia's ONNX engine against the same architecture in PyTorch (CPU), same weights, same
 * batch, same thread count, measured in one run.
 *
 * For each preset (tiny, small): a fresh engine state (seed 1) and one SFT batch (B = 32, T = 48: 16 prompt +
 * 32 response tokens, plus the image tokens) are written to a temp folder; then a Sophia worker process and a
 * PyTorch worker process (bench/engine/torch_worker.py) each load them and measure
 *   - train step: forward + backward + AdamW (clip 4, wd 0.01), `--steps` steps, median after the first 2;
 *   - sampling: 8 prompts × 8 samples, up to 48 new tokens (rows end at the stop token), temperature 1, KV
 *     cache; tokens per second, median of 5 requests after 2 untimed warm-up ones (same seeds both sides);
 *   - peak memory: the worker process's max RSS.
 * Workers alternate (Sophia, PyTorch, Sophia, …) `--reps` times; the table shows medians over repetitions
 * and the ratios (targets: train step ≤ 1.0× PyTorch's time, sampling ≥ 1.0× PyTorch's tokens/s). The first
 * training loss of both sides is printed too: equal losses show both run the same model on the same data.
 *
 *   npm run bench:engine                          # installs PyTorch into .tools/bench-venv on first use (~5 GB)
 *   npm run bench:engine -- --presets tiny --reps 5
 *   BENCH_PYTHON=/path/to/python npm run bench:engine   # a Python that already has torch
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { packSft } from '../engine/batch';
import { type ModelPreset, parameterCount, presetConfig } from '../engine/model/config';
import { OnnxEngine } from '../engine/onnx-engine';
import { Rng } from '../engine/rng';
import type { BenchBatch, WorkerResult } from './engine/shared';

const ROOT = path.resolve(__dirname, '..');
const { values: args } = parseArgs({
  options: {
    presets: { type: 'string', default: 'tiny,small' },
    reps: { type: 'string', default: '3' },
    steps: { type: 'string', default: '12' },
    threads: { type: 'string', default: String(Math.min(2, cpus().length)) },
  },
});
const VOCAB = 64;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function python(): string {
  if (process.env.BENCH_PYTHON) return process.env.BENCH_PYTHON;
  const venv = path.join(ROOT, '.tools', 'bench-venv');
  const py = path.join(venv, 'bin', 'python');
  const requirements = path.join(__dirname, 'engine', 'requirements.txt');
  const stamp = path.join(venv, '.requirements');
  if (!existsSync(py) || !existsSync(stamp) || readFileSync(stamp, 'utf8') !== readFileSync(requirements, 'utf8')) {
    console.error(`[bench] installing the PyTorch baseline into ${venv} (pinned in bench/engine/requirements.txt; takes a few minutes)`);
    execFileSync('python3', ['-m', 'venv', venv], { stdio: 'inherit' });
    execFileSync(path.join(venv, 'bin', 'pip'), ['install', '--quiet', '--disable-pip-version-check', '-r', requirements], { stdio: 'inherit' });
    writeFileSync(stamp, readFileSync(requirements, 'utf8'));
  }
  return py;
}

async function prepare(preset: ModelPreset, dir: string): Promise<{ state: string; batch: string; params: number }> {
  const config = presetConfig(preset, 'policy', VOCAB);
  const engine = new OnnxEngine();
  await engine.init(config, 1);
  const state = path.join(dir, `${preset}.state`);
  writeFileSync(state, await engine.saveState());
  await engine.dispose();
  const rng = new Rng(7);
  const pixels = config.image.channels * config.image.size ** 2;
  const rows = Array.from({ length: 32 }, () => ({
    prompt: Array.from({ length: 16 }, () => rng.nextU32() % VOCAB),
    response: Array.from({ length: 33 }, () => rng.nextU32() % VOCAB),
  }));
  const images = Float32Array.from({ length: 32 * pixels }, () => rng.nextFloat());
  const sft = packSft(rows, images, pixels);
  const positions = Array.from({ length: sft.batchSize * sft.seqLen }, (_, i) => i % sft.seqLen);
  const spec: BenchBatch = {
    batchSize: sft.batchSize,
    seqLen: sft.seqLen,
    images: Array.from(images),
    tokens: Array.from(sft.tokens),
    positions,
    attentionMask: Array.from(sft.attentionMask),
    targets: Array.from(sft.targets),
    lossMask: Array.from(sft.lossMask),
    steps: Number(args.steps),
    adamw: { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 4 },
    sample: {
      images: Array.from({ length: 8 * pixels }, () => rng.nextFloat()),
      prompts: Array.from({ length: 8 }, () => Array.from({ length: 16 }, () => rng.nextU32() % (VOCAB - 1))),
      n: 8,
      temperature: 1,
      maxTokens: 48,
      stopToken: VOCAB - 1,
      warmupCalls: 2,
      timedCalls: 5,
    },
  };
  const batch = path.join(dir, `${preset}.batch.json`);
  writeFileSync(batch, JSON.stringify(spec));
  return { state, batch, params: parameterCount(config) };
}

function runWorker(kind: 'sophia' | 'pytorch', state: string, batch: string, out: string): WorkerResult {
  const env = { ...process.env, BENCH_THREADS: args.threads, OMP_NUM_THREADS: args.threads, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' };
  if (kind === 'sophia') {
    execFileSync(process.execPath, [require.resolve('tsx/cli'), path.join(__dirname, 'engine', 'sophia-worker.ts'), state, batch, out], { stdio: 'inherit', env });
  } else {
    execFileSync(python(), [path.join(__dirname, 'engine', 'torch_worker.py'), state, batch, out], { stdio: 'inherit', env });
  }
  return JSON.parse(readFileSync(out, 'utf8')) as WorkerResult;
}

interface Summary {
  preset: string;
  params: number;
  sophia: { step: number; tps: number; rss: number; loss: number };
  pytorch: { step: number; tps: number; rss: number; loss: number };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'sophia-bench-engine-'));
  const summaries: Summary[] = [];
  try {
    python(); // install before timing anything
    for (const preset of args.presets.split(',') as ModelPreset[]) {
      const { state, batch, params } = await prepare(preset, dir);
      const runs: Record<'sophia' | 'pytorch', WorkerResult[]> = { sophia: [], pytorch: [] };
      for (let rep = 0; rep < Number(args.reps); rep++) {
        for (const kind of ['sophia', 'pytorch'] as const) {
          const result = runWorker(kind, state, batch, path.join(dir, `${preset}.${kind}.${rep}.json`));
          runs[kind].push(result);
          console.error(`[bench] ${preset} ${kind} rep ${rep + 1}: step ${median(result.trainStepMs.slice(2)).toFixed(1)} ms, ${result.sampleTokensPerSec.toFixed(0)} tok/s`);
        }
      }
      const sum = (rs: WorkerResult[]) => ({
        step: median(rs.map((r) => median(r.trainStepMs.slice(2)))),
        tps: median(rs.map((r) => r.sampleTokensPerSec)),
        rss: median(rs.map((r) => r.peakRssMB)),
        loss: rs[0]!.firstLoss,
      });
      summaries.push({ preset, params, sophia: sum(runs.sophia), pytorch: sum(runs.pytorch) });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const rows: string[][] = [];
  let ok = true;
  for (const s of summaries) {
    const stepRatio = s.sophia.step / s.pytorch.step;
    const tpsRatio = s.sophia.tps / s.pytorch.tps;
    ok &&= stepRatio <= 1 && tpsRatio >= 1;
    const p = `${s.preset} (${(s.params / 1e6).toFixed(2)} M)`;
    rows.push([p, 'train step (ms, median)', s.sophia.step.toFixed(1), s.pytorch.step.toFixed(1), stepRatio.toFixed(2), '≤ 1.00', stepRatio <= 1 ? 'pass' : 'FAIL']);
    rows.push([p, 'sampling (tokens/s, KV cache)', s.sophia.tps.toFixed(0), s.pytorch.tps.toFixed(0), tpsRatio.toFixed(2), '≥ 1.00', tpsRatio >= 1 ? 'pass' : 'FAIL']);
    rows.push([p, 'peak RSS (MB, whole process)', s.sophia.rss.toFixed(0), s.pytorch.rss.toFixed(0), (s.sophia.rss / s.pytorch.rss).toFixed(2), '', '']);
    rows.push([p, 'first-step loss (same model?)', s.sophia.loss.toFixed(5), s.pytorch.loss.toFixed(5), '', '', Math.abs(s.sophia.loss - s.pytorch.loss) < 1e-3 ? 'same' : 'DIFFERENT']);
  }
  const header = ['preset', 'measure', 'Sophia (onnxruntime)', 'PyTorch', 'ratio', 'target', ''];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  console.log(line(header));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const r of rows) console.log(line(r));
  console.log(`\n${args.threads} threads each; batch 32 × 48 tokens + image tokens; sampling 8 prompts × 8 samples × 48 tokens; medians of ${args.reps} alternating repetitions.`);
  process.exitCode = ok ? 0 : 1;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 2;
});
