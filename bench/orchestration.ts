/**
 * bench/orchestration: what running the pipeline through Temporal costs, against the same stages called
 * in-process without Temporal, measured in the same run.
 *
 *   temporal   = `trainingPipeline` on a Temporal dev server (a private embedded one, or TEMPORAL_ADDRESS), with
 *                CPU and GPU workers in this process (already started: worker start-up, i.e. bundling the
 *                workflow code, is a one-time cost per worker process and is shown on its own line);
 *                timed from `workflow.start` to the result.
 *   in-process = the very same activity functions, called one after another in the order the workflows call
 *                them (prepareData; SFT chunks until done; reward-model data, annotation, chunks, measurement;
 *                per RL step rollouts, outcome and thinking rewards, advantages, update, periodic evaluation;
 *                evaluation of the baseline and the final checkpoint; report) through `MockActivityEnvironment`,
 *                with the same storage kind and engine pool.
 *
 * Each repetition runs a fresh run id on a fresh storage folder; the two kinds alternate so drift on this noisy
 * machine hits both alike. The table shows every repetition, the medians and the ratio temporal / in-process,
 * and splits each wall time into time with at least one activity executing (from the workflow histories for
 * Temporal) and time between activities (orchestration latency), plus CPU seconds (this process, and for
 * Temporal also the dev server's).
 * Target: overhead ≤ 5 % (ratio ≤ 1.05).
 *
 *   npm run bench:orchestration                       # ci preset, 3 repetitions of each
 *   npm run bench:orchestration -- --reps 5 --config ci
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { createDataActivities } from '../activities/data';
import { EnginePool } from '../activities/engine-pool';
import { createEvaluationActivities, type EvaluateOutput } from '../activities/evaluation';
import { RunData } from '../activities/run-data';
import type { ChunkOutput } from '../activities/chunk';
import { createRewardModelActivities } from '../activities/reward-model';
import { createRlActivities } from '../activities/rl';
import { createTrainingActivities } from '../activities/training';
import { findTemporalCli, startEmbeddedServer } from '../cli/embedded-server';
import { installQuietRuntime } from '../cli/session';
import { pipelineInput, startRun } from '../clients/runs';
import { connectClient, connectWorker } from '../clients/temporal';
import { loadRunConfig } from '../config/load';
import type { RunConfig } from '../config/run-config';
import { DEFAULT_SPINNING, OnnxEngine, type OnnxEngineOptions, SPIN_POLICIES, type SpinPolicy } from '../engine/onnx-bench';
import { CheckpointStore } from '../storage/checkpoints';
import { LocalStorage } from '../storage/local';
import { type TemporalConfig, loadTemporalConfig } from '../temporal.config';
import { REPO_ROOT } from '../test/integration/stack';
import { WorkerSet } from '../workers/worker';
import { machineLine, median } from './report';

const TARGET = 1.05;

const { values: args } = parseArgs({
  options: {
    reps: { type: 'string', default: '3' },
    config: { type: 'string', default: 'ci' },
    // How the training sessions' threads wait (the engine option `spinning.training`), the same on both sides.
    'spinning-training': { type: 'string' },
    // Diagnostics: run only one kind (no ratio), e.g. to see whether repetitions drift.
    only: { type: 'string' },
  },
});
const reps = Number(args.reps);
if (!Number.isInteger(reps) || reps < 1) throw new Error('--reps must be a positive integer');
const config = loadRunConfig(args.config);
const spinTraining = args['spinning-training'];
if (spinTraining !== undefined && !(SPIN_POLICIES as readonly string[]).includes(spinTraining)) {
  throw new Error(`--spinning-training must be one of ${SPIN_POLICIES.join(', ')}, got ${spinTraining}`);
}
const engineOptions: OnnxEngineOptions = spinTraining
  ? { spinning: { ...DEFAULT_SPINNING, training: spinTraining as SpinPolicy } }
  : {};

const seconds = (startNs: bigint) => Number(process.hrtime.bigint() - startNs) / 1e9;

/** Outcome of one pipeline execution, to check both kinds did the same work. */
interface Outcome {
  seconds: number;
  sftStep: number;
  testAccuracy: number;
  /** Time during which at least one activity was executing (the union of their intervals). */
  busySeconds: number;
  /** CPU seconds of this process (workers or in-process calls) plus, for Temporal, the dev server's. */
  cpuSeconds: number;
}

