/**
 * Builds Sophia's workers from `temporal.config.ts`.
 *
 * - The CPU worker polls `sophia-cpu`: it hosts the workflows (deterministic orchestration) and the CPU
 *   activities (data, grading, Trust-GRPO math, reports).
 * - The GPU worker polls `sophia-gpu` with one activity slot per GPU: engine work only.
 *
 * Slots and the shutdown grace time (how long a running activity gets to checkpoint on SIGTERM) come from the
 * config. Activities are passed in already built over their ports (`createXActivities({ store, engine })`).
 */
import * as path from 'node:path';
import { Worker, type WorkflowBundle } from '@temporalio/worker';
import type { NativeConnection } from '@temporalio/worker';
import type { TemporalConfig } from '../temporal.config';

export type WorkerKind = 'cpu' | 'gpu';

export interface SophiaWorkerOptions {
  kind: WorkerKind;
  connection: NativeConnection;
  config: TemporalConfig;
  /** Activity functions by name (merged groups of `createXActivities`). */
  activities: Record<string, (...args: never[]) => Promise<unknown>>;
  /** Prebuilt workflow bundle (tests share one); default: bundle `workflows/` at start. */
  workflowBundle?: WorkflowBundle;
  identity?: string;
}

/** Directory of the workflow sources; the bundler resolves its `index`. */
export const WORKFLOWS_PATH = path.join(__dirname, '..', 'workflows');

export async function createSophiaWorker(options: SophiaWorkerOptions): Promise<Worker> {
  const { kind, connection, config } = options;
  const settings = config.workers[kind];
  const hostsWorkflows = kind === 'cpu';
  return Worker.create({
    connection,
    namespace: config.connection.namespace,
    taskQueue: config.taskQueues[kind],
    activities: options.activities,
    ...(hostsWorkflows
      ? options.workflowBundle
        ? { workflowBundle: options.workflowBundle }
        : { workflowsPath: WORKFLOWS_PATH }
      : {}),
    maxConcurrentActivityTaskExecutions: settings.maxConcurrentActivityTaskExecutions,
    ...(hostsWorkflows ? { maxConcurrentWorkflowTaskExecutions: settings.maxConcurrentWorkflowTaskExecutions } : {}),
    shutdownGraceTime: settings.shutdownGraceTimeMs,
    ...(options.identity ? { identity: options.identity } : {}),
  });
}
