/**
 * Deployments and stores that cannot be confused (issue 20, item 11), on a private dev server with real workers:
 *  1. two deployments on one namespace: a run started for deployment `alpha` is never executed by `beta`'s workers,
 *     though they poll all along (running `beta`'s own run of the same id); once `alpha`'s workers start, only they
 *     run it; each deployment's `sophia list` and `sophia cancel` see only its own run;
 *  2. a worker whose storage has the run's location string but is another store (the folder was replaced by a fresh
 *     one, as another machine's folder at the same path would be) refuses the run's first activity, non-retryably,
 *     naming both store ids, and writes nothing.
 */
import { mkdirSync, renameSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import { type NativeConnection } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';
import { pipelineInput, runFailure, runProgress, startRun } from '../../clients/runs';
import { connectWorker } from '../../clients/temporal';
import { LocalStorage } from '../../storage/local';
import { identifyStore } from '../../storage/store-id';
import type { Storage } from '../../storage/types';
import { type TemporalConfig, loadTemporalConfig } from '../../temporal.config';
import { WorkerSet } from '../../workers/worker';
import { quietTemporalRuntime } from '../integration/stack';
import { FAST_FAILOVER, faultConfigFile, faultScope, spawnSophia, tempDir, waitFor } from './harness';

const { cleanups, track, server, client } = faultScope();


/** CPU and GPU workers of `config`'s deployment over `storage`, in this process, running until the test ends. */
async function startWorkers(connection: NativeConnection, config: TemporalConfig, storage: Storage): Promise<WorkerSet> {
  const set = await WorkerSet.create({ kinds: ['cpu', 'gpu'], connection, config, storage });
  const running = set.run();
  cleanups.push(async () => {
    set.shutdown();
    await running.catch(() => undefined);
  });
  return set;
}

/**
 * The identities of the workers that ran (or are running) any task of workflow `workflowId` or of the child workflows
 * it started (its stages): from their histories, and for running activities (whose start the history records only
 * once they end) from the server's description.
 */
async function executedBy(c: Client, workflowId: string): Promise<Set<string>> {
  const identities = new Set<string>();
  const handle = c.workflow.getHandle(workflowId);
  for (const a of (await handle.describe()).raw.pendingActivities ?? []) if (a.lastWorkerIdentity) identities.add(a.lastWorkerIdentity);
  const history = await handle.fetchHistory();
  for (const e of history.events ?? []) {
    const identity = e.workflowTaskStartedEventAttributes?.identity ?? e.activityTaskStartedEventAttributes?.identity;
    if (identity) identities.add(identity);
    const child = e.childWorkflowExecutionStartedEventAttributes?.workflowExecution?.workflowId;
    if (child) for (const id of await executedBy(c, child)) identities.add(id);
  }
  return identities;
}

/** Waits until deployment `temporal`'s run `runId` has trained `step` steps. */
const waitForStep = (c: Client, runId: string, step: number, temporal: TemporalConfig) =>
  waitFor(`${temporal.deployment}'s run ${runId} to reach step ${step}`, async () => (((await runProgress(c, runId, temporal)).live?.step ?? 0) >= step ? true : undefined));

const ownedBy = (set: WorkerSet) => (identity: string) => identity.endsWith(`@${set.identity}`);

describe('deployments and stores that cannot be confused', () => {
  it('keeps two deployments on one namespace apart: one never runs, lists or controls the other\'s run of the same id', async () => {
    quietTemporalRuntime();
    const dir = tempDir('deployments');
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const srv = await server(dir);
    const c = await client(srv.address);
    const envOf = (deployment: string) => ({ TEMPORAL_ADDRESS: srv.address, SOPHIA_DEPLOYMENT: deployment, ...FAST_FAILOVER });
    const alpha = loadTemporalConfig(envOf('alpha'));
    const beta = loadTemporalConfig(envOf('beta'));
    const connection = await connectWorker(alpha);
    cleanups.push(() => connection.close());
    // Each deployment has its own store (two deployments sharing one would share `runs/r1/`).
    const storageA = new LocalStorage(path.join(dir, 'storage-alpha'));
    const storageB = new LocalStorage(path.join(dir, 'storage-beta'));
    const { config } = faultConfigFile(dir);

    // beta's workers run beta's run r1 ...
    const workersB = await startWorkers(connection, beta, storageB);
    const runB = await startRun(c, beta, pipelineInput('r1', config, await identifyStore(storageB), beta));
    expect(runB.state).toBe('started');
    await waitForStep(c, 'r1', 10, beta);
    // ... and alpha's run of the same id is another run, which they leave alone while they poll.
    const runA = await startRun(c, alpha, pipelineInput('r1', config, await identifyStore(storageA), alpha));
    expect(runA.state).toBe('started');
    expect([runA.handle.workflowId, runB.handle.workflowId]).toEqual(['alpha-r1', 'beta-r1']);
    await new Promise((r) => setTimeout(r, 5_000));
    expect(await executedBy(c, runA.handle.workflowId)).toEqual(new Set());
    expect(await storageA.listAll('runs/')).toEqual([]);

    // alpha's workers run it: only they (GPU work included, on alpha's queues), and beta's run only beta's.
    const workersA = await startWorkers(connection, alpha, storageA);
    expect(workersA.gpuQueue).toMatch(/^alpha-gpu-w-/);
    await waitForStep(c, 'r1', 10, alpha);
    const byA = [...(await executedBy(c, runA.handle.workflowId))];
    const byB = [...(await executedBy(c, runB.handle.workflowId))];
    expect(byA.length).toBeGreaterThan(0);
    expect(byA.filter((id) => !ownedBy(workersA)(id))).toEqual([]);
    expect(byB.filter((id) => !ownedBy(workersB)(id))).toEqual([]);
    expect(byA.some((id) => id.startsWith('gpu@'))).toBe(true);

    // Each deployment's CLI sees and controls its own r1 only (and exits once it has answered).
    const sophia = async (args: string[], deployment: string) => {
      const p = track(spawnSophia(args, envOf(deployment), dir, `${args[0]}-${deployment}`));
      const code = await Promise.race([p.exited, new Promise<string>((r) => setTimeout(() => r('still running after 60 s'), 60_000))]);
      expect(code, p.output()).toBe(0);
      return p.output();
    };
    for (const deployment of ['alpha', 'beta']) {
      // Temporal's visibility (what a list reads) follows the runs' starts eventually: ask again until r1 shows.
      let rows: string[] = [];
      for (let attempt = 0; rows.length === 0 && attempt < 5; attempt++) {
        if (attempt > 0) await new Promise((r) => setTimeout(r, 3_000));
        rows = (await sophia(['list'], deployment)).split('\n').filter((line) => /^r1\b/.test(line));
      }
      expect(rows, deployment).toHaveLength(1); // its own r1, never the other deployment's too
    }
    await sophia(['cancel', 'r1'], 'alpha');
    await waitFor('alpha-r1 to be cancelled', async () => ((await runA.handle.describe()).status.name === 'CANCELLED' ? true : undefined), 60_000);
    expect((await runB.handle.describe()).status.name).toBe('RUNNING');
    await runB.handle.terminate('test over');
  });

  it('refuses, non-retryably, a worker whose store has the run\'s location but is another store', async () => {
    quietTemporalRuntime();
    const dir = tempDir('store-id');
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const srv = await server(dir);
    const c = await client(srv.address);
    const temporal = loadTemporalConfig({ TEMPORAL_ADDRESS: srv.address, ...FAST_FAILOVER });
    const connection = await connectWorker(temporal);
    cleanups.push(() => connection.close());
    const root = path.join(dir, 'storage');
    const { config } = faultConfigFile(dir);

    // The client's store: the folder as the client saw it when it started the run.
    const clientStore = await identifyStore(new LocalStorage(root));
    // The worker's: a folder at the same path that is another store (here the first one moved away and a fresh one
    // used in its place; another machine's folder at that path, or a bucket of the same name behind another endpoint,
    // is the same case).
    renameSync(root, `${root}-moved`);
    mkdirSync(root);
    const workerStorage = new LocalStorage(root);
    const workerStore = await identifyStore(workerStorage);
    expect(workerStore.location).toBe(clientStore.location);
    expect(workerStore.id).not.toBe(clientStore.id);
    await startWorkers(connection, temporal, workerStorage);

    const { handle } = await startRun(c, temporal, pipelineInput('r1', config, clientStore, temporal));
    const outcome = await Promise.race([
      handle.result().then(
        (r) => ({ completed: r.status }),
        (err: unknown) => ({ failed: runFailure(err) }),
      ),
      new Promise<{ timedOut: true }>((r) => setTimeout(() => r({ timedOut: true }), 90_000)),
    ]);
    expect(outcome).toMatchObject({ failed: { type: 'StorageConfigError', activity: 'prepareData', retryState: 'non retryable failure' } });
    const { message } = (outcome as { failed: { message: string } }).failed;
    expect(message).toContain(`run r1 was started on store ${clientStore.id} at ${clientStore.location}`);
    expect(message).toContain(`this worker's storage ${workerStore.location} is store ${workerStore.id}`);
    expect(message).toMatch(/Run this worker on the store the run was started with/);
    // One attempt, and nothing written to the wrong store.
    const stage = (await c.workflow.getHandle(`${handle.workflowId}/prepareData`).fetchHistory()).events ?? [];
    expect(stage.filter((e) => e.activityTaskStartedEventAttributes).map((e) => e.activityTaskStartedEventAttributes?.attempt)).toEqual([1]);
    expect(await workerStorage.listAll('runs/')).toEqual([]);
  });
});
