/**
 * The one typed source of Temporal settings: the deployment's identity, connection, task queue names, activity
 * timeouts and retry policies, and worker slots (docs/architecture.md §2).
 *
 * `DEFAULT_TEMPORAL_CONFIG` holds the defaults; `loadTemporalConfig(env)` applies environment overrides
 * (listed in `TEMPORAL_ENV_VARS`, with docs) and validates the result once, at start, throwing a `ConfigError`
 * that names the variable and the fix.
 *
 * This module is pure (no Node built-ins, no `process`): the environment is passed in. Workflow code never
 * reads the environment; the client that starts a workflow resolves the config and passes the activity profiles
 * in the workflow input, so they are recorded in history and replay deterministically.
 */
import type { ActivityOptions, LocalActivityOptions, RetryPolicy } from '@temporalio/common';
import { formatDurationMs, parseDurationMs } from './common/duration';
import { ConfigError, NON_RETRYABLE_ERROR_TYPES } from './common/errors';

/** Retry policy for one class of activities (Temporal `RetryPolicy`, in milliseconds). */
export interface RetrySettings {
  initialIntervalMs: number;
  /** Each retry waits `backoffCoefficient` times longer than the previous one, up to `maximumIntervalMs`. */
  backoffCoefficient: number;
  maximumIntervalMs: number;
  /** Attempts in total, including the first; 0 = unlimited (bounded by the start-to-close timeouts). */
  maximumAttempts: number;
  /** Failure types (error class names) that are never retried: bad config, corrupt data. */
  nonRetryableErrorTypes: string[];
}

/** How activities of one class are scheduled: where they run, how long they may take, how they retry. */
export interface ActivityProfile {
  taskQueue: string;
  /** Upper bound for one attempt. Training activities run a chunk of steps, not a whole stage. */
  startToCloseTimeoutMs: number;
  /** A worker that stops heartbeating for this long is presumed lost; the attempt is retried elsewhere. */
  heartbeatTimeoutMs: number;
  retry: RetrySettings;
}

/** Polling and concurrency of one worker process. */
export interface WorkerSettings {
  /** Activities this process runs at once. One per GPU for engine work: the model owns the device. */
  maxConcurrentActivityTaskExecutions: number;
  maxConcurrentWorkflowTaskExecutions: number;
  /** On SIGTERM, how long running activities get to checkpoint and finish before they are cancelled. */
  shutdownGraceTimeMs: number;
}

export interface TemporalConfig {
  /**
   * This deployment's identity on its Temporal namespace: its task queues (`{deployment}-cpu`, `{deployment}-gpu`, and
   * each GPU worker's own `{deployment}-gpu-w-…`) and the workflow and schedule ids of its runs (`common/run-layout.ts`)
   * derive from it, so deployments sharing a namespace never run, list or control each other's work. Workers and
   * clients of one deployment must agree on it (`SOPHIA_DEPLOYMENT`).
   */
  deployment: string;
  connection: {
    /** `host:port` of the Temporal frontend (dev server, self-hosted cluster or Temporal Cloud). */
    address: string;
    namespace: string;
    tls: boolean;
    /** Temporal Cloud API key. Never logged. */
    apiKey: string | undefined;
  };
  taskQueues: {
    /** Data, outcome rewards, Trust-GRPO math, grading, reports; also hosts the workflows. */
    cpu: string;
    /** Model engine work (train steps, rollouts, reward-model scoring). */
    gpu: string;
  };
  activities: {
    cpu: ActivityProfile;
    gpu: ActivityProfile;
  };
  workers: {
    cpu: WorkerSettings;
    gpu: WorkerSettings;
  };
  /**
   * How long a training chunk waits to start on the queue of the GPU worker that holds the run's model before it
   * falls back to the shared GPU queue (that worker is presumed gone; another reloads from storage).
   */
  gpuPinTimeoutMs: number;
  /**
   * When a running activity's last heartbeat is overdue, as a fraction of its heartbeat timeout (0 < x < 1).
   * Activities heartbeat after every training step, rollout phase or batch of evaluated examples, so a longer silence
   * means a lost or hung worker: `sophia status`, `sophia run`'s bar and the API then say "no heartbeat for N s from
   * worker W" at once, instead of showing the last step until the heartbeat timeout has the attempt retried elsewhere.
   * Display only: Temporal's heartbeat timeout still decides when the attempt is given up.
   */
  heartbeatOverdueFraction: number;
  /**
   * Where a worker keeps the models it downloads for torch runs (`engine.model: s3://…`; storage/model-cache.ts), an
   * absolute path; unset: `{SOPHIA_HOME}/models` (`modelCacheDir`).
   */
  modelCacheDir?: string;
  /**
   * Where a worker stages engine states on local disk (`activities/engine-checkpoints.ts`): a state is written here
   * before it is uploaded, and a checkpoint downloaded here before it is loaded; each folder is removed when done.
   * An absolute path with room for two of the run's largest states (a 7B policy with AdamW moments: ~75 GB each);
   * unset: the OS temp folder (TMPDIR).
   */
  scratchDir?: string;
}

