/**
 * The embedded Temporal dev server behind `sophia run` when no TEMPORAL_ADDRESS is set: the pinned `temporal`
 * CLI started as a child process with a SQLite file under `.sophia/`, so workflows survive the process and a
 * second `sophia run` continues where the first stopped. If an embedded server from another Sophia process is
 * still up (its pid file names a live process that answers), it is reused instead of starting a second one on
 * the same database.
 *
 * Every process that uses the server holds a lease (a file under `users/` named by its pid); `stop()` gives the lease
 * back and stops the server only when no live process holds one, so the process that started it can finish while
 * others still use it. The server runs in its own process group: a Ctrl-C in the terminal reaches the `sophia`
 * process (which stops its workers gracefully, then gives its lease back), not the server under it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import * as path from 'node:path';
import { Connection } from '@temporalio/client';
import { ConfigError } from '../common/errors';

export interface EmbeddedServerOptions {
  /** Folder for the database, pid file and log (default `.sophia/embedded`). */
  dir: string;
  /** The `temporal` executable. */
  executable: string;
  /** Preferred frontend port; a free one is picked if it is taken. */
  port?: number;
  uiPort?: number;
}

export interface EmbeddedServer {
  address: string;
  uiUrl: string | undefined;
  /** Whether this process started it. */
  owned: boolean;
  /** Gives this process's lease back; stops the server when no other live process holds one. */
  stop(): Promise<void>;
}

/** Resolves the `temporal` executable: SOPHIA_TEMPORAL_CLI, the project-local tools folder, or PATH. */
export function findTemporalCli(repoRoot: string, env: Readonly<Record<string, string | undefined>>): string {
  if (env.SOPHIA_TEMPORAL_CLI) {
    if (!existsSync(env.SOPHIA_TEMPORAL_CLI)) {
      throw new ConfigError('SOPHIA_TEMPORAL_CLI', `${env.SOPHIA_TEMPORAL_CLI} does not exist`, {
        hint: 'Point it at a `temporal` executable, or unset it to use the pinned one (npm run tools:install)',
      });
    }
    return env.SOPHIA_TEMPORAL_CLI;
  }
  const local = path.join(repoRoot, env.SOPHIA_TOOLS_DIR ?? '.tools', 'venv', 'bin', 'temporal');
  if (existsSync(local)) return local;
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, 'temporal');
    if (dir && existsSync(candidate)) return candidate;
  }
  throw new ConfigError('SOPHIA_TEMPORAL_CLI', 'no `temporal` CLI found for the embedded dev server', {
    hint: 'Run `npm run tools:install` (pinned CLI into .tools/), or set TEMPORAL_ADDRESS to use a running server',
  });
}

async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A port nothing listens on now (the OS picks it). */
export async function anyFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** True when a Temporal frontend answers its health check at `address`. */
export async function temporalHealthy(address: string): Promise<boolean> {
  try {
    const connection = await Connection.connect({ address, connectTimeout: 2_000 });
    try {
      await connection.healthService.check({});
      return true;
    } finally {
      await connection.close();
    }
  } catch {
    return false;
  }
}

/** Whether a process with this pid exists (signal 0 checks without signalling). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * The database in write-ahead-log mode, synced at checkpoints rather than at every commit: committed state
 * survives the server process being killed (what the fault tests do); only an OS crash or power loss could lose
 * the last transactions, as for any dev server. Each workflow transition commits several times; in
 * bench/orchestration this took the time between a `ci` run's activities from ~1.6 s to ~1.2 s (2-core VM).
 */
const SQLITE_PRAGMAS = ['journal_mode=wal', 'synchronous=normal'];

interface PidRecord {
  pid: number;
  address: string;
  uiUrl?: string;
}

/** Start-up attempts when the server exits before it answers. */
const START_ATTEMPTS = 3;

interface Launched {
  child: ChildProcess;
  address: string;
  uiUrl: string;
}

