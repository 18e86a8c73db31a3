/**
 * Training activities (GPU queue). `runSftChunk` runs SFT steps up to a target step:
 *
 *  - it starts from the newest committed checkpoint of the stage (so a retry after a lost worker resumes where
 *    the last attempt's checkpoint left off, never from scratch), reusing the engine already in memory when it
 *    equals that checkpoint;
 *  - every `evalEvery` steps it validates, commits a checkpoint (state + early-stopping bookkeeping in the
 *    manifest), appends the steps' metrics to metrics.jsonl and applies retention (last K + best);
 *  - it heartbeats `{ step, checkpointKey, loss, … }` after every step; when cancelled (pause, stop, shutdown)
 *    it commits a checkpoint of the current step first, then ends with the cancellation.
 *
 * Data order, teacher responses and engine state are functions of (seed, step) and the checkpoint, so an
 * interrupted and resumed stage ends with exactly the weights an uninterrupted one does.
 */
import { Context, log } from '@temporalio/activity';
import { modelConfig, type RunConfig } from '../config/run-config';
import { loadEngineCheckpoint, saveEngineCheckpoint } from '../engine/checkpoint';
import type { CheckpointStore } from '../storage/checkpoints';
import { checkpointKey as checkpointKeyOf } from '../storage/keys';
import type { CheckpointManifest } from '../storage/manifest';
import { appendMetrics, type MetricRecord } from '../storage/metrics-log';
import { type BestTracker, NO_BEST, sftStep, trackValidation, validationLoss } from '../training/sft';
import type { EnginePool } from './engine-pool';
import { withFailureMapping } from './failures';
import type { RunData } from './run-data';

export interface SftChunkInput {
  runId: string;
  config: RunConfig;
  configHash: string;
  storage: string;
  /** Train until this step (or the end of SFT, or an early stop). */
  untilStep: number;
}

export interface SftChunkOutput {
  step: number;
  checkpointKey: string;
  initialCheckpointKey: string;
  tracker: BestTracker;
  bestCheckpointKey: string | undefined;
  /** SFT is over: all steps taken, or early stop. */
  done: boolean;
  stoppedEarly: boolean;
  metrics: Record<string, number>;
  /** The task queue only this worker polls: send the run's next chunk there. */
  workerQueue: string;
  worker: string;
}

export interface LatestCheckpoint {
  key: string;
  step: number;
  tracker: BestTracker;
}

export interface SftHeartbeat {
  step: number;
  totalSteps: number;
  checkpointKey: string | undefined;
  loss: number | undefined;
}

export interface TrainingDeps {
  store: CheckpointStore;
  data: RunData;
  engines: EnginePool;
  /** This worker's own task queue and identity. */
  workerQueue: string;
  identity: string;
}

const STAGE = 'sft';
/** Where the initial (untrained) weights of a run are committed: the baseline evaluation starts from here. */
export const INIT_STAGE = 'init';

function trackerOf(manifest: CheckpointManifest | undefined): BestTracker {
  const t = manifest?.meta.tracker as BestTracker | undefined;
  return t ? { ...t, bestValLoss: t.bestValLoss ?? Number.POSITIVE_INFINITY } : NO_BEST;
}

