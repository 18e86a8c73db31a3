import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { SophiaError } from '../common/errors';
import { groupRewards } from '../rl/trust';
import { main } from './main';
import { trustGrpoCommand } from './trust-grpo';

const REPO_ROOT = path.resolve(__dirname, '..');

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'sophia-trust-grpo-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes `content` (an object is JSON-encoded) to a fresh file and returns its path. */
async function inputFile(name: string, content: unknown): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

/** Runs `trustGrpoCommand` and returns what it wrote. */
async function run(file: string): Promise<string> {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  await trustGrpoCommand(file, out);
  return Buffer.concat(chunks).toString('utf8');
}

interface Output {
  groups: { gamma: number; anneal: number; rewards: number[]; advantages: number[] }[];
}

// Group 0 is rl/trust.test.ts's hand-computed group: C = {0, 3}, W = {1, 2}, μc = 0.3, μw = 0.65,
// γ = exp(−0.35) = 0.7046880897187134, a = exp(−25/100) = 0.7788007830714049, α·γ·a = 0.16464349082820795.
// Group 1 is all correct (W empty): skipped under "skip", so R = R^o = [1, 0.5] exactly.
const GOOD = {
  step: 25,
  totalSteps: 100,
  alpha: 0.3,
  variant: 'trust-grpo',
  emptyGroup: 'skip',
  groups: [
    { outcome: [1, 0, 0.37, 1], thinking: [0.2, 0.8, 0.5, 0.4] },
    { outcome: [1, 0.5], thinking: [0.1, 0.9] },
  ],
};

