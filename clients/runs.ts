/**
 * Starting, finding and watching runs from a Temporal client (the CLI and the API use this; workers don't).
 *
 * A run's pipeline workflow id is `{deployment}-{runId}` (`sophia-{runId}` in the default deployment); its stages are
 * `{deployment}-{runId}/{stage}` (`common/run-layout.ts`). Starting a run whose id is already running attaches to it; a
 * finished one is never started again.
 */
import { inSpan } from '../observability/tracing';
import { type Client, WorkflowExecutionAlreadyStartedError, type WorkflowExecutionDescription, type WorkflowHandle } from '@temporalio/client';
import { ActivityFailure, ApplicationFailure, ChildWorkflowFailure, TemporalFailure, defaultPayloadConverter } from '@temporalio/common';
import { optionalTsToMs } from '@temporalio/common/lib/time';
import { ACTIVITY_PLACEMENT, type ActivityPlacement } from '../activities/registry';
import { SophiaError } from '../common/errors';
import { pipelineWorkflowId, stageWorkflowId } from '../common/run-layout';
import type { RunConfig } from '../config/run-config';
import { hashConfig } from '../storage/hashing';
import type { StoreIdentity } from '../storage/store-id';
import { DEFAULT_TEMPORAL_CONFIG, type TemporalConfig, heartbeatOverdueMs } from '../temporal.config';
import type { trainingPipeline } from '../workflows/pipeline';
import { type PipelineInput, type RunProgress, pauseSignal, progressQuery, resumeSignal, stageProgressQuery, stopSignal } from '../workflows/types';

/**
 * A run as a client starts it. `store` is the run's storage as `identifyStore` found it (its location and id, which
 * the run's activities check before they write); a bare location starts a run whose workers check the location only.
 */
export function pipelineInput(runId: string, config: RunConfig, store: StoreIdentity | string, temporal: TemporalConfig): PipelineInput {
  return {
    runId,
    config,
    configHash: hashConfig(config),
    storage: typeof store === 'string' ? store : store.location,
    ...(typeof store === 'string' ? {} : { storeId: store.id }),
    deployment: temporal.deployment,
    profiles: { cpu: temporal.activities.cpu, gpu: temporal.activities.gpu, pinnedScheduleToStartMs: temporal.gpuPinTimeoutMs },
  };
}

export type PipelineHandle = WorkflowHandle<typeof trainingPipeline>;

export interface StartedRun {
  handle: PipelineHandle;
  /** `started` now, `attached` to a running one, or `finished` earlier. */
  state: 'started' | 'attached' | 'finished';
}

export async function startRun(client: Client, temporal: TemporalConfig, input: PipelineInput): Promise<StartedRun> {
  // The span the run's trace hangs from (under the API request that asked for it, if any): the workflow start below
  // carries it to every workflow, activity and engine call of the run.
  return inSpan('start run', { 'sophia.run.id': input.runId, 'sophia.config': input.config.name ?? 'custom' }, () => startRunIn(client, temporal, input));
}

async function startRunIn(client: Client, temporal: TemporalConfig, input: PipelineInput): Promise<StartedRun> {
  const workflowId = pipelineWorkflowId(temporal.deployment, input.runId);
  const existing = client.workflow.getHandle<typeof trainingPipeline>(workflowId);
  const running = await existing.describe().then(
    (d) => d.status.name === 'RUNNING',
    () => false,
  );
  if (running) return { handle: existing, state: 'attached' };
  try {
    const handle = await client.workflow.start<typeof trainingPipeline>('trainingPipeline', {
      taskQueue: temporal.taskQueues.cpu,
      workflowId,
      workflowIdConflictPolicy: 'USE_EXISTING',
      workflowIdReusePolicy: 'REJECT_DUPLICATE',
      args: [input],
      memo: { storage: input.storage, config: input.config.name ?? 'custom' },
    });
    return { handle, state: 'started' };
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) return { handle: existing, state: 'finished' };
    throw err;
  }
}

/** The start input of a pipeline's latest execution, read from its first history event (no worker needs to answer). */
export async function pipelineStartInput(client: Client, workflowId: string): Promise<PipelineInput | undefined> {
  const history = await client.workflowService.getWorkflowExecutionHistory({ namespace: client.options.namespace, execution: { workflowId }, maximumPageSize: 1 });
  const payload = history.history?.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
  return payload ? defaultPayloadConverter.fromPayload<PipelineInput>(payload) : undefined;
}

