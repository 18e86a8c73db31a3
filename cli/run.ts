/**
 * `sophia run --config PRESET|FILE`: start (or attach to) a run's pipeline and watch it to the end.
 *
 * Without TEMPORAL_ADDRESS it runs everything here: the embedded dev server (SQLite under .sophia/, survives
 * restarts) and in-process CPU and GPU workers. With TEMPORAL_ADDRESS it submits to that cluster and watches;
 * `--workers` also runs workers in this process. Running it again with the same `--run-id` after a kill attaches
 * to the same workflow, which continues from its last committed checkpoint; with another config than the running
 * run's, it refuses (exit 2) and names the top-level fields that differ.
 *
 * Ctrl-C (SIGINT) or SIGTERM: the first stops the in-process workers gracefully (the running activity gets the
 * shutdown grace time to commit a checkpoint), prints the command that re-attaches and exits with 128 + the
 * signal's number (130 for SIGINT); without workers here it exits at once (the run goes on on the server). A second
 * signal exits at once. (The Temporal runtime's own signal handling is off in this command: it stopped the workers
 * but left the watch, and so the process, running.)
 */
import { constants } from 'node:os';
import { pipelineInput, runningConfigDifference, startRun } from '../clients/runs';
import { SophiaError } from '../common/errors';
import { defaultRunId } from '../common/run-layout';
import { loadRunConfig } from '../config/load';
import { type EngineKind, prepareEngine } from '../engine/factory';
import { assertSubmittable } from '../config/limits';
import { assertValidName } from '../storage/keys';
import { loadTemporalConfig } from '../temporal.config';
import { openStorage } from '../storage/open';
import { probeStorage } from '../storage/probe';
import { identifyStore } from '../storage/store-id';
import type { Storage } from '../storage/types';
import type { WorkerSet } from '../workers/worker';
import { defaultStorage } from './paths';
import { formatSeconds } from './progress';
import { runSummary } from './run-view';
import { type Session, installQuietRuntime, openSession, runtimeLogFile } from './session';
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

/** The first SIGINT/SIGTERM settles `first`; a second one calls `again`. `dispose` removes the handlers. */
function catchInterrupts(again: (signal: NodeJS.Signals) => void): { first: Promise<NodeJS.Signals>; dispose(): void } {
  const signals = ['SIGINT', 'SIGTERM'] as const;
  let seen = false;
  let settle: (signal: NodeJS.Signals) => void = () => undefined;
  const first = new Promise<NodeJS.Signals>((resolve) => (settle = resolve));
  const handler = (signal: NodeJS.Signals) => {
    if (seen) return again(signal);
    seen = true;
    settle(signal);
  };
  for (const signal of signals) process.on(signal, handler);
  return { first, dispose: () => signals.forEach((signal) => process.off(signal, handler)) };
}

/** A word as a shell reads it: as is when plain, else in single quotes. */
export const shellWord = (word: string) => (/^[\w./:@%+=,-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`);

/** The command that watches this run again (and runs its workers, as this one did): the same config, run id and storage. */
function reattachCommand(options: RunOptions, runId: string): string {
  const args = ['--config', options.config, '--run-id', runId, ...(options.storage ? ['--storage', options.storage] : []), ...(options.workers ? ['--workers'] : [])];
  return ['sophia', 'run', ...args.map(shellWord)].join(' ');
}

/** The shell's exit status of a process ended by `signal`: 128 + its number (130 for SIGINT). */
const interruptedExitCode = (signal: NodeJS.Signals) => 128 + constants.signals[signal];

export async function runCommand(options: RunOptions): Promise<number> {
  const { env, out } = options;
  const say = (line: string) => out.write(`${line}\n`);
  // Everything the user configured is validated before anything starts.
  const config = loadRunConfig(options.config);
  assertSubmittable(config, env);
  loadTemporalConfig(env);
  const runId = options.runId ?? defaultRunId(new Date());
  assertValidName('run id', runId);
  const storage = openStorage(options.storage ?? defaultStorage(env, options.repoRoot), env);
  // The run's storage must take a write before anything starts (a missing bucket, a read-only folder: refused here);
  // its id (created on first use) goes into the run, and its workers check they write to that very store.
  const store = await probeStorage(storage, runId).then(() => identifyStore(storage)).catch(async (err: unknown) => {
    await storage.close();
    throw err;
  });
  const session = await openSession(env, options.repoRoot);
  // Attaching to a running run would silently ignore this config if it is another: refuse, saying what differs.
  // (Before the Temporal runtime is installed: once installed, it keeps the process alive until a worker has run.)
  const differs = await runningConfigDifference(session.client, runId, config, session.config).catch((err: unknown) => err as Error);
  if (differs !== undefined) {
    await session.close();
    await storage.close();
    if (differs instanceof Error) throw differs;
    throw new SophiaError('conflict', `run ${runId} is running with another config: ${differs.join(', ')} differ${differs.length === 1 ? 's' : ''}`, {
      hint: `Give the --config of the running run to watch it, or another --run-id to start this config as a new run (and \`sophia stop ${runId}\` first if the running one should not go on)`,
    });
  }
  const logFile = runtimeLogFile(env, options.repoRoot, runId);
  installQuietRuntime(logFile, { shutdownSignals: [] });
  const reattach = reattachCommand(options, runId);
  say(`temporal   ${session.describe()}`);
  say(`storage    ${storage.location}`);
  say(`config     ${options.config}${config.name ? ` (${config.name})` : ''}`);
  say(`run        ${runId}   (after a crash or kill: ${reattach})`);
  say(`logs       ${logFile} (Temporal runtime warnings; errors are shown here too)`);
  return superviseRun({ session, storage, runId, workers: options.workers, engine: config.engine.kind, reattach, say, pollMs: options.pollMs }, async () => {
    const input = pipelineInput(runId, config, store, session.config);
    const { handle, state } = await startRun(session.client, session.config, input);
    say(`workflow   ${handle.workflowId} (${state === 'started' ? 'started' : state === 'attached' ? 'attached to the running run' : 'finished earlier'})`);
    return { startedNow: state === 'started' };
  });
}

