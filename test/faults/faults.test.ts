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
import { describe, expect, it } from 'vitest';
import { processAlive } from '../../cli/embedded-server';
import { pipelineInput, runProgress, startRun } from '../../clients/runs';
import { stageWorkflowId } from '../../common/run-layout';
import { connectWorker } from '../../clients/temporal';
import { CheckpointStore } from '../../storage/checkpoints';
import { LocalStorage } from '../../storage/local';
import { loadTemporalConfig } from '../../temporal.config';
import { WorkerSet } from '../../workers/worker';
import { freeLoopbackPort } from '../../observability/serve';
import type { trainingPipeline } from '../../workflows/pipeline';
import { quietTemporalRuntime } from '../integration/stack';
import { SFT_KILL, faultScenarios, rlCurve } from './scenarios';
import { ACTIVITY_PLACEMENT, type ActivityName } from '../../activities/registry';

/** temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_STARTED: a worker has the activity. */
const PENDING_ACTIVITY_STATE_STARTED = 2;
import { FAST_FAILOVER, faultConfigFile, faultScope, kill, spawnSophia, tempDir, waitFor, waitForStageStep, waitForStep } from './harness';

const scope = faultScope();
const { cleanups, track, server, client } = scope;
const { expectLikeUninterrupted, gpuKillScenario } = faultScenarios(scope);

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
    // The CPU worker logs in JSON (SOPHIA_LOG_FORMAT=json): checked after the run, below.
    const cpu = track(spawnSophia(['worker', '--queue', 'cpu', '--storage', storageDir], { ...env, SOPHIA_LOG_FORMAT: 'json' }, dir, 'cpu'));
    const gpuA = track(spawnSophia(['worker', '--queue', 'gpu', '--storage', storageDir], env, dir, 'gpu-a'));
    const { handle } = await startRun(c, failFast, pipelineInput(runId, config, storage.location, failFast));
    // Killed while a GPU activity runs, so that its heartbeat times out and, with one attempt, the run fails. (Killed
    // between two GPU activities, the run would wait for a GPU worker instead, as it should: so the probe asks Temporal
    // for a started GPU activity of the RL stage, not the run's progress, which lags.)
    const rlStage = c.workflow.getHandle(stageWorkflowId(handle.workflowId, 'trustGrpo'));
    await waitFor('a GPU activity running in RL step 5 or later', async () => {
      const p = await runProgress(c, runId);
      if (!(p.current?.stage === 'trustGrpo' && p.current.step >= 5)) return undefined;
      const pending = (await rlStage.describe()).raw.pendingActivities ?? [];
      return pending.some((a) => ACTIVITY_PLACEMENT[a.activityType?.name as ActivityName] === 'gpu' && Number(a.state) === PENDING_ACTIVITY_STATE_STARTED) ? true : undefined;
    });
    const sftStage = c.workflow.getHandle(stageWorkflowId(handle.workflowId, 'sftWarmup'));
    const sftExecution = (await sftStage.describe()).runId;
    await kill(gpuA);
    let failed = await Promise.race([handle.result().then(() => 'completed', (err: unknown) => err), new Promise((r) => setTimeout(() => r('still running'), 30_000))]);
    if (failed === 'still running') {
      // The kill fell between two GPU activities (the probe above and the kill race the next activity's start): the run
      // waits for a GPU worker, as it should. End it as an operator would; a terminated run is resumed the same way.
      await handle.terminate('test: the GPU worker was killed between two activities');
      failed = await handle.result().then(() => 'completed', (err: unknown) => err);
    }
    expect(failed).toBeInstanceOf(Error);
    const atKill = (await store.latest(runId, 'grpo'))!;
    expect(atKill.step).toBeGreaterThanOrEqual(4);

    // The second GPU worker serves Prometheus metrics (SOPHIA_METRICS_PORT): read after the run, below.
    const metricsPort = await freeLoopbackPort();
    const gpuB = track(spawnSophia(['worker', '--queue', 'gpu', '--storage', storageDir], { ...env, SOPHIA_METRICS_PORT: String(metricsPort), SOPHIA_METRICS_HOST: '127.0.0.1' }, dir, 'gpu-b'));
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
    // The worker's /metrics: Sophia's series for the steps it ran and the checkpoints it committed, the run's gauges,
    // and the Temporal SDK's runtime metrics, in one scrape.
    expect(gpuB.output()).toContain(`metrics    http://127.0.0.1:${metricsPort}/metrics`);
    const scraped = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const value = (series: string) => Number(new RegExp(`^${series.replace(/[{}"=.]/g, (c) => `\\${c}`)} ([\\d.e+-]+)$`, 'm').exec(scraped)?.[1] ?? Number.NaN);
    expect(value('sophia_training_steps_total{stage="grpo"}')).toBe(16 - atKill.step);
    expect(value('sophia_checkpoint_written_bytes_total{stage="grpo"}')).toBeGreaterThan(0);
    expect(value('sophia_rollout_duration_seconds_count{stage="grpo"}')).toBe(16 - atKill.step);
    expect(value(`sophia_run_step{run_id="${runId}",stage="grpo"}`)).toBe(16);
    expect(value(`sophia_run_eval_accuracy{run_id="${runId}",split="test"}`)).toBeGreaterThanOrEqual(0);
    expect(value('process_resident_memory_bytes')).toBeGreaterThan(0);
    expect(scraped).toMatch(/^temporal_[a-z_]+(\{[^}]*\})? [\d.e+-]+$/m);
    expect(scraped).not.toMatch(/^sophia_[a-z_]+(_bucket|_count|_sum|_total)\{[^}]*run_id=/m); // no run id on rate series
    // Every log line of the JSON worker is one JSON object with the run, stage, step and trace fields; the run's own
    // lines name it.
    const logLines = cpu.output().split('\n').filter((l) => l.startsWith('{'));
    expect(logLines.length).toBeGreaterThan(0);
    const entries = logLines.map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const e of entries) expect(Object.keys(e).slice(0, 8)).toEqual(['time', 'level', 'component', 'message', 'runId', 'stage', 'step', 'traceId']);
    expect(entries.some((e) => e.runId === runId && e.component === 'worker:cpu')).toBe(true);
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
