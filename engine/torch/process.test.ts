/**
 * TorchEngineProcess against the real engine process (python -m sophia_torch.server from the project's venv) on
 * a tiny random Qwen2.5-VL built once into a temp folder: hello/load, a sample with an image whose logprobs the
 * logprobs op reproduces, SFT steps lowering the loss, save → a new process → load_state continuing identically,
 * error replies as RangeError/TypeError naming the field while the process serves on, pipelined requests, a
 * SIGKILLed process failing its pending and later requests retryably until restart(), stderr reaching the logger.
 *
 * Skipped, with the reason in the suite's name, when the venv is not installed (`bash infra/local/install-torch.sh`;
 * infra/test.sh installs it before vitest runs).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { EngineProcessDiedError, TorchEngineError, TorchEngineRangeError, TorchEngineTypeError } from './errors';
import { type TorchEngineLogEntry, TorchEngineProcess } from './process';
import type { AdamWArgs, Prompt, SftRows } from './protocol';
import { buildTinyQwen } from '../testing/tiny-qwen';
import { INSTALL_COMMAND, torchInstall } from './venv';

const install = torchInstall();
const skipReason = install.ok ? '' : ` (skipped: ${install.reason}; install it with \`${INSTALL_COMMAND}\`)`;
if (!install.ok) console.warn(`engine/torch/process.test.ts${skipReason}`);

const ADAMW: AdamWArgs = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, max_grad_norm: 4 };

/** A PNG's bytes: a coloured image with some noise, so its patches differ. */
function png(width: number, height: number, rgb: [number, number, number], seed: number): Uint8Array {
  const image = new PNG({ width, height });
  let s = seed;
  for (let i = 0; i < width * height; i++) {
    for (let c = 0; c < 3; c++) {
      s = (s * 1103515245 + 12345) % 2 ** 31;
      image.data[4 * i + c] = Math.max(0, Math.min(255, rgb[c]! + (s % 80) - 40));
    }
    image.data[4 * i + 3] = 255;
  }
  return new Uint8Array(PNG.sync.write(image));
}

const IMAGES = { red: png(60, 90, [200, 30, 30], 1) };
const IMAGE_PROMPT: Prompt = {
  messages: [{ role: 'user', content: [{ type: 'image', tensor: 'red' }, { type: 'text', text: 'How many red circles are there?' }] }],
};
const TEXT_PROMPT: Prompt = { messages: [{ role: 'user', content: 'Count to three.' }] };

