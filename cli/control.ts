/**
 * `sophia status RUN_ID [--json]`, `list`, `pause|resume|stop|cancel RUN_ID`: watch and control runs on the
 * Temporal server (TEMPORAL_ADDRESS, or the embedded one).
 */
import { WorkflowNotFoundError } from '@temporalio/client';
import { SophiaError } from '../common/errors';
import { deploymentPipelinesQuery, runIdOfWorkflowId } from '../common/run-layout';
import { type ControlAction, controlRun, runProgress } from '../clients/runs';
import { openSession } from './session';

type Env = Readonly<Record<string, string | undefined>>;

async function withSession<T>(env: Env, repoRoot: string, fn: (session: Awaited<ReturnType<typeof openSession>>) => Promise<T>): Promise<T> {
  // No Temporal runtime here: these commands only use the client, and an installed runtime (native threads, and its
  // SIGINT/SIGTERM hook) that no worker ever uses is never shut down, so the process would not exit after its answer.
  const session = await openSession(env, repoRoot);
  try {
    return await fn(session);
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw new SophiaError('not-found', `no run with that id on ${session.describe()}`, { hint: 'List runs with `sophia list`' });
    throw err;
  } finally {
    await session.close();
  }
}

export async function statusCommand(runId: string, json: boolean, env: Env, repoRoot: string, out: NodeJS.WritableStream): Promise<number> {
  return withSession(env, repoRoot, async (session) => {
    const p = await runProgress(session.client, runId, session.config);
    if (json) {
      out.write(`${JSON.stringify(p, null, 2)}\n`);
      return 0;
    }
    const stage = p.stages[p.stageIndex] ?? '—';
    out.write(`run        ${runId}\nstatus     ${p.status}${p.error && !p.failure ? ` (${p.error})` : ''}\n`);
    if (p.failure) {
      const where = [p.failure.stage && `stage ${p.failure.stage}`, p.failure.activity && `activity ${p.failure.activity}`, p.failure.retryState].filter(Boolean).join(', ');
      out.write(`failure    ${p.failure.type}: ${p.failure.message}${where ? `\n           (${where})` : ''}\n`);
    }
    out.write(`stage      ${p.stageIndex + 1 > p.stages.length ? 'all done' : `${p.stageIndex + 1}/${p.stages.length} ${stage}`}${p.current?.activity ? ` — ${p.current.activity}` : ''}\n`);
    const step = p.live ?? p.current;
    if (step) out.write(`step       ${step.step}/${step.totalSteps}\n`);
    if (p.stalled) out.write(`stalled    ${p.stalled.message}\n`);
    if (p.current?.worker) out.write(`worker     ${p.current.worker}\n`);
    for (const [s, key] of Object.entries(p.checkpoints)) out.write(`checkpoint ${s}: ${key}\n`);
    if (p.reportKey) out.write(`report     ${p.reportKey}\n`);
    // What happened on the way: corrupt checkpoints quarantined, resumes after a failure.
    for (const e of [...(p.events ?? []), ...(p.current?.events ?? [])]) out.write(`event      ${e.at} ${e.kind}: ${e.message}\n`);
    return 0;
  });
}

export async function listCommand(env: Env, repoRoot: string, out: NodeJS.WritableStream): Promise<number> {
  return withSession(env, repoRoot, async (session) => {
    out.write('RUN ID                          STATUS       STARTED\n');
    for await (const w of session.client.workflow.list({ query: deploymentPipelinesQuery(session.config.deployment) })) {
      const runId = runIdOfWorkflowId(session.config.deployment, w.workflowId) ?? w.workflowId;
      out.write(`${runId.padEnd(32)}${w.status.name.padEnd(13)}${w.startTime.toISOString()}\n`);
    }
    return 0;
  });
}

export async function controlCommand(action: ControlAction, runId: string, env: Env, repoRoot: string, out: NodeJS.WritableStream): Promise<number> {
  return withSession(env, repoRoot, async (session) => {
    out.write(`${runId}: ${await controlRun(session.client, session.config, runId, action)}\n`);
    return 0;
  });
}