/** The deployment whose names are those Sophia always used (`sophia-cpu`, `sophia-gpu`, `sophia-{runId}`). */
const DEFAULT_DEPLOYMENT = 'sophia';

/** The task queues a deployment's workers poll, unless SOPHIA_TASK_QUEUE_CPU/GPU name others. */
export const deploymentTaskQueues = (deployment: string): TemporalConfig['taskQueues'] => ({ cpu: `${deployment}-cpu`, gpu: `${deployment}-gpu` });

const baseRetry: RetrySettings = {
  initialIntervalMs: 1_000,
  backoffCoefficient: 2,
  maximumIntervalMs: 60_000,
  maximumAttempts: 10,
  nonRetryableErrorTypes: [...NON_RETRYABLE_ERROR_TYPES],
};

/**
 * How a checkpoint save that finds the storage full (`StorageFullError`: ENOSPC, EDQUOT, HTTP 507) is retried inside
 * its activity, keeping the engine state it has in memory (activities/engine-checkpoints.ts), instead of failing the
 * activity, whose retry would redo every step since the last checkpoint. The waits grow from `initialIntervalMs` by
 * `backoffCoefficient` up to `maximumIntervalMs`; the activity heartbeats meanwhile. Not set from the environment.
 */
export interface StorageFullRetrySettings {
  initialIntervalMs: number;
  backoffCoefficient: number;
  maximumIntervalMs: number;
  /**
   * The longest one save waits in all; then the activity fails, retryably, with the disk-full message. Keep it well
   * below the GPU start-to-close timeout (default 2h), which would end the attempt first.
   */
  totalWaitMs: number;
}

export const STORAGE_FULL_SAVE_RETRY: StorageFullRetrySettings = {
  initialIntervalMs: 5_000,
  backoffCoefficient: 2,
  maximumIntervalMs: 60_000,
  totalWaitMs: 30 * 60_000,
};

/**
 * How often an activity heartbeats while it waits on a checkpoint (the engine writing its state, an upload and
 * commit): a 7B policy's ~75 GB take minutes, longer than the GPU heartbeat timeout, and a quarter of it already
 * shows the activity as stalled. Well under both.
 */
export const CHECKPOINT_KEEPALIVE_MS = 5_000;

export const DEFAULT_TEMPORAL_CONFIG: TemporalConfig = {
  deployment: DEFAULT_DEPLOYMENT,
  connection: { address: 'localhost:7233', namespace: 'default', tls: false, apiKey: undefined },
  taskQueues: deploymentTaskQueues(DEFAULT_DEPLOYMENT),
  activities: {
    cpu: {
      taskQueue: deploymentTaskQueues(DEFAULT_DEPLOYMENT).cpu,
      startToCloseTimeoutMs: 10 * 60_000,
      heartbeatTimeoutMs: 60_000,
      retry: { ...baseRetry, nonRetryableErrorTypes: [...baseRetry.nonRetryableErrorTypes] },
    },
    gpu: {
      taskQueue: deploymentTaskQueues(DEFAULT_DEPLOYMENT).gpu,
      startToCloseTimeoutMs: 2 * 3_600_000,
      heartbeatTimeoutMs: 2 * 60_000,
      retry: { ...baseRetry, nonRetryableErrorTypes: [...baseRetry.nonRetryableErrorTypes] },
    },
  },
  workers: {
    cpu: {
      maxConcurrentActivityTaskExecutions: 4,
      maxConcurrentWorkflowTaskExecutions: 40,
      shutdownGraceTimeMs: 30_000,
    },
    gpu: {
      maxConcurrentActivityTaskExecutions: 1,
      maxConcurrentWorkflowTaskExecutions: 1,
      shutdownGraceTimeMs: 60_000,
    },
  },
  gpuPinTimeoutMs: 30_000,
  heartbeatOverdueFraction: 0.25,
};

