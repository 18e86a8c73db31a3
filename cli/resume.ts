/**
 * `sophia resume RUN_ID [--storage …] [--workers]`: continue a run.
 *
 *  - A paused run: the `resume` signal (it continues where it paused).
 *  - A failed (or cancelled, terminated, timed-out) run: a new execution of the same run id that keeps the stages it
 *    completed and continues the one it failed in from its newest intact checkpoint (`clients/resume.ts`), watched to
 *    the end like `sophia run` (workers here on the embedded server or with `--workers`). Its storage is the one the
 *    run was started with; `--storage`, when given, must name that one.
 */
import { SophiaError } from '../common/errors';
import { pipelineWorkflowId } from '../common/run-layout';
import { controlRun } from '../clients/runs';
import { planResume, startResume, storageUrlOf } from '../clients/resume';
import { openStorage } from '../storage/open';
import { type RunOptions, shellWord, superviseRun } from './run';
import { installQuietRuntime, openSession, runtimeLogFile } from './session';

/** `sophia run`'s options without the config (the run's own is used), for one run id. */
export type ResumeOptions = Omit<RunOptions, 'config' | 'runId'> & { runId: string };

export async function resumeCommand(options: ResumeOptions): Promise<number> {
  const { env, out, runId } = options;
  const say = (line: string) => out.write(`${line}\n`);
  const logFile = runtimeLogFile(env, options.repoRoot, runId);
  installQuietRuntime(logFile, { shutdownSignals: [] });
  const session = await openSession(env, options.repoRoot);
  let plan: Awaited<ReturnType<typeof planResume>>;
  try {
    const description = await session.client.workflow
      .getHandle(pipelineWorkflowId(session.config.deployment, runId))
      .describe()
      .catch(() => undefined);
    if (description?.status.name === 'RUNNING') {
      say(`${runId}: ${await controlRun(session.client, session.config, runId, 'resume')}`);
      await session.close();
      return 0;
    }
    plan = await planResume(session.client, session.config, runId);
  } catch (err) {
    await session.close();
    throw err;
  }
  const storage = openStorage(options.storage ?? storageUrlOf(plan.input.storage), env);
  if (storage.location !== plan.input.storage) {
    await Promise.all([session.close(), storage.close()]);
    throw new SophiaError('config', `--storage: run ${runId} keeps its checkpoints in ${plan.input.storage}, not ${storage.location}`, {
      hint: 'Leave --storage out (the run\'s own storage is used) or name that one',
    });
  }
  say(`temporal   ${session.describe()}`);
  say(`storage    ${storage.location}`);
  say(`run        ${runId}`);
  say(`logs       ${logFile} (Temporal runtime warnings; errors are shown here too)`);
  say(`resumed    after ${plan.failure.type}: ${plan.failure.message}`);
  say(`           kept: ${plan.kept.join(', ') || '(no stage had completed)'}; restarts at ${plan.restartsAt ?? '(nothing left)'}, from its newest intact checkpoint`);
  return superviseRun({ session, storage, runId, workers: options.workers, engine: plan.input.config.engine.kind, reattach: `sophia status ${shellWord(runId)}`, say, pollMs: options.pollMs }, async () => {
    await startResume(session.client, session.config, plan);
    return { startedNow: true };
  });
}
