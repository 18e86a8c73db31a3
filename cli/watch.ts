/**
 * `watchRun`: polls a run's progress and draws it until the run ends (`sophia run`, `sophia ablate`). The running
 * stage is one line (`run-view.ts` decides what it says); each stage that ends gets one summary line; the run's
 * end says how it finished and after how long.
 *
 * Only a progress poll that reads the run as completed or failed ends the watch. The workflow's result (a long
 * poll on the server) only wakes the loop early: it also breaks when the Temporal server restarts, which is not
 * the run's end. A poll the server does not answer (it is restarting, the network is down) is retried every
 * `pollMs`, with one note above the bar while it lasts; after `lostServerMs` without an answer the watch gives up
 * with an error that says how to watch the run again. (Both Temporal connections reconnect by themselves: the
 * client's gRPC channel on the next call, the workers' core connection in the background.) A server that answers
 * but has no worker for the run's progress query (right after a restart the workers are polling again within
 * seconds) is not a lost server: the bar waits, as it does for a run whose workers are elsewhere and stopped.
 *
 * A running activity whose heartbeat is overdue (`LiveProgress.stalled`: its worker may be dead) is on the bar's line
 * as it counts up, and gets one note above the bar when it begins (or moves to another worker or attempt) and one when
 * it ends, so a log that is not a terminal (where the bar prints a line per 10 %) tells it too.
 */
import { type LiveProgress, type Stall, runProgress } from '../clients/runs';
import { SophiaError } from '../common/errors';
import type { StageName } from '../config/stages';
import type { TemporalConfig } from '../temporal.config';
import { ProgressBar, type ProgressBarOptions, formatSeconds, printAbove } from './progress';
import { progressView, stageSummary } from './run-view';

/**
 * How long one progress poll may take (its Temporal calls, with the client's retries): a poll never outlives it,
 * so a command can wait for the poll in flight before it closes its connection.
 */
const POLL_DEADLINE_MS = 10_000;

/** How long the watch keeps trying to reach a Temporal server that does not answer before it gives up. */
const LOST_SERVER_MS = 5 * 60_000;

export interface WatchOptions extends ProgressBarOptions {
  /** The run was started by this process just now: the stage seen first began then (else its start is unknown). */
  startedNow?: boolean;
  /** The command that watches this run again, named when the watch gives up (default: a generic `sophia run`). */
  reattach?: string;
  /** How long the server may go without answering before the watch gives up (ms; default 5 minutes). */
  lostServerMs?: number;
  /** Ends the watch (it rejects with the signal's reason) at its next poll or wait: `sophia run` on Ctrl-C. */
  signal?: AbortSignal;
  /** The deployment's Temporal settings: when a heartbeat is overdue (default: the defaults). */
  temporal?: TemporalConfig;
}

/** Whether a failed progress poll means the server was not reached (rather than a reached server's answer). */
function serverUnreachable(err: unknown): boolean {
  return !(err instanceof SophiaError);
}

function describeError(err: unknown): string {
  return err instanceof Error ? err.message.split('\n')[0]! : String(err);
}

/** The note above the bar when a stall begins, or moves on (another worker, attempt, or past its heartbeat timeout). */
function stallNote(s: Stall): string {
  return `${s.message}: ${s.retrying ? 'start a worker if none is running' : 'its worker may be gone; its heartbeat timeout retries the activity elsewhere'}`;
}
const stallKey = (s: Stall | undefined) => s && [s.activity, s.worker, s.attempt, s.retrying].join('|');