/**
 * The running run `runId`'s config differs from `config`: its top-level fields that differ (by hash of the
 * pipeline's input config), or undefined when no run of that id is running or it runs this very config. The
 * config is read from the run's first history event (its start input), so no worker needs to answer. `temporal`
 * names the deployment whose run it is (pass the deployment's config; the default is the `sophia` deployment).
 */
export async function runningConfigDifference(client: Client, runId: string, config: RunConfig, temporal: Pick<TemporalConfig, 'deployment'> = DEFAULT_TEMPORAL_CONFIG): Promise<string[] | undefined> {
  const workflowId = pipelineWorkflowId(temporal.deployment, runId);
  const running = await client.workflow
    .getHandle(workflowId)
    .describe()
    .then((d) => d.status.name === 'RUNNING', () => false);
  if (!running) return undefined;
  const started = await pipelineStartInput(client, workflowId);
  if (!started) return undefined;
  if (hashConfig(started.config) === hashConfig(config)) return undefined;
  const was = started.config as unknown as Record<string, unknown>;
  const now = config as unknown as Record<string, unknown>;
  const fields = [...new Set([...Object.keys(was), ...Object.keys(now)])].filter((k) => hashConfig(was[k] ?? null) !== hashConfig(now[k] ?? null));
  return fields.length > 0 ? fields.sort() : ['(config)'];
}

/** Why a run failed, from the innermost cause of its failure (the error an activity or a stage raised). */
export interface RunFailure {
  /** The application error's type (`ConfigError`, `CorruptCheckpointError`, …), else the failure's kind. */
  type: string;
  message: string;
  /** The stage whose child workflow failed, when a stage did. */
  stage: string | undefined;
  /** The activity type that failed, when an activity did. */
  activity: string | undefined;
  /** Why Temporal stopped retrying the activity (`maximum attempts reached`, `non-retryable failure`), when known. */
  retryState: string | undefined;
}

/**
 * Walks a run's failure down its `cause` chain (WorkflowFailedError → ChildWorkflowFailure → ActivityFailure →
 * ApplicationFailure, whose `type` is the error class: `activities/failures.ts`), keeping the stage and the activity met on the way: the outer messages ("Workflow
 * execution failed", "Child Workflow execution failed", "Activity task failed") say only where it passed.
 */
export function runFailure(err: unknown): RunFailure {
  let stage: string | undefined;
  let activity: string | undefined;
  let retryState: string | undefined;
  let innermost: unknown = err;
  // Down to the first ApplicationFailure: the error the activity (or a workflow) raised, with its type. Below it
  // is only that error again as the worker serialized it (and its own causes, which its message already tells).
  for (let at: unknown = err; at instanceof Error; at = at instanceof ApplicationFailure ? undefined : at.cause) {
    innermost = at;
    if (at instanceof ChildWorkflowFailure && at.execution.workflowId?.includes('/')) stage = at.execution.workflowId.split('/').at(-1);
    if (at instanceof ActivityFailure) {
      activity = at.activityType;
      retryState = at.retryState !== undefined ? String(at.retryState).replace(/^RETRY_STATE_/, '').toLowerCase().replaceAll('_', ' ') : undefined;
    }
  }
  const type = innermost instanceof ApplicationFailure ? (innermost.type ?? 'Error') : innermost instanceof Error ? innermost.name : 'Error';
  const message = innermost instanceof TemporalFailure || innermost instanceof Error ? innermost.message : String(innermost);
  return { type, message, stage, activity, retryState };
}

/** Why a closed (not running) pipeline ended, from its result: its innermost cause when it failed, else its status. */
export function closedRunFailure(handle: WorkflowHandle, status: string): Promise<RunFailure> {
  return handle.result().then(
    (): RunFailure => ({ type: status, message: status.toLowerCase(), stage: undefined, activity: undefined, retryState: undefined }),
    (err: unknown) => runFailure(err),
  );
}

