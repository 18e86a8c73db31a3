/**
 * Helpers for fault tests: private Temporal dev servers, `sophia` child processes with captured logs, a small
 * run config, and waiting on a run's progress.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import { afterEach } from 'vitest';
import { type EmbeddedServer, startEmbeddedServer } from '../../cli/embedded-server';
import { type LiveProgress, runProgress } from '../../clients/runs';
import { connectClient } from '../../clients/temporal';
import { loadRunConfig } from '../../config/load';
import type { RunConfig } from '../../config/run-config';
import { loadTemporalConfig } from '../../temporal.config';
import { REPO_ROOT, temporalCliPath } from '../integration/stack';

export { REPO_ROOT };

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(tmpdir(), `sophia-fault-${prefix}-`));
}

/**
 * A fast run: 100 SFT steps in chunks of 40, a checkpoint every 20, the ci reward model, 6 Trust-GRPO steps,
 * greedy evaluation only. `extra` lines add or replace top-level sections (e.g. a longer RL stage).
 */
export function faultConfigFile(dir: string, extra: string[] = []): { file: string; config: RunConfig } {
  const file = path.join(dir, 'run.yaml');
  writeFileSync(
    file,
    [
      ...[
        'extends: ci',
        'name: fault test',
        'data: { perFamily: { train: 100, test: 10, ood: 10 }, validationPerFamily: 4 }',
        'sft: { steps: 100, evalEvery: 20, chunkSteps: 40, patience: 10 }',
        'evaluation: { k: 0 }',
      ].filter((line) => !extra.some((e) => e.split(':')[0] === line.split(':')[0])),
      ...extra,
      '',
    ].join('\n'),
  );
  return { file, config: loadRunConfig(file) };
}

/** Lost workers are noticed in seconds, not minutes; a dead worker's own queue is given up quickly. */
export const FAST_FAILOVER = { SOPHIA_GPU_HEARTBEAT_TIMEOUT: '5s', SOPHIA_GPU_PIN_TIMEOUT: '3s', SOPHIA_RETRY_INITIAL_INTERVAL: '500ms' };

export interface SophiaProcess {
  child: ChildProcess;
  log: string;
  exited: Promise<number | null>;
  output(): string;
}

/** Runs `node bin/sophia.js …` with stdout+stderr captured to a file. */
export function spawnSophia(args: string[], env: Record<string, string>, dir: string, name: string): SophiaProcess {
  const log = path.join(dir, `${name}.log`);
  const out = createWriteStream(log);
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bin', 'sophia.js'), ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', SOPHIA_LOG_LEVEL: 'INFO', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.pipe(out);
  child.stderr.pipe(out);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, log, exited, output: () => readFileSync(log, 'utf8') };
}

export async function kill(p: SophiaProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (p.child.exitCode === null && p.child.signalCode === null) {
    p.child.kill(signal);
    await p.exited;
  }
}

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 180_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await Promise.resolve()
      .then(probe)
      .catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Waits until the run's stage `stage` reports step `step` or beyond (RL stages report per step, not by heartbeat). */
export function waitForStageStep(client: Client, runId: string, stage: string, step: number): Promise<LiveProgress> {
  return waitFor(`run ${runId} to reach ${stage} step ${step}`, async () => {
    const p = await runProgress(client, runId);
    return p.current?.stage === stage && p.current.step >= step ? p : undefined;
  });
}

/** Waits until the run's training activity has heartbeated `step` or beyond. */
export function waitForStep(client: Client, runId: string, step: number): Promise<LiveProgress> {
  return waitFor(`run ${runId} to reach step ${step}`, async () => {
    const p = await runProgress(client, runId);
    return (p.live?.step ?? 0) >= step ? p : undefined;
  });
}

/** The embedded dev server a `sophia run` with `SOPHIA_HOME=home` started (its record under `home/embedded`), once it is up. */
export function embeddedServerOf(home: string): Promise<{ pid: number; address: string }> {
  return waitFor('the embedded server', () => Promise.resolve(JSON.parse(readFileSync(path.join(home, 'embedded', 'server.json'), 'utf8')) as { pid: number; address: string }));
}

/**
 * What a fault test starts, released after each test in reverse order (processes killed, servers' leases given back,
 * connections closed, folders removed): call once at the top of a test file.
 */
export function faultScope() {
  const cleanups: (() => Promise<unknown> | void)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await Promise.resolve(cleanup()).catch(() => undefined);
  });
  return {
    cleanups,
    track(p: SophiaProcess): SophiaProcess {
      cleanups.push(() => kill(p));
      return p;
    },
    async server(dir: string, port?: number): Promise<EmbeddedServer> {
      const s = await startEmbeddedServer({ dir: path.join(dir, 'server'), executable: temporalCliPath(), ...(port ? { port } : {}) });
      cleanups.push(() => s.stop());
      return s;
    },
    async client(address: string): Promise<Client> {
      const c = await connectClient(loadTemporalConfig({ TEMPORAL_ADDRESS: address }));
      cleanups.push(() => c.connection.close());
      return c;
    },
  };
}
