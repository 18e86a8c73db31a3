/**
 * Builds Sophia's workers from `temporal.config.ts`.
 *
 * - The CPU worker polls `{deployment}-cpu` (`sophia-cpu` in the default deployment): it hosts the workflows
 *   (deterministic orchestration) and the CPU activities (data, checkpoint lookups, reports).
 * - A GPU worker polls `{deployment}-gpu` and its own queue (`{deployment}-gpu-w-…`, unique per process) with the engine
 *   activities. Both pollers share one engine pool and one lock: one engine activity at a time per GPU, and a
 *   run's consecutive chunks, routed to the worker's own queue, find their model still in memory.
 *
 * Slots and the shutdown grace time (how long a running activity gets before it is cancelled — our training
 * activities commit a checkpoint when cancelled) come from the config. Heartbeats are flushed within a
 * second or two so cancellations (pause, stop, shutdown) reach activities quickly.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import * as path from 'node:path';
import { Runtime, Worker, type NativeConnection, type WorkflowBundle } from '@temporalio/worker';
import { createDataActivities } from '../activities/data';
import { EnginePool } from '../activities/engine-pool';
import { createEvaluationActivities } from '../activities/evaluation';
import { createModelLineActivities } from '../activities/model-lines';
import { type WorkerKind, activitiesFor } from '../activities/registry';
import { RunData } from '../activities/run-data';
import { createSmokeActivities } from '../activities/smoke';
import { createRewardModelActivities } from '../activities/reward-model';
import { createRlActivities } from '../activities/rl';
import { createTrackingActivities } from '../activities/tracking';
import { createTrainingActivities } from '../activities/training';
import { ModelSource } from '../activities/models';
import { type EngineContext, type EngineOptions, TorchEngineHosts, createEngine } from '../engine/factory';
import type { Engine } from '../engine/types';
import { CheckpointStore } from '../storage/checkpoints';
import type { Storage } from '../storage/types';
import { tracedMethods, workerTracing, workflowInterceptorModules } from '../observability/tracing';
import type { TemporalConfig } from '../temporal.config';
import { sophiaHome } from '../cli/paths';
import { workflowBundle } from './workflow-bundle';


/** Directory of the workflow sources; the bundler resolves its `index`. */
export const WORKFLOWS_PATH = path.join(__dirname, '..', 'workflows');

/**
 * The workflow bundle for this process's workers: built once per version of the code and kept in
 * `{SOPHIA_HOME}/cache/workflow-bundles/` (workers/workflow-bundle.ts), with tracing's interceptors when it traces.
 */
export function sophiaWorkflowBundle(options: { interceptorModules?: readonly string[]; env?: NodeJS.ProcessEnv } = {}): Promise<WorkflowBundle> {
  return workflowBundle({
    workflowsPath: WORKFLOWS_PATH,
    interceptorModules: options.interceptorModules ?? workflowInterceptorModules(),
    cacheDir: path.join(sophiaHome(options.env ?? process.env, path.join(__dirname, '..')), 'cache', 'workflow-bundles'),
  });
}

type ActivityMap = Record<string, (...args: never[]) => Promise<unknown>>;

export interface SophiaWorkerOptions {
  kind: WorkerKind;
  connection: NativeConnection;
  config: TemporalConfig;
  /** Activity functions by name (merged groups of `createXActivities`). */
  activities: ActivityMap;
  /** Poll this queue instead of the kind's shared one (a GPU worker's own queue). */
  taskQueue?: string;
  /** Prebuilt workflow bundle (a tracing worker needs one built with WORKFLOW_TRACING_MODULES); default: `sophiaWorkflowBundle()`. */
  workflowBundle?: WorkflowBundle;
  identity?: string;
}

export async function createSophiaWorker(options: SophiaWorkerOptions): Promise<Worker> {
  const { kind, connection, config } = options;
  const settings = config.workers[kind];
  const hostsWorkflows = kind === 'cpu';
  return Worker.create({
    connection,
    namespace: config.connection.namespace,
    taskQueue: options.taskQueue ?? config.taskQueues[kind],
    activities: options.activities,
    ...(hostsWorkflows ? { workflowBundle: options.workflowBundle ?? (await sophiaWorkflowBundle()) } : {}),
    maxConcurrentActivityTaskExecutions: settings.maxConcurrentActivityTaskExecutions,
    ...(hostsWorkflows ? { maxConcurrentWorkflowTaskExecutions: settings.maxConcurrentWorkflowTaskExecutions } : {}),
    shutdownGraceTime: settings.shutdownGraceTimeMs,
    maxHeartbeatThrottleInterval: '2s',
    defaultHeartbeatThrottleInterval: '1s',
    ...(options.identity ? { identity: options.identity } : {}),
    // Spans of workflows, activities and their log lines' trace ids, when this process traces.
    ...workerTracing(),
  });
}

