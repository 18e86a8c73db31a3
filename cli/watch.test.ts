import { Writable } from 'node:stream';
import type { Client } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time';
import { describe, expect, it } from 'vitest';
import type { PendingActivity } from '../clients/runs';
import type { RunProgress } from '../workflows/types';
import { watchRun } from './watch';

const FINAL: RunProgress = { runId: 'r', status: 'completed', stages: [], stageIndex: 0, current: undefined, checkpoints: {}, results: {}, reportKey: undefined, error: undefined };

/** What a Temporal call answers while the server is down (the client's gRPC error). */
const unavailable = () => Object.assign(new Error('14 UNAVAILABLE: No connection established'), { code: 14 });

/**
 * A client whose server is down for the first `downPolls` describe calls, then has the workflow completed.
 * `handle.result()` (the watch's wake-up) breaks at once, as a long poll does when the server restarts.
 */
function restartingServer(downPolls: number): Client {
  let polls = 0;
  const handle = {
    describe: () => (++polls <= downPolls ? Promise.reject(unavailable()) : Promise.resolve({ status: { name: 'COMPLETED' } })),
    result: () => (polls <= downPolls ? Promise.reject(unavailable()) : Promise.resolve(FINAL)),
  };
  const connection = { withDeadline: <T>(_deadline: number, fn: () => Promise<T>) => fn() };
  return { connection, workflow: { getHandle: () => handle } } as unknown as Client;
}

/**
 * A client whose run is in SFT for as many polls as `polls` has entries (each the running stage's pending activities
 * at that poll, given the time), then completed.
 */
function runningRun(polls: ((now: number) => PendingActivity[])[]): Client {
  let i = 0;
  const running: RunProgress = { ...FINAL, status: 'running', stages: ['prepareData', 'sftWarmup'], stageIndex: 1 };
  const pipeline = {
    describe: () => Promise.resolve(i < polls.length ? { status: { name: 'RUNNING' }, taskQueue: 'sophia-cpu' } : { status: { name: 'COMPLETED' } }),
    query: () => Promise.resolve(structuredClone(running)),
    result: () => Promise.resolve(FINAL),
  };
  const stage = { describe: () => Promise.resolve({ raw: { pendingActivities: polls[i++]!(Date.now()) } }), query: () => Promise.resolve(undefined) };
  return {
    options: { namespace: 'default' },
    connection: { withDeadline: <T>(_deadline: number, fn: () => Promise<T>) => fn() },
    workflowService: { describeTaskQueue: () => Promise.resolve({ pollers: [{ identity: 'cpu@x' }] }) },
    workflow: { getHandle: (id: string) => (id.includes('/') ? stage : pipeline) },
  } as unknown as Client;
}

/** runSftChunk's attempt on `worker`, started a minute ago, last heartbeat `silentMs` ago (PendingActivityState 2: STARTED). */
const chunk = (worker: string, attempt: number, silentMs: number) => (now: number): PendingActivity[] => [
  { activityType: { name: 'runSftChunk' }, state: 2, lastStartedTime: msToTs(now - 60_000), lastHeartbeatTime: msToTs(now - silentMs), lastWorkerIdentity: worker, attempt },
];

function capture() {
  const lines: string[] = [];
  const out = new Writable({
    write(chunk: Buffer, _encoding, next) {
      lines.push(String(chunk));
      next();
    },
  });
  return { lines, out };
}

describe('watchRun', () => {
  it('keeps watching while the server does not answer and the result breaks, noting it once, and ends with the run', async () => {
    const said: string[] = [];
    const { lines, out } = capture();
    const client = restartingServer(3);
    const result = await watchRun(client, 'r', (l) => said.push(l), 1, () => Promise.reject(unavailable()), { out });
    expect(result.status).toBe('completed');
    expect(said.at(-1)).toMatch(/^finished +completed/);
    expect(lines.filter((l) => l.includes('lost the Temporal server'))).toHaveLength(1);
    expect(lines.filter((l) => l.includes('reconnected to the Temporal server'))).toHaveLength(1);
  });

  it('gives up after lostServerMs without an answer, naming the command that watches the run again', async () => {
    const { out } = capture();
    let clock = 0;
    const now = () => (clock += 1000);
    const watching = watchRun(restartingServer(Infinity), 'r3', () => undefined, 1, () => new Promise(() => undefined), {
      out,
      now,
      lostServerMs: 10_000,
      reattach: 'sophia run --config tiny --run-id r3',
    });
    await expect(watching).rejects.toThrow(/lost the Temporal server for .*run r3's state could not be read.*sophia run --config tiny --run-id r3/s);
  });

  it('notes once above the bar when a heartbeat is overdue (naming the worker) and once when heartbeats resume', async () => {
    const { lines, out } = capture();
    const polls = [chunk('gpu@a-1', 1, 1000), chunk('gpu@a-1', 1, 40_000), chunk('gpu@a-1', 1, 41_000), chunk('gpu@b-2', 2, 1000), chunk('gpu@b-2', 2, 500)];
    const result = await watchRun(runningRun(polls), 'r', () => undefined, 1, () => new Promise(() => undefined), { out });
    expect(result.status).toBe('completed');
    const notes = lines.filter((l) => /^(no heartbeat|heartbeats resumed)/.test(l)); // the bar's own lines start with the stage
    expect(notes).toHaveLength(2);
    expect(notes[0]).toMatch(/^no heartbeat for 40 s from worker gpu@a-1 \(runSftChunk, attempt 1\): its worker may be gone/);
    expect(notes[1]).toMatch(/^heartbeats resumed \(runSftChunk\)/);
  });

  it('ends with the abort reason when its signal is aborted', async () => {
    const { out } = capture();
    const stop = new AbortController();
    const watching = watchRun(restartingServer(Infinity), 'r', () => undefined, 60_000, () => new Promise(() => undefined), { out, signal: stop.signal });
    setTimeout(() => stop.abort(new Error('interrupted by SIGINT')), 10);
    await expect(watching).rejects.toThrow('interrupted by SIGINT');
  });
});
