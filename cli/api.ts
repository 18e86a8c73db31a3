/**
 * `sophia api [--storage DIR|s3://…] [--workers]`: the HTTP API and dashboard. Connects to TEMPORAL_ADDRESS, or
 * starts the embedded dev server; `--workers` also runs CPU and GPU workers in this process (the default when
 * the server is embedded, so the API alone is a working system on one machine). Stops on SIGINT/SIGTERM.
 */
import { loadApiConfig } from '../api/config';
import { createApiApp } from '../api/app';
import { logFormat } from '../observability/log';
import { JsonNestLogger } from '../observability/nest-logger';
import { openStorage } from '../storage/open';
import type { WorkerSet } from '../workers/worker';
import { defaultStorage } from './paths';
import { installQuietRuntime, openSession } from './session';
import { runsWorkersHere, startWorkers } from './workers';

type Env = Readonly<Record<string, string | undefined>>;

export async function apiCommand(options: { storage: string | undefined; workers: boolean | undefined; env: Env; repoRoot: string; out: NodeJS.WritableStream }): Promise<number> {
  const { env, out } = options;
  const storageUrl = options.storage ?? defaultStorage(env, options.repoRoot);
  const config = loadApiConfig(env, storageUrl); // fails on bad variables before anything starts
  const storage = openStorage(storageUrl, env);
  const json = logFormat(env) === 'json';
  installQuietRuntime(undefined, { component: 'api' });
  const session = await openSession(env, options.repoRoot);
  let workers: WorkerSet | undefined;
  try {
    if (runsWorkersHere(options.workers, session)) workers = await startWorkers(session, storage);
    const app = await createApiApp({ settings: { config, temporal: session.config }, client: session.client, storage, ...(json ? { logger: new JsonNestLogger(['error', 'warn']) } : { logLevels: ['error', 'warn'] }) });
    await app.listen(config.port, config.host);
    const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${config.port}`;
    out.write(`temporal   ${session.describe()}\nstorage    ${storage.location}\nworkers    ${workers ? 'cpu+gpu in this process' : 'none here (run `sophia worker --queue cpu --queue gpu`)'}\n`);
    out.write(`api        ${url}   (OpenAPI ${url}/openapi.json, docs ${url}/docs)\ndashboard  ${url}/dashboard/\nkeys       ${config.keys.map((k) => `${k.name} (${[...k.scopes].join('+')})`).join(', ')}\n`);
    const stopped = new Promise<void>((resolve) => {
      for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => resolve());
    });
    await (workers ? workers.runUntil(stopped) : stopped);
    out.write('api        stopping\n');
    await app.close();
    return 0;
  } finally {
    await session.close();
    await storage.close();
  }
}
