/**
 * bench/engine: Sophia's ONNX engine against the same architecture in PyTorch (CPU), same weights, same
 * batch, same thread count, measured in one run.
 *
 * For each preset (tiny, small): a fresh engine state (seed 1) and one SFT batch (B = 32, T = 48: 16 prompt +
 * 32 response tokens, plus the image tokens) are written to a temp folder. Each repetition starts a Sophia
 * worker process and a PyTorch worker process (bench/engine/torch_worker.py); both load them and then take
 * commands one at a time, so their measurements interleave and each Sophia measurement has a PyTorch partner
 * taken right next to it (the order flips every pair). The machine's speed drifts by tens of percent over
 * minutes; the ratio within a pair does not, so the table's ratios are medians of the per-pair ratios.
 *   - train step: forward + backward + AdamW (clip 4, wd 0.01); 2 untimed steps each, then `--steps` pairs;
 *   - sampling: 8 prompts × 8 samples, up to 48 new tokens (rows end at the stop token), temperature 1, KV
 *     cache, tokens per second; 2 untimed requests each (session creation, JIT tier-up), then `--samples`
 *     pairs, same seeds both sides;
 *   - peak memory: the worker process's max RSS.
 * Targets: train step ≤ 1.0× PyTorch's time, sampling ≥ 1.0× PyTorch's tokens/s. The first training loss of
 * both sides is printed too: equal losses show both run the same model on the same data.
 *
 * PyTorch's model is written the plain way (every block computes every position); Sophia's engine has its last
 * block and LM head compute only the positions read afterwards (engine/model/transformer.ts, `backbone`; in
 * training: from the first position with loss, `lossStart` in engine/model/graphs.ts). With
 * `--torch-skip-unread` the PyTorch model does that too: the like-for-like comparison of the two runtimes.
 *
 *   npm run bench:engine                          # installs PyTorch into .tools/bench-venv on first use (~5 GB)
 *   npm run bench:engine -- --presets tiny --reps 5
 *   npm run bench:engine -- --torch-skip-unread         # PyTorch's last block also skips the unread positions
 *   BENCH_PYTHON=/path/to/python npm run bench:engine   # a Python that already has torch
 */
import { type ChildProcessByStdio, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import { type ModelPreset, parameterCount, presetConfig } from '../engine/model/config';
import { OnnxEngine, saveStateBytes } from '../engine/onnx-bench';
import { SETTLE_MS, type WorkerCommand, type WorkerReply, VOCAB, benchSpec } from './engine/shared';
import { machineLine, median, printTable } from './report';

const ROOT = path.resolve(__dirname, '..');
const { values: args } = parseArgs({
  options: {
    presets: { type: 'string', default: 'tiny,small' },
    reps: { type: 'string', default: '3' },
    steps: { type: 'string', default: '10' },
    samples: { type: 'string', default: '5' },
    threads: { type: 'string', default: String(Math.min(2, cpus().length)) },
    'torch-skip-unread': { type: 'boolean', default: false },
  },
});

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
  writeFileSync(state, await saveStateBytes(engine));
  await engine.dispose();
  const spec = benchSpec(config);
  const batch = path.join(dir, `${preset}.batch.json`);
  writeFileSync(batch, JSON.stringify(spec));
  return { state, batch, params: parameterCount(config) };
}

/** A worker process that answers one command at a time (bench/engine/shared.ts has the protocol). */
class Worker {
  private readonly lines: AsyncIterator<string, undefined>;