export interface LiveProgress extends RunProgress {
  /** From the running training activity's last heartbeat: finer than the stage's chunk-level progress. */
  live: { step: number; totalSteps: number; loss: number | undefined; checkpointKey: string | undefined } | undefined;
  /** What the running activity's last heartbeat says it is at, when that is not a training step (`rollouts`, `test 37/100`). */
  phase?: string | undefined;
  /** Why a failed (or cancelled, terminated, timed-out) run ended: its innermost cause; `error` is its message. */
  failure?: RunFailure | undefined;
  /** The running activity's heartbeat is overdue (its worker may be gone); absent while heartbeats arrive. */
  stalled?: Stall | undefined;
}

/** A running activity whose heartbeat is overdue: its worker was killed, hangs or lost the server. */
export interface Stall {
  /** Whole seconds since its last heartbeat, or since its attempt started if it has not heartbeated since. */
  seconds: number;
  /** The identity of the worker running the attempt (`gpu@host-pid-ab12`), when the server knows it. */
  worker: string | undefined;
  /** The activity type (`runSftChunk`, `rolloutStep`, …). */
  activity: string;
  /** The attempt that went silent (1: the first). */
  attempt: number;
  /**
   * false: the attempt has sent no heartbeat (it was still loading); `seconds` count from its start, or for a retry
   * (whose start the server no longer keeps) from its heartbeat timeout.
   */
  heartbeated: boolean;
  /** The attempt's heartbeat timeout has passed: Temporal has scheduled attempt `attempt + 1`, which waits for a worker. */
  retrying: boolean;
  /** All of it in words (`stallText`), as `sophia status`, `sophia run`'s bar and the dashboard show it. */
  message: string;
}

/** A stall in words: "no heartbeat for 34 s from worker gpu@host-41-ab12 (runSftChunk, attempt 1)". */
export function stallText(s: Omit<Stall, 'message'>): string {
  const attempt = s.retrying ? `attempt ${s.attempt} timed out; attempt ${s.attempt + 1} waits for a worker` : `attempt ${s.attempt}${s.heartbeated ? '' : ', none since it started'}`;
  return `no heartbeat for ${s.seconds} s from ${s.worker ? `worker ${s.worker}` : 'an unknown worker'} (${s.activity}, ${attempt})`;
}

/** One of a workflow's pending activities, as DescribeWorkflowExecution answers it. */
export type PendingActivity = NonNullable<WorkflowExecutionDescription['raw']['pendingActivities']>[number];

/** PendingActivityState.STARTED and CANCEL_REQUESTED (temporal.api.enums.v1): a worker runs the attempt (and heartbeats). */
const RUNNING_ACTIVITY_STATES = new Set([2, 3]);
/** PendingActivityState.SCHEDULED: the next attempt waits for a worker (or for its retry interval). */
const SCHEDULED_ACTIVITY_STATE = 1;
/** TimeoutType.HEARTBEAT (temporal.api.enums.v1): how the server ends an attempt whose worker went silent. */
const HEARTBEAT_TIMEOUT = 4;

/**
 * The most overdue of `pending`'s activities, or undefined when none is overdue. An attempt's last sign of life is
 * its last heartbeat, or its start when it has not heartbeated since (a heartbeat older than the start is the previous
 * attempt's: the server keeps it across retries); it is overdue once older than `overdueMs(activity)`. An activity
 * waiting for a worker is not expected to heartbeat, except a retry after its attempt's heartbeat timeout: its worker
 * went silent and nothing has taken over yet, so that stall goes on until another worker starts it.
 *
 * The times are the server's and `nowMs` the caller's clock: a skew between the two shifts `seconds` by as much
 * (the threshold, tens of seconds by default, leaves room for the few seconds NTP-synced machines differ by).
 */
