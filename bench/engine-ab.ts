/**
 * bench/engine-ab: this checkout's engine against the engine at another git revision, in one process, on
 * bench/engine's training batch (`--measure train`, the default) or its sampling request (`--measure sample`) —
 * for measuring a change to the engine, which the machine's drift hides in two separate bench runs.
 *
 * Both engines start from the same weights (seed 1) and take `trainStep`s (or `sample` calls, the same seed for
 * both in a pair) in turn (order flipping every pair, the
 * bench's 150 ms pause before each), `--pairs` pairs per round, a fresh pair of engines per round (creation order
 * flipping every round); the ratio is the median of the per-pair ratios over all rounds. One such order can be
 * off by a few percent even with both orders flipping (A/A runs gave 1.03–1.055), so everything runs twice, with
 * the positions swapped, and the table gives the effect √(r₁ / r₂) and the position term √(r₁ · r₂) (1 when the
 * order does not matter) beside the raw ratios. Sampling is noisier: A/A runs of `--measure sample` (tiny preset)
 * gave effects of 1.02 and 1.09, so read its effects below ~10 % as noise. The other revision is checked out in a
 * git worktree under .sophia/ab/ (kept for the next run; `git worktree prune` after deleting it).
 *
 *   npm run bench:engine-ab -- --against HEAD~1                  # small preset, 4 rounds × 10 pairs per order
 *   npm run bench:engine-ab -- --against e4029ae --presets tiny,small --rounds 6
 *   npm run bench:engine-ab -- --against HEAD~1 --measure sample --presets tiny,small
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, symlinkSync } from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { type ModelPreset, presetConfig } from '../engine/model/config';
import { OnnxEngine } from '../engine/onnx-bench';
import type { TokenEngine as Engine } from '../engine/types';
import { SETTLE_MS, VOCAB, benchSpec, engineInputs } from './engine/shared';
import { machineLine, median, printTable } from './report';

const ROOT = path.resolve(__dirname, '..');
const { values: args } = parseArgs({
  options: {
    against: { type: 'string' },
    presets: { type: 'string', default: 'small' },
    rounds: { type: 'string', default: '4' },
    pairs: { type: 'string', default: '10' },
    threads: { type: 'string', default: '2' },
    measure: { type: 'string', default: 'train' },
  },
});
const MEASURES = ['train', 'sample'] as const;
type Measure = (typeof MEASURES)[number];

type EngineClass = new (options: { threads: number }) => Engine;

/** The OnnxEngine class of `rev`, from a worktree of that commit (made on first use). */
function engineAt(rev: string): { sha: string; Engine: EngineClass } {
  const git = (...argv: string[]) => execFileSync('git', argv, { cwd: ROOT, encoding: 'utf8' }).trim();
  let sha: string;
  try {
    sha = git('rev-parse', '--verify', `${rev}^{commit}`);
  } catch {
    throw new Error(`--against ${rev}: not a commit in this repository (give a commit id, tag or branch)`);
  }
  const dir = path.join(ROOT, '.sophia', 'ab', sha.slice(0, 12));
  if (!existsSync(dir)) {
    mkdirSync(path.dirname(dir), { recursive: true });
    git('worktree', 'add', '--detach', dir, sha);
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const module = require(path.join(dir, 'engine', 'onnx-engine')) as { OnnxEngine: EngineClass };
  return { sha, Engine: module.OnnxEngine };
}

/**
 * Per-pair time ratios second / first over all rounds, and whether the two engines' results agreed in every pair:
 * the losses bit for bit (train), the sampled tokens (sample).
 */
async function paired(preset: ModelPreset, measure: Measure, first: EngineClass, second: EngineClass): Promise<{ ratios: number[]; ms: [number[], number[]]; same: boolean }> {
  const config = presetConfig(preset, 'policy', VOCAB);
  const { batch, adamw, request } = engineInputs(benchSpec(config));
  const ratios: number[] = [];
  const ms: [number[], number[]] = [[], []];
  const results: [string, string] = ['', ''];
  let same = true;
  const make = async (Engine: EngineClass) => {
    const engine = new Engine({ threads: Number(args.threads) });
    await engine.init(config, 1);
    return engine;
  };
  for (let round = 0; round < Number(args.rounds); round++) {
    // [first, second], created in that order in even rounds and in the reverse order in odd ones.
    const engines: Engine[] = [];
    if (round % 2 === 0) {
      engines[0] = await make(first);
      engines[1] = await make(second);
    } else {
      engines[1] = await make(second);
      engines[0] = await make(first);
    }
    const step = async (k: 0 | 1, seed: number) => {
      await sleep(SETTLE_MS);
      const t0 = performance.now();
      if (measure === 'train') results[k] = String((await engines[k]!.trainStep(batch, { kind: 'sft' }, adamw)).loss);
      else results[k] = (await engines[k]!.sample({ ...request, seed })).sequences.map((s) => s.tokens.join(',')).join(';');
      return performance.now() - t0;
    };
    for (let i = 0; i < 2; i++) {
      // Untimed: session creation, warm-up.
      await step(0, i);
      await step(1, i);
    }
    for (let i = 0; i < Number(args.pairs); i++) {
      const t: [number, number] = [0, 0];
      for (const k of i % 2 === 0 ? ([0, 1] as const) : ([1, 0] as const)) t[k] = await step(k, 100 + i);
      same &&= results[0] === results[1];
      ms[0].push(t[0]);
      ms[1].push(t[1]);
      ratios.push(t[1] / t[0]);
    }
    for (const engine of engines) await engine.dispose();
  }
  return { ratios, ms, same };
}

async function main(): Promise<void> {
  if (!args.against) throw new Error('--against REV is required: the git revision whose engine to compare this checkout with');
  const measure = args.measure as Measure;
  if (!MEASURES.includes(measure)) throw new Error(`--measure ${args.measure}: expected one of ${MEASURES.join(', ')}`);
  const { sha, Engine: Other } = engineAt(args.against);
  const This = OnnxEngine as unknown as EngineClass;
  const rows: string[][] = [];
  for (const preset of args.presets.split(',') as ModelPreset[]) {
    console.error(`[ab] ${preset}: this checkout in the second position`);
    const a = await paired(preset, measure, Other, This);
    console.error(`[ab] ${preset}: this checkout in the first position`);
    const b = await paired(preset, measure, This, Other);
    const r1 = median(a.ratios); // this / other, this second
    const r2 = median(b.ratios); // other / this, this first
    const same = a.same && b.same ? 'same' : 'differ';
    rows.push([
      preset,
      `${median([...a.ms[1], ...b.ms[0]]).toFixed(1)}`,
      `${median([...a.ms[0], ...b.ms[1]]).toFixed(1)}`,
      r1.toFixed(3),
      r2.toFixed(3),
      Math.sqrt(r1 / r2).toFixed(3),
      Math.sqrt(r1 * r2).toFixed(3),
      same,
    ]);
  }
  const header = ['preset', 'this (ms)', `${sha.slice(0, 7)} (ms)`, 'this/other, this 2nd', 'other/this, this 1st', 'effect: this/other', 'position term', measure === 'train' ? 'losses' : 'tokens'];
  printTable(header, rows);
  const what =
    measure === 'train'
      ? "train step (bench/engine's SFT batch, AdamW)"
      : "one sample call (bench/engine's request: prefill, then a decode step per token)";
  const agree =
    measure === 'train'
      ? 'losses: whether both engines ended every pair on the same loss, bit for bit.'
      : 'tokens: whether both engines sampled the same tokens in every pair (same seed).';
  console.log(`\n${what}, ${args.threads} threads; ${args.rounds} rounds × ${args.pairs} pairs per order; effect < 1: this checkout is faster. ${agree}`);
  console.log(machineLine());
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