type Env = Readonly<Record<string, string | undefined>>;

/** One environment override: which variable, what it sets, how it is parsed. */
export interface EnvOverride {
  name: string;
  doc: string;
  apply(config: TemporalConfig, raw: string): void;
}

function durationOf(name: string, raw: string): number {
  const ms = parseDurationMs(raw);
  if (ms === undefined || ms <= 0) {
    throw new ConfigError(name, `${JSON.stringify(raw)} is not a positive duration`, {
      hint: 'Use a number with a unit, e.g. "90s", "5m" or "2h" (a bare number means milliseconds)',
    });
  }
  return ms;
}

function integerOf(name: string, raw: string, min: number): number {
  const value = Number(raw.trim());
  if (raw.trim() === '' || !Number.isInteger(value) || value < min) {
    throw new ConfigError(name, `${JSON.stringify(raw)} is not an integer ≥ ${min}`, {
      hint: `Set it to a whole number such as ${Math.max(min, 1)}`,
    });
  }
  return value;
}

function numberOf(name: string, raw: string, min: number): number {
  const value = Number(raw.trim());
  if (raw.trim() === '' || !Number.isFinite(value) || value < min) {
    throw new ConfigError(name, `${JSON.stringify(raw)} is not a number ≥ ${min}`);
  }
  return value;
}

function fractionOf(name: string, raw: string): number {
  const value = Number(raw.trim());
  if (raw.trim() === '' || !Number.isFinite(value) || value <= 0 || value >= 1) {
    throw new ConfigError(name, `${JSON.stringify(raw)} is not a fraction between 0 and 1`, { hint: 'Use e.g. 0.25: a quarter of the heartbeat timeout' });
  }
  return value;
}

function absolutePathOf(name: string, raw: string, hint: string): string {
  const dir = raw.trim();
  if (!dir.startsWith('/')) throw new ConfigError(name, `${JSON.stringify(raw)} is not an absolute path`, { hint });
  return dir;
}

function booleanOf(name: string, raw: string): boolean {
  const text = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(text)) return true;
  if (['0', 'false', 'no', 'off'].includes(text)) return false;
  throw new ConfigError(name, `${JSON.stringify(raw)} is not a boolean`, { hint: 'Use "true" or "false"' });
}

const QUEUE_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

function queueOf(name: string, raw: string): string {
  const value = raw.trim();
  if (!QUEUE_RE.test(value)) {
    throw new ConfigError(name, `${JSON.stringify(raw)} is not a valid task queue name`, {
      hint: 'Use letters, digits, ".", "_" and "-" (e.g. "sophia-gpu")',
    });
  }
  return value;
}

/**
 * Deployment names: no "-", which separates the deployment from the rest of every name derived from it (so
 * `lab-cpu` and `lab-run1` can only be deployment `lab`'s); lowercase, so two spellings never name two deployments.
 */
const DEPLOYMENT_RE = /^[a-z0-9][a-z0-9_]{0,31}$/;

function deploymentOf(name: string, raw: string): string {
  const value = raw.trim();
  if (!DEPLOYMENT_RE.test(value)) {
    throw new ConfigError(name, `${JSON.stringify(raw)} is not a deployment name`, {
      hint: 'Use 1–32 lowercase letters, digits and "_", starting with a letter or digit (e.g. "lab" or "team_a"); "-" is not allowed, it separates the deployment from the names derived from it',
    });
  }
  return value;
}

const bothProfiles = (config: TemporalConfig): ActivityProfile[] => [config.activities.cpu, config.activities.gpu];

