/**
 * Finding the engine's python (no Python needed): the names venv.ts uses are the ones install-torch.sh declares,
 * and a missing, unfinished or stale venv is a config error naming the install command.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { TorchEngineNotInstalledError } from './errors';
import { INSTALL_COMMAND, REPO_ROOT, TORCH_LOCK, TORCH_STAMP, TORCH_VENV_NAME, installTorch, toolsDir, torchInstall, torchPython } from './venv';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tools(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'sophia-torch-venv-'));
  dirs.push(dir);
  return dir;
}

function fakeVenv(dir: string, stamp: string | undefined): void {
  const venv = path.join(dir, TORCH_VENV_NAME);
  mkdirSync(path.join(venv, 'bin'), { recursive: true });
  writeFileSync(path.join(venv, 'bin', 'python'), '');
  if (stamp !== undefined) writeFileSync(path.join(venv, TORCH_STAMP), `${stamp}\n`);
}

describe('torch engine venv', () => {
  it('uses the names infra/local/install-torch.sh declares (venv folder, lock, stamp) and its install command', () => {
    const script = readFileSync(path.join(REPO_ROOT, 'infra', 'local', 'install-torch.sh'), 'utf8');
    expect(script).toContain(`VENV="$SOPHIA_TOOLS_DIR/${TORCH_VENV_NAME}"`);
    expect(script).toContain(`LOCK="$SOPHIA_ROOT/${TORCH_LOCK}"`);
    expect(script).toContain(`STAMP="$VENV/${TORCH_STAMP}"`);
    expect(INSTALL_COMMAND).toBe('bash infra/local/install-torch.sh');
  });

  it('resolves SOPHIA_TOOLS_DIR from the environment, else infra/local/defaults.env, relative to the root', () => {
    expect(toolsDir({ SOPHIA_TOOLS_DIR: '/opt/t' })).toBe('/opt/t');
    expect(toolsDir({ SOPHIA_TOOLS_DIR: 'x/y' })).toBe(path.join(REPO_ROOT, 'x/y'));
    expect(toolsDir({})).toBe(path.join(REPO_ROOT, '.tools'));
  });

  it('a missing venv is a config error naming the install command', () => {
    const dir = tools();
    expect(torchInstall({ SOPHIA_TOOLS_DIR: dir })).toMatchObject({ ok: false, reason: expect.stringMatching(/not installed/) as unknown });
    let error: unknown;
    try {
      torchPython({ SOPHIA_TOOLS_DIR: dir });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(TorchEngineNotInstalledError);
    expect(error).toMatchObject({ category: 'config', retryable: false });
    expect((error as Error).message).toContain(path.join(dir, TORCH_VENV_NAME, 'bin', 'python'));
    expect((error as Error).message).toContain('`bash infra/local/install-torch.sh`');
  });

  it('an unfinished install (no stamp) or one from another lock is refused; the current lock is accepted', () => {
    const lock = createHash('sha256').update(readFileSync(path.join(REPO_ROOT, TORCH_LOCK))).digest('hex');
    const unfinished = tools();
    fakeVenv(unfinished, undefined);
    expect(() => torchPython({ SOPHIA_TOOLS_DIR: unfinished })).toThrow(/did not finish.*install-torch\.sh/s);
    const stale = tools();
    fakeVenv(stale, '0'.repeat(64));
    expect(() => torchPython({ SOPHIA_TOOLS_DIR: stale })).toThrow(/installed from another engine\/torch\/requirements\.lock.*install-torch\.sh/s);
    const current = tools();
    fakeVenv(current, lock);
    expect(torchPython({ SOPHIA_TOOLS_DIR: current })).toBe(path.join(current, TORCH_VENV_NAME, 'bin', 'python'));
  });
});

describe('install-torch.sh --plan (the pip calls a first install makes)', () => {
  /** Each entry of a requirements file: its `name==version` and its hashes. */
  function entries(text: string): Map<string, string[]> {
    const out = new Map<string, string[]>();
    let current: string[] | undefined;
    for (const line of text.split('\n')) {
      const pin = /^([A-Za-z0-9][A-Za-z0-9._-]*==[^\s\\]+)/.exec(line);
      if (pin) out.set(pin[1]!, (current = []));
      const hash = /^\s+--hash=(sha256:[0-9a-f]{64})/.exec(line);
      if (hash) current!.push(hash[1]!);
    }
    return out;
  }

  it('installs every entry of the lock exactly once, with all its hashes, and each large wheel in a pip call of its own', () => {
    const dir = tools();
    execFileSync('bash', [path.join(REPO_ROOT, 'infra', 'local', 'install-torch.sh'), '--plan', dir], { stdio: 'pipe' });
    const lock = entries(readFileSync(path.join(REPO_ROOT, TORCH_LOCK), 'utf8'));
    const files = readdirSync(dir).sort();
    const planned = new Map<string, string[]>();
    for (const file of files) {
      const group = entries(readFileSync(path.join(dir, file), 'utf8'));
      for (const [pin, hashes] of group) {
        expect(planned.has(pin), `${pin} planned twice`).toBe(false);
        planned.set(pin, hashes);
      }
      // torch (~1 GB), triton and the CUDA libraries are downloaded and installed alone: the disk holds one at a time.
      const large = [...group.keys()].filter((pin) => /^(torch|triton|nvidia-.*)==/.test(pin));
      if (large.length > 0) expect(group.size, file).toBe(1);
    }
    expect(planned).toEqual(lock);
    expect(lock.size).toBeGreaterThan(50);
    expect([...lock.keys()].some((pin) => pin.startsWith('torch=='))).toBe(true);
    expect(files[0]).toBe('00-small.txt');
    expect(entries(readFileSync(path.join(dir, files[0]!), 'utf8')).size).toBeGreaterThan(30);
  });
});

describe('installTorch (what `sophia run` does for a torch run before its workers start)', () => {
  it('does nothing when the venv is current, and logs nothing', async () => {
    const dir = tools();
    fakeVenv(dir, createHash('sha256').update(readFileSync(path.join(REPO_ROOT, TORCH_LOCK))).digest('hex'));
    const lines: string[] = [];
    await installTorch((l) => lines.push(l), { SOPHIA_TOOLS_DIR: dir });
    expect(lines).toEqual([]);
  });

  it('runs the install script when it is missing; a failed install is a TorchEngineNotInstalledError with its reason', async () => {
    const dir = tools();
    const lines: string[] = [];
    const failed = installTorch((l) => lines.push(l), { SOPHIA_TOOLS_DIR: dir, PYTHON: path.join(dir, 'no-such-python') });
    await expect(failed).rejects.toThrow(TorchEngineNotInstalledError);
    await expect(failed).rejects.toThrow(/python3 \(>= 3\.10\) is needed/);
    expect(lines[0]).toMatch(/^installing the PyTorch engine into /);
  });
});
