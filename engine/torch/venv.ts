/**
 * Where the PyTorch engine's python lives: the venv `infra/local/install-torch.sh` makes, found the way that
 * script finds it — `$SOPHIA_TOOLS_DIR/torch-venv` (SOPHIA_TOOLS_DIR from the environment, else
 * infra/local/defaults.env; relative to the repository root), up to date when its stamp holds the sha256 of
 * engine/torch/requirements.lock. venv.test.ts checks that the script still declares these names.
 *
 * Engines never install: a missing or stale venv is a `TorchEngineNotInstalledError` naming the install command
 * (installing is minutes and gigabytes, not something to do behind a worker's back, inside an activity). The CLI
 * installs it up front where a user asked for a torch run here (`installTorch`, through `prepareEngine`).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { TorchEngineNotInstalledError } from './errors';

export const REPO_ROOT = path.resolve(__dirname, '..', '..');
/** The command that makes the venv (and prints its python). */
export const INSTALL_COMMAND = 'bash infra/local/install-torch.sh';
/** The venv's folder under SOPHIA_TOOLS_DIR (install-torch.sh's VENV). */
export const TORCH_VENV_NAME = 'torch-venv';
/** The lock the venv is built from (install-torch.sh's LOCK), relative to the repository root. */
export const TORCH_LOCK = 'engine/torch/requirements.lock';
/** The file in the venv holding the sha256 of the lock it was built from (install-torch.sh's STAMP). */
export const TORCH_STAMP = '.requirements.lock.sha256';
/** The engine package's folder: the process runs there (as sophia_torch's own client does). */
export const TORCH_PACKAGE_DIR = path.join(REPO_ROOT, 'engine', 'torch');

type Env = Readonly<Record<string, string | undefined>>;

/** SOPHIA_TOOLS_DIR as infra/local/lib.sh resolves it: the environment, else defaults.env; relative to the root. */
export function toolsDir(env: Env = process.env, root: string = REPO_ROOT): string {
  let dir = env.SOPHIA_TOOLS_DIR;
  if (!dir) {
    const defaults = readFileSync(path.join(root, 'infra', 'local', 'defaults.env'), 'utf8');
    dir = /^SOPHIA_TOOLS_DIR=(.*)$/m.exec(defaults)?.[1]?.trim();
    if (!dir) throw new Error('infra/local/defaults.env does not set SOPHIA_TOOLS_DIR');
  }
  return path.resolve(root, dir);
}

export type TorchInstall = { ok: true; python: string; venv: string } | { ok: false; venv: string; reason: string };

/** Whether the venv is there and built from the current lock (the same check install-torch.sh makes). */
export function torchInstall(env: Env = process.env, root: string = REPO_ROOT): TorchInstall {
  const venv = path.join(toolsDir(env, root), TORCH_VENV_NAME);
  const python = path.join(venv, 'bin', 'python');
  if (!existsSync(python)) return { ok: false, venv, reason: `the PyTorch engine is not installed (no ${python})` };
  const stampFile = path.join(venv, TORCH_STAMP);
  const stamp = existsSync(stampFile) ? readFileSync(stampFile, 'utf8').trim() : '';
  const lock = createHash('sha256').update(readFileSync(path.join(root, TORCH_LOCK))).digest('hex');
  if (stamp !== lock) {
    return {
      ok: false,
      venv,
      reason: stamp
        ? `the PyTorch engine in ${venv} was installed from another ${TORCH_LOCK} (stamp ${stamp.slice(0, 12)}…, lock ${lock.slice(0, 12)}…)`
        : `the PyTorch engine install in ${venv} did not finish (no ${TORCH_STAMP})`,
    };
  }
  return { ok: true, python, venv };
}

/** The venv's python, or a `TorchEngineNotInstalledError` naming the install command. */
export function torchPython(env: Env = process.env, root: string = REPO_ROOT): string {
  const install = torchInstall(env, root);
  if (!install.ok) throw new TorchEngineNotInstalledError(install.reason, INSTALL_COMMAND);
  return install.python;
}

/**
 * Installs (or brings up to date with the lock) the venv, as `INSTALL_COMMAND` does; a no-op when it is current.
 * Its progress lines go to `log`.
 */
export async function installTorch(log: (line: string) => void, env: Env = process.env, root: string = REPO_ROOT): Promise<void> {
  if (torchInstall(env, root).ok) return;
  log(`installing the PyTorch engine into ${path.join(toolsDir(env, root), TORCH_VENV_NAME)} (first use: a few minutes, ~6 GB)`);
  await new Promise<void>((resolve, reject) => {
    const child = spawn('bash', [path.join(root, 'infra', 'local', 'install-torch.sh')], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let tail = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      tail = (tail + chunk).slice(-4000);
      for (const line of chunk.split('\n')) if (line.startsWith('[')) log(line);
    });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new TorchEngineNotInstalledError(`${INSTALL_COMMAND} exited with ${code}: ${tail.trim().split('\n').slice(-5).join(' | ')}`, INSTALL_COMMAND))));
  });
  const after = torchInstall(env, root);
  if (!after.ok) throw new TorchEngineNotInstalledError(after.reason, INSTALL_COMMAND);
}