/** Every environment variable this module reads, in the order they are applied. */
export const TEMPORAL_ENV_VARS: readonly EnvOverride[] = [
  {
    name: 'TEMPORAL_ADDRESS',
    doc: 'Temporal frontend host:port (default localhost:7233)',
    apply: (c, raw) => {
      if (!/^[^\s:/]+:\d{1,5}$/.test(raw.trim())) {
        throw new ConfigError('TEMPORAL_ADDRESS', `${JSON.stringify(raw)} is not host:port`, {
          hint: 'For example "localhost:7233" or "my-ns.a1b2c.tmprl.cloud:7233"',
        });
      }
      c.connection.address = raw.trim();
    },
  },
  {
    name: 'TEMPORAL_NAMESPACE',
    doc: 'Temporal namespace (default "default")',
    apply: (c, raw) => {
      if (raw.trim() === '') throw new ConfigError('TEMPORAL_NAMESPACE', 'must not be empty');
      c.connection.namespace = raw.trim();
    },
  },
  {
    name: 'TEMPORAL_API_KEY',
    doc: 'Temporal Cloud API key; turns TLS on unless TEMPORAL_TLS=false',
    apply: (c, raw) => {
      if (raw.trim() === '') return;
      c.connection.apiKey = raw.trim();
      c.connection.tls = true;
    },
  },
  {
    name: 'TEMPORAL_TLS',
    doc: 'Connect with TLS (true/false, default false; true with an API key)',
    apply: (c, raw) => {
      c.connection.tls = booleanOf('TEMPORAL_TLS', raw);
    },
  },
  {
    name: 'SOPHIA_DEPLOYMENT',
    doc: 'This deployment\'s name on the Temporal namespace; its task queues and run workflow ids derive from it (default "sophia": queues sophia-cpu/sophia-gpu)',
    apply: (c, raw) => {
      c.deployment = deploymentOf('SOPHIA_DEPLOYMENT', raw);
      c.taskQueues = deploymentTaskQueues(c.deployment);
      c.activities.cpu.taskQueue = c.taskQueues.cpu;
      c.activities.gpu.taskQueue = c.taskQueues.gpu;
    },
  },
  {
    name: 'SOPHIA_TASK_QUEUE_CPU',
    doc: 'CPU task queue (default {deployment}-cpu)',
    apply: (c, raw) => {
      const q = queueOf('SOPHIA_TASK_QUEUE_CPU', raw);
      c.taskQueues.cpu = c.activities.cpu.taskQueue = q;
    },
  },
  {
    name: 'SOPHIA_TASK_QUEUE_GPU',
    doc: 'GPU task queue (default {deployment}-gpu)',
    apply: (c, raw) => {
      const q = queueOf('SOPHIA_TASK_QUEUE_GPU', raw);
      c.taskQueues.gpu = c.activities.gpu.taskQueue = q;
    },
  },
  {
    name: 'SOPHIA_CPU_ACTIVITY_SLOTS',
    doc: 'Concurrent activities per CPU worker (default 4)',
    apply: (c, raw) => {
      c.workers.cpu.maxConcurrentActivityTaskExecutions = integerOf('SOPHIA_CPU_ACTIVITY_SLOTS', raw, 1);
    },
  },
  {
    name: 'SOPHIA_GPU_ACTIVITY_SLOTS',
    doc: 'Concurrent engine activities per GPU worker (default 1: one GPU, one model)',
    apply: (c, raw) => {
      c.workers.gpu.maxConcurrentActivityTaskExecutions = integerOf('SOPHIA_GPU_ACTIVITY_SLOTS', raw, 1);
    },
  },
  {
    name: 'SOPHIA_WORKFLOW_SLOTS',
    doc: 'Concurrent workflow tasks per CPU worker (default 40)',
    apply: (c, raw) => {
      c.workers.cpu.maxConcurrentWorkflowTaskExecutions = integerOf('SOPHIA_WORKFLOW_SLOTS', raw, 1);
    },
  },
  {
    name: 'SOPHIA_CPU_START_TO_CLOSE',
    doc: 'Time limit of one CPU activity attempt (default 10m)',
    apply: (c, raw) => {
      c.activities.cpu.startToCloseTimeoutMs = durationOf('SOPHIA_CPU_START_TO_CLOSE', raw);
    },
  },
  {
    name: 'SOPHIA_GPU_START_TO_CLOSE',
    doc: 'Time limit of one engine activity attempt, i.e. one chunk of steps (default 2h)',
    apply: (c, raw) => {
      c.activities.gpu.startToCloseTimeoutMs = durationOf('SOPHIA_GPU_START_TO_CLOSE', raw);
    },
  },
  {
    name: 'SOPHIA_CPU_HEARTBEAT_TIMEOUT',
    doc: 'A CPU activity silent this long is presumed lost (default 1m)',
    apply: (c, raw) => {
      c.activities.cpu.heartbeatTimeoutMs = durationOf('SOPHIA_CPU_HEARTBEAT_TIMEOUT', raw);
    },
  },
  {
    name: 'SOPHIA_GPU_HEARTBEAT_TIMEOUT',
    doc: 'A GPU activity silent this long is presumed lost (default 2m)',
    apply: (c, raw) => {
      c.activities.gpu.heartbeatTimeoutMs = durationOf('SOPHIA_GPU_HEARTBEAT_TIMEOUT', raw);
    },
  },
  {
    name: 'SOPHIA_RETRY_INITIAL_INTERVAL',
    doc: 'First retry delay for all activities (default 1s)',
    apply: (c, raw) => {
      const ms = durationOf('SOPHIA_RETRY_INITIAL_INTERVAL', raw);
      for (const p of bothProfiles(c)) p.retry.initialIntervalMs = ms;
    },
  },
  {
    name: 'SOPHIA_RETRY_MAX_INTERVAL',
    doc: 'Longest retry delay (default 1m)',
    apply: (c, raw) => {
      const ms = durationOf('SOPHIA_RETRY_MAX_INTERVAL', raw);
      for (const p of bothProfiles(c)) p.retry.maximumIntervalMs = ms;
    },
  },
  {
    name: 'SOPHIA_RETRY_BACKOFF',
    doc: 'Retry delay growth factor (default 2)',
    apply: (c, raw) => {
      const value = numberOf('SOPHIA_RETRY_BACKOFF', raw, 1);
      for (const p of bothProfiles(c)) p.retry.backoffCoefficient = value;
    },
  },
  {
    name: 'SOPHIA_RETRY_MAX_ATTEMPTS',
    doc: 'Attempts per activity including the first; 0 = unlimited (default 10)',
    apply: (c, raw) => {
      const value = integerOf('SOPHIA_RETRY_MAX_ATTEMPTS', raw, 0);
      for (const p of bothProfiles(c)) p.retry.maximumAttempts = value;
    },
  },
  {
    name: 'SOPHIA_GPU_PIN_TIMEOUT',
    doc: 'How long a chunk waits for the GPU worker holding its model before any GPU worker takes it (default 30s)',
    apply: (c, raw) => {
      c.gpuPinTimeoutMs = durationOf('SOPHIA_GPU_PIN_TIMEOUT', raw);
    },
  },
  {
    name: 'SOPHIA_HEARTBEAT_OVERDUE',
    doc: 'Show a running activity as stalled ("no heartbeat for N s from worker W") once its last heartbeat is older than this fraction of its heartbeat timeout (default 0.25: 30s GPU, 15s CPU)',
    apply: (c, raw) => {
      c.heartbeatOverdueFraction = fractionOf('SOPHIA_HEARTBEAT_OVERDUE', raw);
    },
  },
  {
    name: 'SOPHIA_SHUTDOWN_GRACE',
    doc: 'On SIGTERM, time running activities get to checkpoint (default 30s CPU, 1m GPU)',
    apply: (c, raw) => {
      const ms = durationOf('SOPHIA_SHUTDOWN_GRACE', raw);
      c.workers.cpu.shutdownGraceTimeMs = c.workers.gpu.shutdownGraceTimeMs = ms;
    },
  },
  {
    name: 'SOPHIA_MODEL_CACHE',
    doc: 'On a GPU worker: the folder where models named by s3:// in run configs are downloaded once and verified (default {SOPHIA_HOME}/models)',
    apply: (c, raw) => {
      c.modelCacheDir = absolutePathOf('SOPHIA_MODEL_CACHE', raw, 'Give the folder where workers keep downloaded models, e.g. /var/cache/sophia/models');
    },
  },
  {
    name: 'SOPHIA_SCRATCH',
    doc: 'On a worker: the local folder where engine states are staged before upload and after download (default the OS temp folder; needs room for two of the largest states)',
    apply: (c, raw) => {
      c.scratchDir = absolutePathOf('SOPHIA_SCRATCH', raw, 'Give a local folder on a disk with room for two checkpoints, e.g. /var/tmp/sophia');
    },
  },
];

