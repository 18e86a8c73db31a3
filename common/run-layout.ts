/**
 * A run's names, in one place: the storage stage of each kind of checkpoint (and of its metrics records), the
 * workflow ids of a run's pipeline and of its stages, and the formats of run ids. Pure (workflows, activities, the
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

const PIPELINE_PREFIX = 'sophia-';

/** The workflow id of a run's pipeline: `sophia-{runId}`. */
export const pipelineWorkflowId = (runId: string) => `${PIPELINE_PREFIX}${runId}`;

/** The run id of a pipeline workflow id, or undefined for other workflows. */
export function runIdOfWorkflowId(workflowId: string): string | undefined {
  return workflowId.startsWith(PIPELINE_PREFIX) && !workflowId.includes('/') ? workflowId.slice(PIPELINE_PREFIX.length) : undefined;
}

/** The workflow id of a stage's child workflow: `sophia-{runId}/{stage}`. */
export const stageWorkflowId = (pipelineId: string, stage: StageName) => `${pipelineId}/${stage}`;

/** Workflow id of a schedule's launcher workflows (before Temporal's time suffix); ":" keeps launcher ids apart from run ids. */
export const launcherWorkflowId = (scheduleId: string) => `sophia:schedule:${scheduleId}`;

/** Workflow id of the launcher of a run started with a model line through the API. */
export const modelLineWorkflowId = (runId: string) => `sophia:line:${runId}`;

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