/** Polls progress and draws it until the run ends; resolves with its final progress. */
export async function watchRun(
  client: Parameters<typeof runProgress>[0],
  runId: string,
  say: (line: string) => void,
  pollMs: number,
  result: () => Promise<unknown>,
  options: WatchOptions = {},
): Promise<LiveProgress> {
  const now = options.now ?? Date.now;
  const started = now();
  const lostServerMs = options.lostServerMs ?? LOST_SERVER_MS;
  const reattach = options.reattach ?? `sophia run --config … --run-id ${runId}`;
  const note = (line: string) => printAbove(line, options.out ?? process.stderr);
  let bar: { key: string; bar: ProgressBar } | undefined;
  const print = (line: string) => {
    bar?.bar.end();
    say(line);
  };
  // When each stage was first seen running (undefined: it was already running when watching began). Stages that
  // ended before watching began are summarized too, without a time.
  const stageStart = new Map<StageName, number | undefined>();
  const summarized = new Set<StageName>();
  let firstPoll = true;
  const summarizeUpTo = (p: LiveProgress, index: number) => {
    for (const stage of p.stages.slice(0, index)) {
      if (summarized.has(stage)) continue;
      summarized.add(stage);
      if (!(stage in p.results)) continue; // skipped (a stopped run skips the training it had not started)
      const from = stageStart.get(stage);
      print(stageSummary(stage, p.results[stage], p.checkpoints[stage], from === undefined ? undefined : (now() - from) / 1000));
    }
  };

  // The result only wakes the loop (see the module comment); once it has settled, the loop waits `pollMs` again.
  let settled = false;
  const done = result().then(
    () => undefined,
    () => undefined,
  );
  void done.then(() => (settled = true));
  const aborted = new Promise<void>((resolve) => options.signal?.addEventListener('abort', () => resolve(), { once: true }));
  const stopIfAborted = () => {
    if (!options.signal?.aborted) return;
    bar?.bar.end();
    throw options.signal.reason;
  };
  /** When the server last stopped answering (undefined: it answers). */
  let lostSince: number | undefined;
  /** The stall last noted (undefined: heartbeats arrive). */
  let stall: Stall | undefined;
  for (;;) {
    stopIfAborted();
    let progress: LiveProgress | undefined;
    let failure: { err: unknown } | undefined;
    try {
      progress = await client.connection.withDeadline(Date.now() + POLL_DEADLINE_MS, () => runProgress(client, runId, options.temporal));
    } catch (err) {
      failure = { err };
    }
    if (failure && serverUnreachable(failure.err)) {
      if (lostSince === undefined) {
        lostSince = now();
        note(`lost the Temporal server (${describeError(failure.err)}); reconnecting…`);
      } else if (now() - lostSince >= lostServerMs) {
        bar?.bar.end();
        throw new SophiaError('unavailable', `lost the Temporal server for ${formatSeconds((now() - lostSince) / 1000)}: run ${runId}'s state could not be read (${describeError(failure.err)})`, {
          hint: `The run goes on where its workers run once the server is back; watch it again with: ${reattach}`,
          cause: failure.err,
        });
      }
    } else if (lostSince !== undefined) {
      note(`reconnected to the Temporal server after ${formatSeconds((now() - lostSince) / 1000)}`);
      lostSince = undefined;
    }
    stopIfAborted();
    if (progress) {
      const stage = progress.stages[progress.stageIndex];
      if (stage && !stageStart.has(stage)) stageStart.set(stage, firstPoll && !options.startedNow ? undefined : now());
      firstPoll = false;
      summarizeUpTo(progress, progress.stageIndex);
    }
    if (progress && (progress.status === 'completed' || progress.status === 'failed')) {
      if (progress.status === 'completed') summarizeUpTo(progress, progress.stages.length);
      print(`finished   ${progress.status} after ${formatSeconds((now() - started) / 1000)}`);
      return progress;
    }
    if (progress && stallKey(progress.stalled) !== stallKey(stall)) {
      if (progress.stalled) note(stallNote(progress.stalled));
      else if (stall) note(`heartbeats resumed (${stall.activity})`);
      stall = progress.stalled;
    }
    const view = progress && progressView(progress);
    if (view) {
      if (bar?.key !== view.key) {
        bar?.bar.end();
        bar = { key: view.key, bar: new ProgressBar(view.label, view.total, options) };
      }
      bar.bar.update(view.done, view.detail, view.current);
    }
    const waits: Promise<unknown>[] = [new Promise((r) => setTimeout(r, pollMs)), aborted];
    if (!settled) waits.push(done);
    await Promise.race(waits);
  }
}