/** A deep copy, so callers can mutate what they get without touching the defaults. */
function cloneConfig(config: TemporalConfig): TemporalConfig {
  return JSON.parse(JSON.stringify(config)) as TemporalConfig;
}

/** Checks the relations between fields that single-variable parsing cannot see. */
export function validateTemporalConfig(config: TemporalConfig): void {
  deploymentOf('deployment', config.deployment);
  for (const [name, p] of Object.entries(config.activities)) {
    if (p.heartbeatTimeoutMs >= p.startToCloseTimeoutMs) {
      throw new ConfigError(
        `activities.${name}.heartbeatTimeoutMs`,
        `heartbeat timeout ${formatDurationMs(p.heartbeatTimeoutMs)} must be shorter than the start-to-close timeout ${formatDurationMs(p.startToCloseTimeoutMs)}`,
        { hint: `Lower SOPHIA_${name.toUpperCase()}_HEARTBEAT_TIMEOUT or raise SOPHIA_${name.toUpperCase()}_START_TO_CLOSE` },
      );
    }
    if (p.retry.initialIntervalMs > p.retry.maximumIntervalMs) {
      throw new ConfigError(
        `activities.${name}.retry`,
        `initial retry interval ${formatDurationMs(p.retry.initialIntervalMs)} exceeds the maximum ${formatDurationMs(p.retry.maximumIntervalMs)}`,
        { hint: 'Lower SOPHIA_RETRY_INITIAL_INTERVAL or raise SOPHIA_RETRY_MAX_INTERVAL' },
      );
    }
  }
  for (const kind of ['cpu', 'gpu'] as const) {
    if (config.activities[kind].taskQueue !== config.taskQueues[kind]) {
      throw new ConfigError(`activities.${kind}.taskQueue`, `is ${config.activities[kind].taskQueue} but taskQueues.${kind} is ${config.taskQueues[kind]}`, {
        hint: `Set the queue once, with SOPHIA_TASK_QUEUE_${kind.toUpperCase()}`,
      });
    }
  }
  if (config.taskQueues.cpu === config.taskQueues.gpu) {
    throw new ConfigError('SOPHIA_TASK_QUEUE_GPU', `the GPU queue must differ from the CPU queue (${config.taskQueues.cpu})`, {
      hint: 'Engine work must not be picked up by CPU workers; give the queues different names',
    });
  }
}

