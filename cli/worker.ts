/**
 * `sophia worker --queue cpu|gpu [--storage …]`: a worker process. CPU workers host the workflows and the CPU
 * activities; GPU workers run the engine. Stops gracefully on SIGINT/SIGTERM: the running activity gets the
 * shutdown grace time, then is cancelled — training activities commit a checkpoint first. With
 * `SOPHIA_METRICS_PORT`, serves Prometheus metrics (Sophia's and the Temporal SDK's) on that port
 * (observability/serve.ts).
 */
import { openStorage } from '../storage/open';
import type { WorkerKind } from '../activities/registry';
import { freeLoopbackPort, metricsPort, serveMetrics } from '../observability/serve';
import { defaultStorage } from './paths';
import { installQuietRuntime, openSession } from './session';
import { startWorkers } from './workers';

type Env = Readonly<Record<string, string | undefined>>;

export async function workerCommand(kinds: WorkerKind[], storageUrl: string | undefined, env: Env, repoRoot: string, out: NodeJS.WritableStream): Promise<number> {
  const port = metricsPort(env); // a bad value fails before anything starts
  const storage = openStorage(storageUrl ?? defaultStorage(env, repoRoot), env);
  installQuietRuntime(undefined, { component: `worker:${kinds.join('+')}`, ...(port !== undefined ? { temporalMetricsPort: await freeLoopbackPort() } : {}) });
  const session = await openSession(env, repoRoot);
  const metrics = port !== undefined ? await serveMetrics({ port, ...(env.SOPHIA_METRICS_HOST ? { host: env.SOPHIA_METRICS_HOST } : {}) }) : undefined;
  try {
    const set = await startWorkers(session, storage, kinds);
    out.write(`worker     ${kinds.join('+')} of deployment ${session.config.deployment} on ${session.describe()}; storage ${storage.location}${set.gpuQueue ? `; own queue ${set.gpuQueue}` : ''}\n`);
    if (metrics) out.write(`metrics    ${metrics.url}\n`);
    await set.run();
    out.write('worker     stopped\n');
    return 0;
  } finally {
    await metrics?.close();
    await session.close();
    await storage.close();
  }
}
