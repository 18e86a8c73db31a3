/**
 * `sophia run`: runs a workflow end to end with in-process workers, on the embedded dev server unless
 * TEMPORAL_ADDRESS names a cluster. Running it again with the same `--run-id` attaches to the same workflow
 * (still running: it continues; finished: it prints the result) instead of starting over.
 *
 * Until the training stages exist (issues 3–6), the pipeline it runs is `stackSmoke`: checkpoints written by an
 * activity to the checkpoint store and verified, which exercises Temporal, workers and storage for real.
 */
import * as path from 'node:path';
import { WorkflowExecutionAlreadyStartedError, WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { createSmokeActivities } from '../activities/smoke';
import { connectClient, connectWorker } from '../clients/temporal';
import { CheckpointStore } from '../storage/checkpoints';
import { assertValidName } from '../storage/keys';
import { openStorage } from '../storage/open';
import { loadTemporalConfig } from '../temporal.config';
import { createSophiaWorker } from '../workers/worker';
import { smokeProgressQuery, stackSmoke } from '../workflows';
import { findTemporalCli, startEmbeddedServer, type EmbeddedServer } from './embedded-server';

type Env = Readonly<Record<string, string | undefined>>;

export interface RunOptions {
  runId: string | undefined;
  storage: string | undefined;
  steps: number;
  env: Env;
  repoRoot: string;
  out: NodeJS.WritableStream;
}

/** Messages of an error and its causes, outermost first, without repeats (Temporal wraps failures twice). */
function causeChain(err: unknown): string[] {
  const out: string[] = [];
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if (!out.includes(e.message)) out.push(e.message);
  }
  return out;
}

/** A run id a person can read and type again: run-20261127-081500. */
export function defaultRunId(now: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `run-${now.getFullYear()}${pad(now.getMonth() + 1)}${pad(now.getDate())}-${pad(now.getHours())}${pad(now.getMinutes())}${pad(now.getSeconds())}`;
}

export async function runCommand(options: RunOptions): Promise<number> {
  const { env, out } = options;
  const say = (line: string) => out.write(`${line}\n`);
  const runId = options.runId ?? defaultRunId(new Date());
  assertValidName('run id', runId);
  const storageUrl = options.storage ?? env.SOPHIA_STORAGE ?? path.join(options.repoRoot, '.sophia', 'storage');
  // Validate everything the user configured before starting anything.
  loadTemporalConfig(env);
  const storage = openStorage(storageUrl, env);
  // Preflight: unreachable storage or missing credentials fail here, not inside a started workflow.
  await storage.head(`runs/${runId}/metrics.jsonl`).catch(async (err: unknown) => {
    await storage.close();
    throw err;
  });
  Runtime.install({ logger: new DefaultLogger('WARN') });

  let embedded: EmbeddedServer | undefined;
  let temporalEnv: Env = env;
  if (!env.TEMPORAL_ADDRESS) {
    embedded = await startEmbeddedServer({
      dir: path.join(options.repoRoot, '.sophia', 'embedded'),
      executable: findTemporalCli(options.repoRoot, env),
      port: 7233,
      uiPort: 8233,
    });
    temporalEnv = { ...env, TEMPORAL_ADDRESS: embedded.address };
    say(`temporal   embedded dev server ${embedded.address}${embedded.uiUrl ? ` (UI ${embedded.uiUrl})` : ''}${embedded.owned ? '' : ', shared with another sophia process'}`);
  }
  const config = loadTemporalConfig(temporalEnv);
  if (!embedded) say(`temporal   ${config.connection.address} namespace ${config.connection.namespace}`);
  say(`storage    ${storage.location}`);
  say(`run        ${runId}   (resume after a crash: sophia run --run-id ${runId})`);

  const store = new CheckpointStore(storage);
  const client = await connectClient(config);
  const connection = await connectWorker(config);
  const workflowId = `sophia-${runId}`;
  let progressTimer: NodeJS.Timeout | undefined;
  try {
    const worker = await createSophiaWorker({ kind: 'cpu', connection, config, activities: createSmokeActivities({ store }) });
    let handle: WorkflowHandle<typeof stackSmoke>;
    try {
      handle = await client.workflow.start(stackSmoke, {
        taskQueue: config.taskQueues.cpu,
        workflowId,
        workflowIdConflictPolicy: 'USE_EXISTING', // still running: attach to it
        workflowIdReusePolicy: 'REJECT_DUPLICATE', // finished: never start it over
        args: [{ runId, steps: options.steps, payloadBytes: 1 << 20, activityProfile: config.activities.cpu }],
      });
    } catch (err) {
      if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
      handle = client.workflow.getHandle<typeof stackSmoke>(workflowId); // finished earlier: show its result
      say(`workflow   ${workflowId} already finished; showing its result`);
    }
    let last = '';
    const showProgress = async () => {
      const p = await handle.query(smokeProgressQuery).catch(() => undefined);
      if (!p) return;
      const line = `progress   ${p.stage.padEnd(9)} step ${p.step}/${p.totalSteps}${p.checkpointKeys.length ? `  latest ${p.checkpointKeys.at(-1)}` : ''}`;
      if (line !== last) say(line);
      last = line;
    };
    progressTimer = setInterval(() => void showProgress(), 500);
    let result;
    try {
      result = await worker.runUntil(handle.result());
    } catch (err) {
      if (!(err instanceof WorkflowFailedError)) throw err;
      say(`failed     ${workflowId}: ${causeChain(err).join(' ← ')}`);
      return 1;
    }
    clearInterval(progressTimer);
    say(`done       verified ${result.verified.checkpointKey} (${result.verified.files.join(', ')}; ${result.verified.totalBytes} bytes, sha256 ${result.verified.sha256.slice(0, 12)}…)`);
    say('note       the training stages (SFT → reward model → Trust-GRPO → evaluation) are not built yet; this ran the stack smoke pipeline');
    return 0;
  } finally {
    if (progressTimer) clearInterval(progressTimer);
    await connection.close();
    await client.connection.close();
    await store.close();
    await storage.close();
    await embedded?.stop();
  }
}