export function heartbeatStall(pending: readonly PendingActivity[], nowMs: number, overdueMs: (activity: PendingActivity) => number): Stall | undefined {
  let worst: Stall | undefined;
  for (const a of pending) {
    const attempt = a.attempt ?? 1;
    const heartbeat = optionalTsToMs(a.lastHeartbeatTime);
    let since: number | undefined;
    let heartbeated: boolean;
    const retrying = Number(a.state) === SCHEDULED_ACTIVITY_STATE && attempt > 1 && Number(a.lastFailure?.timeoutFailureInfo?.timeoutType) === HEARTBEAT_TIMEOUT;
    if (retrying) {
      // The retry was scheduled when the timeout fired (`scheduledTime`); the silent attempt's start is gone.
      heartbeated = heartbeat !== undefined;
      since = heartbeat ?? optionalTsToMs(a.scheduledTime);
    } else {
      const started = optionalTsToMs(a.lastStartedTime);
      if (!RUNNING_ACTIVITY_STATES.has(Number(a.state)) || started === undefined) continue;
      heartbeated = heartbeat !== undefined && heartbeat >= started;
      since = heartbeated ? heartbeat : started;
    }
    if (since === undefined) continue;
    const silentMs = nowMs - since;
    const activity = a.activityType?.name ?? 'activity';
    if (silentMs < overdueMs(a) || (worst && worst.seconds >= Math.floor(silentMs / 1000))) continue;
    worst = { seconds: Math.floor(silentMs / 1000), worker: a.lastWorkerIdentity || undefined, activity, attempt: retrying ? attempt - 1 : attempt, heartbeated, retrying, message: '' };
  }
  return worst && { ...worst, message: stallText(worst) };
}

/**
 * When a pending activity is overdue under `temporal`: `SOPHIA_HEARTBEAT_OVERDUE` × its heartbeat timeout, the one
 * it was scheduled with (servers that report the activity's options), else its profile's here (GPU or CPU, by its
 * placement).
 */
export function activityOverdueMs(temporal: Pick<TemporalConfig, 'activities' | 'heartbeatOverdueFraction'>): (activity: PendingActivity) => number {
  const placements: Readonly<Record<string, ActivityPlacement | undefined>> = ACTIVITY_PLACEMENT;
  return (a) => {
    const scheduled = optionalTsToMs(a.activityOptions?.heartbeatTimeout);
    const profile = temporal.activities[placements[a.activityType?.name ?? ''] === 'gpu' ? 'gpu' : 'cpu'];
    return heartbeatOverdueMs(temporal, scheduled || profile.heartbeatTimeoutMs);
  };
}

/**
 * Reads an activity heartbeat's details: a training chunk's `{ step, totalSteps, loss, checkpointKey }` is
 * `live`; an RL step's `{ phase }`, an evaluation's `{ split, done, total }`, a long loop's `{ phase, done, total }`
 * (annotating, scoring) or reward-data sampling's `{ temperature, samples }` becomes a `phase` in words. Anything
 * else is neither.
 */
export function readHeartbeat(details: unknown): Pick<LiveProgress, 'live' | 'phase'> {
  if (typeof details !== 'object' || details === null) return { live: undefined, phase: undefined };
  const d = details as Record<string, unknown>;
  const num = (k: string) => (typeof d[k] === 'number' ? d[k] : undefined);
  const str = (k: string) => (typeof d[k] === 'string' ? d[k] : undefined);
  const step = num('step');
  const totalSteps = num('totalSteps');
  if (step !== undefined && totalSteps !== undefined) {
    return { live: { step, totalSteps, loss: num('loss'), checkpointKey: str('checkpointKey') }, phase: str('phase') };
  }
  const split = str('split');
  const done = num('done');
  const total = num('total');
  let phase = str('phase');
  if (split !== undefined && done !== undefined && total !== undefined) phase = `${split} ${done}/${total}`;
  else if (phase !== undefined && done !== undefined && total !== undefined) phase = `${phase} ${done}/${total}`;
  const samples = num('samples');
  const temperature = num('temperature');
  if (samples !== undefined && temperature !== undefined) phase = `${samples} responses sampled (temperature ${temperature})`;
  return { live: undefined, phase };
}

/**
 * The pipeline's progress plus the running stage's latest activity heartbeat, and whether that heartbeat is overdue
 * (`stalled`) under `temporal`'s settings (pass the deployment's: its name, which names the run's workflows, its heartbeat timeouts and `SOPHIA_HEARTBEAT_OVERDUE`).
 */
