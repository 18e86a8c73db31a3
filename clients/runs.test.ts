/**
 * `runFailure`: a failed run's innermost cause, with the stage and activity it passed through. `heartbeatStall`: whether
 * a running activity's heartbeat is overdue, from the pending activities a workflow's description lists; `stallText`.
 */
import { WorkflowFailedError } from '@temporalio/client';
import { ActivityFailure, ApplicationFailure, ChildWorkflowFailure, TemporalFailure } from '@temporalio/common';
import { msToTs } from '@temporalio/common/lib/time';
import { describe, expect, it } from 'vitest';
import { loadTemporalConfig } from '../temporal.config';
import { type PendingActivity, activityOverdueMs, heartbeatStall, runFailure, stallText } from './runs';

describe('runFailure', () => {
  it('walks WorkflowFailedError → ChildWorkflowFailure → ActivityFailure → ApplicationFailure', () => {
    // As the client receives it: the ApplicationFailure's own cause is the serialized original error.
    const original = new TemporalFailure('checkpoint runs/r/sft/checkpoints/00000050 is corrupt: file state.bin has sha256 ab…');
    const app = new ApplicationFailure(original.message, 'CorruptCheckpointError', true, undefined, original);
    const activity = new ActivityFailure('Activity task failed', 'trainChunk', '3', 'NON_RETRYABLE_FAILURE', 'worker@host', app);
    const child = new ChildWorkflowFailure('default', { workflowId: 'sophia-r/sftWarmup', runId: 'x' }, 'stageWorkflow', 'NON_RETRYABLE_FAILURE', activity);
    const failure = runFailure(new WorkflowFailedError('Workflow execution failed', child, 'NON_RETRYABLE_FAILURE'));
    expect(failure).toEqual({ type: 'CorruptCheckpointError', message: original.message, stage: 'sftWarmup', activity: 'trainChunk', retryState: 'non retryable failure' });
  });

  it('takes a failure without causes as it is', () => {
    expect(runFailure(new Error('boom'))).toEqual({ type: 'Error', message: 'boom', stage: undefined, activity: undefined, retryState: undefined });
  });
});

