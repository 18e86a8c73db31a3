/**
 * TorchEngine on a text-only causal LM (a tiny random Qwen2ForCausalLM, `tiny_qwen --text-only`, built in beforeAll):
 * init, generate (logprobs = responseLogprobs), trainStepResponses (SFT and GRPO), saveState → more steps →
 * loadState back (the same step, outputs and next step), a prompt with an image refused as a RangeError naming the
 * part. One engine process for the whole file; skipped, with the reason in the suite's name, without the venv.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AdamWSettings, ChatPrompt } from '../types';
import { TorchEngine } from './engine';
import { TorchEngineRangeError } from './errors';
import { buildTinyQwen } from '../testing/tiny-qwen';
import { INSTALL_COMMAND, torchInstall } from './venv';

const install = torchInstall();
const skipReason = install.ok ? '' : ` (skipped: ${install.reason}; install it with \`${INSTALL_COMMAND}\`)`;

const ADAMW: AdamWSettings = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 4 };

const PROMPTS: ChatPrompt[] = [
  { messages: [{ role: 'user', content: 'How many red circles are there?' }] },
  { messages: [{ role: 'system', content: 'You are a helpful assistant.' }, { role: 'user', content: [{ type: 'text', text: 'Count to three.' }] }] },
];

describe.skipIf(!install.ok)(`TorchEngine on a text-only causal LM (tiny Qwen2ForCausalLM)${skipReason}`, () => {
  let dir: string;
  let model: string;
  const engine = new TorchEngine({ device: 'cpu', dtype: 'float32', threads: 2 });

  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'sophia-torch-text-'));
    model = path.join(dir, 'model');
    buildTinyQwen(model, { textOnly: true, maxPositions: 256 });
  }, 120_000);
  afterAll(async () => {
    await engine.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('inits, generates with logprobs equal to responseLogprobs, and trains (SFT loss falls, a GRPO step)', async () => {
    await engine.init({ kind: 'policy', pretrained: model }, 1);
    expect(engine.config()).toEqual({ kind: 'policy', pretrained: model });
    expect(engine.maxLength()).toBe(256);
    expect(engine.info.description).toMatch(/\(Qwen2ForCausalLM, float32 on cpu\)$/);

    const generated = await engine.generate({ prompts: PROMPTS, n: 2, temperature: 1, topP: 1, maxTokens: 10, seed: 5 });
    expect(generated.sequences.map((s) => s.promptIndex)).toEqual([0, 0, 1, 1]);
    expect(generated.generatedTokens).toBe(generated.sequences.reduce((n, s) => n + s.tokens.length, 0));
    const rows = generated.sequences.map((s) => ({ prompt: s.promptIndex, response: s.tokens }));
    const scored = await engine.responseLogprobs({ prompts: PROMPTS, rows }, 1);
    generated.sequences.forEach((s, i) => {
      expect(scored[i]!.length).toBe(s.tokens.length);
      s.logprobs.forEach((lp, j) => expect(Math.abs(lp - scored[i]![j]!)).toBeLessThanOrEqual(1e-5));
    });

    const answers = await engine.encodeResponses(['There are 3 red circles.', 'One two three.']);
    const sft = { prompts: PROMPTS, rows: answers.map((response, prompt) => ({ prompt, response })) };
    const losses: number[] = [];
    for (let s = 0; s < 4; s++) {
      const r = await engine.trainStepResponses(sft, { kind: 'sft' }, ADAMW);
      expect(r).toMatchObject({ finite: true, applied: true, step: s + 1 });
      losses.push(r.loss);
    }
    expect(losses[3]!).toBeLessThan(0.8 * losses[0]!);

    const grpo = {
      prompts: PROMPTS,
      rows: generated.sequences.map((s, i) => ({
        prompt: s.promptIndex,
        response: s.tokens,
        oldLogprobs: Array.from(s.logprobs),
        refLogprobs: Array.from(s.logprobs, (x) => x - 0.1),
        advantage: i % 2 === 0 ? 1 : -1,
      })),
    };
    const step = await engine.trainStepResponses(grpo, { kind: 'grpo', clipEps: 0.2, klCoef: 0.04, entropyCoef: 1e-3, temperature: 1 }, ADAMW);
    expect(step).toMatchObject({ finite: true, applied: true, step: 5 });
    expect(step.metrics.tokens).toBe(generated.generatedTokens);
  });

  it('saveState → two more steps → loadState gives back the step, the outputs and the same next steps', async () => {
    const answers = await engine.encodeResponses(['Three.', 'One two three.']);
    const batch = { prompts: PROMPTS, rows: answers.map((response, prompt) => ({ prompt, response })) };
    const saved = await engine.saveState();
    expect(saved.map((f) => f.name)).toEqual(expect.arrayContaining(['config.json', 'model.safetensors', 'tokenizer.json', 'sophia_engine.json']));
    const at = engine.step();
    const before = (await engine.responseLogprobs(batch, 1)).map((x) => Array.from(x));
    const next = [];
    for (let s = 0; s < 2; s++) next.push((await engine.trainStepResponses(batch, { kind: 'sft' }, ADAMW)).loss);
    await engine.loadState(saved);
    expect(engine.step()).toBe(at);
    expect(engine.config()).toEqual({ kind: 'policy', pretrained: model });
    expect((await engine.responseLogprobs(batch, 1)).map((x) => Array.from(x))).toEqual(before);
    const again = [];
    for (let s = 0; s < 2; s++) again.push((await engine.trainStepResponses(batch, { kind: 'sft' }, ADAMW)).loss);
    expect(again).toEqual(next);
  });

  it('refuses a prompt with an image as a RangeError naming the part: the model reads no images', async () => {
    const image = { width: 4, height: 4, rgb: new Uint8Array(48) };
    const prompts: ChatPrompt[] = [PROMPTS[0]!, { messages: [{ role: 'user', content: [{ type: 'text', text: 'Count them.' }, { type: 'image', image }] }] }];
    const at = engine.step();
    const refusals = [
      await engine.generate({ prompts, n: 1, temperature: 1, topP: 1, maxTokens: 2, seed: 1 }).catch((err: unknown) => err),
      await engine.promptLengths(prompts).catch((err: unknown) => err),
      await engine.trainStepResponses({ prompts, rows: [{ prompt: 0, response: [1, 2] }] }, { kind: 'sft' }, ADAMW).catch((err: unknown) => err),
    ];
    for (const err of refusals) {
      expect(err).toBeInstanceOf(RangeError);
      expect(err).toBeInstanceOf(TorchEngineRangeError);
      expect(err).toMatchObject({ field: 'prompts[1].messages[0].content[1]', message: expect.stringMatching(/^[a-zA-Z]+: prompts\[1\]\.messages\[0\]\.content\[1\]: .*reads no images/) as unknown });
    }
    expect(engine.step()).toBe(at);
  });
});
