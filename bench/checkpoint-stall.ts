/**
 * bench/checkpoint-stall: how long training waits for a checkpoint of a torch engine, saved synchronously
 * (`saveEngineCheckpoint`) against in the background (`CheckpointWriter`), measured on one engine in one run.
 *
 * One random Qwen2.5-VL (bench/torch-engine/model.py: `--size tiny|mid` on CPU, default mid; `--shape
 * qwen2.5-vl-3b|qwen2.5-vl-7b` on a GPU machine, cuda and bfloat16 by default) and bench/torch-engine's batch; one
 * torch engine (init from the model's folder, 2 untimed SFT train steps), one checkpoint store (`--storage URL`,
 * opened by storage/open.ts with the SOPHIA_S3_* environment; default: a fresh local folder in a temp folder). Each
 * of `--reps` repetitions takes, on the same engine:
 *   - synchronous: a train step (`trainStepResponses`, SFT), `saveEngineCheckpoint` (the state written to a scratch
 *     folder, uploaded, the manifest committed, the folder removed), a train step. The stall is the save's time:
 *     training waits for all of it;
 *   - background: `--steps` plain train steps, no checkpoint going on (the step time to compare with), then
 *     `writer.save` (the state written to a scratch folder: the stall), then `writer.flush()` started at once and
 *     train steps taken while it is pending (the upload and commit go on beside them), until it resolves: the time
 *     from `save`'s return to the commit, the number of steps taken meanwhile and their times (the last one may end
 *     after the commit). Training time lost = the stall + Σ (step during the upload − the plain median); on a noisy
 *     machine it can come out below the stall, even negative.
 * The two kinds alternate their order (synchronous first in odd repetitions). The table shows the median of the
 * repetitions' values with their lowest and highest. Once, at the end, the first repetition's background
 * checkpoint is loaded into a fresh torch engine (`loadEngineCheckpoint`), which must be at the step it was saved at.
 *
 * On CPU the engine's training threads, the upload (reading the files, sha256, writing or sending them) and the
 * scratch folder's writes share the same cores, so steps taken during an upload are slower than plain steps; on a
 * GPU machine the step runs on the GPU and the upload on otherwise idle cores.
 *
 *   npm run bench:checkpoint-stall                                  # mid, 3 repetitions, a local store in a temp folder
 *   npm run bench:checkpoint-stall -- --size tiny --reps 5
 *   set -a && . .sophia/stack/stack.env && set +a && npm run bench:checkpoint-stall -- --storage s3://sophia/bench-checkpoint-stall
 *   npm run bench:checkpoint-stall -- --shape qwen2.5-vl-7b        # on a GPU machine
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { CheckpointWriter, type EngineCheckpointTarget, loadEngineCheckpoint, saveEngineCheckpoint, scratchRoot } from '../activities/engine-checkpoints';
import { createEngine } from '../engine/factory';
import type { Engine } from '../engine/types';
import { CheckpointStore } from '../storage/checkpoints';
import { runPrefix } from '../storage/keys';
import { openStorage } from '../storage/open';
import { machineLine, median, printTable } from './report';
import { ADAMW, batchFor, batchShape, buildModel, count, timed, torchSettings } from './torch-engine/shared';

const { values: args } = parseArgs({
  options: {
    size: { type: 'string', default: 'mid' },
    shape: { type: 'string' },
    reps: { type: 'string', default: '3' },
    steps: { type: 'string', default: '5' },
    storage: { type: 'string' },
    threads: { type: 'string' },
    rows: { type: 'string' },
    'image-size': { type: 'string' },
    'response-tokens': { type: 'string' },
    device: { type: 'string' },
    dtype: { type: 'string' },
  },
});

const GPU = args.shape !== undefined;
const REPS = count('reps', args.reps, 3);
const STEPS = count('steps', args.steps, 5);
const BATCH = batchShape(args, GPU);
const TORCH = torchSettings(args, GPU);

function modelChoice(): { size: string } | { shape: string } {
  if (args.shape !== undefined) {
    if (args.shape !== 'qwen2.5-vl-3b' && args.shape !== 'qwen2.5-vl-7b') throw new RangeError(`--shape must be qwen2.5-vl-3b or qwen2.5-vl-7b (got ${JSON.stringify(args.shape)})`);
    return { shape: args.shape };
  }
  if (args.size !== 'tiny' && args.size !== 'mid') throw new RangeError(`--size must be tiny or mid (got ${JSON.stringify(args.size)}; GPU shapes: --shape)`);
  return { size: args.size };
}

/** One repetition's measurements. */
interface Rep {
  plainMs: number[];
  syncStallMs: number;
  bgStallMs: number;
  /** From `writer.save`'s return to the commit (`flush` resolved). */
  bgCommitMs: number;
  /** Train steps taken while the background commit was pending. */
  duringMs: number[];
}

