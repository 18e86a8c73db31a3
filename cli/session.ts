/**
 * A CLI command's connection to Temporal: the server named by TEMPORAL_ADDRESS, or else the embedded dev server
 * (SQLite under .sophia/embedded, shared with any other sophia process using it). Validates the Temporal
 * environment first; `close()` releases connections and stops an embedded server this process started.
 */
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import { DefaultLogger, type NativeConnection, Runtime } from '@temporalio/worker';
import { connectClient, connectWorker } from '../clients/temporal';
import { type TemporalConfig, loadTemporalConfig } from '../temporal.config';
import { type EmbeddedServer, findTemporalCli, startEmbeddedServer } from './embedded-server';
import { sophiaHome } from './paths';

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

let runtimeInstalled = false;

/** Worker logs at WARN to stderr, so a CLI's own output stays readable (once per process). */
export function installQuietRuntime(): void {
  if (runtimeInstalled) return;
  const level = (process.env.SOPHIA_LOG_LEVEL as 'WARN' | undefined) ?? 'WARN';
  const base = new DefaultLogger(level);
  // GPU workers poll activity queues only; the SDK's note that they host no workflows is expected.
  const logger = new DefaultLogger(level, (entry) => {
    if (!entry.message.startsWith('No workflows registered')) base.log(entry.level, entry.message, entry.meta);
  });
  Runtime.install({ logger });
  runtimeInstalled = true;
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