export interface Supervision {
  session: Session;
  /** The run's storage (closed when the command ends, as is the session). */
  storage: Storage;
  runId: string;
  /** `--workers`: run CPU and GPU workers in this process (default: only on the embedded server). */
  workers: boolean | undefined;
  /** The run's engine kind: got ready (the PyTorch engine installed on first use) before workers start here. */
  engine?: EngineKind;
  /** The command that watches the run again. */
  reattach: string;
  say: (line: string) => void;
  pollMs: number | undefined;
}

/**
 * Runs workers here if asked (or embedded), starts the run with `start` (which says how it started), watches it to
 * the end with the progress bar and prints its summary; handles Ctrl-C/SIGTERM as the module comment says. Closes
 * the session and the storage when it returns. Exit code: 0 completed, 1 failed, 128 + signal when interrupted.
 */
export async function superviseRun(o: Supervision, start: () => Promise<{ startedNow: boolean }>): Promise<number> {
  const { session, storage, runId, reattach, say } = o;
  const interrupts = catchInterrupts((signal) => {
    say(`interrupted again (${signal}): exiting now; the run goes on in Temporal (${reattach})`);
    process.exit(interruptedExitCode(signal));
  });
  let workers: WorkerSet | undefined;
  // Ends the watch on an interrupt, and before the connection closes: a Temporal call still retrying when its
  // connection closes throws from a timer and crashes the process, so the watch's poll in flight ends first.
  const stopWatching = new AbortController();
  let watch: Promise<unknown> | undefined;
  try {
    if (runsWorkersHere(o.workers, session)) {
      if (o.engine) await prepareEngine(o.engine, say);
      workers = await startWorkers(session, storage);
    }
    const { startedNow } = await start();
    // No long poll of the workflow's result to end the watch sooner: the progress poll sees the end within `pollMs`,
    // and a long poll cannot be ended safely before the connection closes (see `stopWatching`).
    const noWakeUp = () => new Promise<never>(() => undefined);
    const watching = watchRun(session.client, runId, say, o.pollMs ?? 1000, noWakeUp, { startedNow, reattach, signal: stopWatching.signal, temporal: session.config });
    watch = watching.catch(() => undefined); // after an interrupt nobody awaits it; it rejects with the abort
    const graceMs = Math.max(session.config.workers.cpu.shutdownGraceTimeMs, session.config.workers.gpu.shutdownGraceTimeMs);
    const interrupted = interrupts.first.then((signal) => {
      say(
        workers
          ? `interrupted (${signal}): stopping the workers here; the running activity gets up to ${formatSeconds(graceMs / 1000)} to commit a checkpoint (Ctrl-C again to exit at once)`
          : `interrupted (${signal}): the run goes on on the server`,
      );
      stopWatching.abort(new Error(`interrupted by ${signal}`));
      return { signal };
    });
    const ended = await (workers ? workers.runUntil(Promise.race([watching, interrupted])) : Promise.race([watching, interrupted]));
    if ('signal' in ended) {
      say(`stopped    the run goes on in Temporal${workers ? ' and continues from its last checkpoint when workers run again' : ''}; watch it again with: ${reattach}`);
      return interruptedExitCode(ended.signal);
    }
    const result = ended;
    if (result.status !== 'completed') {
      say(`failed     ${result.error ?? result.status}`);
      say(`           continue it from its last good checkpoint with: sophia resume ${shellWord(runId)}`);
      return 1;
    }
    for (const line of runSummary(result, result.reportKey ? `${storage.location}/${result.reportKey}` : undefined)) say(line);
    return 0;
  } finally {
    stopWatching.abort(new Error('the command ended'));
    await watch; // its poll in flight ends within the poll's deadline (watch.ts)
    await session.close();
    await storage.close();
    interrupts.dispose();
  }
}
