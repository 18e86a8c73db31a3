/**
 * What crosses between the pipeline, its stages and the starter: inputs, outputs, progress, and the signals and
 * queries that control and watch a run. Only small values travel here; datasets, checkpoints, rollouts and
 * evaluation details stay in storage and are passed by key (claim check).
 *
 * Abstractions:
 *  - `PipelineInput`: a run (id, validated config, storage location, activity profiles) as the starter resolved
 *    it, recorded in history so replays see the same values;
 *  - `StageInput` / `StageOutput`: what each stage child workflow receives and returns (its checkpoint key);
 *  - `RunProgress`: what the `progress` query answers;
 *  - signals `pause`, `resume`, `stop` and the child→parent `stageProgress` signal.
 */
import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { RunEvent } from '../activities/checkpoint-recovery';
import type { RunConfig } from '../config/run-config';
import type { StageName } from '../config/stages';
import type { ActivityProfile } from '../temporal.config';

export interface ActivityProfiles {
  cpu: ActivityProfile;
  gpu: ActivityProfile;
  /** How long an engine chunk may wait on the previous worker's own queue before falling back to the shared one. */
  pinnedScheduleToStartMs: number;
}

export interface PipelineInput {
  runId: string;
  config: RunConfig;
  configHash: string;
  /** Where the run's data and checkpoints live ("local:/…", "s3://…"); workers check they use the same. */
  storage: string;
  /**
   * The id of that store (its marker, `storage/store-id.ts`) when the run was started: activities refuse to write to a
   * store with another id, whatever its location string says. Absent in runs started before stores had ids.
   */
  storeId?: string | undefined;
  /** The deployment that started the run (`TemporalConfig.deployment`); absent in runs started before deployments had names (`sophia`). */
  deployment?: string | undefined;
  profiles: ActivityProfiles;
  /** Set when this execution continues a failed one of the same run (`sophia resume`, `POST /runs/:id/resume`). */
  resumed?: ResumedRun;
  /**
   * The model line a launcher (`modelLineRun`) records the run under when it completes: with experiment tracking,
   * the launcher then ends the tracking itself, after recording (workflows/tracking.ts).
   */
  line?: string | undefined;
}

/** What a resumed execution takes over from the failed one (`clients/runs.ts` `resumeFailedRun` reads it from Temporal). */
export interface ResumedRun {
  /** Outputs of the stages that completed, in pipeline order: they are not run again. */
  completed: StageOutput[];
  /** Events recorded so far: the failed executions' stage events and one `resumed` event per resume. */
  events: RunEvent[];
}

export interface StageInput extends PipelineInput {
  stage: StageName;
  /** Workflow id of the pipeline, for progress signals. */
  parentWorkflowId: string;
  /** The checkpoint the stage starts from (the previous stage's output). */
  inputCheckpointKey: string | undefined;
  /** Keys earlier stages left for later ones (e.g. `initial`: the untrained weights, for the baseline). */
  artifacts: Record<string, string>;
  /** Set when the run was stopped before this stage began: do the minimum (e.g. skip training). */
  stopped: boolean;
}

export interface StageOutput {
  stage: StageName;
  /** The checkpoint this stage produced (what the next stage starts from), if any. */
  checkpointKey: string | undefined;
  /** The checkpoint the stage made when it is not the policy line passed on (the reward model's). */
  ownCheckpointKey?: string;
  /** Other keys worth keeping: the initial checkpoint, reports, evaluation results. */
  artifacts: Record<string, string>;
  metrics: Record<string, number>;
  /** True when the stage ended early because of a stop request. */
  stopped: boolean;
  /** What happened on the way that its metrics do not show (a corrupt checkpoint quarantined, …); absent when nothing. */
  events?: RunEvent[];
}

export type RunStatus = 'running' | 'paused' | 'stopping' | 'completed' | 'failed';

export interface StageProgress {
  stage: StageName;
  step: number;
  totalSteps: number;
  /** Latest scalar metrics of the stage (loss, valLoss, accuracy, …). */
  metrics: Record<string, number>;
  checkpointKey: string | undefined;
  /** Identity of the worker that did the latest work. */
  worker: string | undefined;
  /** One-line description of what the stage is doing. */
  activity: string;
  /** The stage's events so far (absent when none). */
  events?: RunEvent[];
}

export interface RunProgress {
  runId: string;
  status: RunStatus;
  stages: StageName[];
  /** Index in `stages` of the current stage (stages.length when done). */
  stageIndex: number;
  /** The running stage's progress: `runProgress` asks the stage (its `stageProgress` query); runs recorded before that kept the last signal here. */
  current: StageProgress | undefined;
  /** Output checkpoint of every finished stage. */
  checkpoints: Partial<Record<StageName, string>>;
  /** Final stage metrics by stage. */
  results: Partial<Record<StageName, Record<string, number>>>;
  reportKey: string | undefined;
  error: string | undefined;
  /** Events of finished stages and resumes (the running stage's are in `current.events`); absent when none. */
  events?: RunEvent[];
}

export const pauseSignal = defineSignal('pause');
export const resumeSignal = defineSignal('resume');
/** Checkpoint now, skip the remaining training, evaluate, finish cleanly. */
export const stopSignal = defineSignal('stop');
export const stageProgressSignal = defineSignal<[StageProgress]>('stageProgress');
export const progressQuery = defineQuery<RunProgress>('progress');
export const stageProgressQuery = defineQuery<StageProgress>('stageProgress');
