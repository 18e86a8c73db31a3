/**
 * The resumable training chunk shared by the supervised stages (SFT warmup, reward model): train from the
 * newest committed checkpoint of the stage up to a target step, validating and committing a checkpoint every
 * `evalEvery` steps, heartbeating every step, and committing the current step before ending when cancelled.
 *
 *  - The first chunk of a run creates the stage's initial weights (`initialize`) and commits them under
 *    `initStage`, step 0, before training: the untrained baseline, and the start of every later attempt until
 *    the first real checkpoint exists.
 *  - The engine stays in the worker's pool between chunks (slot `{runId}/{stage}`); a chunk reloads from storage
 *    only when the engine does not equal the checkpoint it must start from (another worker trained meanwhile,
 *    or this worker lost its state).
 *  - Early stopping bookkeeping (`BestTracker`) travels in the checkpoint manifests, so it survives workers.
 *  - A checkpoint that does not read back intact is quarantined and the one before it used
 *    (`checkpoint-recovery.ts`); the chunk's output lists those events.
 *
 * The loop itself (steps, validation grid, early stopping) is `supervisedSteps` (`training/sft.ts`), the same one
 * `sophia sft` runs in one process; what a step and a validation compute is the caller's (`step`, `validate`);
 * everything about durability is here.
 */
import { Context, log } from '@temporalio/activity';
import type { EngineOptions } from '../engine/factory';
import type { Engine } from '../engine/types';
import type { CheckpointStore } from '../storage/checkpoints';
import { checkpointKey as checkpointKeyOf } from '../storage/keys';
import type { CheckpointManifest } from '../storage/manifest';
import { appendMetrics, type MetricRecord } from '../storage/metrics-log';
import type { Storage } from '../storage/types';
import { type BestTracker, NO_BEST, type SupervisedLoop, supervisedSteps } from '../training/sft';
import { type RunEvent, loadNewestIntact } from './checkpoint-recovery';
import { CheckpointWriter, saveEngineCheckpoint } from './engine-checkpoints';
import type { EnginePool } from './engine-pool';

export interface ChunkOutput {
  step: number;
  checkpointKey: string;
  initialCheckpointKey: string;
  tracker: BestTracker;
  bestCheckpointKey: string | undefined;
  /** The stage is over: all steps taken, or early stop. */
  done: boolean;
  stoppedEarly: boolean;
  metrics: Record<string, number>;
  /** The task queue only this worker polls: send the run's next chunk there. */
  workerQueue: string;
  worker: string;
  /** Corrupt checkpoints this chunk quarantined before it could start (absent when none). */
  events?: RunEvent[];
}

export interface ChunkHeartbeat {
  step: number;
  totalSteps: number;
  checkpointKey: string | undefined;
  loss: number | undefined;
  /** What the chunk waits for, when it waits on a checkpoint ("committing the checkpoint of step 40"). */
  phase?: string;
}

export interface ChunkDeps {
  store: CheckpointStore;
  storage: Storage;
  engines: EnginePool;
  workerQueue: string;
  identity: string;
}

/** A stage's supervised loop (its step returns the metrics to log, with `loss`) and where its chunk stands. */
export interface ChunkSpec extends SupervisedLoop<{ loss: number } & Record<string, number>> {
  runId: string;
  /** Stage name in storage keys and metrics (`sft`, `rm`). */
  stage: string;
  /** Where the initial weights are committed (`init`, `rm-init`). */
  initStage: string;
  configHash: string;
  /** The engine to train with (`engineOptionsOf(config)`). */
  engine: EngineOptions;
  untilStep: number;
  keepLast: number;
  /** Fresh initial weights into `engine` (called once per run). */
  initialize(engine: Engine): Promise<void>;
  /**
   * Validate the initial weights too, as a candidate for the best checkpoint (a likelihood judge, which starts as a
   * working judge that fine-tuning may not improve): a validation record at step 0, and the stage's best stays the
   * initial weights until a step beats them.
   */
  validateInitial?: boolean;
}

export function trackerOf(manifest: CheckpointManifest | undefined): BestTracker {
  const t = manifest?.meta.tracker as BestTracker | undefined;
  return t ? { ...t, bestValLoss: t.bestValLoss ?? Number.POSITIVE_INFINITY } : NO_BEST;
}

