/**
 * `sophia run --config PRESET|FILE`: start (or attach to) a run's pipeline and watch it to the end.
 *
 * Without TEMPORAL_ADDRESS it runs everything here: the embedded dev server (SQLite under .sophia/, survives
 * restarts) and in-process CPU and GPU workers. With TEMPORAL_ADDRESS it submits to that cluster and watches;
 * `--workers` also runs workers in this process. Running it again with the same `--run-id` after a kill attaches
 * to the same workflow, which continues from its last committed checkpoint.
 */
import { pipelineInput, runProgress, startRun } from '../clients/runs';
import { loadRunConfig } from '../config/load';
import { assertRunnable } from '../config/run-config';
import { assertValidName } from '../storage/keys';
import { loadTemporalConfig } from '../temporal.config';
import { openStorage } from '../storage/open';
import { WorkerSet } from '../workers/worker';
import { defaultStorage } from './paths';
import { ProgressBar, formatSeconds } from './progress';
import { installQuietRuntime, openSession } from './session';

type Env = Readonly<Record<string, string | undefined>>;

export interface RunOptions {
  config: string;
  runId: string | undefined;
  storage: string | undefined;
  /** Run CPU and GPU workers in this process (default: only when using the embedded server). */
  workers: boolean | undefined;
  env: Env;
  repoRoot: string;
  out: NodeJS.WritableStream;
  /** How often to poll progress (ms). */
  pollMs?: number;
}

/** A run id a person can read and type again: run-20261127-081500. */
export function defaultRunId(now: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `run-${now.getFullYear()}${pad(now.getMonth() + 1)}${pad(now.getDate())}-${pad(now.getHours())}${pad(now.getMinutes())}${pad(now.getSeconds())}`;
}

export async function runCommand(options: RunOptions): Promise<number> {
  const { env, out } = options;
  const say = (line: string) => out.write(`${line}\n`);
  // Everything the user configured is validated before anything starts.
  const config = loadRunConfig(options.config);
  assertRunnable(config);
  loadTemporalConfig(env);
  const runId = options.runId ?? defaultRunId(new Date());
  assertValidName('run id', runId);
  const storage = openStorage(options.storage ?? defaultStorage(env, options.repoRoot), env);
  await storage.head(`runs/${runId}/metrics.jsonl`).catch(async (err: unknown) => {
    await storage.close();
    throw err;
  });
  installQuietRuntime();
  const session = await openSession(env, options.repoRoot);
  let workers: WorkerSet | undefined;
  try {
    say(`temporal   ${session.describe()}`);
    say(`storage    ${storage.location}`);
    say(`config     ${options.config}${config.name ? ` (${config.name})` : ''}`);
    say(`run        ${runId}   (after a crash or kill: sophia run --config ${options.config} --run-id ${runId})`);
    if (options.workers ?? session.embedded !== undefined) {
      workers = await WorkerSet.create({
        kinds: ['cpu', 'gpu'],
        connection: await session.workerConnection(),
        config: session.config,
        storage,
        engine: { executionProvider: config.engine.executionProvider, ...(config.engine.threads > 0 ? { threads: config.engine.threads } : {}) },
      });
    }
    const input = pipelineInput(runId, config, storage.location, session.config);
    const { handle, state } = await startRun(session.client, session.config, input);
    say(`workflow   ${handle.workflowId} (${state === 'started' ? 'started' : state === 'attached' ? 'attached to the running run' : 'finished earlier'})`);
    const watch = watchRun(session.client, runId, say, options.pollMs ?? 1000, () => handle.result());
    const result = await (workers ? workers.runUntil(watch) : watch);
    if (result.status !== 'completed') {
      say(`failed     ${result.error ?? result.status}`);
      return 1;
    }
    for (const [stage, key] of Object.entries(result.checkpoints)) say(`checkpoint ${stage}: ${key}`);
    for (const [stage, metrics] of Object.entries(result.results)) {
      say(`result     ${stage}: ${Object.entries(metrics ?? {}).map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(4)}`).join(', ')}`);
    }
    if (result.reportKey) say(`report     ${storage.location}/${result.reportKey}`);
    return 0;
  } finally {
    await session.close();
    await storage.close();
  }
}

/** Polls progress and draws it until the run ends; resolves with its final progress. */
export async function watchRun(
  client: Parameters<typeof runProgress>[0],
  runId: string,
  say: (line: string) => void,
  pollMs: number,
  result: () => Promise<unknown>,
): Promise<Awaited<ReturnType<typeof runProgress>>> {
  let bar: { stage: string; bar: ProgressBar } | undefined;
  const started = Date.now();
  let settled = false;
  const done = result().then(
    () => undefined,
    () => undefined,
  );
  void done.then(() => (settled = true));
  for (;;) {
    const progress = await runProgress(client, runId).catch(() => undefined);
    if (progress && (progress.status === 'completed' || progress.status === 'failed')) {
      if (bar) bar.bar.update(progress.current?.totalSteps ?? 1, 'done');
      say(`finished   ${progress.status} after ${formatSeconds((Date.now() - started) / 1000)}`);
      return progress;
    }
    if (progress) {
      const stage = progress.stages[progress.stageIndex] ?? 'done';
      const label = `${progress.stageIndex + 1}/${progress.stages.length} ${stage}`;
      const current = progress.current?.stage === stage ? progress.current : undefined;
      const total = progress.live?.totalSteps ?? current?.totalSteps ?? 1;
      if (bar?.stage !== `${label}/${total}`) {
        if (bar) process.stderr.write('\n');
        bar = { stage: `${label}/${total}`, bar: new ProgressBar(label, total) };
      }
      const step = progress.live?.step ?? current?.step ?? 0;
      const loss = progress.live?.loss ?? current?.metrics.loss;
      const status = progress.status === 'running' ? '' : ` [${progress.status}]`;
      bar.bar.update(step, `${loss !== undefined ? `loss ${loss.toFixed(3)} ` : ''}${progress.current?.activity ?? ''}${status}`);
    }
    if (settled) {
      if (!progress) throw new Error(`run ${runId} ended but its final state could not be read`);
      continue; // one more poll picks up the final state
    }
    await Promise.race([new Promise((r) => setTimeout(r, pollMs)), done]);
  }
}
