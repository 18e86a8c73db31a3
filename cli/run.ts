/**
 * `sophia run --config PRESET|FILE`: start (or attach to) a run's pipeline and watch it to the end.
 *
 * Without TEMPORAL_ADDRESS it runs everything here: the embedded dev server (SQLite under .sophia/, survives
 * restarts) and in-process CPU and GPU workers. With TEMPORAL_ADDRESS it submits to that cluster and watches;
 * `--workers` also runs workers in this process. Running it again with the same `--run-id` after a kill attaches
 * to the same workflow, which continues from its last committed checkpoint.
 */
import { pipelineInput, startRun } from '../clients/runs';
import { defaultRunId } from '../common/run-layout';
import { loadRunConfig } from '../config/load';
import { assertRunnable } from '../config/run-config';
import { assertValidName } from '../storage/keys';
import { loadTemporalConfig } from '../temporal.config';
import { openStorage } from '../storage/open';
import type { WorkerSet } from '../workers/worker';
import { defaultStorage } from './paths';
import { runSummary } from './run-view';
import { installQuietRuntime, openSession, runtimeLogFile } from './session';
import { runsWorkersHere, startWorkers } from './workers';
import { watchRun } from './watch';

export { watchRun } from './watch';

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
  const logFile = runtimeLogFile(env, options.repoRoot, runId);
  installQuietRuntime(logFile);
  const session = await openSession(env, options.repoRoot);
  let workers: WorkerSet | undefined;
  try {
    say(`temporal   ${session.describe()}`);
    say(`storage    ${storage.location}`);
    say(`config     ${options.config}${config.name ? ` (${config.name})` : ''}`);
    say(`run        ${runId}   (after a crash or kill: sophia run --config ${options.config} --run-id ${runId})`);
    say(`logs       ${logFile} (Temporal runtime warnings; errors are shown here too)`);
    if (runsWorkersHere(options.workers, session)) workers = await startWorkers(session, storage);
    const input = pipelineInput(runId, config, storage.location, session.config);
    const { handle, state } = await startRun(session.client, session.config, input);
    say(`workflow   ${handle.workflowId} (${state === 'started' ? 'started' : state === 'attached' ? 'attached to the running run' : 'finished earlier'})`);
    const watch = watchRun(session.client, runId, say, options.pollMs ?? 1000, () => handle.result(), { startedNow: state === 'started' });
    const result = await (workers ? workers.runUntil(watch) : watch);
    if (result.status !== 'completed') {
      say(`failed     ${result.error ?? result.status}`);
      return 1;
    }
    for (const line of runSummary(result, result.reportKey ? `${storage.location}/${result.reportKey}` : undefined)) say(line);
    return 0;
  } finally {
    await session.close();
    await storage.close();
  }
}