export async function runProgress(client: Client, runId: string, temporal: Pick<TemporalConfig, 'deployment' | 'activities' | 'heartbeatOverdueFraction'> = DEFAULT_TEMPORAL_CONFIG): Promise<LiveProgress> {
  const handle = client.workflow.getHandle<typeof trainingPipeline>(pipelineWorkflowId(temporal.deployment, runId));
  const description = await handle.describe();
  const status = description.status.name;
  if (status === 'COMPLETED') return { ...(await handle.result()), live: undefined };
  if (status !== 'RUNNING') {
    // Failed, cancelled, terminated or timed out: say why without needing a worker to answer a query.
    const failure = await closedRunFailure(handle, status);
    return { runId, status: 'failed', stages: [], stageIndex: 0, current: undefined, checkpoints: {}, results: {}, reportKey: undefined, error: failure.message, failure, live: undefined };
  }
  // A query waits for a worker to answer it; with none polling, say so at once instead of waiting (and retrying).
  // (If the server will not describe the queue, the query below still finds out, only more slowly.)
  if (!(await hasWorkflowPollers(client, description.taskQueue).catch(() => true))) {
    throw new SophiaError('unavailable', `run ${runId} is running but no worker polls its task queue ${description.taskQueue}`, {
      hint: `Start workers (sophia worker --queue cpu --queue gpu), or run \`sophia run --config … --run-id ${runId}\`, which runs them in-process`,
    });
  }
  const progress = await handle.query(progressQuery).catch((err: unknown) => {
    // A query is answered by a worker hosting the workflow; with none polling the server refuses it.
    const detail = err instanceof Error && err.cause instanceof Error ? err.cause.message : String(err);
    throw new SophiaError('unavailable', `run ${runId} is running but no worker answers its progress query (${detail})`, {
      hint: `Start workers (sophia worker --queue cpu --queue gpu), or run \`sophia run --config … --run-id ${runId}\`, which runs them in-process`,
      cause: err,
    });
  });
  let heartbeat: Pick<LiveProgress, 'live' | 'phase' | 'stalled'> = { live: undefined, phase: undefined };
  const stage = progress.stages[progress.stageIndex];
  if (stage && progress.status !== 'completed') {
    // The running stage answers its own progress (since the `progress-by-query` patch stages no longer signal it to
    // the pipeline); its pending activity's last heartbeat gives the step within the chunk.
    const child = client.workflow.getHandle(stageWorkflowId(handle.workflowId, stage));
    const [description, current] = await Promise.all([child.describe().catch(() => undefined), child.query(stageProgressQuery).catch(() => undefined)]);
    if (current?.stage === stage) progress.current = current;
    const pending = description?.raw.pendingActivities ?? [];
    const payload = pending[0]?.heartbeatDetails?.payloads?.[0];
    if (payload) heartbeat = readHeartbeat(defaultPayloadConverter.fromPayload<unknown>(payload));
    const stalled = heartbeatStall(pending, Date.now(), activityOverdueMs(temporal));
    if (stalled) heartbeat.stalled = stalled;
  }
  return { ...progress, ...heartbeat };
}

/** TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW and TaskQueueKind.TASK_QUEUE_KIND_NORMAL (temporal.api.enums.v1). */
const WORKFLOW_QUEUE_TYPE = 1;
const NORMAL_QUEUE_KIND = 1;

/** Whether any worker has recently polled `taskQueue` for workflow tasks (the server keeps pollers for a few minutes). */
async function hasWorkflowPollers(client: Client, taskQueue: string): Promise<boolean> {
  const res = await client.workflowService.describeTaskQueue({
    namespace: client.options.namespace,
    taskQueue: { name: taskQueue, kind: NORMAL_QUEUE_KIND },
    taskQueueType: WORKFLOW_QUEUE_TYPE,
  });
  return (res.pollers?.length ?? 0) > 0;
}

export type ControlAction = 'pause' | 'resume' | 'stop' | 'cancel';

/** Sends a control request to a run's pipeline (of `temporal`'s deployment); returns what it will do, in words. */
export async function controlRun(client: Client, temporal: Pick<TemporalConfig, 'deployment'>, runId: string, action: ControlAction): Promise<string> {
  const handle = client.workflow.getHandle(pipelineWorkflowId(temporal.deployment, runId));
  if (action === 'cancel') await handle.cancel();
  else await handle.signal(action === 'pause' ? pauseSignal : action === 'resume' ? resumeSignal : stopSignal);
  return {
    pause: 'pause requested: the running chunk commits a checkpoint, then the run waits for resume',
    resume: 'resume requested',
    stop: 'stop requested: training checkpoints now and ends, then the run evaluates and finishes',
    cancel: 'cancel requested: running work stops; committed checkpoints are kept',
  }[action];
}
