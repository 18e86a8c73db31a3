/**
 * The API in this process for the API's integration tests: its own private Temporal dev server (the pinned CLI,
 * in-memory, on a free port — the API lists and controls every run in its namespace, so tests that share a
 * server would see and signal each other's runs: the fuzzer does exactly that), storage in the stack's real S3
 * server under a private prefix (or a temp directory), optional in-process CPU+GPU workers, two API keys.
 */
import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { INestApplication } from '@nestjs/common';
import type { Client } from '@temporalio/client';
import { type NativeConnection } from '@temporalio/worker';
import { createApiApp } from '../../api/app';
import { loadApiConfig } from '../../api/config';
import { connectClient, connectWorker } from '../../clients/temporal';
import { WORKFLOW_TRACING_MODULES } from '../../observability/tracing';
import { LocalStorage } from '../../storage/local';
import { S3Storage } from '../../storage/s3';
import type { Storage } from '../../storage/types';
import { type TemporalConfig, loadTemporalConfig } from '../../temporal.config';
import { WorkerSet, sophiaWorkflowBundle } from '../../workers/worker';
import { startEmbeddedServer } from '../../cli/embedded-server';
import { quietTemporalRuntime, requireStack, stackS3Options, temporalCliPath } from './stack';

export interface ApiHarness {
  /** Base URL, e.g. http://127.0.0.1:41234 */
  url: string;
  /** A read+write key and a read-only key. */
  keys: { admin: string; viewer: string };
  client: Client;
  storage: Storage;
  temporal: TemporalConfig;
  suffix: string;
  /** fetch with the admin key (or `key`) and JSON helpers. */
  call(method: string, route: string, body?: unknown, key?: string | null): Promise<{ status: number; json: unknown; text: string; headers: Headers }>;
  close(): Promise<void>;
}

/**
 * `env`: more API variables (e.g. the run limits of `api/config.ts`). `tracing`: the workers' workflow bundle has the
 * tracing interceptors (observability/tracing.ts; the test starts tracing first).
 */
export async function startApiHarness(options: { workers: boolean; storage: 's3' | 'local'; env?: Record<string, string>; tracing?: boolean }): Promise<ApiHarness> {
  quietTemporalRuntime();
  await requireStack();
  const suffix = randomBytes(4).toString('hex');
  const serverDir = mkdtempSync(path.join(tmpdir(), 'sophia-api-temporal-'));
  // A dev server picks free ports for its internal services too; on a busy machine one can be taken between
  // being picked and bound, so a failed start is retried (with a fresh database folder).
  let server: Awaited<ReturnType<typeof startEmbeddedServer>> | undefined;
  for (let attempt = 1; !server; attempt++) {
    try {
      server = await startEmbeddedServer({ dir: path.join(serverDir, String(attempt)), executable: temporalCliPath() });
    } catch (err) {
      if (attempt === 3) throw err;
    }
  }
  const temporal = loadTemporalConfig({ ...process.env, TEMPORAL_ADDRESS: server.address, TEMPORAL_NAMESPACE: 'default' });
  const client = await connectClient(temporal);
  let dir: string | undefined;
  let storage: Storage;
  if (options.storage === 's3') storage = new S3Storage({ ...stackS3Options(), prefix: `test-api/${suffix}` });
  else {
    dir = mkdtempSync(path.join(tmpdir(), 'sophia-api-'));
    storage = new LocalStorage(dir);
  }
  const keys = { admin: `admin-${randomBytes(16).toString('hex')}`, viewer: `viewer-${randomBytes(16).toString('hex')}` };
  const config = loadApiConfig({ SOPHIA_API_KEYS: `admin:read+write:${keys.admin},viewer:read:${keys.viewer}`, SOPHIA_API_EVENTS_POLL: '300', SOPHIA_API_PORT: '0', ...options.env }, storage.location);
  let connection: NativeConnection | undefined;
  let workers: WorkerSet | undefined;
  let running: Promise<void> | undefined;
  if (options.workers) {
    connection = await connectWorker(temporal);
    const workflowBundle = await sophiaWorkflowBundle({ interceptorModules: options.tracing ? WORKFLOW_TRACING_MODULES : [] });
    workers = await WorkerSet.create({ kinds: ['cpu', 'gpu'], connection, config: temporal, storage, workflowBundle });
    running = workers.run();
  }
  const app: INestApplication = await createApiApp({ settings: { config, temporal }, client, storage, logLevels: ['error'] });
  await app.listen(0, '127.0.0.1');
  const address = (app.getHttpServer() as Server).address() as { port: number };
  const url = `http://127.0.0.1:${address.port}`;
  return {
    url,
    keys,
    client,
    storage,
    temporal,
    suffix,
    async call(method, route, body, key = keys.admin) {
      const headers: Record<string, string> = {};
      if (key !== null) headers.authorization = `Bearer ${key}`;
      if (body !== undefined) headers['content-type'] = 'application/json';
      const res = await fetch(`${url}${route}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
      const text = await res.text();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      return { status: res.status, json, text, headers: res.headers };
    },
    async close() {
      await app.close();
      workers?.shutdown();
      await running;
      await connection?.close();
      await client.connection.close();
      await storage.close();
      await server.stop();
      rmSync(serverDir, { recursive: true, force: true });
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}
