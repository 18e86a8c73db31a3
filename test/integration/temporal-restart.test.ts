/**
 * Durability of the dev server itself: with a SQLite file, a workflow started before a server restart is
 * still there afterwards and completes once a worker shows up. Uses a private embedded dev server (the one
 * `sophia run` starts: own ports, own database) so the shared stack is not disturbed.
 */
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startEmbeddedServer, temporalHealthy, type EmbeddedServer } from '../../cli/embedded-server';
import { createSmokeActivities } from '../../activities/smoke';
import { connectClient, connectWorker } from '../../clients/temporal';
import { CheckpointStore } from '../../storage/checkpoints';
import { LocalStorage } from '../../storage/local';
import { loadTemporalConfig } from '../../temporal.config';
import { createSophiaWorker } from '../../workers/worker';
import { stackSmoke } from '../../workflows';
import { quietTemporalRuntime, temporalCliPath } from './stack';

describe('Temporal dev server with a SQLite file', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  it('keeps a workflow across a server restart and completes it afterwards', async () => {
    quietTemporalRuntime();
    const dir = await mkdtemp(path.join(tmpdir(), 'sophia-restart-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const serverDir = path.join(dir, 'embedded');
    const executable = temporalCliPath();
    let server: EmbeddedServer = await startEmbeddedServer({ dir: serverDir, executable });
    cleanups.push(() => server.stop());
    expect(server.owned).toBe(true);
    const port = Number(server.address.split(':')[1]);
    const config = loadTemporalConfig({ TEMPORAL_ADDRESS: server.address, SOPHIA_TASK_QUEUE_CPU: 'sophia-cpu-restart' });

    let client = await connectClient(config);
    const handle = await client.workflow.start(stackSmoke, {
      taskQueue: config.taskQueues.cpu,
      workflowId: 'survives-restart',
      args: [{ runId: 'restart', steps: 2, payloadBytes: 1024, activityProfile: config.activities.cpu }],
    });
    await client.connection.close();

    // A second start while it runs reuses it instead of opening the same database twice.
    const again = await startEmbeddedServer({ dir: serverDir, executable });
    expect(again).toMatchObject({ owned: false, address: server.address });
    await again.stop(); // gives its lease back; the first user still holds one, so the server stays
    expect(await temporalHealthy(server.address)).toBe(true);

    // No worker yet: the workflow only exists in the server's database. Restart the server on the same port.
    await server.stop();
    expect(await temporalHealthy(server.address)).toBe(false);
    server = await startEmbeddedServer({ dir: serverDir, executable, port });
    expect(server.address).toBe(config.connection.address);

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

  it('starts again when the server exits during start-up (a port taken between the pick and the bind)', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'sophia-flaky-start-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    // The first start dies as a server that lost a port would; the next is the real server.
    const wrapper = path.join(dir, 'temporal');
    await writeFile(wrapper, `#!/bin/sh\nif [ ! -e "${dir}/tried" ]; then touch "${dir}/tried"; echo "bind: address already in use"; exit 2; fi\nexec "${temporalCliPath()}" "$@"\n`);
    await chmod(wrapper, 0o755);
    const server = await startEmbeddedServer({ dir: path.join(dir, 'embedded'), executable: wrapper });
    cleanups.push(() => server.stop());
    expect(server.owned).toBe(true);
    expect(await readFile(path.join(dir, 'embedded', 'server.log'), 'utf8')).toContain('address already in use');
    const client = await connectClient(loadTemporalConfig({ TEMPORAL_ADDRESS: server.address }));
    expect((await client.workflowService.getSystemInfo({})).serverVersion).toBeTruthy();
    await client.connection.close();
  });

  it('keeps a shared server up until the last process using it gives its lease back', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'sophia-shared-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const serverDir = path.join(dir, 'embedded');
    const first = await startEmbeddedServer({ dir: serverDir, executable: temporalCliPath() });
    const second = await startEmbeddedServer({ dir: serverDir, executable: temporalCliPath() });
    cleanups.push(() => second.stop());
    expect([first.owned, second.owned]).toEqual([true, false]);
    // The process that started it finishes first: the other one's server stays up (it was stopped under it before).
    await first.stop();
    expect(await temporalHealthy(second.address)).toBe(true);
    // The last user gives its lease back: now the server stops.
    await second.stop();
    expect(await temporalHealthy(second.address)).toBe(false);
  });
});