describe.skipIf(!install.ok)(`TorchEngineProcess (real engine process, tiny Qwen2.5-VL)${skipReason}`, () => {
  let dir: string;
  let modelDir: string;
  let engine: TorchEngineProcess;
  const extra: TorchEngineProcess[] = [];
  const logs: TorchEngineLogEntry[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'sophia-torch-process-'));
    modelDir = path.join(dir, 'model');
    buildTinyQwen(modelDir);
    engine = await TorchEngineProcess.start({ threads: 2, onLog: (entry) => logs.push(entry) });
  }, 120_000);

  afterAll(async () => {
    await Promise.all([engine, ...extra].map((e) => e?.close()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** SFT rows: the text prompt answered with `answer`'s tokens and the model's end of turn. */
  async function sftRows(e: TorchEngineProcess, answer: string, eos: number): Promise<SftRows> {
    const { ids } = await e.tokenize([answer]);
    const response = Int32Array.from([...ids, eos]);
    return { prompt_index: Int32Array.of(0), response_lengths: Int32Array.of(response.length), response_ids: response };
  }

  it('answers hello, loads the model, and sends its stderr log lines to the logger', async () => {
    const hello = await engine.hello();
    expect(hello).toMatchObject({ protocol: 1, engine: 'sophia_torch', default_device: 'cpu', threads: 2 });
    expect(hello.ops).toEqual(expect.arrayContaining(['hello', 'load', 'sample', 'logprobs', 'forward_backward', 'optim_step', 'save', 'load_state']));
    const model = await engine.load({ model_dir: modelDir, device: 'cpu' });
    expect(model).toMatchObject({ role: 'policy', dtype: 'float32', device: 'cpu', step: 0, model_type: 'qwen2_5_vl', model_dir: modelDir });
    expect((await engine.hello()).model?.vocab_size).toBe(model.vocab_size);
    expect(logs).toContainEqual(expect.objectContaining({ level: 'info', message: 'engine process ready', fields: expect.objectContaining({ pid: engine.pid }) as unknown }));
    // Log lines come on stderr, replies on stdout: a line may arrive after the reply that follows it.
    await vi.waitFor(() => expect(logs).toContainEqual(expect.objectContaining({ level: 'info', message: 'op done', fields: expect.objectContaining({ op: 'load', ms: expect.any(Number) as unknown }) as unknown })));
  });

  it('samples from a prompt with an image; the logprobs op gives the sampled tokens the same logprobs within 1e-5', async () => {
    await engine.load({ model_dir: modelDir, device: 'cpu' });
    const request = { prompts: [IMAGE_PROMPT], n: 3, max_new_tokens: 12, temperature: 1, seed: 5 };
    const sampled = await engine.sample(request, IMAGES);
    expect(sampled.samples).toHaveLength(3);
    expect(sampled.lengths).toBeInstanceOf(Int32Array);
    const total = sampled.lengths.reduce((a, b) => a + b, 0);
    expect(sampled.token_ids).toHaveLength(total);
    expect(sampled.logprobs).toHaveLength(total);
    expect(sampled.generated_tokens).toBe(total);
    expect(Array.from(sampled.token_ids)).toEqual(Array.from((await engine.sample(request, IMAGES)).token_ids)); // seeded
    const rescored = await engine.logprobs(
      { prompts: [IMAGE_PROMPT] },
      { prompt_index: Int32Array.of(0, 0, 0), response_lengths: sampled.lengths, response_ids: sampled.token_ids },
      IMAGES,
    );
    expect(rescored.prompt_tokens).toEqual([sampled.prompt_tokens[0], sampled.prompt_tokens[0], sampled.prompt_tokens[0]]);
    const diff = Math.max(...Array.from(rescored.logprobs, (lp, i) => Math.abs(lp - sampled.logprobs[i]!)));
    expect(diff).toBeLessThanOrEqual(1e-5);
  });

  it('SFT forward_backward + optim_step lowers the loss', async () => {
    const model = await engine.load({ model_dir: modelDir, device: 'cpu' });
    const rows = await sftRows(engine, 'one two three', model.eos_token_ids[0]!);
    const losses: number[] = [];
    for (let step = 1; step <= 4; step++) {
      const fb = await engine.forwardBackward({ prompts: [TEXT_PROMPT], loss: { kind: 'sft' } }, rows);
      expect(fb.finite).toBe(true);
      losses.push(fb.loss);
      const opt = await engine.optimStep(ADAMW);
      expect(opt).toMatchObject({ step, applied: true });
      expect(Number.isFinite(opt.grad_norm)).toBe(true);
    }
    expect(losses[3]!).toBeLessThan(losses[0]! - 0.1);
  });

  it('save → a new process → load_state continues with identical losses', async () => {
    const model = await engine.load({ model_dir: modelDir, device: 'cpu', seed: 1 });
    const rows = await sftRows(engine, 'three', model.eos_token_ids[0]!);
    const args = { prompts: [TEXT_PROMPT], loss: { kind: 'sft' as const } };
    for (let i = 0; i < 2; i++) {
      await engine.forwardBackward(args, rows);
      await engine.optimStep(ADAMW);
    }
    const saved = await engine.save(path.join(dir, 'state'));
    expect(saved.step).toBe(2);
    expect(saved.files).toEqual(expect.arrayContaining(['model.safetensors', 'config.json', 'sophia_engine.json', 'sophia_optimizer.safetensors']));
    const twoSteps = async (e: TorchEngineProcess) => {
      const first = await e.forwardBackward(args, rows);
      await e.optimStep(ADAMW);
      const second = await e.forwardBackward(args, rows);
      return [first.loss, second.loss];
    };
    const uninterrupted = await twoSteps(engine);
    const fresh = await TorchEngineProcess.start({ threads: 2, onLog: () => undefined });
    extra.push(fresh);
    expect((await fresh.loadState({ dir: saved.dir })).step).toBe(2);
    expect(await twoSteps(fresh)).toEqual(uninterrupted); // the same float32 numbers: weights, moments and step restored
  });

  it('answers bad fields with a RangeError/TypeError naming the field, serves on, and pipelines requests', async () => {
    const model = await engine.load({ model_dir: modelDir, device: 'cpu' });
    const refusals = await Promise.allSettled([
      engine.optimStep({ ...ADAMW, lr: -1 }),
      engine.sample({ prompts: [TEXT_PROMPT], max_new_tokens: 4, temperature: 'hot' as unknown as number }),
      engine.forwardBackward({ prompts: [TEXT_PROMPT], loss: { kind: 'sft' } }, { prompt_index: Int32Array.of(0), response_lengths: Int32Array.of(2) } as SftRows),
      engine.sample({ prompts: [TEXT_PROMPT], max_new_tokens: 4, temperature: Number.NaN }),
      engine.optimStep(ADAMW), // no gradients accumulated since the load
    ]);
    const errors = refusals.map((r) => (r.status === 'rejected' ? (r.reason as Error) : r.value));
    expect(errors[0]).toBeInstanceOf(TorchEngineRangeError);
    expect(errors[0]).toBeInstanceOf(RangeError);
    expect(errors[0]).toMatchObject({ op: 'optim_step', field: 'args.lr', message: expect.stringContaining('args.lr must be >= 0') as unknown });
    expect(errors[1]).toBeInstanceOf(TorchEngineTypeError);
    expect(errors[1]).toBeInstanceOf(TypeError);
    expect(errors[1]).toMatchObject({ op: 'sample', field: 'args.temperature', message: expect.stringContaining('args.temperature') as unknown });
    expect(errors[2]).toBeInstanceOf(RangeError);
    expect(errors[2]).toMatchObject({ field: 'tensors.response_ids', message: expect.stringContaining('tensors.response_ids') as unknown });
    // NaN travels as "NaN" (JSON.stringify would have sent null, i.e. "use the default"): refused by name.
    expect(errors[3]).toMatchObject({ field: 'args.temperature' });
    expect(errors[4]).toBeInstanceOf(TorchEngineError);
    expect(errors[4]).toMatchObject({ type: 'StateError', category: 'input', retryable: false });
    expect(logs).toContainEqual(expect.objectContaining({ level: 'warn', message: 'op refused', fields: expect.objectContaining({ field: 'args.lr' }) as unknown }));
    // Tensors this side cannot send are refused before anything is written.
    await expect(engine.call('logprobs', {}, { x: { dtype: 'int64', shape: [1], data: new Int32Array(1) } })).rejects.toThrow(
      /tensors\.x: dtype is int64 but data is a int32 array/,
    );
    await expect(engine.logprobs({ prompts: [IMAGE_PROMPT] }, { prompt_index: Int32Array.of(0), response_lengths: Int32Array.of(0), response_ids: new Int32Array(0) }, { response_ids: IMAGES.red })).rejects.toThrow(
      /images\.response_ids: the name is a row tensor's/,
    );
    // Still serving, the model still loaded; three pipelined requests each get their own reply.
    const [hello, a, b] = await Promise.all([engine.hello(), engine.tokenize(['one']), engine.tokenize(['one two three', 'x'])]);
    expect(hello.model).toMatchObject({ model_dir: model.model_dir, step: 0 });
    expect(a.lengths).toHaveLength(1);
    expect(Array.from(b.lengths)).toHaveLength(2);
    expect(b.ids.length).toBeGreaterThan(a.ids.length);
  });

  it('a SIGKILLed process fails the pending and the next request retryably, naming the death; restart() serves again', async () => {
    await engine.load({ model_dir: modelDir, device: 'cpu' });
    const pid = engine.pid!;
    let settled = false;
    const long = engine.sample({ prompts: [TEXT_PROMPT, IMAGE_PROMPT], n: 8, max_new_tokens: 400, temperature: 1.5, seed: 1 }, IMAGES);
    void long.finally(() => (settled = true)).catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(settled, 'the long sample was still running when killed').toBe(false);
    process.kill(pid, 'SIGKILL');
    const pending = await long.then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(pending).toBeInstanceOf(EngineProcessDiedError);
    expect(pending).toMatchObject({ category: 'unavailable', retryable: true, end: { pid, signal: 'SIGKILL', code: null, closed: false } });
    expect((pending as Error).message).toMatch(new RegExp(`torch engine sample: the engine process \\(pid ${pid}\\) died: killed by SIGKILL; last stderr lines:`));
    const next = await engine.hello().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(next).toBeInstanceOf(EngineProcessDiedError);
    expect(next).toMatchObject({ retryable: true, message: expect.stringContaining('torch engine hello: the engine process') as unknown });
    expect(logs).toContainEqual(expect.objectContaining({ level: 'error', message: expect.stringContaining('died: killed by SIGKILL') as unknown }));

    const hello = await engine.restart();
    expect(engine.pid).not.toBe(pid);
    expect(hello.model).toBeUndefined(); // a new process: the model must be loaded again
    await engine.load({ model_dir: modelDir, device: 'cpu' });
    expect((await engine.tokenize(['one'])).lengths).toHaveLength(1);
  });

  it('close() shuts the process down (exit 0) at once, a model loaded; later calls say it was closed', async () => {
    const e = await TorchEngineProcess.start({ onLog: () => undefined });
    await e.load({ model_dir: modelDir, device: 'cpu' }); // torch, transformers and torchvision imported, as in a worker
    const started = performance.now();
    const end = await e.close();
    // It exits right after its shutdown reply, without the interpreter's teardown of those modules (~1 s).
    expect(performance.now() - started).toBeLessThan(500);
    expect(end).toMatchObject({ code: 0, signal: null, closed: true });
    await expect(e.hello()).rejects.toThrow(/the engine process \(pid \d+\) was closed: exit code 0/);
  });
});

describe('TorchEngineProcess supervision without an engine', () => {
  it('a python that cannot be started fails start() with the died error naming it', async () => {
    const missing = path.join(tmpdir(), 'sophia-no-such-python', 'python');
    const err = await TorchEngineProcess.start({ python: missing, onLog: () => undefined }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(EngineProcessDiedError);
    expect((err as Error).message).toContain(`could not start ${missing}: spawn ${missing} ENOENT`);
  });

  it('a process that breaks the framing is killed, and its pending request fails naming the violation and its stderr', async () => {
    // Not the engine: a shell script in its place that logs a non-JSON line and answers with a header length of 0.
    const dir = mkdtempSync(path.join(tmpdir(), 'sophia-torch-liar-'));
    try {
      const liar = path.join(dir, 'python');
      writeFileSync(liar, "#!/bin/sh\necho 'not json: starting' >&2\nprintf '\\000\\000\\000\\000'\nexec sleep 30\n", { mode: 0o755 });
      const logs: TorchEngineLogEntry[] = [];
      const err = await TorchEngineProcess.start({ python: liar, onLog: (entry) => logs.push(entry) }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(EngineProcessDiedError);
      expect(err).toMatchObject({ retryable: true, end: { signal: 'SIGKILL', reason: 'protocol violation: header length 0 is outside [1, 67108864]' } });
      expect((err as Error).message).toContain('not json: starting');
      expect(logs[0]).toMatchObject({ level: 'warn', message: 'not json: starting', fields: { raw: true } });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