describe('sophia trust-grpo', () => {
  it('prints one line with every group computed by groupRewards', async () => {
    const text = await run(await inputFile('good.json', GOOD));
    expect(text.endsWith('\n')).toBe(true);
    expect(text.split('\n')).toHaveLength(2);
    const output = JSON.parse(text) as Output;
    expect(Object.keys(output)).toEqual(['groups']);
    expect(output.groups).toHaveLength(2);
    for (const [i, group] of GOOD.groups.entries()) {
      const { gamma, anneal, rewards, advantages } = groupRewards({ ...GOOD, variant: 'trust-grpo', emptyGroup: 'skip', ...group });
      expect(output.groups[i]).toEqual({ gamma, anneal, rewards, advantages });
    }
    const [g0, g1] = output.groups;
    expect(g0!.gamma).toBeCloseTo(0.7046880897187134, 12);
    expect(g0!.anneal).toBeCloseTo(0.7788007830714049, 12);
    expect(g0!.rewards[1]).toBeCloseTo(0.8 * 0.16464349082820795, 12);
    expect(g0!.advantages[0]).toBeCloseTo(0.7932382586764168, 12);
    expect(g1).toMatchObject({ gamma: 1, rewards: [1, 0.5] });
    expect(g1!.anneal).toBeCloseTo(0.7788007830714049, 12);
  });

  it('accepts the optional fields, and grpo groups without thinking', async () => {
    // R = R^o = [1, 0, 0, 1], population std 0.5, eps 1e-6: A = ±0.5 / 0.500001 = ±0.999998000004.
    const file = await inputFile('grpo.json', { step: 0, totalSteps: 1, alpha: 0.3, variant: 'grpo', std: 'population', threshold: 0.7, annealTemperature: 3, groups: [{ outcome: [1, 0, 0, 1] }] });
    const [group] = (JSON.parse(await run(file)) as Output).groups;
    expect(group).toMatchObject({ gamma: 1, anneal: 1, rewards: [1, 0, 0, 1] });
    expect(group!.advantages[0]).toBeCloseTo(0.999998000004, 12);
    expect(group!.advantages[1]).toBeCloseTo(-0.999998000004, 12);
  });

  it('prints an empty list for no groups', async () => {
    expect(await run(await inputFile('none.json', { ...GOOD, groups: [] }))).toBe('{"groups":[]}\n');
  });

  const bad = (patch: Record<string, unknown>) => ({ ...GOOD, ...patch });
  it.each<[string, unknown, RegExp]>([
    ['invalid JSON', '{"step": 1,', /: invalid JSON \(.*\); expected one object like \{"step"/],
    ['not an object', '[1, 2]', /: expected a JSON object like \{"step"/],
    ['an unknown variant', bad({ variant: 'ppo' }), /: variant: expected one of "grpo", "thinking", "thinking\+anneal", "trust-grpo", "untrained-rm"; got "ppo"$/],
    ['a non-number outcome', bad({ groups: [GOOD.groups[0], { outcome: ['x', 1], thinking: [0, 0] }] }), /: groups\[1\]\.outcome\[0\]: expected a number in \[0, 1\]; got "x"$/],
    ['a thinking reward out of range', bad({ groups: [{ outcome: [1], thinking: [1.5] }] }), /: groups\[0\]\.thinking\[0\]: expected a number in \[0, 1\]; got 1\.5$/],
    ['a missing thinking array outside grpo', bad({ groups: [{ outcome: [1] }] }), /: groups\[0\]\.thinking: expected an array of numbers in \[0, 1\]; it is missing$/],
    ['a length mismatch', bad({ groups: [{ outcome: [1, 0], thinking: [0.5] }] }), /: groups\[0\]\.thinking: expected 2 values, one per outcome; got 1$/],
    ['a negative step', bad({ step: -1 }), /: step: expected an integer ≥ 0; got -1$/],
    ['a missing alpha', bad({ alpha: undefined }), /: alpha: expected a number ≥ 0; it is missing$/],
    ['missing groups', bad({ groups: undefined }), /: groups: expected an array of .*; it is missing$/],
    ['a group that is not an object', bad({ groups: [[1, 0]] }), /: groups\[0\]: expected an object like .*; got \[1,0\]$/],
    ['a misspelt top-level field', bad({ alpah: 0.3 }), /: unknown field "alpah": did you mean "alpha"\?$/],
    ['an unrelated top-level field', bad({ learningRate: 1e-6 }), /: unknown field "learningRate": remove it; the fields are step, totalSteps, alpha, variant, emptyGroup/],
    ['an unknown group field', bad({ groups: [{ outcome: [1], thinkng: [0.5] }] }), /: groups\[0\]: unknown field "thinkng": did you mean "thinking"\?$/],
  ])('rejects %s, naming the file and the field, and writes nothing', async (_name, content, message) => {
    const file = await inputFile('bad.json', content);
    const out = new PassThrough();
    const write = vi.spyOn(out, 'write');
    const err: unknown = await trustGrpoCommand(file, out).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SophiaError);
    expect((err as SophiaError).category).toBe('input');
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message.startsWith(`${file}: `)).toBe(true);
    expect(write).not.toHaveBeenCalled();
  });

  it('rejects a missing file', async () => {
    const file = path.join(dir, 'nope.json');
    await expect(trustGrpoCommand(file, new PassThrough())).rejects.toThrow(/^--json .*nope\.json: cannot read the file \(no such file\); expected a JSON file like/);
  });

  it('is wired into the CLI, with --json required', async () => {
    const error = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const write = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      expect(await main(['trust-grpo'])).toBe(2);
      expect(String(error.mock.calls[0]?.[0])).toMatch(/--json FILE is required/);
      expect(await main(['trust-grpo', '--json', path.join(dir, 'nope.json')])).toBe(2);
      expect(String(error.mock.calls[1]?.[0])).toMatch(/cannot read the file/);
      expect(await main(['trust-grpo', '--jsonl', 'x'])).toBe(2);
      expect(write).not.toHaveBeenCalled();
    } finally {
      vi.restoreAllMocks();
    }
  });

  it('runs as a real process: node bin/sophia.js trust-grpo --json FILE', async () => {
    const file = await inputFile('process.json', GOOD);
    const { stdout } = await promisify(execFile)(process.execPath, [path.join(REPO_ROOT, 'bin', 'sophia.js'), 'trust-grpo', '--json', file], {
      cwd: REPO_ROOT,
      env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    });
    expect(stdout).toBe(await run(file));
    expect((JSON.parse(stdout) as Output).groups[0]!.gamma).toBeCloseTo(0.7046880897187134, 12);
  });
});
