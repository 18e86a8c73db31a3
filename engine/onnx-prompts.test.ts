import { afterAll, describe, expect, it } from 'vitest';
import { packGrpo, packReward, packSequences, packSft } from './batch';
import type { ModelConfig } from './model/config';
import { EOS, Tokenizer } from './model/tokenizer';
import { OnnxEngine } from './onnx-engine';
import { fitPromptToModel, foldToAlphabet, promptRoom, renderPrompt, rgbToPlanes } from './onnx-prompts';
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

describe('fitPromptToModel: a prompt written for a real vision-language model, as Sophia\'s model can read it', () => {
  const cfg = config(); // 4×4 images, 32 positions
  const wide = { ...cfg, maxLength: 64 };
  const noise = (width: number, height: number, seed = 1): RgbImage => ({ width, height, rgb: Uint8Array.from({ length: width * height * 3 }, (_, i) => (i * 53 + seed * 17) % 256) });
  const realPrompt = (...content: ({ type: 'text'; text: string } | { type: 'image'; image: RgbImage })[]): ChatPrompt => ({ messages: [{ role: 'user', content }] });
  const textOf = (p: ChatPrompt) => ((p.messages[0]!.content as { type: string; text?: string }[]).find((c) => c.type === 'text')?.text ?? '');

  it('folds text into the alphabet: accents removed, G–Z lowercased (A–F kept), other characters spaces, tags kept', () => {
    expect(foldToAlphabet('What is X?')).toBe('what is x?');
    expect(foldToAlphabet('Café à Zürich, naïve')).toBe('Cafe a zurich, naive'); // C is an option letter: kept
    expect(foldToAlphabet('Ω = 5 Ω')).toBe('= 5');
    expect(foldToAlphabet('angle ∠ABC = 45°\n(A) 30\t(B) 60')).toBe('angle ABC = 45 (A) 30 (B) 60');
    expect(foldToAlphabet('ﬁnd x²  <think>  HELLO</think>\r\n<answer>C</answer> <b>')).toBe('find x2 <think> hEllo</think> <answer>C</answer> b') // (E is an option letter);
    expect(foldToAlphabet('\n\t 日本 \n')).toBe('');
  });

  it('gives a prompt renderPrompt accepts: the first image at the model\'s size, first; later images dropped and counted', () => {
    const fitted = fitPromptToModel(realPrompt({ type: 'text', text: 'Question: What is Ω?\n' }, { type: 'image', image: noise(40, 30) }, { type: 'text', text: 'Choices: (A) 1 (B) 2' }, { type: 'image', image: noise(8, 8, 2) }), wide, 8);
    expect(fitted.imagesDropped).toBe(1);
    expect(fitted.textCut).toBe(false);
    const content = fitted.prompt.messages[0]!.content as { type: string; image?: RgbImage }[];
    expect(content.map((c) => c.type)).toEqual(['image', 'text']);
    expect(content[0]!.image).toMatchObject({ width: 4, height: 4 });
    expect(content[0]!.image!.rgb).toHaveLength(4 * 4 * 3);
    expect(textOf(fitted.prompt)).toBe('question: what is ? Choices: (A) 1 (B) 2');
    const rendered = renderPrompt(fitted.prompt, wide, 'fitted');
    expect(rendered.tokens).toEqual(tokenizer.prompt('question: what is ? Choices: (A) 1 (B) 2'));

    // One image already at the model's size, several messages: the image as it was, the texts joined in order.
    const same = fitPromptToModel({ messages: [{ role: 'system', content: 'Be brief. ' }, { role: 'user', content: [{ type: 'image', image: picture(3) }, { type: 'text', text: 'How many?' }] }] }, cfg, 8);
    expect(same.imagesDropped).toBe(0);
    expect(renderPrompt(same.prompt, cfg, 'fitted').pixels).toEqual(pixelsOf([3]));
    expect(textOf(same.prompt)).toBe('Be brief. how many?');
  });

  it('cuts a long text so that <bos>, the text and maxTokens fill the positions exactly, keeping its beginning', () => {
    const long = `<think>${'Find the value of y. '.repeat(6)}</think>`;
    const fitted = fitPromptToModel(realPrompt({ type: 'image', image: noise(5, 9) }, { type: 'text', text: long }), cfg, 10);
    expect(fitted.textCut).toBe(true);
    const rendered = renderPrompt(fitted.prompt, cfg, 'fitted');
    expect(rendered.tokens.length + 10).toBe(32);
    expect(textOf(fitted.prompt)).toBe('<think>Find the value of y. '.slice(0, '<think>'.length + 20)); // the tag: one token
    expect(promptRoom(cfg, 10)).toBe(21);
    // Fits as it is: not cut.
    expect(fitPromptToModel(realPrompt({ type: 'image', image: noise(5, 9) }, { type: 'text', text: 'Find y.' }), cfg, 24).textCut).toBe(false);
    // Room for an empty prompt only: the text is cut to nothing, and still renders.
    const empty = fitPromptToModel(realPrompt({ type: 'image', image: noise(5, 9) }, { type: 'text', text: 'Find y.' }), cfg, 31);
    expect(renderPrompt(empty.prompt, cfg, 'fitted').tokens).toEqual(tokenizer.prompt(''));
  });

  it('refuses an answer length that leaves no room, a prompt without an image and a malformed image, naming the field', () => {
    const ok = realPrompt({ type: 'image', image: noise(5, 5) }, { type: 'text', text: 'x' });
    expect(() => fitPromptToModel(ok, cfg, 32)).toThrow(/^maxTokens 32 does not fit the model's 32 text positions \(model\.maxLength\).*at most 31/);
    expect(() => fitPromptToModel(ok, cfg, 0)).toThrow(RangeError);
    expect(() => fitPromptToModel(realPrompt({ type: 'text', text: 'x' }), cfg, 4)).toThrow(/^prompt: no image part/);
    expect(() => fitPromptToModel(realPrompt({ type: 'image', image: { width: 5, height: 5, rgb: new Uint8Array(10) } }), cfg, 4)).toThrow(/prompt\.messages\[0\]\.content\[0\]\.image: 5×5 with 10 bytes/);
  });
});
