/**
 * The training pipeline on the real stack: the Temporal dev server and checkpoints in the real S3 server.
 *  1. the `ci` preset completes: dataset, SFT in chunks with checkpoints, the thinking reward model, Trust-GRPO
 *     steps with rollouts by key, evaluation, report with plots;
 *  2. control: pause (the running chunk commits its step, the run waits), resume, stop (checkpoint now,
 *     evaluate, finish cleanly);
 *  3. stop during Trust-GRPO: the policy as it is is committed (a GPU activity), evaluated, and the run completes.
 */
import { randomBytes } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { type NativeConnection } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient, connectWorker } from '../../clients/temporal';
import { pipelineInput, runProgress, startRun } from '../../clients/runs';
import { mergeConfig, parseRunConfig, RUN_PRESETS, type RunConfig } from '../../config/run-config';
import { CheckpointStore } from '../../storage/checkpoints';
import { readMetrics } from '../../storage/metrics-log';
import { S3Storage } from '../../storage/s3';
import type { TemporalConfig } from '../../temporal.config';
import { WorkerSet } from '../../workers/worker';
import { pauseSignal, resumeSignal, stopSignal } from '../../workflows/types';
import { quietTemporalRuntime, requireStack, stackS3Options, stackTemporalConfig, waitFor } from './stack';