async function main(): Promise<void> {
  const which = modelChoice();
  const dir = mkdtempSync(path.join(tmpdir(), 'sophia-bench-checkpoint-stall-'));
  const storage = openStorage(args.storage ?? path.join(dir, 'store'), process.env);
  const store = new CheckpointStore(storage);
  const runId = `bench-checkpoint-stall-${Date.now()}`;
  const engines: Engine[] = [];
  const newEngine = () => {
    const engine = createEngine({ kind: 'torch', ...TORCH });
    engines.push(engine);
    return engine;
  };
  const loadBefore = loadavg();
  try {
    const model = buildModel(path.join(dir, 'model'), which, TORCH.dtype);
    const { batch } = batchFor(model, BATCH);
    const engine = newEngine();
    await engine.init({ kind: 'policy', pretrained: model.dir }, 0);
    const step = async () => (await timed(() => engine.trainStepResponses(batch, { kind: 'sft' }, ADAMW))).ms;
    for (let i = 0; i < 2; i++) await step();
    const target = (): EngineCheckpointTarget => ({ runId, stage: 'sft', configHash: 'bench-checkpoint-stall' });

    const reps: Rep[] = [];
    let state = { bytes: 0, files: 0 };
    let check: { key: string; step: number } | undefined;
    for (let r = 0; r < REPS; r++) {
      const rep: Rep = { plainMs: [], syncStallMs: 0, bgStallMs: 0, bgCommitMs: 0, duringMs: [] };
      const synchronous = async () => {
        await step();
        rep.syncStallMs = (await timed(() => saveEngineCheckpoint(store, engine, target()))).ms;
        await step();
      };
      const background = async () => {
        // The plain steps right before: the machine's speed drifts within minutes, so they are compared with the
        // steps taken during the upload, a few seconds later.
        for (let i = 0; i < STEPS; i++) rep.plainMs.push(await step());
        const writer = new CheckpointWriter(store);
        const savedStep = engine.step();
        const save = await timed(() => writer.save(engine, target()));
        rep.bgStallMs = save.ms;
        const start = performance.now();
        const commit: { ms?: number } = {};
        const flushed = writer.flush().finally(() => (commit.ms = performance.now() - start));
        while (commit.ms === undefined) rep.duringMs.push(await step());
        const manifest = (await flushed)!;
        rep.bgCommitMs = commit.ms;
        if (manifest.step !== savedStep) throw new Error(`bench: the background writer committed step ${manifest.step}, saved at step ${savedStep}`);
        state = { bytes: manifest.totalBytes, files: manifest.files.length };
        check ??= { key: save.value, step: savedStep };
      };
      for (const run of r % 2 === 0 ? [synchronous, background] : [background, synchronous]) await run();
      reps.push(rep);
      const f = (ms: number) => ms.toFixed(0);
      console.error(
        `[bench] rep ${r + 1}: plain step ${f(median(rep.plainMs))} ms; synchronous stall ${f(rep.syncStallMs)} ms; background stall ${f(rep.bgStallMs)} ms, ` +
          `commit ${f(rep.bgCommitMs)} ms later, ${rep.duringMs.length} steps meanwhile (median ${f(median(rep.duringMs))} ms)`,
      );
    }
    const loadAfter = loadavg();

    // The background writer's first checkpoint, loaded into a fresh engine: at the step it was saved at?
    const fresh = newEngine();
    const loaded = await timed(() => loadEngineCheckpoint(store, check!.key, fresh));
    const freshStep = fresh.step();
    const loadOk = freshStep === check!.step && loaded.value.step === check!.step;

    const lostMs = (rep: Rep) => rep.bgStallMs + rep.duringMs.reduce((sum, ms) => sum + ms - median(rep.plainMs), 0);
    const stat = (pick: (rep: Rep) => number, digits = 0) => {
      const xs = reps.map(pick);
      return [median(xs).toFixed(digits), `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`];
    };
    printTable(
      ['measure', 'median of reps', `min–max (${REPS} reps)`],
      [
        ['synchronous: stall (saveEngineCheckpoint) (ms)', ...stat((r) => r.syncStallMs)],
        ['background: stall (writer.save: state to local disk) (ms)', ...stat((r) => r.bgStallMs)],
        ['background: save returned → commit (upload + manifest) (ms)', ...stat((r) => r.bgCommitMs)],
        ['background: train steps taken during the upload', ...stat((r) => r.duringMs.length)],
        ['background: train step during the upload (ms, median)', ...stat((r) => median(r.duringMs))],
        ['train step, no checkpoint (ms, median)', ...stat((r) => median(r.plainMs))],
        ['background: training time lost (stall + Σ step slowdown) (ms)', ...stat(lostMs)],
      ],
    );
    const ratio = (label: string, pick: (rep: Rep) => number) => {
      const xs = reps.map(pick);
      console.log(`${label}: ${median(xs).toFixed(2)} (reps ${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})`);
    };
    console.log('');
    ratio('Stall, background / synchronous', (r) => r.bgStallMs / r.syncStallMs);
    ratio('Training time lost, background / synchronous', (r) => lostMs(r) / r.syncStallMs);
    ratio('Train step during the upload / without a checkpoint', (r) => median(r.duringMs) / median(r.plainMs));
    const name = 'size' in which ? `${which.size} (${(model.parameters / 1e6).toFixed(2)} M parameters)` : `${which.shape} shape (${(model.parameters / 1e9).toFixed(2)} B parameters)`;
    console.log(
      `\nModel: random Qwen2.5-VL ${name}, ${TORCH.dtype} on ${TORCH.device}, ${TORCH.threads} threads; batch ${BATCH.rows} prompts (one ${BATCH.image}×${BATCH.image} image + a question) × 1 response of ${BATCH.response} tokens, SFT.`,
    );
    console.log(`State: ${(state.bytes / 2 ** 20).toFixed(1)} MiB (${state.bytes} bytes) in ${state.files} files; store ${storage.location}; staged under ${scratchRoot()}.`);
    console.log(`Per repetition: synchronous and background in alternating order, ${STEPS} plain steps right before the background save; ${REPS} repetitions after 2 untimed steps.`);
    console.log(
      `Load check: ${check!.key} (the background writer's, step ${check!.step}) loaded into a fresh torch engine in ${(loaded.ms / 1000).toFixed(1)} s, ` +
        `engine at step ${freshStep}: ${loadOk ? 'ok' : 'WRONG STEP'}.`,
    );
    if (!GPU) console.log('On CPU the upload (file reads, sha256, writes) runs on the same cores as the training threads: steps taken during it are slower.');
    console.log(`Load average (1 min) ${loadBefore[0]!.toFixed(2)} at the start, ${loadAfter[0]!.toFixed(2)} at the end.`);
    if (model.gpu) console.log(`GPU: ${model.gpu}`);
    console.log(machineLine());
    process.exitCode = loadOk ? 0 : 1;
  } finally {
    for (const engine of engines) await engine.dispose().catch(() => undefined);
    await storage.deletePrefix(`${runPrefix(runId)}/`).catch((err: unknown) => console.error(`bench: could not remove ${runPrefix(runId)}/ from ${storage.location}: ${String(err)}`));
    await store.close();
    await storage.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 2;
});