export interface WorkerSetOptions {
  kinds: readonly WorkerKind[];
  connection: NativeConnection;
  config: TemporalConfig;
  storage: Storage;
  workflowBundle?: WorkflowBundle;
  /**
   * How the GPU worker makes an engine from a run's engine options (default `createEngine`). Benchmarks pass their own
   * to compare engine internals; everything else leaves it: a run's config decides its engines.
   */
  makeEngine?: (options: EngineOptions) => Engine;
  /** Where downloaded (s3://) models are kept: default SOPHIA_MODEL_CACHE, else `{SOPHIA_HOME}/models`. */
  modelCacheDir?: string;
}

/** The workers of one process (CPU, GPU or both) over one storage, ready to run. */
export class WorkerSet {
  readonly workers: Worker[] = [];
  /** The GPU worker's own queue, if this process runs one. */
  gpuQueue: string | undefined;
  readonly identity: string;
  private readonly engines: EnginePool;
  private readonly store: CheckpointStore;

  private constructor(readonly options: WorkerSetOptions) {
    this.identity = `${hostname()}-${process.pid}-${randomBytes(2).toString('hex')}`;
    // A run's RL step uses three models (policy, reference, reward model), plus one for periodic evaluation. The
    // worker's PyTorch engines are models of one engine process (per threads setting): one CUDA context and one
    // memory allocator for the GPU. An engine process's stderr lines go to this worker's structured log, with the worker's identity; its line per
    // call ("op done", with the op's time) at debug, where one a step would not flood the log.
    const onLog: EngineContext['onLog'] = ({ level, message, fields }) => {
      const at = message === 'op done' ? 'DEBUG' : (level.toUpperCase() as 'DEBUG' | 'INFO' | 'WARN' | 'ERROR');
      Runtime.instance().logger.log(at, `engine: ${message}`, { ...fields, worker: this.identity });
    };
    const torchHosts = new TorchEngineHosts(onLog);
    const make = options.makeEngine ?? ((engineOptions: EngineOptions) => createEngine(engineOptions, { onLog, torchHosts }));
    // Each engine call an activity makes is a span of the run's trace when this process traces.
    this.engines = new EnginePool((engineOptions) => tracedMethods(make(engineOptions), 'engine', { 'sophia.engine.kind': engineOptions.kind }), 4);
    this.store = new CheckpointStore(options.storage);
  }

  static async create(options: WorkerSetOptions): Promise<WorkerSet> {
    const set = new WorkerSet(options);
    const { connection, config } = options;
    const data = new RunData(options.storage);
    const models = options.modelCacheDir ? new ModelSource({ cacheDir: options.modelCacheDir, env: process.env }) : ModelSource.fromEnv();
    const gpuQueue = `${config.taskQueues.gpu}-w-${set.identity}`;
    const training = createTrainingActivities({ store: set.store, data, engines: set.engines, models, workerQueue: gpuQueue, identity: set.identity });
    const evaluation = createEvaluationActivities({ store: set.store, data, engines: set.engines });
    const engineDeps = { store: set.store, data, engines: set.engines, models, workerQueue: gpuQueue, identity: set.identity };
    const rewardModel = createRewardModelActivities(engineDeps);
    const rl = createRlActivities(engineDeps);
    // Every group's activities; each worker registers those the registry places on its kind (activities/registry.ts).
    const all = {
      ...createDataActivities({ data }),
      ...createModelLineActivities({ data }),
      ...createTrackingActivities({ data }),
      ...training,
      ...evaluation,
      ...rewardModel,
      ...rl,
      ...createSmokeActivities({ store: set.store }),
    };
    const common = { connection, config, ...(options.workflowBundle ? { workflowBundle: options.workflowBundle } : {}) };
    if (options.kinds.includes('cpu')) {
      set.workers.push(await createSophiaWorker({ ...common, kind: 'cpu', activities: activitiesFor('cpu', all), identity: `cpu@${set.identity}` }));
    }
    if (options.kinds.includes('gpu')) {
      const activities = activitiesFor('gpu', all);
      set.workers.push(await createSophiaWorker({ ...common, kind: 'gpu', activities, identity: `gpu@${set.identity}` }));
      set.workers.push(await createSophiaWorker({ ...common, kind: 'gpu', activities, taskQueue: gpuQueue, identity: `gpu@${set.identity}` }));
      set.gpuQueue = gpuQueue;
    }
    return set;
  }

  /** Runs every worker until they are shut down (or one fails). */
  async run(): Promise<void> {
    try {
      await Promise.all(this.workers.map((w) => w.run()));
    } finally {
      await this.engines.dispose();
      await this.store.close();
    }
  }

  /** Runs the workers until `until` settles, then shuts them down; resolves/rejects like `until`. */
  async runUntil<T>(until: Promise<T>): Promise<T> {
    const running = this.run();
    try {
      return await until;
    } finally {
      this.shutdown();
      await running.catch(() => undefined);
    }
  }

  shutdown(): void {
    for (const w of this.workers) if (w.getState() === 'RUNNING') w.shutdown();
  }
}
