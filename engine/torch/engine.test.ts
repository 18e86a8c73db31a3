/**
 * TorchEngine beyond the shared contract (engine.contract.test.ts): what createEngine makes, refusals in the
 * caller's terms, raw RGB images, the process log, and a process that dies — the call in flight and the next ones
 * fail retryably, nothing is reloaded behind the caller's back, and loadState brings the model back in a new
 * process. Runs the real engine process on a tiny Qwen2.5-VL built in beforeAll; skipped, with the reason in the
 * suite's name, when the venv is missing.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { TorchEngineHosts, createEngine } from '../factory';
import { promptMicroConfig } from '../testing/contract-fixtures';
import type { ChatPrompt, RgbImage } from '../types';
import { TorchEngine, TorchEngineModelLostError } from './engine';
import { EngineProcessDiedError, TorchEngineRangeError } from './errors';
import type { TorchEngineLogEntry } from './process';
import { buildTinyQwen } from '../testing/tiny-qwen';
import { INSTALL_COMMAND, torchInstall } from './venv';

const install = torchInstall();
const skipReason = install.ok ? '' : ` (skipped: ${install.reason}; install it with \`${INSTALL_COMMAND}\`)`;

const SETTINGS = { device: 'cpu', dtype: 'float32', threads: 2 } as const;

function picture(width: number, height: number, seed: number): RgbImage {
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 7 + seed * 31 + (i % 3) * 60) % 256;
  return { width, height, rgb };
}

const PROMPTS: ChatPrompt[] = [
  { messages: [{ role: 'user', content: [{ type: 'image', image: picture(60, 90, 1) }, { type: 'text', text: 'How many red circles?' }] }] },
  { messages: [{ role: 'system', content: 'You are a helpful assistant.' }, { role: 'user', content: 'Count to three.' }] },
];

describe('createEngine: the torch kind', () => {
  it('makes a TorchEngine without starting a process; Sophia\'s own architecture is refused naming model', async () => {
    const engine = createEngine({ kind: 'torch', ...SETTINGS });
    expect(engine).toBeInstanceOf(TorchEngine);
    expect(engine.info.description).toMatch(/not started/);
    await expect(engine.init(promptMicroConfig('policy'), 1)).rejects.toThrow(TypeError);
    await expect(engine.init(promptMicroConfig('policy'), 1)).rejects.toThrow(/^model: the torch engine runs Hugging Face models: pass \{ kind, pretrained: DIR \}/);
    expect((engine as TorchEngine).pid).toBeUndefined();
    await engine.dispose();
    expect(() => createEngine({ kind: 'jax' } as never)).toThrow(/use one of onnx, torch/);
  });
});

describe.skipIf(!install.ok)(`TorchEngine on the real engine process (tiny Qwen2.5-VL)${skipReason}`, () => {
  let dir: string;
  let model: string;
  const engines: TorchEngine[] = [];
  const logs: TorchEngineLogEntry[] = [];
  const make = (more: { processes?: number } = {}) => {
    const e = new TorchEngine({ ...SETTINGS, ...more, onLog: (entry) => logs.push(entry) });
    engines.push(e);
    return e;
  };

  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'sophia-torch-engine-'));
    model = path.join(dir, 'model');
    buildTinyQwen(model, { maxPositions: 256 });
  }, 120_000);
  afterAll(async () => {
    await Promise.all(engines.map((e) => e.dispose()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('loads a pretrained model, passes its process log to onLog, and says what it runs', async () => {
    const e = make();
    await e.init({ kind: 'policy', pretrained: model }, 1);
    expect(e.config()).toEqual({ kind: 'policy', pretrained: model });
    expect(e.maxLength()).toBe(256);
    expect(e.info).toEqual({ description: expect.stringMatching(/^torch 2\.\d+.*transformers 5\.\d+.*\(Qwen2_5_VLForConditionalGeneration, float32 on cpu\)$/) as unknown, executionProvider: 'cpu' });
    expect(logs).toContainEqual(expect.objectContaining({ level: 'info', message: 'engine process ready', fields: expect.objectContaining({ pid: e.pid }) as unknown }));
    // An op's log line is written after its reply: it arrives a moment later.
    await vi.waitFor(() => expect(logs).toContainEqual(expect.objectContaining({ message: 'op done', fields: expect.objectContaining({ op: 'load', pid: e.pid }) as unknown })));
  });

  it("refuses bad input in the caller's terms: the field, then the process's reason", async () => {
    const e = make();
    await e.init({ kind: 'policy', pretrained: model }, 1);
    const [response] = await e.encodeResponses(['three']);
    const batch = { prompts: PROMPTS, rows: [{ prompt: 0, response: response! }] };
    const topP = await e.generate({ prompts: PROMPTS, n: 1, temperature: 1, topP: 2, maxTokens: 2, seed: 1 }).catch((err: unknown) => err);
    expect(topP).toBeInstanceOf(TorchEngineRangeError);
    expect(topP).toMatchObject({ field: 'topP', message: expect.stringMatching(/^generate: topP: args\.top_p must be in \(0, 1\]/) as unknown });
    // A vision placeholder in a response: the process refuses it (the vocabulary check here lets it through).
    const imagePad = 652; // tiny_qwen: 640 BPE tokens, then Qwen's special tokens in order; <|image_pad|> is the 13th
    const vision = await e.responseLogprobs({ prompts: PROMPTS, rows: [{ prompt: 0, response: Int32Array.of(imagePad) }] }, 1).catch((err: unknown) => err);
    expect(vision).toBeInstanceOf(RangeError);
    expect(vision).toMatchObject({ field: 'rows[].response', message: expect.stringMatching(/vision placeholder/) as unknown });
    const badImage = { messages: [{ role: 'user' as const, content: [{ type: 'image' as const, image: { width: 4, height: 4, rgb: new Uint8Array(47) } }] }] };
    await expect(e.responseLogprobs({ prompts: [badImage], rows: batch.rows }, 1)).rejects.toThrow(/^prompts\[0\]\.messages\[0\]\.content\[0\]\.image must be \{ width, height, rgb \}/);
    const missing = await e.init({ kind: 'policy', pretrained: path.join(dir, 'nope') }, 1).catch((err: unknown) => err);
    expect(missing).toBeInstanceOf(RangeError);
    expect(missing).toMatchObject({ field: 'model.pretrained' });
    expect(e.config()).toEqual({ kind: 'policy', pretrained: model }); // the model it had
  });

  it('reads raw RGB images: the same picture, the same logprobs, wherever it appears', async () => {
    const e = make();
    await e.init({ kind: 'policy', pretrained: model }, 1);
    const [response] = await e.encodeResponses(['two']);
    const same = picture(60, 90, 1);
    const copy = { ...same, rgb: new Uint8Array(same.rgb) };
    const rows = [{ prompt: 0, response: response! }];
    const a = await e.responseLogprobs({ prompts: [PROMPTS[0]!], rows }, 1);
    const b = await e.responseLogprobs({ prompts: [{ messages: [{ role: 'user', content: [{ type: 'image', image: copy }, { type: 'text', text: 'How many red circles?' }] }] }], rows }, 1);
    expect(Array.from(b[0]!)).toEqual(Array.from(a[0]!));
    const other = await e.responseLogprobs({ prompts: [{ messages: [{ role: 'user', content: [{ type: 'image', image: picture(60, 90, 2) }, { type: 'text', text: 'How many red circles?' }] }] }], rows }, 1);
    expect(Array.from(other[0]!)).not.toEqual(Array.from(a[0]!));
    // The same image object twice in a prompt travels once and counts twice.
    const [one, twice] = await e.promptLengths([
      { messages: [{ role: 'user', content: [{ type: 'image', image: same }] }] },
      { messages: [{ role: 'user', content: [{ type: 'image', image: same }, { type: 'image', image: same }] }] },
    ]);
    expect(twice! - one!).toBeGreaterThan(4);
  });

  it('two engine processes (torchrun, the policy sharded with FSDP) train as one does, their state loads in one process, and a SIGKILLed launcher takes its ranks with it', async () => {
    const [one, two] = [make(), make({ processes: 2 })];
    await Promise.all([one.init({ kind: 'policy', pretrained: model }, 1), two.init({ kind: 'policy', pretrained: model }, 1)]);
    const [response] = await one.encodeResponses(['one two three four']);
    const batch = { prompts: PROMPTS, rows: [{ prompt: 0, response: response! }, { prompt: 1, response: response! }, { prompt: 0, response: response!.slice(1) }] };
    const adamw = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 4 };
    for (let i = 0; i < 2; i++) {
      const [a, b] = await Promise.all([one.trainStepResponses(batch, { kind: 'sft' }, adamw), two.trainStepResponses(batch, { kind: 'sft' }, adamw)]);
      expect(Math.abs(a.loss - b.loss)).toBeLessThanOrEqual(1e-6 * Math.abs(a.loss));
    }
    const saved = await two.saveState();
    const expected = await two.responseLogprobs(batch, 1);
    const three = make();
    await three.loadState(saved);
    expect(three.step()).toBe(2);
    const got = await three.responseLogprobs(batch, 1);
    for (const [i, row] of got.entries()) for (const [j, v] of row.entries()) expect(Math.abs(v - expected[i]![j]!)).toBeLessThan(1e-5);
    // torchrun's ranks run in sessions of their own; PR_SET_PDEATHSIG ends them with it.
    const launcher = two.pid!;
    const ranks = execFileSync('ps', ['--ppid', String(launcher), '-o', 'pid='], { encoding: 'utf8' }).split('\n').map((x) => Number(x.trim())).filter((x) => x > 0);
    expect(ranks).toHaveLength(2);
    process.kill(launcher, 'SIGKILL');
    const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };
    for (let t = 0; t < 100 && ranks.some(alive); t++) await new Promise((resolve) => setTimeout(resolve, 100));
    expect(ranks.filter(alive)).toEqual([]);
  }, 120_000);

  it('a killed process fails the call in flight and later calls retryably until loadState loads the model in a new process', async () => {
    const e = make();
    await e.init({ kind: 'policy', pretrained: model }, 1);
    const [response] = await e.encodeResponses(['one two three']);
    const batch = { prompts: PROMPTS, rows: [{ prompt: 0, response: response! }, { prompt: 1, response: response! }] };
    await e.trainStepResponses(batch, { kind: 'sft' }, { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 4 });
    const saved = await e.saveState();
    const before = await e.responseLogprobs(batch, 1);
    expect(e.healthy()).toBe(true);
    const pid = e.pid!;
    const long = e.generate({ prompts: PROMPTS, n: 8, temperature: 1.5, topP: 1, maxTokens: 200, seed: 1 }).catch((err: unknown) => err);
    await new Promise((resolve) => setTimeout(resolve, 300));
    process.kill(pid, 'SIGKILL');
    const died = await long;
    expect(died).toBeInstanceOf(EngineProcessDiedError);
    expect(died).toMatchObject({ category: 'unavailable', retryable: true });
    expect(e.healthy()).toBe(false);
    // Later calls: the model is gone with its process; nothing reloads it behind the caller's back.
    const lost = await e.responseLogprobs(batch, 1).catch((err: unknown) => err);
    expect(lost).toBeInstanceOf(TorchEngineModelLostError);
    expect(lost).toBeInstanceOf(EngineProcessDiedError);
    expect(lost).toMatchObject({ retryable: true, message: expect.stringMatching(/^torch engine responseLogprobs: no model is loaded: the engine process \(pid \d+\) died: killed by SIGKILL and nothing was loaded since; call init, loadState/) as unknown });
    await expect(e.saveState()).rejects.toBeInstanceOf(TorchEngineModelLostError);
    expect(logs).toContainEqual(expect.objectContaining({ level: 'error', message: expect.stringMatching(/died: killed by SIGKILL/) as unknown }));
    // loadState starts a new process and loads the checkpoint: the same step and outputs.
    await e.loadState(saved);
    expect(e.healthy()).toBe(true);
    expect(e.pid).not.toBe(pid);
    expect(e.step()).toBe(1);
    expect((await e.responseLogprobs(batch, 1)).map((x) => Array.from(x))).toEqual(before.map((x) => Array.from(x)));
  });

  it('engines on one host are models of one process: separate states, one death takes both, each reloads itself, the last to go closes it', async () => {
    const hosts = new TorchEngineHosts((entry) => logs.push(entry));
    const made = [createEngine({ kind: 'torch', ...SETTINGS }, { torchHosts: hosts }), createEngine({ kind: 'torch', ...SETTINGS }, { torchHosts: hosts })] as TorchEngine[];
    const other = createEngine({ kind: 'torch', ...SETTINGS, threads: 1 }, { torchHosts: hosts }) as TorchEngine;
    engines.push(...made, other);
    const [policy, rm] = made as [TorchEngine, TorchEngine];
    await policy.init({ kind: 'policy', pretrained: model }, 1);
    await rm.init({ kind: 'reward', pretrained: model }, 2);
    expect(rm.pid).toBe(policy.pid);
    expect(other.pid).toBeUndefined(); // other threads: a process of its own, not started yet
    const [response] = await policy.encodeResponses(['one two three']);
    const batch = { prompts: PROMPTS, rows: [{ prompt: 0, response: response! }, { prompt: 1, response: response! }] };
    const scores = await rm.scoreResponses(batch);
    const adamw = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 4 };
    await policy.trainStepResponses(batch, { kind: 'sft' }, adamw);
    expect(policy.step()).toBe(1);
    expect(rm.step()).toBe(0);
    expect(Array.from(await rm.scoreResponses(batch))).toEqual(Array.from(scores)); // the policy's step left it alone
    const saved = await policy.saveState();

    process.kill(policy.pid!, 'SIGKILL');
    await expect(rm.scoreResponses(batch)).rejects.toBeInstanceOf(EngineProcessDiedError);
    expect(policy.healthy()).toBe(false);
    expect(rm.healthy()).toBe(false);
    // The policy reloads: a new process, which the reward model's model is not in.
    await policy.loadState(saved);
    expect(policy.healthy()).toBe(true);
    expect(rm.pid).toBe(policy.pid);
    expect(rm.healthy()).toBe(false);
    await expect(rm.scoreResponses(batch)).rejects.toBeInstanceOf(TorchEngineModelLostError);
    await rm.init({ kind: 'reward', pretrained: model }, 2);
    expect(rm.healthy()).toBe(true);
    expect(Array.from(await rm.scoreResponses(batch))).toEqual(Array.from(scores));

    // Disposing one unloads its model; the other keeps working; the last one closes the process.
    const pid = policy.pid!;
    await rm.dispose();
    expect(policy.step()).toBe(1);
    await policy.responseLogprobs(batch, 1);
    await policy.dispose();
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(() => process.kill(pid, 0)).toThrow(); // no such process
    await other.dispose();
  });
});