export async function runTrainingChunk(deps: ChunkDeps, spec: ChunkSpec): Promise<ChunkOutput> {
  const { store, engines } = deps;
  const ctx = Context.current();
  const slotName = `${spec.runId}/${spec.stage}`;
  const where = { runId: spec.runId, stage: spec.stage };
  return engines.exclusive(async () => {
    const { engine } = await engines.slot(slotName, spec.engine);
    // The last heartbeat's details; while a checkpoint is written or committed they are sent again with its phase.
    let beat: ChunkHeartbeat = { step: 0, totalSteps: spec.totalSteps, checkpointKey: undefined, loss: undefined };
    const heartbeat = (details: ChunkHeartbeat) => ctx.heartbeat((beat = details));
    const waiting = (phase: string) => ctx.heartbeat({ ...beat, phase } satisfies ChunkHeartbeat);
    const initialize = async (): Promise<CheckpointManifest> => {
      await spec.initialize(engine);
      // Initial weights that may already be the best: validated, they are the best so far (step 0) until a step beats them.
      let tracker = NO_BEST;
      let metrics: Record<string, number> | undefined;
      if (spec.validateInitial) {
        const valLoss = await spec.validate(engine, (done, total) => waiting(`validation ${done}/${total}`));
        tracker = { bestStep: 0, bestValLoss: valLoss, sinceBest: 0 };
        metrics = { valLoss };
      }
      const manifest = await saveEngineCheckpoint(store, engine, { runId: spec.runId, stage: spec.initStage, step: 0, configHash: spec.configHash, ...(metrics ? { metrics } : {}), meta: { tracker } }, undefined, waiting);
      if (metrics) await appendMetrics(deps.storage, spec.runId, [{ stage: spec.stage, kind: 'validation', step: 0, time: new Date().toISOString(), ...metrics }]);
      engines.mark(slotName, manifest.key);
      return manifest;
    };
    let initial = (await store.latest(spec.runId, spec.initStage)) ?? (await initialize());
    let latest = (await store.latest(spec.runId, spec.stage)) ?? initial;
    const events: RunEvent[] = [];
    if ((await engines.slot(slotName, spec.engine)).checkpointKey !== latest.key) {
      // The newest checkpoint that reads back intact (corrupt ones are quarantined), else fresh initial weights.
      latest = (await loadNewestIntact(store, engine, { runId: spec.runId, stages: [spec.stage, spec.initStage] }, events)) ?? (await initialize());
      if (latest.stage === spec.initStage) initial = latest;
      engines.mark(slotName, latest.key);
      log.info('engine loaded from storage', { ...where, step: latest.step, checkpointKey: latest.key });
    }
    let tracker = trackerOf(latest);
    let checkpointKey = latest.key;
    let checkpointStep = latest.step;
    // (step 0 is the initial weights, under initStage)
    let bestKey = tracker.bestStep > 0 ? checkpointKeyOf(spec.runId, spec.stage, tracker.bestStep) : tracker.bestStep === 0 ? initial.key : undefined;
    const pending: MetricRecord[] = [];
    let lastLoss: number | undefined;
    let stoppedEarly = false;
    engines.mark(slotName, undefined); // the engine diverges from its checkpoint from here on

    // Checkpoints commit in the background while training goes on (`CheckpointWriter`); `checkpointKey` is the
    // newest committed one, and the chunk ends only once every commit has landed.
    const writer = new CheckpointWriter(store, { heartbeat: waiting });
    beat = { step: checkpointStep, totalSteps: spec.totalSteps, checkpointKey, loss: undefined };
    let stagedStep = checkpointStep;
    const commit = async (step: number, metrics: Record<string, number>) => {
      const records = pending.splice(0);
      stagedStep = step;
      await writer.save(engine, { runId: spec.runId, stage: spec.stage, step, configHash: spec.configHash, metrics, meta: { tracker } }, async (manifest) => {
        await appendMetrics(deps.storage, spec.runId, records);
        await store.retain(spec.runId, spec.stage, { keepLast: spec.keepLast, keepBest: { metric: 'valLoss', mode: 'min' } });
        checkpointKey = manifest.key;
        checkpointStep = step;
        if (engine.step() === step) engines.mark(slotName, checkpointKey); // (not if training went on since)
      });
    };

    // The stage's step, logging its metrics as soon as it is taken (they are appended at the next commit).
    const logged: ChunkSpec = {
      ...spec,
      step: async (e, step) => {
        engines.mark(slotName, undefined); // mid-step: the engine equals no checkpoint until its next commit
        const record = await spec.step(e, step);
        pending.push({ stage: spec.stage, kind: 'step', step: step + 1, time: new Date().toISOString(), ...record });
        beat = { ...beat, step: step + 1, loss: record.loss }; // what a validation of this step heartbeats
        return record;
      },
      // A validation over a large held-out set takes many engine calls: heartbeat after each, with its progress.
      validate: (e) => spec.validate(e, (done, total) => waiting(`validation ${done}/${total}`)),
    };
    try {
      for await (const at of supervisedSteps(engine, logged, { tracker, untilStep: spec.untilStep })) {
        const { step: done, record } = at;
        tracker = at.tracker;
        lastLoss = record.loss;
        if (at.validation) {
          const { valLoss } = at.validation;
          pending.push({ stage: spec.stage, kind: 'validation', step: done, time: new Date().toISOString(), valLoss });
          await commit(done, { loss: record.loss, valLoss });
          if (at.validation.improved) bestKey = checkpointKeyOf(spec.runId, spec.stage, done);
          log.info('checkpoint', { ...where, step: done, valLoss, checkpointKey: checkpointKeyOf(spec.runId, spec.stage, done) });
          if (at.stop) {
            stoppedEarly = true;
            break;
          }
        }
        heartbeat({ step: done, totalSteps: spec.totalSteps, checkpointKey, loss: record.loss });
        if (ctx.cancellationSignal.aborted) {
          // Pause, stop or shutdown: keep the work done so far, then end as cancelled.
          if (done > stagedStep) await commit(done, { loss: record.loss });
          await writer.flush();
          log.info('cancelled after checkpoint', { ...where, step: done, checkpointKey });
          throw ctx.cancellationSignal.reason;
        }
      }
      await writer.flush();
    } catch (err) {
      await writer.flushQuietly(); // keep what was saved before the failure
      throw err;
    }
    const step = engine.step();
    return {
      step,
      checkpointKey,
      initialCheckpointKey: initial.key,
      tracker,
      bestCheckpointKey: bestKey,
      done: stoppedEarly || step >= spec.totalSteps,
      stoppedEarly,
      metrics: { ...(lastLoss !== undefined ? { loss: lastLoss } : {}), ...(Number.isFinite(tracker.bestValLoss) ? { bestValLoss: tracker.bestValLoss } : {}) },
      workerQueue: deps.workerQueue,
      worker: deps.identity,
      ...(events.length > 0 ? { events } : {}),
    };
  });
}