describe('heartbeatStall', () => {
  const T0 = Date.parse('2025-01-01T12:00:00Z');
  const ts = (ms: number) => msToTs(ms);
  /** A pending activity as DescribeWorkflowExecution answers it (state 2: STARTED). */
  const pending = (o: { state?: number; started?: number; heartbeat?: number; scheduled?: number; worker?: string; attempt?: number; type?: string; timeout?: number; heartbeatTimeoutMs?: number }): PendingActivity => ({
    activityType: { name: o.type ?? 'runSftChunk' },
    state: o.state ?? 2,
    ...(o.started !== undefined ? { lastStartedTime: ts(o.started) } : {}),
    ...(o.heartbeat !== undefined ? { lastHeartbeatTime: ts(o.heartbeat) } : {}),
    ...(o.scheduled !== undefined ? { scheduledTime: ts(o.scheduled) } : {}),
    ...(o.heartbeatTimeoutMs !== undefined ? { activityOptions: { heartbeatTimeout: ts(o.heartbeatTimeoutMs) } } : {}),
    lastWorkerIdentity: o.worker ?? 'gpu@host-41-ab12',
    attempt: o.attempt ?? 1,
    ...(o.timeout !== undefined ? { lastFailure: { message: 'activity timeout', timeoutFailureInfo: { timeoutType: o.timeout as never } } } : {}),
  });
  const overdue = activityOverdueMs(loadTemporalConfig({})); // 30 s for GPU activities, 15 s for CPU ones

  it('is undefined while heartbeats arrive, and names the worker once the last one is overdue', () => {
    const a = pending({ started: T0, heartbeat: T0 + 60_000 });
    expect(heartbeatStall([a], T0 + 60_000 + 29_999, overdue)).toBeUndefined();
    expect(heartbeatStall([a], T0 + 60_000 + 34_500, overdue)).toEqual({ seconds: 34, worker: 'gpu@host-41-ab12', activity: 'runSftChunk', attempt: 1, heartbeated: true, retrying: false, message: 'no heartbeat for 34 s from worker gpu@host-41-ab12 (runSftChunk, attempt 1)' });
  });

  it('counts from the start of an attempt that has not heartbeated yet (loading), not from the previous attempt\'s heartbeat', () => {
    // Attempt 2 started at +200 s; the heartbeat the server kept is attempt 1's, from +90 s.
    const a = pending({ started: T0 + 200_000, heartbeat: T0 + 90_000, attempt: 2, worker: 'gpu@other-7-cd34' });
    expect(heartbeatStall([a], T0 + 220_000, overdue)).toBeUndefined();
    expect(heartbeatStall([a], T0 + 241_000, overdue)).toEqual({ seconds: 41, worker: 'gpu@other-7-cd34', activity: 'runSftChunk', attempt: 2, heartbeated: false, retrying: false, message: 'no heartbeat for 41 s from worker gpu@other-7-cd34 (runSftChunk, attempt 2, none since it started)' });
    expect(heartbeatStall([pending({ started: T0 })], T0 + 31_000, overdue)).toMatchObject({ seconds: 31, heartbeated: false, retrying: false });
  });

  it('takes the threshold from the activity\'s profile: CPU activities have a shorter heartbeat timeout', () => {
    const cpu = pending({ type: 'prepareData', started: T0, worker: 'cpu@host-41-ab12' });
    expect(heartbeatStall([cpu], T0 + 16_000, overdue)).toMatchObject({ activity: 'prepareData', seconds: 16 });
    expect(heartbeatStall([{ ...cpu, activityType: { name: 'rolloutStep' } }], T0 + 16_000, overdue)).toBeUndefined();
    const tight = activityOverdueMs(loadTemporalConfig({ SOPHIA_HEARTBEAT_OVERDUE: '0.1' }));
    expect(heartbeatStall([{ ...cpu, activityType: { name: 'rolloutStep' } }], T0 + 16_000, tight)).toMatchObject({ activity: 'rolloutStep' });
  });

  it('prefers the heartbeat timeout the activity was scheduled with (the run\'s) to the profile here', () => {
    const a = pending({ started: T0, heartbeat: T0, heartbeatTimeoutMs: 20_000 }); // overdue after 5 s, not 30 s
    expect(heartbeatStall([a], T0 + 4_000, overdue)).toBeUndefined();
    expect(heartbeatStall([a], T0 + 6_000, overdue)).toMatchObject({ seconds: 6 });
  });

  it('goes on after the heartbeat timeout until another worker starts the retry, naming the attempt that went silent', () => {
    // Heartbeat timeout (TimeoutType 4): the server scheduled attempt 2 at +170 s and no longer keeps attempt 1's
    // start; its worker and last heartbeat are still there (as a dev server answers it).
    const retry = pending({ state: 1, heartbeat: T0 + 50_000, scheduled: T0 + 170_000, attempt: 2, timeout: 4 });
    expect(heartbeatStall([retry], T0 + 250_000, overdue)).toEqual({ seconds: 200, worker: 'gpu@host-41-ab12', activity: 'runSftChunk', attempt: 1, heartbeated: true, retrying: true, message: 'no heartbeat for 200 s from worker gpu@host-41-ab12 (runSftChunk, attempt 1 timed out; attempt 2 waits for a worker)' });
  });

  it('counts a retry whose silent attempt never heartbeated from the heartbeat timeout (at least that long)', () => {
    const retry = pending({ state: 1, scheduled: T0 + 120_000, attempt: 2, timeout: 4 });
    expect(heartbeatStall([retry], T0 + 160_000, overdue)).toMatchObject({ seconds: 40, attempt: 1, heartbeated: false, retrying: true });
  });

  it('ignores activities no worker runs (scheduled, backing off after a failure that was not a lost worker) and those never started', () => {
    expect(heartbeatStall([pending({ state: 1, started: T0, heartbeat: T0 })], T0 + 600_000, overdue)).toBeUndefined();
    // Attempt 1 failed (an error, or a start-to-close timeout: TimeoutType 1); attempt 2 waits its retry interval.
    expect(heartbeatStall([pending({ state: 1, started: T0, attempt: 2 })], T0 + 600_000, overdue)).toBeUndefined();
    expect(heartbeatStall([pending({ state: 1, started: T0, attempt: 2, timeout: 1 })], T0 + 600_000, overdue)).toBeUndefined();
    expect(heartbeatStall([pending({})], T0 + 600_000, overdue)).toBeUndefined();
    // Cancel requested (pause, stop): still running on its worker, which must heartbeat to learn of it.
    expect(heartbeatStall([pending({ state: 3, started: T0, heartbeat: T0 })], T0 + 40_000, overdue)).toMatchObject({ seconds: 40 });
  });

  it('reports the most overdue of several running activities; a worker the server does not know is undefined', () => {
    const stall = heartbeatStall([pending({ started: T0, heartbeat: T0 + 50_000 }), pending({ started: T0, heartbeat: T0 + 10_000, worker: '', type: 'policyUpdate' })], T0 + 90_000, overdue);
    expect(stall).toEqual({ seconds: 80, worker: undefined, activity: 'policyUpdate', attempt: 1, heartbeated: true, retrying: false, message: 'no heartbeat for 80 s from an unknown worker (policyUpdate, attempt 1)' });
  });

  it('never counts negative seconds when the caller\'s clock is behind the server\'s', () => {
    expect(heartbeatStall([pending({ started: T0, heartbeat: T0 + 5000 })], T0, overdue)).toBeUndefined();
  });
});

describe('stallText', () => {
  const stall = { seconds: 41, worker: 'gpu@other-7-cd34', activity: 'runSftChunk', attempt: 2, heartbeated: true, retrying: false };
  it('says how long, which worker, which activity and attempt', () => {
    expect(stallText(stall)).toBe('no heartbeat for 41 s from worker gpu@other-7-cd34 (runSftChunk, attempt 2)');
    expect(stallText({ ...stall, heartbeated: false })).toBe('no heartbeat for 41 s from worker gpu@other-7-cd34 (runSftChunk, attempt 2, none since it started)');
    expect(stallText({ ...stall, worker: undefined })).toBe('no heartbeat for 41 s from an unknown worker (runSftChunk, attempt 2)');
  });

  it('after the heartbeat timeout: the next attempt waits for a worker', () => {
    expect(stallText({ ...stall, seconds: 130, attempt: 1, retrying: true })).toBe(
      'no heartbeat for 130 s from worker gpu@other-7-cd34 (runSftChunk, attempt 1 timed out; attempt 2 waits for a worker)',
    );
  });
});
