/**
 * Fault tests with real processes (docs/architecture.md §5):
 *  1. SIGKILL of the GPU worker in the middle of SFT: a new worker takes over from the last committed checkpoint
 *     and the run ends with exactly the weights and metrics of an uninterrupted run;
 *  2. a restart of the Temporal server (same SQLite file) in the middle of a run: the run completes;
 *  3. SIGKILL of `sophia run`: running it again with the same run id attaches and finishes the run;
 *  4. SIGKILL of the GPU worker in the middle of Trust-GRPO: the new worker reloads the last committed RL
 *     checkpoint, the stage redoes the steps since, and the run ends exactly like an uninterrupted one;
 *  5. the same SFT kill with the newest checkpoint corrupted: it is quarantined (kept, reported as a run event) and
 *     the one before it loaded; the run still ends exactly like an uninterrupted one;
 *  6. a run that failed in Trust-GRPO (one attempt per activity, GPU worker killed) continued by `sophia resume`: its
 *     completed stages are kept, RL goes on from its last checkpoint, and it ends like an uninterrupted run.
 * Each test uses its own dev server and storage folder.
 */
import { readFileSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { type Client } from '@temporalio/client';
import { describe, expect, it } from 'vitest';
import { processAlive } from '../../cli/embedded-server';
import { pipelineInput, runProgress, startRun } from '../../clients/runs';
import { stageWorkflowId } from '../../common/run-layout';
import { connectWorker } from '../../clients/temporal';
import type { RunConfig } from '../../config/run-config';
import { CheckpointStore } from '../../storage/checkpoints';
import type { CheckpointManifest } from '../../storage/manifest';
import { hashConfig, sha256Hex } from '../../storage/hashing';
import { LocalStorage } from '../../storage/local';
import { type MetricRecord, readMetrics } from '../../storage/metrics-log';
import { loadTemporalConfig } from '../../temporal.config';
import { WorkerSet } from '../../workers/worker';
import type { trainingPipeline } from '../../workflows/pipeline';
import { quietTemporalRuntime } from '../integration/stack';
import { FAST_FAILOVER, faultConfigFile, faultScope, kill, spawnSophia, tempDir, waitFor, waitForStageStep, waitForStep } from './harness';

const { cleanups, track, server, client } = faultScope();

const stateAt = async (store: CheckpointStore, runId: string, step: number, stage = 'sft') =>
  sha256Hex((await store.load(`runs/${runId}/${stage}/checkpoints/${String(step).padStart(8, '0')}`)).files.get('state.bin')!);

/** Flips one byte of a checkpoint's state file: what a bad disk or a torn copy does. */
async function corrupt(storage: LocalStorage, manifest: CheckpointManifest): Promise<void> {
  const key = `${manifest.key}/${manifest.files.find((f) => f.name === 'state.bin')!.key}`;
  const bytes = Uint8Array.from(await storage.get(key));
  bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0x01;
  await storage.put(key, bytes);
}

/** Uninterrupted runs by config, stage and final step: tests of one config compare with one reference run. */
const references = new Map<string, Promise<{ state: string; metrics: MetricRecord[] }>>();

/**
 * Checks that run `runId` ended with the weights (stage `stage` at `finalStep`) and metrics curve of `config` run
 * without interruption: run as `${name}-reference` (own queues, in-process workers) the first time a test asks for
 * that config, then remembered (weights and metrics do not depend on the run id).
 */
async function expectLikeUninterrupted(o: {
  c: Client;
  env: Record<string, string>;
  storage: LocalStorage;
  store: CheckpointStore;
  config: RunConfig;
  runId: string;
  name: string;
  stage: string;
  finalStep: number;
  curve: (m: MetricRecord) => unknown[];
}): Promise<void> {
  const key = `${hashConfig(o.config)}/${o.stage}/${o.finalStep}`;
  let uninterrupted = references.get(key);
  if (!uninterrupted) {
    uninterrupted = (async () => {
      const reference = `${o.name}-reference`;
      const refTemporal = loadTemporalConfig({ ...o.env, SOPHIA_TASK_QUEUE_CPU: 'ref-cpu', SOPHIA_TASK_QUEUE_GPU: 'ref-gpu' });
      const connection = await connectWorker(refTemporal);
      cleanups.push(() => connection.close());
      const workers = await WorkerSet.create({ kinds: ['cpu', 'gpu'], connection, config: refTemporal, storage: o.storage });
      const ref = await startRun(o.c, refTemporal, pipelineInput(reference, o.config, o.storage.location, refTemporal));
      expect((await workers.runUntil(ref.handle.result())).status).toBe('completed');
      return { state: await stateAt(o.store, reference, o.finalStep, o.stage), metrics: await readMetrics(o.storage, reference) };
    })();
    references.set(key, uninterrupted);
    uninterrupted.catch(() => references.delete(key)); // a failed reference is not reused
  }
  const { state, metrics } = await uninterrupted;
  expect(await stateAt(o.store, o.runId, o.finalStep, o.stage)).toBe(state);
  expect((await readMetrics(o.storage, o.runId)).map(o.curve)).toEqual(metrics.map(o.curve));
}

/**
 * SIGKILLs the GPU worker of run `name` once `reached` says so, starts another, and checks that the run completes,
 * that the new worker reloaded the newest checkpoint of `stage` committed before the kill, and that the run ends
 * with the weights (at `finalStep`) and metrics of the same config run without interruption. With `corruptNewest`,
 * that newest checkpoint is corrupted before the new worker starts: it must be quarantined and the one before it
 * loaded instead.
 */
async function gpuKillScenario(o: {
  name: string;
  extra: string[];
  stage: string;
  finalStep: number;
  minCommitted: number;
  reached: (c: Client, runId: string) => Promise<unknown>;
  loaded: RegExp;
  curve: (m: MetricRecord) => unknown[];
  corruptNewest?: boolean;
}) {
  quietTemporalRuntime();
  const dir = tempDir(o.name);
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const srv = await server(dir);
  const env = { TEMPORAL_ADDRESS: srv.address, ...FAST_FAILOVER };
  const temporal = loadTemporalConfig(env);
  const c = await client(srv.address);
  const storageDir = path.join(dir, 'storage');
  const storage = new LocalStorage(storageDir);
  const store = new CheckpointStore(storage);
  cleanups.push(() => store.close());
  const { config } = faultConfigFile(dir, o.extra);
  const killed = `${o.name}-killed`;

  track(spawnSophia(['worker', '--queue', 'cpu', '--storage', storageDir], env, dir, 'cpu'));
  const gpuA = track(spawnSophia(['worker', '--queue', 'gpu', '--storage', storageDir], env, dir, 'gpu-a'));
  const { handle } = await startRun(c, temporal, pipelineInput(killed, config, storage.location, temporal));
  await o.reached(c, killed);
  await kill(gpuA);
  const committed = await store.list(killed, o.stage);
  const atKill = committed.at(-1);
  expect(atKill?.step).toBeGreaterThanOrEqual(o.minCommitted);
  if (o.corruptNewest) await corrupt(storage, atKill!);
  const gpuB = track(spawnSophia(['worker', '--queue', 'gpu', '--storage', storageDir], env, dir, 'gpu-b'));
  const result = await handle.result();
  expect(result.status).toBe('completed');
  // The new worker started from the newest (intact) checkpoint committed before the kill: at most the steps since it were lost.
  const expected = o.corruptNewest ? (committed.at(-2)?.step ?? 0) : atKill!.step;
  expect(Number(o.loaded.exec(gpuB.output())?.[1])).toBe(expected);
  if (o.corruptNewest) {
    // Out of use but kept for inspection, and reported as a run event.
    expect((await store.quarantined(killed, o.stage)).map((m) => [m.step, m.manifest.attempt])).toEqual([[atKill!.step, atKill!.attempt]]);
    expect(await storage.listAll(`${atKill!.key}/${atKill!.attempt}/`)).not.toEqual([]);
    expect(result.events).toEqual([expect.objectContaining({ kind: 'checkpoint-quarantined', stage: o.stage, step: atKill!.step })]);
    expect(result.events?.[0]?.message).toMatch(/state\.bin has sha256/);
    expect(gpuB.output()).toContain('corrupt checkpoint quarantined');
  }
  await expectLikeUninterrupted({ c, env, storage, store, config, runId: killed, name: o.name, stage: o.stage, finalStep: o.finalStep, curve: o.curve });
  return result;
}

/** The SFT kill: at step ≥ 50 of 100 (checkpoints every 20, chunks of 40), so at least step 40 is committed. */
const SFT_KILL = {
  extra: [],
  stage: 'sft',
  finalStep: 100,
  minCommitted: 40,
  reached: (c: Client, runId: string) => waitForStep(c, runId, 50),
  loaded: /engine loaded from storage \{[^}]*"step":(\d+)/,
  curve: (m: MetricRecord) => [m.stage, m.kind, m.step, m.loss ?? m.valLoss],
};

/** What an RL run's curve is compared by: its losses, rewards, γ and periodic test accuracy per step. */
const rlCurve = (m: MetricRecord) => [m.stage, m.kind, m.step, m.loss ?? m.valLoss, m.outcomeReward, m.gamma, m.testAccuracy];

describe('fault tolerance with real processes', () => {
  it('survives a SIGKILLed GPU worker: resumes from the last checkpoint and ends like an uninterrupted run', async () => {
    const result = await gpuKillScenario({ ...SFT_KILL, name: 'gpu' });
    expect(result.results.sftWarmup?.step).toBe(100);
  });

  it('quarantines a corrupt newest checkpoint after a SIGKILL, resumes from the one before it, ends like an uninterrupted run', async () => {
    // Before: the new worker's chunk failed non-retryably with CorruptCheckpointError and the run ended failed.
    const result = await gpuKillScenario({ ...SFT_KILL, name: 'corrupt', corruptNewest: true });
    expect(result.results.sftWarmup?.step).toBe(100);
  });

  it('completes a run across a restart of the Temporal server (same SQLite file)', async () => {
    quietTemporalRuntime();
    const dir = tempDir('server');
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    let srv = await server(dir);
    const port = Number(srv.address.split(':')[1]);
    const env = { TEMPORAL_ADDRESS: srv.address, ...FAST_FAILOVER, SOPHIA_TASK_QUEUE_CPU: 'restart-cpu', SOPHIA_TASK_QUEUE_GPU: 'restart-gpu' };
    const temporal = loadTemporalConfig(env);
    const c = await client(srv.address);
    const storage = new LocalStorage(path.join(dir, 'storage'));
    const { config } = faultConfigFile(dir);
    const connection = await connectWorker(temporal);
    cleanups.push(() => connection.close());
    const workers = await WorkerSet.create({ kinds: ['cpu', 'gpu'], connection, config: temporal, storage });
    const running = workers.run();
    cleanups.push(async () => {
      workers.shutdown();
      await running;
    });
    const { handle } = await startRun(c, temporal, pipelineInput('restarted', config, storage.location, temporal));
    await waitForStep(c, 'restarted', 30);
    await srv.stop();
    await new Promise((r) => setTimeout(r, 2000));
    srv = await server(dir, port);
    const result = await handle.result();
    expect(result.status).toBe('completed');
    expect(result.results.sftWarmup?.step).toBe(100);
  });

  it('finishes a run when `sophia run` is killed and started again with the same run id', async () => {
    const dir = tempDir('cli');
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const home = path.join(dir, 'home');
    const storageDir = path.join(dir, 'storage');
    const { file } = faultConfigFile(dir);
    const env = { SOPHIA_HOME: home, ...FAST_FAILOVER, TEMPORAL_ADDRESS: '' };
    const args = ['run', '--config', file, '--run-id', 'cli-kill', '--storage', storageDir];
    const first = track(spawnSophia(args, env, dir, 'cli-a'));
    const record = await waitFor('the embedded server', () => Promise.resolve(JSON.parse(readFileSync(path.join(home, 'embedded', 'server.json'), 'utf8')) as { pid: number; address: string }));
    cleanups.push(() => {
      // The second CLI, the server's last user, stopped it as it finished; stop it here if a failure left it up.
      try {
        process.kill(record.pid, 'SIGTERM');
      } catch {
        // already gone
      }
    });
    quietTemporalRuntime();
    const c = await client(record.address);
    await waitForStep(c, 'cli-kill', 50);
    await kill(first); // the CLI and its in-process workers die; the embedded server lives on
    const second = track(spawnSophia(args, env, dir, 'cli-b'));
    expect(await second.exited).toBe(0);
    const out = second.output();
    expect(out).toContain('attached to the running run');
    expect(out).toMatch(/finished +completed/);
    expect(out).toMatch(/✓ sftWarmup +100 steps/);
    // The first CLI died without giving its lease back; the second was then the server's last user and stopped it.
    await waitFor('the embedded server to stop', () => Promise.resolve(processAlive(record.pid) ? undefined : true));
  });

  it('resumes a failed run with `sophia resume`: completed stages kept, Trust-GRPO from its last checkpoint, ends like an uninterrupted run', async () => {
    quietTemporalRuntime();
    const dir = tempDir('resume');
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const srv = await server(dir);
    const env = { TEMPORAL_ADDRESS: srv.address, ...FAST_FAILOVER };
    // One attempt per activity: the GPU worker's death fails the run (as exhausted retries or a cancel would).
    const failFast = loadTemporalConfig({ ...env, SOPHIA_RETRY_MAX_ATTEMPTS: '1' });
    const c = await client(srv.address);
    const storageDir = path.join(dir, 'storage');
    const storage = new LocalStorage(storageDir);
    const store = new CheckpointStore(storage);
    cleanups.push(() => store.close());
    const { config } = faultConfigFile(dir, ['rl: { steps: 16, checkpointEvery: 4, evalEvery: 8 }']);
    const runId = 'resume-failed';
    track(spawnSophia(['worker', '--queue', 'cpu', '--storage', storageDir], env, dir, 'cpu'));
    const gpuA = track(spawnSophia(['worker', '--queue', 'gpu', '--storage', storageDir], env, dir, 'gpu-a'));
    const { handle } = await startRun(c, failFast, pipelineInput(runId, config, storage.location, failFast));
    // Killed while a GPU activity runs, so that its heartbeat times out and, with one attempt, the run fails.
    await waitFor('an RL step in a GPU phase', async () => {
      const p = await runProgress(c, runId);
      return p.current?.stage === 'trustGrpo' && p.current.step >= 5 && /rollouts|reference|thinking|update/.test(p.phase ?? '') ? p : undefined;
    });
    const sftStage = c.workflow.getHandle(stageWorkflowId(handle.workflowId, 'sftWarmup'));
    const sftExecution = (await sftStage.describe()).runId;
    await kill(gpuA);
    const failed = await Promise.race([handle.result().then(() => 'completed', (err: unknown) => err), new Promise((r) => setTimeout(() => r('still running 120 s after the kill'), 120_000))]);
    expect(failed).toBeInstanceOf(Error);
    const atKill = (await store.latest(runId, 'grpo'))!;
    expect(atKill.step).toBeGreaterThanOrEqual(4);

    const gpuB = track(spawnSophia(['worker', '--queue', 'gpu', '--storage', storageDir], env, dir, 'gpu-b'));
    const resume = track(spawnSophia(['resume', runId], env, dir, 'resume'));
    expect(await resume.exited).toBe(0);
    expect(resume.output()).toMatch(/kept: prepareData, sftWarmup, rewardModel; restarts at trustGrpo/);
    expect(resume.output()).toMatch(/finished +completed/);
    const result = await c.workflow.getHandle<typeof trainingPipeline>(handle.workflowId).result();
    expect(result.status).toBe('completed');
    expect(result.events).toEqual([expect.objectContaining({ kind: 'resumed', stage: 'trustGrpo' })]);
    expect(result.events?.[0]?.message).toMatch(/^resumed after /);
    // The stages that had completed were not run again; RL went on from the newest checkpoint committed before the kill.
    expect((await sftStage.describe()).runId).toBe(sftExecution);
    expect(Number(/policy loaded from storage \{[^}]*"step":(\d+)/.exec(gpuB.output())?.[1])).toBe(atKill.step);
    await expectLikeUninterrupted({
      c,
      env,
      storage,
      store,
      config,
      runId,
      name: 'resume',
      stage: 'grpo',
      finalStep: 16,
      curve: rlCurve,
    });
    // A completed run has nothing to resume: refused, and nothing is started.
    const again = track(spawnSophia(['resume', runId], env, dir, 'resume-again'));
    expect(await again.exited).not.toBe(0);
    expect(again.output()).toMatch(/completed: there is nothing to resume/);
  });

  it('survives a SIGKILLed GPU worker during Trust-GRPO: redoes the steps since the last RL checkpoint, ends like an uninterrupted run', async () => {
    const result = await gpuKillScenario({
      name: 'rl',
      extra: ['rl: { steps: 16, checkpointEvery: 4, evalEvery: 8 }'],
      stage: 'grpo',
      finalStep: 16,
      minCommitted: 4,
      reached: (c, runId) => waitForStageStep(c, runId, 'trustGrpo', 6),
      loaded: /policy loaded from storage \{[^}]*"step":(\d+)/,
      curve: rlCurve,
    });
    expect(result.results.trustGrpo?.step).toBe(16);
  });
});
