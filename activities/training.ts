/**
 * Training activities (GPU queue). `runSftChunk` runs the SFT loop (`sftLoop`, the one `sophia sft` runs too)
 * up to a target step through the shared resumable chunk (`chunk.ts`):
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
import { STORAGE_STAGES } from '../common/run-layout';
import { modelConfig, type RunConfig, sftSettings } from '../config/run-config';
import type { CheckpointStore } from '../storage/checkpoints';
import { type BestTracker, sftLoop } from '../training/sft';
import { type ChunkHeartbeat, type ChunkOutput, runTrainingChunk, trackerOf } from './chunk';
import { type EnginePool, engineOptionsOf } from './engine-pool';
import { ModelSource } from './models';
import { withFailureMapping } from './failures';
import type { RunData, RunStore } from './run-data';

export interface SftChunkInput extends RunStore {
  runId: string;
  config: RunConfig;
  configHash: string;
  storage: string;
  /** Train until this step (or the end of SFT, or an early stop). */
  untilStep: number;
}

/** What a chunk of SFT steps ends with (see `runTrainingChunk`). */
export type SftChunkOutput = ChunkOutput;

export interface LatestCheckpoint {
  key: string;
  step: number;
  tracker: BestTracker;
}

export type SftHeartbeat = ChunkHeartbeat;

export interface TrainingDeps {
  /** Where the run's pretrained models come from (torch runs; default: this machine's model cache). */
  models?: ModelSource;
  store: CheckpointStore;
  data: RunData;
  engines: EnginePool;
  /** This worker's own task queue and identity. */
  workerQueue: string;
  identity: string;
}

const STAGE = STORAGE_STAGES.sft;
const INIT_STAGE = STORAGE_STAGES.initialPolicy;

export function createTrainingActivities(deps: TrainingDeps) {
  const { store, data, engines } = deps;
  const models = deps.models ?? ModelSource.fromEnv();

  async function runSftChunk(input: SftChunkInput): Promise<SftChunkOutput> {
    await data.assertStorage(input);
    const model = modelConfig(input.config, data.tokenizer.vocabSize);
    const train = await data.split(input.runId, 'train');
    const loop = sftLoop(train, data.validation(input.config, model.image.size), sftSettings(input.config));
    return runTrainingChunk(
      { store, storage: data.storage, engines, workerQueue: deps.workerQueue, identity: deps.identity },
      {
        runId: input.runId,
        stage: STAGE,
        initStage: INIT_STAGE,
        configHash: input.configHash,
        engine: engineOptionsOf(input.config),
        untilStep: input.untilStep,
        keepLast: input.config.checkpoints.keepLast,
        initialize: (engine) => models.init(engine, input.config, 'policy', input.config.seed),
        ...loop,
        step: async (engine, step) => {
          const { loss, lr, gradNorm, tokens } = await loop.step(engine, step);
          return { loss, lr, gradNorm, tokens };
        },
      },
    );
  }

  return withFailureMapping({
    runSftChunk,

    /** The newest committed checkpoint of a stage, with its early-stopping bookkeeping (CPU queue). */
    async latestCheckpoint(input: RunStore & { stage: string }): Promise<LatestCheckpoint | undefined> {
      await data.assertStorage(input);
      const latest = await store.latest(input.runId, input.stage);
      return latest ? { key: latest.key, step: latest.step, tracker: trackerOf(latest) } : undefined;
    },
  });
}

export type TrainingActivities = ReturnType<typeof createTrainingActivities>;
