/**
 * Where the integration tests find the local stack: the same defaults as the shell scripts
 * (`infra/local/defaults.env`), overridden by the environment, so `npm run stack:up` and the tests agree.
 * `requireStack()` fails with the command to run when the servers are not up, instead of skipping.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Connection } from '@temporalio/client';
import { DefaultLogger, type Logger, Runtime } from '@temporalio/worker';
import { S3Storage, type S3StorageOptions } from '../../storage/s3';
import { loadTemporalConfig, type TemporalConfig } from '../../temporal.config';

export const REPO_ROOT = path.resolve(__dirname, '..', '..');

/** defaults.env with the environment on top (like infra/local/lib.sh). */
export function stackEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of readFileSync(path.join(REPO_ROOT, 'infra/local/defaults.env'), 'utf8').split('\n')) {
    const match = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (match) env[match[1]!] = match[2]!;
  }
  for (const key of Object.keys(env)) {
    const value = process.env[key];
    if (value) env[key] = value;
  }
  return env;
}

/** The Temporal config for the local stack; `overrides` are extra env vars (e.g. a private task queue). */
export function stackTemporalConfig(overrides: Record<string, string> = {}): TemporalConfig {
  const env = stackEnv();
  return loadTemporalConfig({
    ...process.env,
    ...overrides,
    TEMPORAL_ADDRESS: process.env.TEMPORAL_ADDRESS || `${env.SOPHIA_TEMPORAL_HOST}:${env.SOPHIA_TEMPORAL_PORT}`,
    TEMPORAL_NAMESPACE: process.env.TEMPORAL_NAMESPACE || env.SOPHIA_TEMPORAL_NAMESPACE,
  });
}

export function stackS3Options(): S3StorageOptions {
  const env = stackEnv();
  return {
    bucket: env.SOPHIA_S3_BUCKET!,
    endpoint: process.env.SOPHIA_S3_ENDPOINT || `http://${env.SOPHIA_S3_HOST}:${env.SOPHIA_S3_PORT}`,
    region: env.SOPHIA_S3_REGION!,
    forcePathStyle: true,
    credentials: { accessKeyId: env.SOPHIA_S3_ACCESS_KEY_ID!, secretAccessKey: env.SOPHIA_S3_SECRET_ACCESS_KEY! },
  };
}

const HOW_TO_START = 'Start the local stack first: `npm run stack:up` (or run everything with `npm test`)';

/** Throws a clear error unless Temporal and the S3 bucket both answer. */
export async function requireStack(): Promise<void> {
  const config = stackTemporalConfig();
  try {
    const connection = await Connection.connect({ address: config.connection.address, connectTimeout: 5_000 });
    await connection.healthService.check({});
    await connection.close();
  } catch (err) {
    throw new Error(`Temporal dev server not reachable at ${config.connection.address} (${String(err)}). ${HOW_TO_START}`);
  }
  const s3 = new S3Storage({ ...stackS3Options(), maxAttempts: 1 });
  try {
    await s3.head('healthcheck/none');
  } catch (err) {
    throw new Error(`S3 server not usable at ${stackS3Options().endpoint} (${String(err)}). ${HOW_TO_START}`);
  } finally {
    await s3.close();
  }
}

let runtimeInstalled = false;

/**
 * Keeps worker logs to errors, so test output shows test results (once per process). Tests that fail
 * workflows on purpose would otherwise print the SDK's "Workflow failed" warnings. A test that reads the logs
 * passes its own logger (before anything else installs the runtime).
 */
export function quietTemporalRuntime(logger: Logger = new DefaultLogger('ERROR')): void {
  if (runtimeInstalled) return;
  Runtime.install({ logger });
  runtimeInstalled = true;
}

/** The pinned Temporal CLI installed by infra/local/install-tools.sh (or SOPHIA_TEMPORAL_CLI). */
export function temporalCliPath(): string {
  const env = stackEnv();
  return process.env.SOPHIA_TEMPORAL_CLI || path.resolve(REPO_ROOT, env.SOPHIA_TOOLS_DIR!, 'venv/bin/temporal');
}

/** Polls `probe` every 300 ms until it returns a value (errors count as "not yet"), or fails after the timeout. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 300));
  }
}