describe('trainingPipeline on the dev server with S3 checkpoints', () => {
  const suffix = randomBytes(4).toString('hex');
  let temporal: TemporalConfig;
  let client: Client;
  let connection: NativeConnection;
  let storage: S3Storage;
  let store: CheckpointStore;
  let workers: WorkerSet;
  let running: Promise<void>;

  beforeAll(async () => {
    quietTemporalRuntime();
    await requireStack();
    temporal = stackTemporalConfig({ SOPHIA_TASK_QUEUE_CPU: `sophia-cpu-p-${suffix}`, SOPHIA_TASK_QUEUE_GPU: `sophia-gpu-p-${suffix}` });
    client = await connectClient(temporal);
    connection = await connectWorker(temporal);
    storage = new S3Storage({ ...stackS3Options(), prefix: `test-pipeline/${suffix}` });
    store = new CheckpointStore(storage);
    workers = await WorkerSet.create({ kinds: ['cpu', 'gpu'], connection, config: temporal, storage });
    running = workers.run();
  });

  afterAll(async () => {
    workers?.shutdown();
    await running;
    await connection?.close();
    await client?.connection.close();
    await store?.close();
    await storage?.close();
  });

  it('runs the ci preset to a report', async () => {
    const config = parseRunConfig(RUN_PRESETS.ci, 'ci');
    const runId = `ci-${suffix}`;
    const { handle, state } = await startRun(client, temporal, pipelineInput(runId, config, storage.location, temporal));
    expect(state).toBe('started');
    const result = await handle.result();
    expect(result.status).toBe('completed');
    expect(result.stages).toEqual(['prepareData', 'sftWarmup', 'rewardModel', 'trustGrpo', 'evaluation']);
    expect(result.results.prepareData).toMatchObject({ train: 1000, test: 100, ood: 100 });
    expect(result.results.sftWarmup?.step).toBe(150);
    const sftKey = result.checkpoints.sftWarmup!;
    await store.verify(sftKey);
    // Retention kept the last 3 and the best; the initial weights stay as the baseline.
    const kept = (await store.list(runId, 'sft')).map((m) => m.step);
    expect(kept.length).toBeLessThanOrEqual(4);
    expect(kept).toContain(150);
    expect((await store.latest(runId, 'init'))?.step).toBe(0);
    // Every step's metrics, once each.
    const metrics = await readMetrics(storage, runId);
    const of = (stage: string, kind: string) => metrics.filter((m) => m.stage === stage && m.kind === kind).map((m) => m.step);
    expect(of('sft', 'step')).toEqual(Array.from({ length: 150 }, (_, i) => i + 1));
    expect(of('sft', 'validation')).toEqual([50, 100, 150]);
    // The reward model: trained in chunks from its committed initial weights, measured on held-out annotations.
    expect(of('rm', 'step')).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    expect((await store.latest(runId, 'rm-init'))?.step).toBe(0);
    expect(result.checkpoints.rewardModel).toMatch(new RegExp(`^runs/${runId}/rm/checkpoints/`));
    expect(result.results.rewardModel).toMatchObject({ step: 40, samples: 160 });
    expect(result.results.rewardModel?.rmMae).toBeGreaterThanOrEqual(0);
    // Trust-GRPO: 6 steps, each with its rollouts, rewards and advantages in storage; checkpoints every 3 steps.
    expect(of('grpo', 'step')).toEqual([1, 2, 3, 4, 5, 6]);
    expect(of('grpo', 'eval')).toEqual([3]);
    for (const file of ['rollouts.json', 'outcome.json', 'thinking.json', 'advantages.json']) expect(await storage.exists(`runs/${runId}/rollouts/6/${file}`)).toBe(true);
    expect((await store.list(runId, 'grpo')).map((m) => m.step)).toEqual([3, 6]);
    expect(result.checkpoints.trustGrpo).toBe(`runs/${runId}/grpo/checkpoints/00000006`);
    const rl = metrics.filter((m) => m.stage === 'grpo' && m.kind === 'step');
    for (const m of rl) {
      for (const field of ['outcomeReward', 'thinkingReward', 'gamma', 'anneal', 'kl', 'entropy', 'clipFraction', 'responseLength', 'formatRate', 'zeroVarianceShare', 'distrustedShare']) {
        expect(typeof m[field], `${field} at step ${m.step}`).toBe('number');
      }
    }
    expect(rl[0]!.anneal).toBe(1);
    expect(Number(rl[5]!.anneal)).toBeCloseTo(Math.exp(-5 / 6), 12);
    expect(result.results.evaluation?.baselineTestAccuracy).toBeDefined(); // the SFT checkpoint, measured in the same run
    // The report and its plots are in S3; the trained policy beats its untrained self.
    expect(result.reportKey).toBe(`runs/${runId}/reports/report.md`);
    const report = JSON.parse(new TextDecoder().decode(await storage.get(`runs/${runId}/reports/report.json`))) as {
      after: { test: { overall: { formatRate: number } } };
      rewardModel: { trained: { mae: number } };
      trustGrpo: { steps: number };
      plots: string[];
    };
    expect(report.trustGrpo.steps).toBe(6);
    expect(report.rewardModel.trained.mae).toBeGreaterThanOrEqual(0);
    expect(report.plots.map((p) => p.split('/').at(-1))).toEqual([
      'loss.png',
      'accuracy-test.png',
      'accuracy-ood.png',
      'reward-model-loss.png',
      'rl-rewards.png',
      'rl-trust.png',
      'rl-kl-entropy.png',
      'rl-accuracy.png',
    ]);
    expect(result.results.evaluation?.testFormatRate).toBeGreaterThan(0.5);
    // Starting the same run id again does not start it over.
    expect((await startRun(client, temporal, pipelineInput(runId, config, storage.location, temporal))).state).toBe('finished');
  });

  it('pauses (checkpoint, wait), resumes, and stops (checkpoint, evaluate, finish)', async () => {
    const config: RunConfig = parseRunConfig(mergeConfig(RUN_PRESETS.ci, { sft: { steps: 400, chunkSteps: 200, evalEvery: 50 }, evaluation: { k: 0 } }), 'ci-long');
    const runId = `ctl-${suffix}`;
    const { handle } = await startRun(client, temporal, pipelineInput(runId, config, storage.location, temporal));
    await waitFor('step 20', async () => ((await runProgress(client, runId)).live?.step ?? 0) >= 20 || undefined);
    await handle.signal(pauseSignal);
    const paused = await waitFor('the pause to take effect', async () => {
      const p = await runProgress(client, runId);
      return p.status === 'paused' && p.current?.activity === 'paused' ? p : undefined;
    });
    // The chunk committed the step it had reached, off the validation grid.
    const atPause = await store.latest(runId, 'sft');
    expect(atPause).toBeDefined();
    expect(atPause!.step).toBeGreaterThanOrEqual(20);
    expect(paused.current?.step).toBe(atPause!.step);
    await new Promise((r) => setTimeout(r, 2000));
    expect((await store.latest(runId, 'sft'))?.step).toBe(atPause!.step); // nothing runs while paused
    await handle.signal(resumeSignal);
    await waitFor('training to go on', async () => ((await runProgress(client, runId)).live?.step ?? 0) > atPause!.step + 10 || undefined);
    // A resume right behind the pause, before the cancelled chunk has committed: the run just goes on.
    const before = (await runProgress(client, runId)).live?.step ?? 0;
    await handle.signal(pauseSignal);
    await waitFor('the pause to be seen', async () => ((await runProgress(client, runId)).status === 'paused' ? true : undefined));
    await new Promise((r) => setTimeout(r, 300));
    await handle.signal(resumeSignal);
    await waitFor('training to go on after a quick pause', async () => ((await runProgress(client, runId)).live?.step ?? 0) > before + 10 || undefined);
    await handle.signal(stopSignal);
    const result = await handle.result();
    expect(result.status).toBe('completed');
    const stoppedAt = result.results.sftWarmup!.step!;
    expect(stoppedAt).toBeGreaterThan(atPause!.step);
    expect(stoppedAt).toBeLessThan(400);
    // Stop evaluates the model as it was when stopped: the checkpoint of that step.
    expect(result.checkpoints.sftWarmup).toBe((await store.latest(runId, 'sft'))!.key);
    expect((await store.latest(runId, 'sft'))!.step).toBe(stoppedAt);
    expect(result.reportKey).toBeDefined();
  });

  it('stops during Trust-GRPO: commits the policy at its step, evaluates it, completes', async () => {
    // grpo (no reward model stage) with dynamic sampling (DAPO), a short SFT, and no periodic RL checkpoint: the stop
    // must commit one itself.
    const config: RunConfig = parseRunConfig(
      mergeConfig(RUN_PRESETS.ci, {
        stages: ['prepareData', 'sftWarmup', 'trustGrpo', 'evaluation'],
        sft: { steps: 20, evalEvery: 10, chunkSteps: 20 },
        rl: { variant: 'grpo', steps: 60, checkpointEvery: 100, evalEvery: 0, dynamicSampling: { maxRounds: 2 } },
        evaluation: { k: 0 },
      }),
      'ci-rl-stop',
    );
    const runId = `rlstop-${suffix}`;
    const { handle } = await startRun(client, temporal, pipelineInput(runId, config, storage.location, temporal));
    await waitFor('RL step 2', async () => {
      const p = await runProgress(client, runId);
      return p.current?.stage === 'trustGrpo' && p.current.step >= 2 ? true : undefined;
    }, 300_000);
    await handle.signal(stopSignal);
    const result = await handle.result();
    expect(result.status).toBe('completed');
    const stoppedAt = result.results.trustGrpo!.step!;
    expect(stoppedAt).toBeGreaterThanOrEqual(2);
    expect(stoppedAt).toBeLessThan(60);
    // The policy was committed at the step it had reached (no periodic checkpoint exists before step 60) …
    const committed = await store.latest(runId, 'grpo');
    expect(committed?.step).toBe(stoppedAt);
    expect(committed?.meta.stopped).toBe(true);
    expect(result.checkpoints.trustGrpo).toBe(committed!.key);
    // … and that is what the evaluation stage measured and reported.
    expect(result.results.evaluation?.testAccuracy).toBeGreaterThanOrEqual(0);
    expect(result.reportKey).toBe(`runs/${runId}/reports/report.md`);
    // Dynamic sampling: up to 2 rounds of promptsPerStep prompts per step; the groups kept all have outcome rewards
    // that differ (so none has zero variance: each one teaches GRPO something).
    const steps = (await readMetrics(storage, runId)).filter((m) => m.stage === 'grpo' && m.kind === 'step');
    expect(steps.length).toBeGreaterThanOrEqual(2);
    const perStep = config.rl!.promptsPerStep;
    for (const m of steps) {
      expect([1, 2]).toContain(m.dynamicRounds);
      expect(m.sampledGroups).toBe(perStep * Number(m.dynamicRounds));
      expect(Number(m.keptGroups)).toBeLessThanOrEqual(perStep);
      if (Number(m.dynamicRounds) === 1) expect(m.keptGroups).toBe(perStep); // a first round with enough mixed groups
      if (Number(m.keptGroups) > 0) expect(m.zeroVarianceShare).toBe(0);
    }
  }, 600_000);
});

