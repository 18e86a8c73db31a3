/**
 * A CLI command's connection to Temporal: the server named by TEMPORAL_ADDRESS, or else the embedded dev server
 * (SQLite under .sophia/embedded, shared with any other sophia process using it). Validates the Temporal
 * environment first; `close()` releases connections and stops an embedded server this process started.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import { DefaultLogger, type LogLevel, type NativeConnection, Runtime } from '@temporalio/worker';
import { connectClient, connectWorker } from '../clients/temporal';
import { type TemporalConfig, loadTemporalConfig } from '../temporal.config';
import { type EmbeddedServer, findTemporalCli, startEmbeddedServer } from './embedded-server';
import { sophiaHome } from './paths';
import { printAbove } from './progress';
import { setTemporalMetricsAddress } from '../observability/serve';
import { jsonLogLine, logFormat } from '../observability/log';

type Env = Readonly<Record<string, string | undefined>>;

export interface Session {
  config: TemporalConfig;
  client: Client;
  embedded: EmbeddedServer | undefined;
  /** A worker connection (created on first use). */
  workerConnection(): Promise<NativeConnection>;
  describe(): string;
  close(): Promise<void>;
}

/** The Temporal runtime this process installed, if any: its native half keeps the process alive until shut down. */
let installedRuntime: Runtime | undefined;

/** Where `sophia run` writes the Temporal runtime's logs of a run: `{SOPHIA_HOME}/logs/{runId}.log`. */
export function runtimeLogFile(env: Env, repoRoot: string, runId: string): string {
  return path.join(sophiaHome(env, repoRoot), 'logs', `${runId}.log`);
}

/** One runtime log entry as a line of the log file (metadata as JSON). */
function formatLogEntry(entry: { level: string; message: string; meta?: Record<string, unknown> | undefined; timestampNanos: bigint }): string {
  const time = new Date(Number(entry.timestampNanos / 1_000_000n)).toISOString();
  const meta = entry.meta && Object.keys(entry.meta).length > 0 ? ` ${JSON.stringify(entry.meta, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))}` : '';
  return `${time} ${entry.level.padEnd(5)} ${entry.message}${meta}`;
}

/**
 * The Temporal runtime's logs (the TS SDK's and its Rust core's, which are forwarded here instead of written
 * straight to stderr, where they landed in the middle of a progress bar) at WARN and above, once per process:
 *  - with `logFile`: every entry to that file (created with its folder), and only errors also to stderr;
 *  - without: to stderr.
 * What reaches stderr goes through `printAbove`, so it never breaks a progress bar being drawn.
 * `SOPHIA_LOG_LEVEL` (TRACE, DEBUG, INFO, WARN, ERROR) changes the level.
 * `shutdownSignals`: the signals on which the runtime shuts its workers down (default the SDK's: SIGINT, SIGTERM,
 * SIGQUIT, SIGUSR2); `[]` for a command that handles them itself (`sophia run`).
 */
export function installQuietRuntime(logFile?: string, options: { shutdownSignals?: NodeJS.Signals[]; temporalMetricsPort?: number; component?: string } = {}): void {
  if (installedRuntime) return;
  const level = (process.env.SOPHIA_LOG_LEVEL as LogLevel | undefined) ?? 'WARN';
  const format = logFormat(process.env);
  if (logFile) mkdirSync(path.dirname(logFile), { recursive: true });
  const logger = new DefaultLogger(level, (entry) => {
    // GPU workers poll activity queues only; the SDK's note that they host no workflows is expected.
    if (entry.message.startsWith('No workflows registered')) return;
    const line =
      format === 'json'
        ? jsonLogLine({ level: entry.level, message: entry.message, meta: entry.meta, time: new Date(Number(entry.timestampNanos / 1_000_000n)) }, options.component ?? 'sophia')
        : formatLogEntry(entry);
    if (logFile) appendFileSync(logFile, `${line}\n`);
    if (!logFile || entry.level === 'ERROR') printAbove(logFile ? `${line} (more in ${logFile})` : line);
  });
  installedRuntime = Runtime.install({
    logger,
    ...(options.shutdownSignals ? { shutdownSignals: options.shutdownSignals } : {}),
    telemetryOptions: {
      logging: { forward: {}, filter: { core: level, other: 'ERROR' } },
      // The SDK's runtime metrics on a private loopback port; a worker's /metrics serves them with Sophia's.
      ...(options.temporalMetricsPort !== undefined ? { metrics: { prometheus: { bindAddress: `127.0.0.1:${options.temporalMetricsPort}` } } } : {}),
    },
  });
  if (options.temporalMetricsPort !== undefined) setTemporalMetricsAddress(`127.0.0.1:${options.temporalMetricsPort}`);
}

/**
 * Shuts the installed runtime down (a no-op when none was, or workers already did): a command calls this when it
 * ends, or its process would never exit — the runtime's native part is shut down only with the last worker, and
 * commands without workers (status, resume, a watch-only run) have none.
 */
export async function releaseRuntime(): Promise<void> {
  const runtime = installedRuntime;
  installedRuntime = undefined;
  await runtime?.shutdown();
}

export async function openSession(env: Env, repoRoot: string): Promise<Session> {
  loadTemporalConfig(env); // fail on bad variables before starting anything
  let embedded: EmbeddedServer | undefined;
  let temporalEnv = env;
  if (!env.TEMPORAL_ADDRESS) {
    embedded = await startEmbeddedServer({ dir: path.join(sophiaHome(env, repoRoot), 'embedded'), executable: findTemporalCli(repoRoot, env), port: 7233, uiPort: 8233 });
    temporalEnv = { ...env, TEMPORAL_ADDRESS: embedded.address };
  }
  const config = loadTemporalConfig(temporalEnv);
  const client = await connectClient(config);
  let connection: NativeConnection | undefined;
  return {
    config,
    client,
    embedded,
    async workerConnection() {
      connection ??= await connectWorker(config);
      return connection;
    },
    describe: () =>
      embedded
        ? `embedded dev server ${embedded.address}${embedded.uiUrl ? ` (UI ${embedded.uiUrl})` : ''}${embedded.owned ? '' : ', shared with another sophia process'}`
        : `${config.connection.address} namespace ${config.connection.namespace}`,
    async close() {
      await connection?.close();
      await client.connection.close();
      await embedded?.stop();
    },
  };
}
