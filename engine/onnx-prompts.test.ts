import { afterAll, describe, expect, it } from 'vitest';
import { packGrpo, packReward, packSequences, packSft } from './batch';
import type { ModelConfig } from './model/config';
import { EOS, Tokenizer } from './model/tokenizer';
import { OnnxEngine } from './onnx-engine';
import { rgbToPlanes } from './onnx-prompts';
import { ADAMW } from './testing/fixtures';
import type { ChatPrompt, RgbImage } from './types';

const tokenizer = new Tokenizer();
const config = (kind: ModelConfig['kind'] = 'policy'): ModelConfig => ({
  kind,
  vocabSize: tokenizer.vocabSize,
  maxLength: 32,
  layers: 1,
  width: 32,
  heads: 2,
  mlpRatio: 2,
  image: { size: 4, channels: 3, patch: 2 },
  initStd: 0.02,
});

const picture = (seed: number): RgbImage => ({ width: 4, height: 4, rgb: Uint8Array.from({ length: 48 }, (_, i) => (i * 37 + seed * 101) % 256) });
const prompt = (text: string, seed: number): ChatPrompt => ({ messages: [{ role: 'user', content: [{ type: 'image', image: picture(seed) }, { type: 'text', text }] }] });
const PROMPTS = [prompt('how many red?', 1), prompt('read the digits.', 2)];
const pixelsOf = (seeds: number[]) => {
  const out = new Float32Array(seeds.length * 48);
  seeds.forEach((s, i) => rgbToPlanes(picture(s), out, i * 48));
  return out;
};

const engines: OnnxEngine[] = [];
async function engine(kind: ModelConfig['kind'] = 'policy', seed = 1): Promise<OnnxEngine> {
  const e = new OnnxEngine();
  engines.push(e);
  await e.init(config(kind), seed);
  return e;
}
afterAll(async () => {
  for (const e of engines) await e.dispose();
});

const responses = ['<think>3</think><answer>3</answer>', '<answer>42</answer>', 'ab'].map((t) => Int32Array.from(tokenizer.response(t)));
/** Rows → prompt 0, 1, 0; the same rows as token-level (prompt, response) pairs. */
const ROWS = responses.map((response, i) => ({ prompt: i % 2, response }));
const tokenRows = ROWS.map((r) => ({ prompt: tokenizer.prompt(r.prompt === 0 ? 'how many red?' : 'read the digits.'), response: Array.from(r.response) }));
const rowPixels = pixelsOf(ROWS.map((r) => r.prompt + 1));

