/**
 * A real MLflow tracking server for the tests (the pinned one of infra/local/install-mlflow.sh): SQLite and artifacts
 * in a temp folder, on a free port. It is the tracking backend of the experiment-tracking tests and, through its
 * OTLP endpoint (`/v1/traces`), the trace backend of the tracing test. `stop()` and `start()` again keep the data
 * (a server that goes away mid-run and comes back).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { anyFreePort } from '../../cli/embedded-server';
import { REPO_ROOT, stackEnv } from './stack';

export function mlflowPath(): string {
  const bin = process.env.SOPHIA_MLFLOW || path.resolve(REPO_ROOT, stackEnv().SOPHIA_TOOLS_DIR!, 'mlflow-venv/bin/mlflow');
  if (!existsSync(bin)) throw new Error(`MLflow is not installed at ${bin}: run \`bash infra/local/install-mlflow.sh\` (npm test does)`);
  return bin;
}

export class MlflowServer {
  private process: ChildProcess | undefined;
  private output = '';
  readonly url: string;

  private constructor(
    readonly dir: string,
    readonly port: number,
  ) {
    this.url = `http://127.0.0.1:${port}`;
  }

  static async start(): Promise<MlflowServer> {
    const server = new MlflowServer(mkdtempSync(path.join(tmpdir(), 'sophia-mlflow-')), await anyFreePort());
    await server.start();
    return server;
  }

  /** Starts (or restarts) the server on the same port and data; resolves when /health answers. */
  async start(timeoutMs = 120_000): Promise<void> {
    if (this.process) return;
    const args = ['server', '--backend-store-uri', `sqlite:///${path.join(this.dir, 'mlflow.db')}`, '--artifacts-destination', path.join(this.dir, 'artifacts')];
    const child = spawn(mlflowPath(), [...args, '--host', '127.0.0.1', '--port', String(this.port), '--workers', '1'], { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: { ...process.env, MLFLOW_TRACKING_URI: '' } });
    this.process = child;
    this.output = '';
    const keep = (chunk: Buffer) => (this.output = (this.output + chunk.toString()).slice(-4000));
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`mlflow server exited with ${child.exitCode}:\n${this.output}`);
      const ok = await fetch(`${this.url}/health`).then((r) => r.ok, () => false);
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`mlflow server did not answer on ${this.url} in ${timeoutMs / 1000} s:\n${this.output}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /** Stops the server (its data stays). */
  async stop(): Promise<void> {
    const child = this.process;
    this.process = undefined;
    if (!child || child.exitCode !== null) return;
    // The whole process group: `mlflow server` runs its web server as a child process.
    const group = (signal: NodeJS.Signals) => {
      try {
        process.kill(-child.pid!, signal);
      } catch {
        // already gone
      }
    };
    const exited = new Promise((r) => child.once('exit', r));
    // A short grace: on SIGTERM alone the server took 10 s to exit here, time a test waiting on it does not have.
    group('SIGTERM');
    const timer = setTimeout(() => group('SIGKILL'), 2_000);
    await exited;
    clearTimeout(timer);
    // Until nothing answers on the port any more.
    for (let i = 0; i < 100 && (await fetch(`${this.url}/health`).then(() => true, () => false)); i++) {
      group('SIGKILL');
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** A call of MLflow's REST API (`/api/…`), its JSON answer; throws with the body on an error status. */
  async api<T>(method: 'GET' | 'POST', route: string, body?: unknown): Promise<T> {
    const res = await fetch(`${this.url}${route}`, { method, ...(body !== undefined ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) } : {}) });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${route}: ${res.status} ${text}`);
    return JSON.parse(text) as T;
  }

  async createExperiment(name: string): Promise<string> {
    return (await this.api<{ experiment_id: string }>('POST', '/api/2.0/mlflow/experiments/create', { name })).experiment_id;
  }

  async close(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
