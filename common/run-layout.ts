/**
 * A run's names, in one place: the storage stage of each kind of checkpoint (and of its metrics records), the
 * workflow ids of a run's pipeline, of its stages and of its launchers (per deployment), and the formats of run ids. Pure (workflows, activities, the
 * CLI, the API and the reports all use it); every clock here is UTC.
 *
 * Storage keys themselves (`runs/{runId}/{stage}/checkpoints/{step:08d}/…`) are built by `storage/keys.ts`.
 */
import type { StageName } from '../config/stages';

/**
 * Storage stage names: where a kind of checkpoint lives (`runs/{runId}/{stage}/checkpoints/…`), and the `stage`
 * of its records in `metrics.jsonl`.
 */
export const STORAGE_STAGES = {
  /** The untrained policy, committed before SFT: the initial-policy baseline. */
  initialPolicy: 'init',
  /** The SFT warmup's policy checkpoints. */
  sft: 'sft',
  /** The reward model's initial weights (the `untrained-rm` variant and the untrained baseline). */
  rewardModelInitial: 'rm-init',
  /** The thinking reward model's checkpoints. */
  rewardModel: 'rm',
  /** The Trust-GRPO policy checkpoints. */
  grpo: 'grpo',
} as const;

export type StorageStage = (typeof STORAGE_STAGES)[keyof typeof STORAGE_STAGES];

/*
 * Workflow and schedule ids start with the deployment's name (`TemporalConfig.deployment`, `SOPHIA_DEPLOYMENT`), so
 * deployments sharing a Temporal namespace can run the same run id side by side and never see or control each other's
 * runs. Deployment names contain no "-" and run ids no ":" (`storage/keys.ts`), so each id below names one deployment
 * and one run. The default deployment, `sophia`, has the ids runs always had (`sophia-{runId}`).
 */

/** The workflow id of a run's pipeline: `{deployment}-{runId}`. */
export const pipelineWorkflowId = (deployment: string, runId: string) => `${deployment}-${runId}`;

/** The run id of one of `deployment`'s pipeline workflow ids, or undefined for other workflows (and deployments). */
export function runIdOfWorkflowId(deployment: string, workflowId: string): string | undefined {
  const prefix = `${deployment}-`;
  return workflowId.startsWith(prefix) && !workflowId.includes('/') ? workflowId.slice(prefix.length) : undefined;
}

/**
 * Temporal's visibility query for `deployment`'s pipelines (listing runs, counting running ones); `and` narrows it,
 * e.g. `ExecutionStatus = 'Running'`.
 */
export const deploymentPipelinesQuery = (deployment: string, and?: string) =>
  `WorkflowType = 'trainingPipeline' AND WorkflowId STARTS_WITH '${deployment}-'${and ? ` AND ${and}` : ''}`;

/** The workflow id of a stage's child workflow: `{deployment}-{runId}/{stage}`. */
export const stageWorkflowId = (pipelineId: string, stage: StageName) => `${pipelineId}/${stage}`;

/**
 * The workflow id of a pipeline execution's experiment-tracking workflow (workflows/tracking.ts):
 * `{deployment}-{runId}/tracking`, and `…/tracking-{n}` for the n-th resumed execution (the earlier one may still be
 * sending its last metrics).
 */
export const trackingWorkflowId = (pipelineId: string, resumes = 0) => `${pipelineId}/tracking${resumes > 0 ? `-${resumes}` : ''}`;

/** Workflow id of a schedule's launcher workflows (before Temporal's time suffix); ":" keeps launcher ids apart from run ids. */
export const launcherWorkflowId = (deployment: string, scheduleId: string) => `${deployment}:schedule:${scheduleId}`;

/** Workflow id of the launcher of a run started with a model line through the API. */
export const modelLineWorkflowId = (deployment: string, runId: string) => `${deployment}:line:${runId}`;

/** The Temporal schedule id of the deployment's schedule `id` (the id the API shows): `{deployment}-{id}`. */
export const scheduleIdOf = (deployment: string, id: string) => `${deployment}-${id}`;

/** The API's id of one of `deployment`'s Temporal schedule ids, or undefined for other schedules. */
export function scheduleNameOf(deployment: string, scheduleId: string): string | undefined {
  const prefix = `${deployment}-`;
  return scheduleId.startsWith(prefix) ? scheduleId.slice(prefix.length) : undefined;
}

/** `{prefix}-{yyyymmdd-hhmmss}` of `time` in UTC: run ids a person can read and type again. */
export function runIdAt(prefix: string, time: Date): string {
  const iso = time.toISOString(); // 2026-11-27T13:00:00.000Z
  return `${prefix}-${iso.slice(0, 10).replaceAll('-', '')}-${iso.slice(11, 19).replaceAll(':', '')}`;
}

/** The id of a run started without one (`sophia run`, `POST /runs`): `run-20261127-081500` (UTC). */
export const defaultRunId = (now: Date, prefix = 'run') => runIdAt(prefix, now);

/** Temporal starts a schedule's workflow as `{action workflow id}-{nominal time, ISO 8601 to the second}`. */
const NOMINAL_SUFFIX = /-(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z$/;

/**
 * The run id for a launcher workflow: `{prefix}-{yyyymmdd-hhmmss}` of the nominal time in its id if it has one (so
 * the API can tell which run a schedule's action started), else of `fallback`.
 */
export function scheduledRunId(prefix: string, launcherId: string, fallback: Date): string {
  const m = NOMINAL_SUFFIX.exec(launcherId);
  if (!m) return runIdAt(prefix, fallback);
  return `${prefix}-${m[1]}${m[2]}${m[3]}-${m[4]}${m[5]}${m[6]}`;
}