/** Length of the union of [start, end] intervals (ms → s). */
export function unionSeconds(intervals: readonly [number, number][]): number {
  const sorted = [...intervals].sort((a, b) => a[0] - b[0]);
  let total = 0;
  let [from, to] = [Number.NEGATIVE_INFINITY, Number.NEGATIVE_INFINITY];
  for (const [a, b] of sorted) {
    if (a > to) {
      if (to > from) total += to - from;
      [from, to] = [a, b];
    } else to = Math.max(to, b);
  }
  if (to > from) total += to - from;
  return total / 1000;
}

const processCpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/** utime + stime of another process, in seconds (Linux /proc). */
function otherCpu(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** Where the time between activities goes, summed over a run's workflows (ms). */
interface Gaps {
  /** Workflow tasks: scheduled → picked up by a worker. */
  workflowTaskWait: number;
  /** Workflow tasks: picked up → completed (the worker running workflow code). */
  workflowTaskRun: number;
  workflowTasks: number;
  /** Activities: scheduled → picked up by a worker. */
  activityWait: number;
  activities: number;
  /** Workflow tasks by the event that caused them: [count, ms running]. */
  byTrigger: Record<string, [number, number]>;
}

const emptyGaps = (): Gaps => ({ workflowTaskWait: 0, workflowTaskRun: 0, workflowTasks: 0, activityWait: 0, activities: 0, byTrigger: {} });

/** From a run's workflow histories (pipeline and stages): activity execution intervals, and where the gaps went. */
async function readHistories(client: Awaited<ReturnType<typeof connectClient>>, runId: string): Promise<{ intervals: [number, number][]; gaps: Gaps }> {
  const intervals: [number, number][] = [];
  const gaps = emptyGaps();
  for await (const w of client.workflow.list({ query: `WorkflowId STARTS_WITH 'sophia-${runId}'` })) {
    const history = await client.workflow.getHandle(w.workflowId, w.runId).fetchHistory();
    const started = new Map<string, number>();
    const timeOf = new Map<string, number>();
    const triggerOf = new Map<string, string>();
    let lastKind = 'start';
    for (const e of history.events ?? []) {
      const at = Number(e.eventTime?.seconds ?? 0) * 1000 + Math.floor((e.eventTime?.nanos ?? 0) / 1e6);
      timeOf.set(String(e.eventId), at);
      if (e.workflowTaskStartedEventAttributes) {
        gaps.workflowTaskWait += at - (timeOf.get(String(e.workflowTaskStartedEventAttributes.scheduledEventId)) ?? at);
        gaps.workflowTasks++;
      }
      if (e.workflowTaskCompletedEventAttributes) {
        const ms = at - (timeOf.get(String(e.workflowTaskCompletedEventAttributes.startedEventId)) ?? at);
        gaps.workflowTaskRun += ms;
        const trigger = triggerOf.get(String(e.workflowTaskCompletedEventAttributes.scheduledEventId)) ?? 'other';
        gaps.byTrigger[trigger] = [(gaps.byTrigger[trigger]?.[0] ?? 0) + 1, (gaps.byTrigger[trigger]?.[1] ?? 0) + ms];
      }
      if (e.workflowTaskScheduledEventAttributes) triggerOf.set(String(e.eventId), lastKind);
      const kind = Object.keys(e).find((k) => k.endsWith('EventAttributes') && (e as Record<string, unknown>)[k]);
      if (kind && !kind.startsWith('workflowTask')) lastKind = kind.replace('EventAttributes', '');
      if (e.activityTaskStartedEventAttributes) {
        const scheduled = String(e.activityTaskStartedEventAttributes.scheduledEventId);
        gaps.activityWait += at - (timeOf.get(scheduled) ?? at);
        gaps.activities++;
        started.set(scheduled, at);
      }
      const done = e.activityTaskCompletedEventAttributes ?? e.activityTaskFailedEventAttributes ?? e.activityTaskCanceledEventAttributes ?? e.activityTaskTimedOutEventAttributes;
      if (done) {
        const from = started.get(String(done.scheduledEventId));
        if (from !== undefined) intervals.push([from, at]);
      }
    }
  }
  return { intervals, gaps };
}

/** The pipeline's activity sequence, called directly (what the workflows would schedule, minus Temporal). */
async function runInProcess(runConfig: RunConfig, runId: string, dir: string, temporal: TemporalConfig): Promise<Outcome> {
  const storage = new LocalStorage(dir);
  const store = new CheckpointStore(storage);
  const engines = new EnginePool(() => new OnnxEngine(engineOptions), 4);
  const data = new RunData(storage);
  // Same log level as the workers' (the CLI's quiet runtime: WARN), so neither side pays for printing more.
  const env = new MockActivityEnvironment(undefined, { logger: new DefaultLogger('WARN') });
  const intervals: [number, number][] = [];
  const call = async <I, O>(fn: (input: I) => Promise<O>, arg: I): Promise<O> => {
    const from = Date.now();
    try {
      return await env.run<[I], O, (input: I) => Promise<O>>(fn, arg);
    } finally {
      intervals.push([from, Date.now()]);
    }
  };
  const input = pipelineInput(runId, runConfig, storage.location, temporal);
  const common = { runId, config: runConfig, storage: storage.location };
  const deps = { store, data, engines, workerQueue: 'in-process', identity: 'in-process' };
  try {
    const start = process.hrtime.bigint();
    const cpu0 = processCpu();
    const dataActs = createDataActivities({ data });
    const training = createTrainingActivities(deps);
    const rewardModel = createRewardModelActivities(deps);
    const rl = createRlActivities(deps);
    const evaluation = createEvaluationActivities({ store, data, engines });
    const chunks = async (settings: { steps: number; chunkSteps: number }, run: (untilStep: number) => Promise<ChunkOutput>): Promise<ChunkOutput> => {
      let out = await run(settings.chunkSteps);
      while (!out.done) out = await run(Math.min(settings.steps, (Math.floor(out.step / settings.chunkSteps) + 1) * settings.chunkSteps));
      return out;
    };

    await call(dataActs.prepareData, common);
    const sft = await chunks(runConfig.sft, (untilStep) => call(training.runSftChunk, { ...common, configHash: input.configHash, untilStep }));
    const sftKey = sft.bestCheckpointKey ?? sft.checkpointKey;
    let final = sftKey;
    let rmKey: string | undefined;
    let rmInitialKey: string | undefined;
    const rm = runConfig.rewardModel;
    if (rm) {
      const rmInput = { ...common, dataRunId: runId };
      await call(rewardModel.sampleRewardData, { ...rmInput, policyCheckpointKey: sftKey });
      await call(rewardModel.annotateRewardData, rmInput);
      const trained = await chunks(rm, (untilStep) => call(rewardModel.runRewardModelChunk, { ...rmInput, configHash: input.configHash, policyCheckpointKey: sftKey, untilStep }));
      rmKey = trained.bestCheckpointKey ?? trained.checkpointKey;
      rmInitialKey = trained.initialCheckpointKey;
      await call(rewardModel.evaluateRewardModel, { ...rmInput, checkpointKey: rmKey, initialCheckpointKey: rmInitialKey });
    }
    const settings = runConfig.rl;
    if (settings) {
      const thinkingKey = settings.variant === 'untrained-rm' ? rmInitialKey : rmKey;
      for (let step = 1; step <= settings.steps; step++) {
        const stepInput = { ...common, configHash: input.configHash, dataRunId: runId, step, policyStartKey: sftKey };
        const rollouts = await call(rl.rolloutStep, stepInput);
        // As the workflow does: outcome and thinking rewards at once.
        const [outcome, thinking] = await Promise.all([
          call(rl.outcomeRewards, stepInput),
          settings.variant !== 'grpo' ? call(rl.thinkingRewards, { ...stepInput, rewardModelKey: thinkingKey! }) : Promise.resolve(undefined),
        ]);
        const adv = await call(rl.computeAdvantages, { ...stepInput, thinkingKey: thinking?.thinkingKey });
        const metrics = { outcomeReward: outcome.meanOutcome, reward: adv.meanReward, gamma: adv.stats.meanGamma, responseLength: rollouts.meanLength };
        const update = await call(rl.policyUpdate, { ...stepInput, metrics });
        if (update.checkpointKey) final = update.checkpointKey;
        if (settings.evalEvery > 0 && step % settings.evalEvery === 0 && step < settings.steps) {
          await call(evaluation.evaluateCheckpoint, { ...common, label: `grpo-${step}`, checkpointKey: final, limitPerFamily: settings.evalExamples, greedyOnly: true, metrics: { stage: 'grpo', step } });
        }
      }
    }
    const baseline = settings ? { label: 'sft', key: sftKey } : { label: 'initial', key: sft.initialCheckpointKey };
    const before: EvaluateOutput | undefined = baseline.key !== final ? await call(evaluation.evaluateCheckpoint, { ...common, label: baseline.label, checkpointKey: baseline.key }) : undefined;
    const after = await call(evaluation.evaluateCheckpoint, { ...common, label: 'final', checkpointKey: final });
    await call(evaluation.writeRunReport, { ...common, before, after, startedAt: new Date().toISOString() });
    return { seconds: seconds(start), sftStep: sft.step, testAccuracy: after.splits.test.overall.accuracy, busySeconds: unionSeconds(intervals), cpuSeconds: processCpu() - cpu0 };
  } finally {
    await engines.dispose();
    await store.close();
  }
}

async function main(): Promise<void> {
  installQuietRuntime();
  const root = mkdtempSync(path.join(tmpdir(), 'sophia-bench-orch-'));
  const embedded = process.env.TEMPORAL_ADDRESS
    ? undefined
    : await startEmbeddedServer({ dir: path.join(root, 'server'), executable: findTemporalCli(REPO_ROOT, process.env) });
  const temporalEnv = { ...process.env, TEMPORAL_ADDRESS: process.env.TEMPORAL_ADDRESS ?? embedded!.address };
  const stamp = Date.now().toString(36);
  // Private queues, so no other worker on a shared server picks up this benchmark's tasks.
  const temporal = loadTemporalConfig({ ...temporalEnv, SOPHIA_TASK_QUEUE_CPU: `bench-cpu-${stamp}`, SOPHIA_TASK_QUEUE_GPU: `bench-gpu-${stamp}` });
  const client = await connectClient(temporal);
  const connection = await connectWorker(temporal);
  const temporalStorageDir = path.join(root, 'temporal-storage');
  const storage = new LocalStorage(temporalStorageDir);

  // The embedded server's pid (its CPU time counts as orchestration cost).
  const serverPid = embedded ? (JSON.parse(readFileSync(path.join(root, 'server', 'server.json'), 'utf8')) as { pid: number }).pid : undefined;
  const startup = process.hrtime.bigint();
  const workers = await WorkerSet.create({ kinds: ['cpu', 'gpu'], connection, config: temporal, storage, makeEngine: () => new OnnxEngine(engineOptions) });
  const startupSeconds = seconds(startup);
  const running = workers.run();

  const rows: { rep: number; kind: 'temporal' | 'in-process'; outcome: Outcome }[] = [];
  try {
    for (let rep = 1; rep <= reps; rep++) {
      // Alternate which goes first, so slow drift on the machine hits both kinds alike.
      const order: ('temporal' | 'in-process')[] = rep % 2 === 1 ? ['temporal', 'in-process'] : ['in-process', 'temporal'];
      for (const kind of order.filter((k) => !args.only || k === args.only)) {
        const runId = `bench-${stamp}-${kind}-${rep}`;
        let outcome: Outcome;
        if (kind === 'temporal') {
          const start = process.hrtime.bigint();
          const cpu0 = processCpu() + otherCpu(serverPid);
          const { handle } = await startRun(client, temporal, pipelineInput(runId, config, storage.location, temporal));
          const result = await handle.result();
          const elapsed = seconds(start);
          const cpuSeconds = processCpu() + otherCpu(serverPid) - cpu0;
          if (result.status !== 'completed') throw new Error(`run ${runId} ended ${result.status}: ${result.error ?? ''}`);
          const { intervals, gaps } = await readHistories(client, runId);
          const busySeconds = unionSeconds(intervals);
          process.stderr.write(
            `rep ${rep} temporal   gaps: ${gaps.workflowTasks} workflow tasks (wait ${(gaps.workflowTaskWait / 1000).toFixed(2)} s, run ${(gaps.workflowTaskRun / 1000).toFixed(2)} s), ` +
              `${gaps.activities} activities (wait ${(gaps.activityWait / 1000).toFixed(2)} s); workflow tasks by cause: ${Object.entries(gaps.byTrigger)
                .map(([k, [n, ms]]) => `${k} ${n}× ${(ms / n).toFixed(0)} ms`)
                .join(', ')}\n`,
          );
          outcome = { seconds: elapsed, sftStep: result.results.sftWarmup?.step ?? Number.NaN, testAccuracy: result.results.evaluation?.testAccuracy ?? Number.NaN, busySeconds, cpuSeconds };
        } else {
          const dir = path.join(root, `in-process-${rep}`);
          outcome = await runInProcess(config, runId, dir, temporal);
          rmSync(dir, { recursive: true, force: true });
        }
        rows.push({ rep, kind, outcome });
        process.stderr.write(`rep ${rep} ${kind.padEnd(10)} ${outcome.seconds.toFixed(2)} s (activities ${outcome.busySeconds.toFixed(2)} s, cpu ${outcome.cpuSeconds.toFixed(2)} s)\n`);
      }
    }
  } finally {
    workers.shutdown();
    await running.catch(() => undefined);
    await connection.close();
    await client.connection.close();
    await storage.close();
    await embedded?.stop();
    rmSync(root, { recursive: true, force: true });
  }

  if (args.only) return; // one kind only: the per-repetition lines above are the output
  const times = (kind: string) => rows.filter((r) => r.kind === kind).map((r) => r.outcome.seconds);
  const t = median(times('temporal'));
  const p = median(times('in-process'));
  const ratio = t / p;
  const same = rows.every((r) => r.outcome.sftStep === rows[0]!.outcome.sftStep && r.outcome.testAccuracy === rows[0]!.outcome.testAccuracy);

  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  // Each repetition's pair ran back to back: the median of their ratios is less exposed to slow drift.
  const pairRatios: number[] = [];
  const out: string[] = [];
  out.push(`bench/orchestration — preset/config ${args.config}, ${reps} repetitions each, ${embedded ? 'embedded dev server' : temporal.connection.address}, training sessions spin: ${spinTraining ?? 'engine default'}`);
  out.push('');
  out.push(line(['rep', 'temporal (s)', 'in-process (s)', 'ratio', 'activities T / P (s)', 'between activities T / P (s)', 'CPU T / P (s)', 'SFT steps', 'test accuracy']));
  out.push(line(['---', '---', '---', '---', '---', '---', '---', '---', '---']));
  for (let rep = 1; rep <= reps; rep++) {
    const tr = rows.find((r) => r.rep === rep && r.kind === 'temporal')!.outcome;
    const pr = rows.find((r) => r.rep === rep && r.kind === 'in-process')!.outcome;
    out.push(
      line([
        String(rep),
        tr.seconds.toFixed(2),
        pr.seconds.toFixed(2),
        (tr.seconds / pr.seconds).toFixed(3),
        `${tr.busySeconds.toFixed(2)} / ${pr.busySeconds.toFixed(2)}`,
        `${(tr.seconds - tr.busySeconds).toFixed(2)} / ${(pr.seconds - pr.busySeconds).toFixed(2)}`,
        `${tr.cpuSeconds.toFixed(1)} / ${pr.cpuSeconds.toFixed(1)}`,
        `${tr.sftStep} / ${pr.sftStep}`,
        `${tr.testAccuracy.toFixed(3)} / ${pr.testAccuracy.toFixed(3)}`,
      ]),
    );
    pairRatios.push(tr.seconds / pr.seconds);
  }
  const med = (kind: string, f: (o: Outcome) => number) => median(rows.filter((r) => r.kind === kind).map((r) => f(r.outcome)));
  out.push(
    line([
      'median',
      t.toFixed(2),
      p.toFixed(2),
      median(pairRatios).toFixed(3),
      `${med('temporal', (o) => o.busySeconds).toFixed(2)} / ${med('in-process', (o) => o.busySeconds).toFixed(2)}`,
      `${med('temporal', (o) => o.seconds - o.busySeconds).toFixed(2)} / ${med('in-process', (o) => o.seconds - o.busySeconds).toFixed(2)}`,
      `${med('temporal', (o) => o.cpuSeconds).toFixed(1)} / ${med('in-process', (o) => o.cpuSeconds).toFixed(1)}`,
      '',
      '',
    ]),
  );
  out.push('');
  out.push(`worker start-up (once per worker process, not in the times above): ${startupSeconds.toFixed(2)} s`);
  out.push(`same work on both sides (SFT steps and test accuracy equal in every repetition): ${same ? 'yes' : 'NO'}`);
  out.push(`median of the per-repetition ratios: ${median(pairRatios).toFixed(3)}`);
  out.push(`ratio temporal / in-process (medians): ${ratio.toFixed(3)}  → overhead ${((ratio - 1) * 100).toFixed(1)} %  target ≤ ${((TARGET - 1) * 100).toFixed(0)} %  ${ratio <= TARGET ? 'PASS' : 'FAIL'}`);
  out.push(machineLine());
  process.stdout.write(`${out.join('\n')}\n`);
  if (!same) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