/** Starts a dev server on these ports and waits until it answers; undefined if it exited first (its log says why). */
async function launch(options: EmbeddedServerOptions, port: number, uiPort: number, logFile: string): Promise<Launched | undefined> {
  const address = `127.0.0.1:${port}`;
  const uiUrl = `http://127.0.0.1:${uiPort}`;
  const log = openSync(logFile, 'a');
  const child: ChildProcess = spawn(
    options.executable,
    ['server', 'start-dev', '--ip', '127.0.0.1', '--port', String(port), '--ui-port', String(uiPort), '--db-filename', path.join(options.dir, 'temporal.db'), '--log-level', 'warn', ...SQLITE_PRAGMAS.flatMap((p) => ['--sqlite-pragma', p])],
    { stdio: ['ignore', log, log], detached: true },
  );
  child.unref();
  const deadline = Date.now() + 60_000;
  while (!(await temporalHealthy(address))) {
    if (child.exitCode !== null) return undefined;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the embedded Temporal dev server did not answer within 60 s; see ${logFile}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return { child, address, uiUrl };
}

export async function startEmbeddedServer(options: EmbeddedServerOptions): Promise<EmbeddedServer> {
  mkdirSync(options.dir, { recursive: true });
  const pidFile = path.join(options.dir, 'server.json');
  if (existsSync(pidFile)) {
    const record = JSON.parse(readFileSync(pidFile, 'utf8')) as PidRecord;
    if (processAlive(record.pid) && (await temporalHealthy(record.address))) {
      return { address: record.address, uiUrl: record.uiUrl, owned: false, stop: takeLease(options.dir, record.pid, pidFile) };
    }
    rmSync(pidFile, { force: true });
  }
  // A dev server binds more ports than the two it is given (its internal services take free ones of their own), so on
  // a busy machine another process can take one between the pick and the bind: the server then exits at once. Start
  // again (with fresh picks for the ports not asked for) a few times before giving up.
  const logFile = path.join(options.dir, 'server.log');
  let launched: Launched | undefined;
  for (let attempt = 1; !launched; attempt++) {
    const port = options.port !== undefined && (await portFree(options.port)) ? options.port : await anyFreePort();
    const uiPort = options.uiPort !== undefined && (await portFree(options.uiPort)) ? options.uiPort : await anyFreePort();
    launched = await launch(options, port, uiPort, logFile);
    if (!launched && attempt >= START_ATTEMPTS) throw new Error(`the embedded Temporal dev server exited during start-up ${START_ATTEMPTS} times; see ${logFile}`);
  }
  const { child, address, uiUrl } = launched;
  writeFileSync(pidFile, JSON.stringify({ pid: child.pid ?? -1, address, uiUrl } satisfies PidRecord));
  return { address, uiUrl, owned: true, stop: takeLease(options.dir, child.pid ?? -1, pidFile) };
}

/** Holds a lease on the server `serverPid` for this process; the returned function gives it back (once). */
function takeLease(dir: string, serverPid: number, pidFile: string): () => Promise<void> {
  const users = path.join(dir, 'users');
  mkdirSync(users, { recursive: true });
  const lease = path.join(users, `${process.pid}-${randomBytes(3).toString('hex')}`);
  writeFileSync(lease, '');
  let released = false;
  return async () => {
    if (released) return;
    released = true;
    rmSync(lease, { force: true });
    const others = readdirSync(users).filter((name) => {
      const pid = Number(name.split('-')[0]);
      if (processAlive(pid)) return true;
      rmSync(path.join(users, name), { force: true }); // a user that died without giving its lease back
      return false;
    });
    if (others.length > 0 || !processAlive(serverPid)) return;
    process.kill(serverPid, 'SIGTERM');
    for (const deadline = Date.now() + 30_000; processAlive(serverPid) && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 100));
    rmSync(pidFile, { force: true });
  };
}
