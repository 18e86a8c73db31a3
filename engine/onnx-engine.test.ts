import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../common/errors';
import { packReward, packSequences, packSft } from './batch';
import { OnnxEngine } from './onnx-engine';
import { STATE_FILE, decodeState, encodeState } from './state';
import { ADAMW, PIXELS, images, memorizeBatch, memorizeRows, microConfig, rewardBatch, trainOnStepBatches } from './testing/fixtures';

const engines: OnnxEngine[] = [];
async function engine(kind: 'policy' | 'reward' = 'policy', seed = 1): Promise<OnnxEngine> {
  const e = new OnnxEngine();
  engines.push(e);
  await e.init(microConfig(kind), seed);
  return e;
}
/** The bytes of an engine's one state file. */
async function stateBytes(e: OnnxEngine): Promise<Uint8Array> {
  const files = await e.saveState();
  expect(files.map((f) => f.name)).toEqual([STATE_FILE]);
  return files[0]!.data;
}
/** Largest difference between two engines' saved states, read as float32 (weights, moments; header bytes too). */
async function stateDiff(x: OnnxEngine, y: OnnxEngine): Promise<number> {
  const a = new Float32Array((await stateBytes(x)).slice().buffer);
  const b = new Float32Array((await stateBytes(y)).slice().buffer);
  let maxDiff = 0;
  for (let i = 0; i < a.length; i++) if (Number.isFinite(a[i]) && Number.isFinite(b[i])) maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!));
  return maxDiff;
}
afterAll(async () => {
  for (const e of engines) await e.dispose();
});