export function createTrainingActivities(deps: TrainingDeps) {
  const { store, data, engines } = deps;

  async function runSftChunk(input: SftChunkInput): Promise<SftChunkOutput> {
    data.assertStorage(input.storage);
    const ctx = Context.current();
    const settings = { ...input.config.sft, seed: input.config.seed };
    const model = modelConfig(input.config, data.tokenizer.vocabSize);
    const slotName = `${input.runId}/${STAGE}`;
    return engines.exclusive(async () => {
      const { engine } = await engines.slot(slotName);
      // Start from the newest committed SFT checkpoint; before the first one exists, from the initial weights,
      // which the very first chunk creates and commits as stage `init`, step 0 (kept: the untrained baseline).
      let initial = await store.latest(input.runId, INIT_STAGE);
      if (!initial) {
        await engine.init(model, input.config.seed);
        initial = await saveEngineCheckpoint(store, engine, { runId: input.runId, stage: INIT_STAGE, configHash: input.configHash, meta: { tracker: NO_BEST } });
        engines.mark(slotName, initial.key);
      }
      const latest = (await store.latest(input.runId, STAGE)) ?? initial;
      if ((await engines.slot(slotName)).checkpointKey !== latest.key) {
        await loadEngineCheckpoint(store, latest.key, engine);
        engines.mark(slotName, latest.key);
        log.info('engine loaded from storage', { runId: input.runId, stage: STAGE, step: latest.step, checkpointKey: latest.key });
      }
      const initialKey = initial.key;
      let tracker = trackerOf(latest);
      let checkpointKey = latest.key;
      let checkpointStep = latest.step;
      let bestKey = tracker.bestStep >= 0 ? checkpointKeyOf(input.runId, STAGE, tracker.bestStep) : undefined;
      const [train] = [await data.split(input.runId, 'train')];
      const validation = data.validation(input.config, model.image.size);
      const pending: MetricRecord[] = [];
      const until = Math.min(input.untilStep, settings.steps);
      let lastLoss: number | undefined;
      let stoppedEarly = false;
      engines.mark(slotName, undefined); // the engine diverges from its checkpoint from here on

      const commit = async (step: number, metrics: Record<string, number>) => {
        const manifest = await saveEngineCheckpoint(store, engine, { runId: input.runId, stage: STAGE, step, configHash: input.configHash, metrics, meta: { tracker } });
        await appendMetrics(data.storage, input.runId, pending.splice(0));
        await store.retain(input.runId, STAGE, { keepLast: input.config.checkpoints.keepLast, keepBest: { metric: 'valLoss', mode: 'min' } });
        checkpointKey = manifest.key;
        checkpointStep = step;
        engines.mark(slotName, checkpointKey);
      };

      for (let step = engine.step(); step < until; step++) {
        const record = await sftStep(engine, data.tokenizer, train, settings, step);
        lastLoss = record.loss;
        pending.push({ stage: STAGE, kind: 'step', step: record.step, time: new Date().toISOString(), loss: record.loss, lr: record.lr, gradNorm: record.gradNorm, tokens: record.tokens });
        if (record.step % settings.evalEvery === 0 || record.step === settings.steps) {
          const valLoss = await validationLoss(engine, data.tokenizer, validation, settings.batchSize, settings.seed);
          const tracked = trackValidation(tracker, record.step, valLoss, settings.patience);
          tracker = tracked.tracker;
          pending.push({ stage: STAGE, kind: 'validation', step: record.step, time: new Date().toISOString(), valLoss });
          await commit(record.step, { loss: record.loss, valLoss });
          if (tracked.improved) bestKey = checkpointKey;
          log.info('checkpoint', { runId: input.runId, stage: STAGE, step: record.step, valLoss, checkpointKey });
          if (tracked.stop) {
            stoppedEarly = true;
            break;
          }
        }
        ctx.heartbeat({ step: record.step, totalSteps: settings.steps, checkpointKey, loss: record.loss } satisfies SftHeartbeat);
        if (ctx.cancellationSignal.aborted) {
          // Pause, stop or shutdown: keep the work done so far, then end as cancelled.
          if (record.step > checkpointStep) await commit(record.step, { loss: record.loss });
          log.info('cancelled after checkpoint', { runId: input.runId, stage: STAGE, step: record.step, checkpointKey });
          throw ctx.cancellationSignal.reason;
        }
      }
      const step = engine.step();
      return {
        step,
        checkpointKey,
        initialCheckpointKey: initialKey,
        tracker,
        bestCheckpointKey: bestKey,
        done: stoppedEarly || step >= settings.steps,
        stoppedEarly,
        metrics: { ...(lastLoss !== undefined ? { loss: lastLoss } : {}), ...(Number.isFinite(tracker.bestValLoss) ? { bestValLoss: tracker.bestValLoss } : {}) },
        workerQueue: deps.workerQueue,
        worker: deps.identity,
      };
    });
  }

  return withFailureMapping({
    runSftChunk,

    /** The newest committed checkpoint of a stage, with its early-stopping bookkeeping (CPU queue). */
    async latestCheckpoint(input: { runId: string; stage: string; storage: string }): Promise<LatestCheckpoint | undefined> {
      data.assertStorage(input.storage);
      const latest = await store.latest(input.runId, input.stage);
      return latest ? { key: latest.key, step: latest.step, tracker: trackerOf(latest) } : undefined;
    },
  });
}

export type TrainingActivities = ReturnType<typeof createTrainingActivities>;