  private constructor(
    readonly kind: 'sophia' | 'pytorch',
    private readonly child: ChildProcessByStdio<Writable, Readable, null>,
  ) {
    this.lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]() as AsyncIterator<string, undefined>;
  }

  static async start(kind: 'sophia' | 'pytorch', state: string, batch: string): Promise<Worker> {
    const env = { ...process.env, BENCH_THREADS: args.threads, OMP_NUM_THREADS: args.threads, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' };
    const [cmd, argv] =
      kind === 'sophia'
        ? [process.execPath, [require.resolve('tsx/cli'), path.join(__dirname, 'engine', 'sophia-worker.ts'), state, batch]]
        : [python(), [path.join(__dirname, 'engine', 'torch_worker.py'), state, batch, ...(args['torch-skip-unread'] ? ['--skip-unread'] : [])]];
    const child = spawn(cmd, argv, { env, stdio: ['pipe', 'pipe', 'inherit'] });
    const worker = new Worker(kind, child);
    await worker.next(); // {"ready": true}
    return worker;
  }

  private async next(): Promise<Record<string, number | boolean>> {
    const { value, done } = await this.lines.next();
    if (done) throw new Error(`bench: the ${this.kind} worker exited before answering (its stderr is above)`);
    return JSON.parse(value) as Record<string, number | boolean>;
  }

  /** Asks for the peak RSS and lets the worker exit. */
  async end(): Promise<{ peakRssMB: number }> {
    const reply = await this.ask<{ peakRssMB: number }>({ cmd: 'end' });
    this.child.stdin.end();
    return reply;
  }

  async ask<R extends WorkerReply>(command: WorkerCommand): Promise<R> {
    // Let the other worker's threads go quiet first (SETTLE_MS): onnxruntime's would take a core from PyTorch's
    // next step.
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    this.child.stdin.write(`${JSON.stringify(command)}\n`);
    return (await this.next()) as R;
  }
}

/** One repetition's measurements, in pairs: index i of each side's list was taken next to the other's. */
interface Rep {
  stepMs: Record<'sophia' | 'pytorch', number[]>;
  tokensPerSec: Record<'sophia' | 'pytorch', number[]>;
  peakRssMB: Record<'sophia' | 'pytorch', number>;
  firstLoss: Record<'sophia' | 'pytorch', number>;
}

async function repetition(state: string, batch: string): Promise<Rep> {
  const sophia = await Worker.start('sophia', state, batch);
  const pytorch = await Worker.start('pytorch', state, batch);
  const both = [sophia, pytorch];
  const rep: Rep = { stepMs: { sophia: [], pytorch: [] }, tokensPerSec: { sophia: [], pytorch: [] }, peakRssMB: { sophia: 0, pytorch: 0 }, firstLoss: { sophia: 0, pytorch: 0 } };
  // `count` pairs of the same command; pair i asks Sophia first when i is even, PyTorch first when odd.
  const pairs = async <R extends WorkerReply>(count: number, command: (i: number) => WorkerCommand, take: (kind: Worker['kind'], reply: R, i: number) => void) => {
    for (let i = 0; i < count; i++) {
      for (const w of i % 2 === 0 ? both : [...both].reverse()) take(w.kind, await w.ask<R>(command(i)), i);
    }
  };
  // The first 2 of each kind are untimed (warm-up).
  await pairs<{ ms: number; loss: number }>(2 + Number(args.steps), () => ({ cmd: 'train' }), (kind, r, i) => {
    if (i === 0) rep.firstLoss[kind] = r.loss;
    if (i >= 2) rep.stepMs[kind].push(r.ms);
  });
  await pairs<{ tokens: number; seconds: number }>(2 + Number(args.samples), (i) => ({ cmd: 'sample', seed: i }), (kind, r, i) => {
    if (i >= 2) rep.tokensPerSec[kind].push(r.tokens / r.seconds);
  });
  for (const w of both) rep.peakRssMB[w.kind] = (await w.end()).peakRssMB;
  return rep;
}

/** Medians of each side and of the per-pair ratios (Sophia / PyTorch) over every pair of every repetition. */
function pairedSummary(reps: Rep[], pick: (r: Rep) => Record<'sophia' | 'pytorch', number[]>) {
  const ratios = reps.map((r) => pick(r).sophia.map((x, i) => x / pick(r).pytorch[i]!)); // per repetition, per pair
  const perRep = ratios.map(median);
  return {
    sophia: median(reps.flatMap((r) => pick(r).sophia)),
    pytorch: median(reps.flatMap((r) => pick(r).pytorch)),
    ratio: median(ratios.flat()),
    lo: Math.min(...perRep),
    hi: Math.max(...perRep),
  };
}

