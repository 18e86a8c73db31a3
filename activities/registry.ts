/**
 * The one declaration of every activity: its name and where it runs. Worker registration (`activitiesFor`) and the
 * workflows' typed proxies (`workflows/proxies.ts`) both derive from `ACTIVITY_PLACEMENT`, so a workflow cannot
 * call an activity that no worker registers, nor call a GPU activity on the CPU queue (a type error).
 *
 * Placements:
 *  - `cpu`: the shared CPU queue (`sophia-cpu`): data, checkpoint lookups, annotation, reports;
 *  - `gpu`: the engine (shared `sophia-gpu` queue, or a GPU worker's own queue that holds the run's models);
 *  - `local`: short CPU steps run as local activities by the worker that runs the workflow (the CPU worker);
 *    histories recorded before they became local scheduled them on the CPU queue, so they may be called there too.
 *
 * Pure (type imports only): workflow code imports it.
 */
import type { DataActivities } from './data';
import type { EvaluationActivities } from './evaluation';
import type { ModelLineActivities } from './model-lines';
import type { RewardModelActivities } from './reward-model';
import type { RlActivities } from './rl';
import type { SmokeActivities } from './smoke';
import type { TrackingActivities } from './tracking';
import type { TrainingActivities } from './training';

/** Every activity Sophia's workers run, by name. */
export type SophiaActivities = DataActivities &
  EvaluationActivities &
  ModelLineActivities &
  RewardModelActivities &
  RlActivities &
  SmokeActivities &
  TrackingActivities &
  TrainingActivities;

export type ActivityName = Extract<keyof SophiaActivities, string>;
export type ActivityPlacement = 'cpu' | 'gpu' | 'local';
export type WorkerKind = 'cpu' | 'gpu';

/** Where each activity runs. Adding an activity to a group without a line here is a type error, and so is a stale line. */
export const ACTIVITY_PLACEMENT = {
  // data and model lines
  prepareData: 'cpu',
  checkRunRoom: 'cpu',
  prepareLineRun: 'cpu',
  recordLineRun: 'cpu',
  // supervised training in chunks (SFT warmup; the reward model's chunks are below)
  runSftChunk: 'gpu',
  latestCheckpoint: 'cpu',
  // evaluation and the report
  evaluateCheckpoint: 'gpu',
  writeRunReport: 'cpu',
  // the thinking reward model
  sampleRewardData: 'gpu',
  annotateRewardData: 'cpu',
  runRewardModelChunk: 'gpu',
  evaluateRewardModel: 'gpu',
  // Trust-GRPO, one RL step at a time
  rolloutStep: 'gpu',
  outcomeRewards: 'local',
  thinkingRewards: 'gpu',
  computeAdvantages: 'local',
  policyUpdate: 'gpu',
  checkpointPolicy: 'gpu',
  // experiment tracking (MLflow), beside the run
  syncTracking: 'cpu',
  // the storage smoke workflow
  writeSmokeCheckpoint: 'cpu',
  verifySmokeCheckpoint: 'cpu',
} as const satisfies Record<ActivityName, ActivityPlacement>;

/** Placements each kind of worker registers: the CPU worker hosts the workflows, so it runs their local activities too. */
export const WORKER_PLACEMENTS: Readonly<Record<WorkerKind, readonly ActivityPlacement[]>> = { cpu: ['cpu', 'local'], gpu: ['gpu'] };

type Placed = typeof ACTIVITY_PLACEMENT;
/** The names of the activities with one of the given placements. */
export type ActivityNamesOn<P extends ActivityPlacement> = { [K in ActivityName]: Placed[K] extends P ? K : never }[ActivityName];
/** The activities with one of the given placements (what a proxy on that queue may call). */
export type ActivitiesOn<P extends ActivityPlacement> = Pick<SophiaActivities, ActivityNamesOn<P>>;

/** The names a worker of `kind` registers. */
export function activityNamesFor(kind: WorkerKind): ActivityName[] {
  const placements = WORKER_PLACEMENTS[kind];
  return (Object.keys(ACTIVITY_PLACEMENT) as ActivityName[]).filter((name) => placements.includes(ACTIVITY_PLACEMENT[name]));
}

type ActivityFn = (...args: never[]) => Promise<unknown>;

/**
 * The activity functions a worker of `kind` registers, taken from all of the process's groups. Throws when the
 * groups and the registry disagree (a function the registry does not place, or a placed name no group implements).
 */
export function activitiesFor(kind: WorkerKind, groups: Readonly<Record<string, ActivityFn>>): Record<string, ActivityFn> {
  const unplaced = Object.keys(groups).filter((name) => !(name in ACTIVITY_PLACEMENT));
  if (unplaced.length > 0) throw new Error(`activities without a placement in activities/registry.ts: ${unplaced.join(', ')}`);
  const out: Record<string, ActivityFn> = {};
  for (const name of activityNamesFor(kind)) {
    const fn = groups[name];
    if (!fn) throw new Error(`activities/registry.ts places ${name} on ${ACTIVITY_PLACEMENT[name]}, but no activity group implements it`);
    out[name] = fn;
  }
  return out;
}
