/**
 * End to end through the real stack: a CPU worker on the Temporal dev server runs `stackSmoke`, whose
 * activities commit checkpoints to the real S3 server and verify them. Also checks that a permanent error in an
 * activity fails the workflow at once (no retries) with the error's type and message.
 */
import { randomBytes } from 'node:crypto';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { ActivityFailure, ApplicationFailure } from '@temporalio/common';
import { type NativeConnection, type Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSmokeActivities } from '../../activities/smoke';
import { connectClient, connectWorker } from '../../clients/temporal';
import { CheckpointStore } from '../../storage/checkpoints';
import { S3Storage } from '../../storage/s3';
import type { TemporalConfig } from '../../temporal.config';
import { createSophiaWorker } from '../../workers/worker';
import { smokeProgressQuery, stackSmoke } from '../../workflows';
import { quietTemporalRuntime, requireStack, stackS3Options, stackTemporalConfig } from './stack';

describe('stackSmoke workflow on the dev server with S3 checkpoints', () => {
  const suffix = randomBytes(4).toString('hex');
  let config: TemporalConfig;
  let client: Client;
  let connection: NativeConnection;
  let storage: S3Storage;
  let store: CheckpointStore;
  let worker: Worker;
  let running: Promise<void>;

  beforeAll(async () => {
    quietTemporalRuntime();
    await requireStack();
    // A private task queue per test run, so a worker left over from another run cannot steal tasks.
    config = stackTemporalConfig({ SOPHIA_TASK_QUEUE_CPU: `sophia-cpu-test-${suffix}`, SOPHIA_RETRY_MAX_ATTEMPTS: '3' });
    client = await connectClient(config);
    connection = await connectWorker(config);
    storage = new S3Storage({ ...stackS3Options(), prefix: `test-smoke/${suffix}` });
    store = new CheckpointStore(storage);
    worker = await createSophiaWorker({ kind: 'cpu', connection, config, activities: createSmokeActivities({ store }) });
    running = worker.run();
  });

  afterAll(async () => {
    worker?.shutdown();
    await running;
    await connection?.close();
    await client?.connection.close();
    await storage?.close();
  });

  it('commits checkpoints to S3 and verifies the latest, with a progress query', async () => {
    const runId = `smoke-${suffix}`;
    const handle = await client.workflow.start(stackSmoke, {
      taskQueue: config.taskQueues.cpu,
      workflowId: `test-${runId}`,
      args: [{ runId, steps: 3, payloadBytes: 64 * 1024, activityProfile: config.activities.cpu }],
    });
    const result = await handle.result();
    expect(result.checkpointKeys).toEqual([1, 2, 3].map((s) => `runs/${runId}/smoke/checkpoints/0000000${s}`));
    expect(result.verified).toMatchObject({ step: 3, files: ['payload.bin', 'state.json'] });
    expect(result.verified.totalBytes).toBe(64 * 1024 + '{"step":3}'.length);
    const progress = await handle.query(smokeProgressQuery);
    expect(progress).toEqual({ stage: 'done', step: 3, totalSteps: 3, checkpointKeys: result.checkpointKeys });
    // The bytes really are in S3, committed, and intact.
    const latest = await store.latest(runId, 'smoke');
    expect(latest?.step).toBe(3);
    expect(latest?.files.find((f) => f.name === 'payload.bin')?.sha256).toBe(result.verified.sha256);
    expect((await storage.listAll(`runs/${runId}/smoke/checkpoints/`)).length).toBe(9);
  });

  it('fails fast, without retries, on a permanent activity error', async () => {
    const handle = await client.workflow.start(stackSmoke, {
      taskQueue: config.taskQueues.cpu,
      workflowId: `test-bad-${suffix}`,
      args: [{ runId: 'bad/run', steps: 1, payloadBytes: 16, activityProfile: config.activities.cpu }],
    });
    const err: unknown = await handle.result().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const activityFailure = (err as WorkflowFailedError).cause;
    expect(activityFailure).toBeInstanceOf(ActivityFailure);
    const cause = (activityFailure as ActivityFailure).cause as ApplicationFailure;
    expect(cause).toBeInstanceOf(ApplicationFailure);
    expect(cause.type).toBe('InvalidKeyError');
    expect(cause.message).toMatch(/"bad\/run": not a valid run id\. A run id is 1–128 letters/);
    const history = await handle.fetchHistory();
    const attempts = history.events?.filter((e) => e.activityTaskStartedEventAttributes).map((e) => e.activityTaskStartedEventAttributes?.attempt);
    expect(attempts).toEqual([1]);
  });

  it('rejects invalid input as a workflow failure, not a stuck workflow task', async () => {
    const handle = await client.workflow.start(stackSmoke, {
      taskQueue: config.taskQueues.cpu,
      workflowId: `test-zero-${suffix}`,
      args: [{ runId: 'r', steps: 0, payloadBytes: 16, activityProfile: config.activities.cpu }],
    });
    await expect(handle.result()).rejects.toThrow(WorkflowFailedError);
    const err = (await handle.result().catch((e: unknown) => e)) as WorkflowFailedError;
    expect((err.cause as ApplicationFailure).message).toMatch(/steps must be an integer ≥ 1/);
  });
});
