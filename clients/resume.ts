/**
 * Continuing a run that failed (or was cancelled, terminated, timed out) from its last good checkpoint, as a new
 * execution of the same run id (`sophia resume RUN_ID`, `POST /runs/:id/resume`).
 *
 * A run's pipeline refuses to start twice (`REJECT_DUPLICATE`), so a failed run is continued explicitly: the new
 * execution takes its config and storage from the failed one's start input (Temporal's history, not the caller),
 * takes the outputs of the stages that completed (their child workflows' results) instead of running them again,
 * and starts the stage it failed in afresh; that stage's activities resume from its newest committed checkpoint that
 * reads back intact (`activities/checkpoint-recovery.ts`). Activity profiles come from the caller's Temporal config,
 * so a timeout or retry setting fixed since then applies. The resume is recorded as a `resumed` run event.
 */
import type { Client } from '@temporalio/client';
import type { RunEvent } from '../activities/checkpoint-recovery';
import { SophiaError } from '../common/errors';
import { pipelineWorkflowId, stageWorkflowId } from '../common/run-layout';
import { STAGE_NAMES } from '../config/stages';
import type { TemporalConfig } from '../temporal.config';
import type { trainingPipeline } from '../workflows/pipeline';
import { pipelineStages } from '../workflows/stages';
import type { PipelineInput, StageOutput } from '../workflows/types';
import { type PipelineHandle, type RunFailure, closedRunFailure, pipelineInput, pipelineStartInput } from './runs';

/** Pipeline statuses a resume continues; RUNNING and COMPLETED are refused (the first is resumed by a signal). */
const RESUMABLE = new Set(['FAILED', 'CANCELLED', 'TERMINATED', 'TIMED_OUT']);

/** What resuming a run will do, read from Temporal before anything starts. */
export interface ResumePlan {
  /** The new execution's input: the failed one's config and storage, today's activity profiles, what it keeps. */
  input: PipelineInput;
  /** Why the previous execution ended. */
  failure: RunFailure;
  /** Stages whose outputs are kept. */
  kept: string[];
  /** The stage the new execution starts with (undefined when every stage had completed). */
  restartsAt: string | undefined;
  memo: Record<string, unknown>;
}

/** The outputs of the stages a run completed, in pipeline order, up to the first one that did not complete. */
async function completedStages(client: Client, deployment: string, input: PipelineInput): Promise<{ kept: StageOutput[]; restartsAt: string | undefined }> {
  const kept: StageOutput[] = [];
  for (const stage of pipelineStages(input.config, STAGE_NAMES)) {
    const child = client.workflow.getHandle(stageWorkflowId(pipelineWorkflowId(deployment, input.runId), stage));
    const status = await child.describe().then(
      (d) => d.status.name,
      () => undefined,
    );
    if (status !== 'COMPLETED') return { kept, restartsAt: stage };
    kept.push((await child.result()) as StageOutput);
  }
  return { kept, restartsAt: undefined };
}

/**
 * Reads what resuming the failed run `runId` takes over. Refuses (with a `conflict` error naming the fix) a run that
 * is running or completed, and one that does not exist (`not-found`).
 */
export async function planResume(client: Client, temporal: TemporalConfig, runId: string, now: Date = new Date()): Promise<ResumePlan> {
  const workflowId = pipelineWorkflowId(temporal.deployment, runId);
  const handle = client.workflow.getHandle<typeof trainingPipeline>(workflowId);
  const description = await handle.describe().catch(() => undefined);
  if (!description) throw new SophiaError('not-found', `no run ${runId}`, { hint: 'List runs with `sophia list` (or GET /runs)' });
  const status = description.status.name;
  if (status === 'RUNNING') throw new SophiaError('conflict', `run ${runId} is running: there is nothing to resume`, { hint: 'A paused run continues with `sophia resume` (the same command) as soon as it is paused' });
  if (!RESUMABLE.has(status)) throw new SophiaError('conflict', `run ${runId} completed: there is nothing to resume`, { hint: 'Start a new run, or continue from its checkpoints with startFrom in a new config' });
  const failure = await closedRunFailure(handle, status);
  const previous = await pipelineStartInput(client, workflowId);
  if (!previous) throw new SophiaError('not-found', `the history of ${workflowId} has no start input`);
  const { kept, restartsAt } = await completedStages(client, temporal.deployment, previous);
  const resumedEvent: RunEvent = {
    kind: 'resumed',
    at: now.toISOString(),
    stage: failure.stage ?? restartsAt,
    message: `resumed after ${failure.type}: ${failure.message}${kept.length > 0 ? ` (kept: ${kept.map((o) => o.stage).join(', ')})` : ''}`,
  };
  const fresh = pipelineInput(runId, previous.config, previous.storage, temporal);
  const input: PipelineInput = {
    ...previous,
    profiles: fresh.profiles,
    resumed: { completed: kept, events: [...(previous.resumed?.events ?? []), resumedEvent] },
  };
  return { input, failure, kept: kept.map((o) => o.stage), restartsAt, memo: description.memo ?? {} };
}

/** Starts the new execution a plan describes (refused by Temporal if the run was started again meanwhile). */
export async function startResume(client: Client, temporal: TemporalConfig, plan: ResumePlan): Promise<PipelineHandle> {
  return client.workflow.start<typeof trainingPipeline>('trainingPipeline', {
    taskQueue: temporal.taskQueues.cpu,
    workflowId: pipelineWorkflowId(temporal.deployment, plan.input.runId),
    workflowIdReusePolicy: 'ALLOW_DUPLICATE_FAILED_ONLY',
    args: [plan.input],
    memo: plan.memo,
  });
}

/** The storage a run was started with, as `openStorage` takes it (`local:/dir` → `/dir`). */
export const storageUrlOf = (location: string) => (location.startsWith('local:') ? location.slice('local:'.length) : location);
