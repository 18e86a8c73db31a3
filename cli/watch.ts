/**
 * `watchRun`: polls a run's progress and draws it until the run ends (`sophia run`, `sophia ablate`). The running
 * stage is one line (`run-view.ts` decides what it says); each stage that ends gets one summary line; the run's
 * end says how it finished and after how long.
 */
import { type LiveProgress, runProgress } from '../clients/runs';
import type { StageName } from '../config/stages';
import { ProgressBar, type ProgressBarOptions, formatSeconds } from './progress';
import { progressView, stageSummary } from './run-view';

export interface WatchOptions extends ProgressBarOptions {
  /** The run was started by this process just now: the stage seen first began then (else its start is unknown). */
  startedNow?: boolean;
}

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

  let settled = false;
  const done = result().then(
    () => undefined,
    () => undefined,
  );
  void done.then(() => (settled = true));
  for (;;) {
    const progress = await runProgress(client, runId).catch(() => undefined);
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
    const view = progress && progressView(progress);
    if (view) {
      if (bar?.key !== view.key) {
        bar?.bar.end();
        bar = { key: view.key, bar: new ProgressBar(view.label, view.total, options) };
      }
      bar.bar.update(view.done, view.detail, view.current);
    }
    if (settled) {
      if (!progress) throw new Error(`run ${runId} ended but its final state could not be read`);
      continue; // one more poll picks up the final state
    }
    await Promise.race([new Promise((r) => setTimeout(r, pollMs)), done]);
  }
}