describe('OnnxEngine training', () => {
  it('overfits a fixed batch: SFT loss falls from ~ln(12) to below 0.05 in 150 steps', async () => {
    const e = await engine();
    const batch = memorizeBatch();
    const first = await e.trainStep(batch, { kind: 'sft' }, { ...ADAMW, lr: 1e-2 });
    expect(first.loss).toBeGreaterThan(2);
    expect(first.loss).toBeLessThan(3);
    expect(first.metrics.tokens).toBe(4 + 5 + 6 + 4);
    let last = first;
    for (let i = 1; i < 150; i++) last = await e.trainStep(batch, { kind: 'sft' }, { ...ADAMW, lr: 1e-2 });
    expect(last.loss).toBeLessThan(0.05);
    expect(e.step()).toBe(150);
  });

  it('trains the reward model to regress its targets', async () => {
    const e = await engine('reward');
    const batch = rewardBatch();
    let result = await e.trainStep(batch, { kind: 'rm' }, { ...ADAMW, lr: 1e-2 });
    for (let i = 0; i < 100; i++) result = await e.trainStep(batch, { kind: 'rm' }, { ...ADAMW, lr: 1e-2 });
    expect(result.metrics.mae).toBeLessThan(0.03);
    const scores = await e.score(batch);
    expect(Array.from(scores).map((s) => Math.round(s * 10) / 10)).toEqual([0.1, 0.9, 0.4, 0.7]);
  });

  it('starts SFT graphs at the first position with loss (lossStartStep): the same losses and weights as from 0', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sophia-loss-start-'));
    try {
      const skipping = new OnnxEngine({ profileDir: dir }); // default step 8
      const full = new OnnxEngine({ lossStartStep: 0 });
      engines.push(full);
      await skipping.init(microConfig(), 3);
      await full.init(microConfig(), 3);
      // Prompts of 9 and 10 tokens: no loss before text position 8 in either row.
      const rows = [
        { prompt: [0, 1, 2, 3, 4, 5, 6, 7, 8], response: [9, 10, 11] },
        { prompt: [0, 2, 4, 6, 8, 10, 1, 3, 5, 7], response: [9, 11] },
      ];
      const batch = packSft(rows, images(2, 4), PIXELS);
      for (let i = 0; i < 3; i++) {
        const a = await skipping.trainStep(batch, { kind: 'sft' }, ADAMW);
        const b = await full.trainStep(batch, { kind: 'sft' }, ADAMW);
        expect(a.metrics.tokens).toBe(5);
        expect(Math.abs(a.loss - b.loss)).toBeLessThan(1e-5 * Math.abs(b.loss));
      }
      expect(await stateDiff(skipping, full)).toBeLessThan(1e-6);
      await skipping.dispose();
      expect(readdirSync(dir).filter((f) => f.startsWith('train-sft-'))).toEqual([expect.stringMatching(/^train-sft-2x16-from8_/)]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('starts reward-model graphs at the earliest last token (lossStartStep): the same losses, weights and scores as from 0', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sophia-rm-start-'));
    try {
      const skipping = new OnnxEngine({ profileDir: dir });
      const full = new OnnxEngine({ lossStartStep: 0 });
      engines.push(full);
      await skipping.init(microConfig('reward'), 3);
      await full.init(microConfig('reward'), 3);
      // Rows of 10 and 13 tokens: last real tokens at 9 and 12, so the graphs start at 8.
      const rows = [
        { prompt: [0, 1, 2, 3, 4, 5], response: [6, 7, 8, 9], score: 0.2 },
        { prompt: [0, 2, 4, 6, 8, 10, 1], response: [3, 5, 7, 9, 11, 1], score: 0.8 },
      ];
      const batch = packReward(rows, images(2, 4), PIXELS);
      for (let i = 0; i < 3; i++) {
        const a = await skipping.trainStep(batch, { kind: 'rm' }, ADAMW);
        const b = await full.trainStep(batch, { kind: 'rm' }, ADAMW);
        expect(Math.abs(a.loss - b.loss)).toBeLessThan(1e-5 * Math.abs(b.loss));
      }
      const sa = await skipping.score(batch);
      const sb = await full.score(batch);
      sa.forEach((x, i) => expect(x).toBeCloseTo(sb[i]!, 6));
      expect(await stateDiff(skipping, full)).toBeLessThan(1e-6);
      await skipping.dispose();
      expect(readdirSync(dir).filter((f) => /^(train|score)-/.test(f)).sort()).toEqual([
        expect.stringMatching(/^score-2x16-from8_/),
        expect.stringMatching(/^train-rm-2x16-from8_/),
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('rejects a lossStartStep that is not an integer ≥ 0, naming the option', () => {
    expect(() => new OnnxEngine({ lossStartStep: -1 })).toThrow(/lossStartStep must be an integer ≥ 0/);
  });
});

describe('OnnxEngine state files', () => {
  it('saves one state.bin in the format earlier versions wrote, and loads such a file (old checkpoints)', async () => {
    const e = await engine('policy', 4);
    await trainOnStepBatches(e, 2);
    const bytes = await stateBytes(e);
    const state = decodeState(bytes);
    expect(state).toMatchObject({ step: 2, config: microConfig() });
    // Written by the format code directly, as every version since sophia.engine-state.v1 did.
    const legacy = encodeState(state);
    expect(Buffer.compare(Buffer.from(legacy), Buffer.from(bytes))).toBe(0);
    const b = new OnnxEngine();
    engines.push(b);
    await b.loadState([{ name: 'state.bin', data: legacy }]);
    expect(b.step()).toBe(2);
    expect(await stateDiff(b, e)).toBe(0);
  });

  it('rejects files that are not its state, naming the file and the problem', async () => {
    const e = await engine();
    const good = await stateBytes(e);
    await expect(e.loadState([{ name: STATE_FILE, data: new TextEncoder().encode('not a state at all') }])).rejects.toThrow(/bad magic/);
    await expect(e.loadState([{ name: STATE_FILE, data: good.subarray(0, good.length - 10) }])).rejects.toThrow(/truncated/);
    await expect(e.loadState([{ name: 'model.safetensors', data: good }, { name: 'config.json', data: good }])).rejects.toThrow(
      /unexpected file "model\.safetensors" \(this engine saves only state\.bin; got model\.safetensors, config\.json\): is it another engine's checkpoint\?/,
    );
    await expect(e.loadState([])).rejects.toThrow(/expected one file state\.bin, got \(no files\)/);
  });
});

describe('OnnxEngine sampling', () => {
  it('produces with its KV cache the same tokens as full recomputation (greedy)', async () => {
    const e = await engine();
    await e.trainStep(memorizeBatch(), { kind: 'sft' }, ADAMW);
    const prompt = [0, 3, 4];
    const img = images(1, 9);
    const greedy = await e.sample({ images: img, prompts: [Int32Array.from(prompt)], n: 1, temperature: 0, topP: 1, maxTokens: 10, seed: 1, stopToken: 11 });
    const tokens = Array.from(greedy.sequences[0]!.tokens);
    expect(tokens.length).toBeGreaterThan(0);
    for (let s = 0; s < tokens.length; s++) {
      // One token from a prefill over prompt + tokens so far: no cache involved.
      const full = await e.sample({ images: img, prompts: [Int32Array.from([...prompt, ...tokens.slice(0, s)])], n: 1, temperature: 0, topP: 1, maxTokens: 1, seed: 1, stopToken: 11 });
      expect(full.sequences[0]!.tokens[0]).toBe(tokens[s]);
    }
  });

  it('keeps those logprobs when the generated-token cache grows past its first 16 slots', async () => {
    const e = new OnnxEngine();
    engines.push(e);
    await e.init({ ...microConfig(), maxLength: 48 }, 1);
    const prompts = [[0, 3, 4], [0, 5]];
    const img = images(2, 9);
    const result = await e.sample({ images: img, prompts: prompts.map((q) => Int32Array.from(q)), n: 3, temperature: 1, topP: 1, maxTokens: 40, seed: 7, stopToken: 11 });
    expect(Math.max(...result.sequences.map((s) => s.tokens.length))).toBeGreaterThan(17);
    const rows = result.sequences.map((s) => ({ prompt: prompts[s.promptIndex]!, response: Array.from(s.tokens) }));
    const rowImages = new Float32Array(rows.length * PIXELS);
    result.sequences.forEach((s, r) => rowImages.set(img.subarray(s.promptIndex * PIXELS, (s.promptIndex + 1) * PIXELS), r * PIXELS));
    const batch = packSft(rows, rowImages, PIXELS);
    const lp = await e.logprobs(batch, 1);
    result.sequences.forEach((s, r) => {
      const p = prompts[s.promptIndex]!.length;
      s.logprobs.forEach((x, j) => expect(lp[r * batch.seqLen + p + j - 1]).toBeCloseTo(x, 4));
    });
  });

  it('stops rows at the stop token and caps at maxTokens', async () => {
    const e = await engine();
    // Teach it to answer prompt [0, 3, 4] with "7 11".
    const rows = [{ prompt: [0, 3, 4], response: [7, 11] }];
    for (let i = 0; i < 120; i++) await e.trainStep(packSft(rows, images(1, 9), PIXELS), { kind: 'sft' }, { ...ADAMW, lr: 1e-2 });
    const out = await e.sample({ images: images(1, 9), prompts: [Int32Array.of(0, 3, 4)], n: 2, temperature: 0, topP: 1, maxTokens: 6, seed: 5, stopToken: 11 });
    for (const s of out.sequences) {
      expect(Array.from(s.tokens)).toEqual([7, 11]);
      expect(s.stopped).toBe(true);
    }
    const capped = await e.sample({ images: images(1, 9), prompts: [Int32Array.of(0, 3, 4)], n: 1, temperature: 0, topP: 1, maxTokens: 1, seed: 5, stopToken: 11 });
    expect(capped.sequences[0]).toMatchObject({ stopped: false });
    expect(capped.sequences[0]!.tokens.length).toBe(1);
  });
});

describe('OnnxEngine input checking', () => {
  it('rejects model configs that do not fit, naming the field', async () => {
    const e = new OnnxEngine();
    engines.push(e);
    const bad = { ...microConfig(), width: 30, heads: 4 };
    await expect(e.init(bad, 1)).rejects.toBeInstanceOf(ConfigError);
    await expect(e.init(bad, 1)).rejects.toThrow(/model\.width: 30 is not divisible by heads = 4/);
    await expect(e.init({ ...microConfig(), image: { size: 5, channels: 3, patch: 2 } }, 1)).rejects.toThrow(/model\.image\.patch/);
  });

  it('rejects batches with bad shapes, token ids or lengths before changing state', async () => {
    const e = await engine();
    const batch = memorizeBatch();
    const badToken = { ...batch, tokens: batch.tokens.map((x, i) => (i === 1 ? 12 : x)) };
    await expect(e.trainStep(badToken, { kind: 'sft' }, ADAMW)).rejects.toThrow(/batch\.tokens\[0\]\[1\] = 12 is outside the vocabulary \[0, 12\)/);
    await expect(e.trainStep({ ...batch, images: new Float32Array(3) }, { kind: 'sft' }, ADAMW)).rejects.toThrow(/batch\.images has 3 values/);
    const long = packSft([{ prompt: [0, 1], response: Array.from({ length: 20 }, () => 2) }], images(1, 1), PIXELS);
    await expect(e.trainStep(long, { kind: 'sft' }, ADAMW)).rejects.toThrow(/seqLen 21 exceeds model\.maxLength 16/);
    await expect(e.trainStep(batch as never, { kind: 'rm' }, ADAMW)).rejects.toThrow(/rm loss needs a reward model/);
    await expect(e.trainStep(batch, { kind: 'sft' }, { ...ADAMW, lr: Number.NaN })).rejects.toThrow(/adamw\.lr must be a finite number/);
    await expect(e.sample({ images: images(1, 1), prompts: [Int32Array.of(0, 1, 2)], n: 1, temperature: 1, topP: 1, maxTokens: 14, seed: 1, stopToken: 11 })).rejects.toThrow(
      /longest prompt \(3 tokens\) \+ maxTokens \(14\) exceeds model\.maxLength 16/,
    );
    expect(e.step()).toBe(0);
    const seq = packSequences([[0, 1, 2]], images(1, 1), PIXELS);
    await expect(e.score(seq)).rejects.toThrow(/score needs a reward model/);
  });
});

describe('OnnxEngine session cache', () => {
  /** A logprobs batch of `rows` memorize rows: each row count is a graph (and a session) of its own. */
  const rowsBatch = (rows: number) => {
    const all = memorizeRows(3);
    const picked = Array.from({ length: rows }, (_, i) => all[i % all.length]!);
    return packSft(picked, images(rows, 3), PIXELS);
  };

  it('keeps at most maxSessions sessions, evicts the least recently used, and rebuilds an evicted one with the same results', async () => {
    const e = new OnnxEngine({ maxSessions: 2 });
    engines.push(e);
    await e.init(microConfig(), 1);
    const first = await e.logprobs(rowsBatch(1), 1);
    await e.logprobs(rowsBatch(2), 1);
    await e.logprobs(rowsBatch(1), 1); // 1 is now the most recently used
    await e.logprobs(rowsBatch(3), 1); // evicts 2, not 1
    const keys = e.sessionKeys();
    expect(keys).toHaveLength(2);
    expect(keys.some((k) => k.startsWith('logprobs:1x'))).toBe(true);
    expect(keys.some((k) => k.startsWith('logprobs:3x'))).toBe(true);
    await e.logprobs(rowsBatch(2), 1); // rebuilt; evicts 1
    expect(e.sessionKeys().some((k) => k.startsWith('logprobs:1x'))).toBe(false);
    expect(Array.from(await e.logprobs(rowsBatch(1), 1))).toEqual(Array.from(first));
  });

  it('samples and trains with a cache smaller than one request needs (sessions are rebuilt, results unchanged)', async () => {
    const big = new OnnxEngine();
    const small = new OnnxEngine({ maxSessions: 1 });
    engines.push(big, small);
    await big.init({ ...microConfig(), maxLength: 48 }, 1);
    await small.init({ ...microConfig(), maxLength: 48 }, 1);
    const request = { images: images(2, 9), prompts: [Int32Array.of(0, 3, 4), Int32Array.of(0, 5)], n: 3, temperature: 1, topP: 1, maxTokens: 40, seed: 7, stopToken: 11 };
    for (const e of [big, small]) await e.trainStep(memorizeBatch(), { kind: 'sft' }, ADAMW);
    const a = await big.sample(request);
    const b = await small.sample(request);
    expect(big.sessionKeys().length).toBeGreaterThan(3); // train, prefill and decode sessions for 3 cache sizes
    expect(small.sessionKeys()).toHaveLength(1);
    expect(b.sequences.map((s) => Array.from(s.tokens))).toEqual(a.sequences.map((s) => Array.from(s.tokens)));
    expect(b.sequences.map((s) => Array.from(s.logprobs))).toEqual(a.sequences.map((s) => Array.from(s.logprobs)));
  });

  it('rejects a maxSessions that is not a positive integer, naming the option', () => {
    expect(() => new OnnxEngine({ maxSessions: 0 })).toThrow(/maxSessions must be an integer ≥ 1 \(got 0\)/);
  });
});