/**
 * Defaults + environment overrides, validated. Throws `ConfigError` naming the first bad variable.
 * Empty variables are treated as unset.
 */
export function loadTemporalConfig(env: Env = {}): TemporalConfig {
  const config = cloneConfig(DEFAULT_TEMPORAL_CONFIG);
  for (const override of TEMPORAL_ENV_VARS) {
    const raw = env[override.name];
    if (raw !== undefined && raw !== '') override.apply(config, raw);
  }
  validateTemporalConfig(config);
  return config;
}

/** How long an activity with heartbeat timeout `heartbeatTimeoutMs` may go without a heartbeat before it is shown as stalled (ms). */
export function heartbeatOverdueMs(config: Pick<TemporalConfig, 'heartbeatOverdueFraction'>, heartbeatTimeoutMs: number): number {
  return Math.round(heartbeatTimeoutMs * config.heartbeatOverdueFraction);
}

/** The `proxyActivities` options for a profile (durations in ms, which Temporal accepts). */
export function toActivityOptions(profile: ActivityProfile): ActivityOptions {
  return {
    taskQueue: profile.taskQueue,
    startToCloseTimeout: profile.startToCloseTimeoutMs,
    heartbeatTimeout: profile.heartbeatTimeoutMs,
    retry: retryPolicy(profile),
  };
}

/**
 * Options for a local activity under a profile: run by the worker that runs the workflow task (no task queue, no
 * heartbeats), with the profile's timeout and retry policy. For short CPU steps that need no GPU worker.
 */
export function toLocalActivityOptions(profile: ActivityProfile): LocalActivityOptions {
  return { startToCloseTimeout: profile.startToCloseTimeoutMs, retry: retryPolicy(profile) };
}

function retryPolicy(profile: ActivityProfile): RetryPolicy {
  return {
    initialInterval: profile.retry.initialIntervalMs,
    backoffCoefficient: profile.retry.backoffCoefficient,
    maximumInterval: profile.retry.maximumIntervalMs,
    maximumAttempts: profile.retry.maximumAttempts,
    nonRetryableErrorTypes: [...profile.retry.nonRetryableErrorTypes],
  };
}