describe('OnnxEngine prompt-level surface: the token-level computation of the same tokens and pixels', () => {
  it('renders a prompt as <bos> + the text and the image as pixels / 255', async () => {
    const e = await engine();
    expect(await e.promptLengths(PROMPTS)).toEqual([1 + 'how many red?'.length, 1 + 'read the digits.'.length]);
    expect((await e.encodeResponses(['ab']))[0]).toEqual(Int32Array.from([...tokenizer.encode('ab'), EOS]));
    expect(e.maxLength()).toBe(32);
  });

  it('responseLogprobs, scoreResponses and the losses equal the token-level calls', async () => {
    const e = await engine();
    const batch = packSft(tokenRows, rowPixels, 48);
    const flat = await e.logprobs(batch, 0.7);
    const rows = await e.responseLogprobs({ prompts: PROMPTS, rows: ROWS }, 0.7);
    rows.forEach((row, i) => {
      const p = tokenRows[i]!.prompt.length;
      expect(Array.from(row)).toEqual(Array.from(flat.subarray(i * batch.seqLen + p - 1, i * batch.seqLen + p - 1 + row.length)));
    });

    const [a, b] = [await engine('policy', 3), await engine('policy', 3)];
    const grpoRows = ROWS.map((r, i) => ({ ...r, oldLogprobs: Array.from(r.response, () => -2.5), refLogprobs: Array.from(r.response, () => -2.4), advantage: [1, -1, 0.5][i]! }));
    const loss = { kind: 'grpo', clipEps: 0.2, klCoef: 0.04, entropyCoef: 1e-3, temperature: 1 } as const;
    const viaPrompts = await a.trainStepResponses({ prompts: PROMPTS, rows: grpoRows }, loss, ADAMW);
    const viaTokens = await b.trainStep(packGrpo(tokenRows.map((r, i) => ({ ...r, ...grpoRows[i]!, prompt: r.prompt })), rowPixels, 48), loss, ADAMW);
    expect(viaPrompts).toEqual(viaTokens);
    expect(await a.saveState()).toEqual(await b.saveState());
    // The importance weights' mean and mean square (the step's ESS); truncated importance sampling is the torch engine's.
    expect(viaPrompts.metrics.ratio_sq_mean).toBeGreaterThanOrEqual(viaPrompts.metrics.ratio_mean! ** 2 - 1e-6);
    await expect(a.forwardBackwardResponses({ prompts: PROMPTS, rows: grpoRows }, { ...loss, tisCap: 2 })).rejects.toThrow(/^loss\.tisCap: the onnx engine samples with the graphs it trains with/);

    const [r1, r2] = [await engine('reward', 4), await engine('reward', 4)];
    expect(await r1.scoreResponses({ prompts: PROMPTS, rows: ROWS })).toEqual(await r2.score(packSequences(tokenRows.map((r) => [...r.prompt, ...r.response]), rowPixels, 48)));
    const scored = ROWS.map((r, i) => ({ ...r, score: [0.2, 0.9, 0.5][i]! }));
    const rm1 = await r1.forwardBackwardResponses({ prompts: PROMPTS, rows: scored }, { kind: 'rm' }, { weight: 2 });
    const rm2 = await r2.forwardBackward(packReward(tokenRows.map((r, i) => ({ ...r, score: scored[i]!.score })), rowPixels, 48), { kind: 'rm' }, { weight: 2 });
    expect(rm1).toEqual(rm2);
  });

  it('generate is sample with the model end token, its text decoded without it', async () => {
    const e = await engine('policy', 5);
    const request = { n: 2, temperature: 1, topP: 0.9, maxTokens: 6, seed: 9 };
    const out = await e.generate({ prompts: PROMPTS, ...request });
    const ref = await e.sample({ images: pixelsOf([1, 2]), prompts: [Int32Array.from(tokenizer.prompt('how many red?')), Int32Array.from(tokenizer.prompt('read the digits.'))], ...request, stopToken: EOS });
    expect(out.sequences.map((s) => ({ promptIndex: s.promptIndex, tokens: s.tokens, logprobs: s.logprobs, stopped: s.stopped }))).toEqual(ref.sequences);
    out.sequences.forEach((s) => expect(s.text).toBe(tokenizer.decode(Array.from(s.tokens).filter((t) => t !== EOS))));
    // maxTokens is cut to the room the longest prompt leaves (32 positions − 17 prompt tokens).
    const long = await e.generate({ prompts: PROMPTS, ...request, temperature: 0, maxTokens: 100 });
    expect(Math.max(...long.sequences.map((s) => s.tokens.length))).toBeLessThanOrEqual(32 - 17);
  });

  it('refuses what Sophia model cannot read, naming the field, and pretrained models', async () => {
    const e = await engine();
    const text = { type: 'text', text: 'hi' } as const;
    await expect(e.promptLengths([{ messages: [{ role: 'system', content: 'x' }, { role: 'user', content: 'y' }] }])).rejects.toThrow(/prompts\[0\]\.messages: .*exactly one user message/);
    await expect(e.promptLengths([{ messages: [{ role: 'user', content: [text] }] }])).rejects.toThrow(/prompts\[0\]\.messages\[0\]\.content: .*one image/);
    await expect(e.promptLengths([{ messages: [{ role: 'user', content: [{ type: 'image', image: { width: 5, height: 5, rgb: new Uint8Array(75) } }, text] }] }])).rejects.toThrow(
      /content\[0\]\.image: 5×5 .* 4×4/,
    );
    await expect(e.responseLogprobs({ prompts: PROMPTS, rows: [{ prompt: 2, response: [7] }] }, 1)).rejects.toThrow(/rows\[0\]\.prompt: 2 is not the index/);
    await expect(e.generate({ prompts: [prompt('x'.repeat(40), 1)], n: 1, temperature: 0, topP: 1, maxTokens: 4, seed: 0 })).rejects.toThrow(/prompts\[0\]: 41 tokens leave no room/);
    await expect(new OnnxEngine().init({ kind: 'policy', pretrained: '/models/qwen' }, 1)).rejects.toThrow(TypeError);
  });
});
