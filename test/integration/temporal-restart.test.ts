/**
 * Durability of the dev server itself: with a SQLite file, a workflow started before a server restart is
 * still there afterwards and completes once a worker shows up. Uses a private dev server (own ports, own
 * database) so the shared stack is not disturbed.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Connection } from '@temporalio/client';
import { afterAll, describe, expect, it } from 'vitest';
import { createSmokeActivities } from '../../activities/smoke';
import { connectClient, connectWorker } from '../../clients/temporal';
import { CheckpointStore } from '../../storage/checkpoints';
import { LocalStorage } from '../../storage/local';
import { loadTemporalConfig } from '../../temporal.config';
import { createSophiaWorker } from '../../workers/worker';
import { stackSmoke } from '../../workflows';
import { quietTemporalRuntime, temporalCliPath } from './stack';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function waitHealthy(address: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const connection = await Connection.connect({ address, connectTimeout: 2_000 });
      await connection.healthService.check({});
      await connection.close();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`dev server at ${address} not healthy after ${timeoutMs} ms: ${String(err)}`);
      await new Promise((r) => setTimeout(r, 300));
    }
  }
}

function startServer(dbFile: string, port: number): ChildProcess {
  return spawn(temporalCliPath(), ['server', 'start-dev', '--headless', '--ip', '127.0.0.1', '--port', String(port), '--db-filename', dbFile, '--log-level', 'error'], {
    stdio: 'ignore',
  });
}

async function stopServer(server: ChildProcess): Promise<void> {
  if (server.exitCode !== null) return;
  const exited = new Promise((resolve) => server.once('exit', resolve));
  server.kill('SIGTERM');
  await exited;
}

describe('Temporal dev server with a SQLite file', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  it('keeps a workflow across a server restart and completes it afterwards', async () => {
    quietTemporalRuntime();
    const dir = await mkdtemp(path.join(tmpdir(), 'sophia-restart-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const dbFile = path.join(dir, 'temporal.db');
    const port = await freePort();
    const config = loadTemporalConfig({ TEMPORAL_ADDRESS: `127.0.0.1:${port}`, SOPHIA_TASK_QUEUE_CPU: 'sophia-cpu-restart' });

    let server = startServer(dbFile, port);
    cleanups.push(() => stopServer(server));
    await waitHealthy(config.connection.address);
    let client = await connectClient(config);
    const handle = await client.workflow.start(stackSmoke, {
      taskQueue: config.taskQueues.cpu,
      workflowId: 'survives-restart',
      args: [{ runId: 'restart', steps: 2, payloadBytes: 1024, activityProfile: config.activities.cpu }],
    });
    await client.connection.close();

    // No worker yet: the workflow only exists in the server's database. Restart the server.
    await stopServer(server);
    server = startServer(dbFile, port);
    await waitHealthy(config.connection.address);

    client = await connectClient(config);
    const described = await client.workflow.getHandle(handle.workflowId).describe();
    expect(described.status.name).toBe('RUNNING');
    expect(described.runId).toBe(handle.firstExecutionRunId);

    const store = new CheckpointStore(new LocalStorage(path.join(dir, 'store')));
    const connection = await connectWorker(config);
    const worker = await createSophiaWorker({ kind: 'cpu', connection, config, activities: createSmokeActivities({ store }) });
    const result = await worker.runUntil(client.workflow.getHandle<typeof stackSmoke>(handle.workflowId).result());
    expect(result.verified.step).toBe(2);
    expect((await store.latest('restart', 'smoke'))?.step).toBe(2);
    await connection.close();
    await client.connection.close();
  });
});