interface Summary {
  preset: string;
  params: number;
  step: ReturnType<typeof pairedSummary>;
  tps: ReturnType<typeof pairedSummary>;
  rss: Record<'sophia' | 'pytorch', number>;
  loss: Record<'sophia' | 'pytorch', number>;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'sophia-bench-engine-'));
  const summaries: Summary[] = [];
  try {
    python(); // install before timing anything
    for (const preset of args.presets.split(',') as ModelPreset[]) {
      const { state, batch, params } = await prepare(preset, dir);
      const reps: Rep[] = [];
      for (let i = 0; i < Number(args.reps); i++) {
        const rep = await repetition(state, batch);
        reps.push(rep);
        const m = (xs: number[]) => median(xs).toFixed(1);
        console.error(
          `[bench] ${preset} rep ${i + 1}: step ${m(rep.stepMs.sophia)} / ${m(rep.stepMs.pytorch)} ms, ` +
            `${median(rep.tokensPerSec.sophia).toFixed(0)} / ${median(rep.tokensPerSec.pytorch).toFixed(0)} tok/s (Sophia / PyTorch)`,
        );
      }
      summaries.push({
        preset,
        params,
        step: pairedSummary(reps, (r) => r.stepMs),
        tps: pairedSummary(reps, (r) => r.tokensPerSec),
        rss: { sophia: median(reps.map((r) => r.peakRssMB.sophia)), pytorch: median(reps.map((r) => r.peakRssMB.pytorch)) },
        loss: reps[0]!.firstLoss,
      });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const rows: string[][] = [];
  let ok = true;
  const spread = (x: { lo: number; hi: number }) => (Number(args.reps) > 1 ? ` (reps ${x.lo.toFixed(2)}–${x.hi.toFixed(2)})` : '');
  for (const s of summaries) {
    ok &&= s.step.ratio <= 1 && s.tps.ratio >= 1;
    const p = `${s.preset} (${(s.params / 1e6).toFixed(2)} M)`;
    rows.push([p, 'train step (ms, median)', s.step.sophia.toFixed(1), s.step.pytorch.toFixed(1), `${s.step.ratio.toFixed(2)}${spread(s.step)}`, '≤ 1.00', s.step.ratio <= 1 ? 'pass' : 'FAIL']);
    rows.push([p, 'sampling (tokens/s, KV cache)', s.tps.sophia.toFixed(0), s.tps.pytorch.toFixed(0), `${s.tps.ratio.toFixed(2)}${spread(s.tps)}`, '≥ 1.00', s.tps.ratio >= 1 ? 'pass' : 'FAIL']);
    rows.push([p, 'peak RSS (MB, whole process)', s.rss.sophia.toFixed(0), s.rss.pytorch.toFixed(0), (s.rss.sophia / s.rss.pytorch).toFixed(2), '', '']);
    rows.push([p, 'first-step loss (same model?)', s.loss.sophia.toFixed(5), s.loss.pytorch.toFixed(5), '', '', Math.abs(s.loss.sophia - s.loss.pytorch) < 1e-3 ? 'same' : 'DIFFERENT']);
  }
  const header = ['preset', 'measure', 'Sophia (onnxruntime)', 'PyTorch', 'ratio (median of pairs)', 'target', ''];
  printTable(header, rows);
  console.log(
    `\n${args.threads} threads each; batch 32 × 48 tokens + image tokens; sampling 8 prompts × 8 samples × 48 tokens; ` +
      `${args.reps} repetitions × (${args.steps} train-step pairs, ${args.samples} sampling pairs), Sophia and PyTorch interleaved; ` +
      'ratio = median of the per-pair ratios (in brackets: lowest and highest repetition median).\n' +
      (args['torch-skip-unread']
        ? "Both models' last block and LM head compute only the positions read afterwards (PyTorch: --skip-unread)."
        : "Sophia's last block and LM head compute only the positions read afterwards; PyTorch's model computes every position (--torch-skip-unread: it skips them too)."),
  );
  console.log(machineLine());
  process.exitCode = ok ? 0 : 1;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 2;
});
