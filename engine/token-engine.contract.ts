/**
 * The token-level engine contract: the promises `TokenEngine` makes (engine/types.ts) for its token-level batches
 * (`trainStep`, `forwardBackward`, `sample`, `logprobs`, `score`), run against an engine made by
 * `createEngine(options)`. Only the ONNX engine has that surface; `onnx-engine.contract.test.ts` runs this suite
 * and the prompt-level one every engine passes (`engine.contract.ts`).
 *
 * Everything is observed through the protocol only — outputs, `step()`, the grad norm `optimStep` reports, and
 * saved files compared as opaque bytes — never through an engine's state format. The models are micro presets
 * (engine/testing/fixtures) so the whole suite takes seconds.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { packGrpo, packSft, packSequences } from './batch';
import { type OnnxEngineSettings, createEngine } from './factory';
import { ADAMW, PIXELS, batchForStep, images, memorizeBatch, memorizeRows, microConfig, rewardBatch, trainOnStepBatches } from './testing/fixtures';
import type { AdamWSettings, EngineFile, SampleRequest, TokenEngine } from './types';

/**
 * AdamW whose first step is close to plain gradient descent (m̂/(√v̂ + eps) ≈ g for |g| ≪ eps = 1), no decay and
 * no clipping: the weights after one step then reflect the gradient's size as well as its sign, so two ways of
 * combining micro-batch gradients that differ show it in the outputs.
 */
const LINEAR_ADAMW: AdamWSettings = { lr: 0.05, beta1: 0.9, beta2: 0.999, eps: 1, weightDecay: 0, maxGradNorm: 1e6 };

/** Files sorted by name (file order is not part of the protocol). */
const byName = (files: readonly EngineFile[]) => [...files].sort((a, b) => a.name.localeCompare(b.name));

const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
};

const sampleRequest = (overrides: Partial<SampleRequest> = {}): SampleRequest => ({
  images: images(2, 9),
  prompts: [Int32Array.of(0, 3, 4), Int32Array.of(0, 5)],
  n: 3,
  temperature: 1,
  topP: 0.95,
  maxTokens: 8,
  seed: 123,
  stopToken: 11,
  ...overrides,
});

/** A GRPO batch over the memorize rows: sampling and reference logprobs near the model's, mixed advantages. */
function grpoRows(seed = 3) {
  return memorizeRows(seed).map((row, i) => ({
    ...row,
    oldLogprobs: row.response.map((_, j) => -2.4 - 0.05 * ((i + j) % 3)),
    refLogprobs: row.response.map((_, j) => -2.5 + 0.04 * ((i * j) % 4)),
    advantage: [1, -0.5, 0.8, -1.2][i]!,
  }));
}

export function describeTokenEngineContract(name: string, options: OnnxEngineSettings): void {
  describe(`token-level engine contract: ${name}`, () => {
    const made: TokenEngine[] = [];
    const make = (): TokenEngine => {
      const e = createEngine(options);
      made.push(e);
      return e;
    };
    const policy = async (seed = 1) => {
      const e = make();
      await e.init(microConfig('policy'), seed);
      return e;
    };
    const reward = async (seed = 1) => {
      const e = make();
      await e.init(microConfig('reward'), seed);
      return e;
    };
    /** Probe outputs that depend on every weight of a policy: what "the same weights" means here. */
    const probe = (e: TokenEngine) => e.logprobs(memorizeBatch(8), 1);
    afterAll(async () => {
      for (const e of made) await e.dispose().catch(() => undefined);
    });

    describe('determinism and state', () => {
      it('init is a function of (config, seed): the same files for the same seed, different ones for another', async () => {
        const a = await policy(3);
        const b = await policy(3);
        const c = await policy(4);
        expect(byName(await b.saveState())).toEqual(byName(await a.saveState()));
        expect(byName(await c.saveState())).not.toEqual(byName(await a.saveState()));
        expect(a.step()).toBe(0);
        expect(a.config()).toEqual(microConfig('policy'));
      });

      it('the same state and batch give the same losses, metrics and state', async () => {
        const a = await policy(5);
        const b = await policy(5);
        for (let i = 0; i < 3; i++) {
          const ra = await a.trainStep(memorizeBatch(), { kind: 'sft' }, ADAMW);
          const rb = await b.trainStep(memorizeBatch(), { kind: 'sft' }, ADAMW);
          expect(rb).toEqual(ra);
        }
        expect(byName(await b.saveState())).toEqual(byName(await a.saveState()));
        expect(Array.from(await probe(b))).toEqual(Array.from(await probe(a)));
      });

      it('saves named files that load (in any order) into a new engine: same step, config, outputs and continuation', async () => {
        const a = await policy(6);
        await trainOnStepBatches(a, 2);
        const files = await a.saveState();
        expect(files.length).toBeGreaterThan(0);
        expect(new Set(files.map((f) => f.name)).size).toBe(files.length);
        for (const f of files) {
          expect(f.name).toMatch(/^[^/\\]+$/);
          expect(f.data).toBeInstanceOf(Uint8Array);
        }
        const b = make();
        await b.loadState([...files].reverse());
        expect(b.step()).toBe(2);
        expect(b.config()).toEqual(a.config());
        expect(byName(await b.saveState())).toEqual(byName(files));
        expect(Array.from(await probe(b))).toEqual(Array.from(await probe(a)));
        await trainOnStepBatches(a, 2);
        await trainOnStepBatches(b, 2);
        expect(byName(await b.saveState())).toEqual(byName(await a.saveState()));
      });

      it('N steps = k steps, save, load in a fresh process, N − k steps — bit for bit', async () => {
        const dir = mkdtempSync(path.join(tmpdir(), 'sophia-engine-resume-'));
        try {
          const straight = await policy(11);
          await trainOnStepBatches(straight, 6);
          const first = await policy(11);
          await trainOnStepBatches(first, 3);
          const k = path.join(dir, 'k');
          mkdirSync(k);
          for (const f of await first.saveState()) writeFileSync(path.join(k, f.name), f.data);
          const n = path.join(dir, 'n');
          const tsx = require.resolve('tsx/cli');
          execFileSync(process.execPath, [tsx, path.join(__dirname, 'testing', 'resume-child.ts'), JSON.stringify(options), k, n, '3'], { stdio: 'inherit' });
          const resumed = readdirSync(n).map((name) => ({ name, data: new Uint8Array(readFileSync(path.join(n, name))) }));
          expect(byName(resumed)).toEqual(byName(await straight.saveState()));
          expect(byName(resumed)).not.toEqual(byName(await first.saveState())); // it really trained
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      });

      it('rejects files that are not its state (none, an unknown file, truncated bytes) with a RangeError, keeping its state', async () => {
        const e = await policy(2);
        const before = await e.saveState();
        await expect(e.loadState([])).rejects.toBeInstanceOf(RangeError);
        await expect(e.loadState([...before, { name: 'stray.bin', data: Uint8Array.of(1, 2, 3) }])).rejects.toThrow(/stray\.bin/);
        const truncated = before.map((f) => ({ name: f.name, data: f.data.subarray(0, Math.floor(f.data.length / 2)) }));
        await expect(e.loadState(truncated)).rejects.toBeInstanceOf(RangeError);
        expect(byName(await e.saveState())).toEqual(byName(before));
      });
    });

    describe('loading with a fresh optimizer', () => {
      it('keeps the weights (same outputs) and starts at step 0 with zero moments', async () => {
        const trained = await policy(7);
        await trainOnStepBatches(trained, 3);
        const files = await trained.saveState();
        const fresh = make();
        await fresh.loadState(files, { freshOptimizer: true });
        expect(fresh.step()).toBe(0);
        expect(fresh.config()).toEqual(trained.config());
        expect(Array.from(await probe(fresh))).toEqual(Array.from(await probe(trained)));
        // A state that already has zero moments at step 0 loads the same either way.
        const initial = await policy(7);
        const again = make();
        await again.loadState(await initial.saveState(), { freshOptimizer: true });
        expect(byName(await again.saveState())).toEqual(byName(await initial.saveState()));
        // The trained moments are gone: the next step differs from the trained engine's own next step.
        const kept = make();
        await kept.loadState(files);
        await fresh.trainStep(batchForStep(3), { kind: 'sft' }, ADAMW);
        await kept.trainStep(batchForStep(3), { kind: 'sft' }, ADAMW);
        expect(fresh.step()).toBe(1);
        expect(maxDiff(await probe(fresh), await probe(kept))).toBeGreaterThan(1e-6);
      });
    });

    describe('reward model from a policy', () => {
      it('has the policy\'s shape with kind reward, step 0, and a head from the seed; the backbone is the policy\'s', async () => {
        const p1 = await policy(1);
        await trainOnStepBatches(p1, 2);
        const p2 = await policy(2);
        const files1 = await p1.saveState();
        const rm = async (files: EngineFile[], seed: number) => {
          const e = make();
          await e.initRewardFromPolicy(files, seed);
          return e;
        };
        const a = await rm(files1, 9);
        expect(a.config()).toEqual({ ...p1.config(), kind: 'reward' });
        expect(a.step()).toBe(0);
        const batch = rewardBatch();
        const scores = await a.score(batch);
        expect(scores.length).toBe(batch.batchSize);
        for (const s of scores) expect(s >= 0 && s <= 1).toBe(true);
        expect(byName(await (await rm(files1, 9)).saveState())).toEqual(byName(await a.saveState())); // deterministic
        expect(maxDiff(await (await rm(files1, 10)).score(batch), scores)).toBeGreaterThan(0); // another head
        expect(maxDiff(await (await rm(await p2.saveState(), 9)).score(batch), scores)).toBeGreaterThan(0); // another backbone
        // It trains as a reward model.
        const r = await a.trainStep(batch, { kind: 'rm' }, ADAMW);
        expect(r).toMatchObject({ finite: true, applied: true, step: 1 });
      });

      it('rejects a state that is not a policy\'s', async () => {
        const r = await reward(1);
        const e = make();
        await expect(e.initRewardFromPolicy(await r.saveState(), 1)).rejects.toBeInstanceOf(RangeError);
      });
    });

    describe('gradient accumulation', () => {
      it('forwardBackward + optimStep equals trainStep, and repeated calls are averaged', async () => {
        const fused = await policy(7);
        const split = await policy(7);
        const batch = memorizeBatch();
        const t = await fused.trainStep(batch, { kind: 'sft' }, ADAMW);
        const fb = await split.forwardBackward(batch, { kind: 'sft' });
        await split.forwardBackward(batch, { kind: 'sft' });
        const opt = await split.optimStep(ADAMW);
        expect(fb.finite).toBe(true);
        expect(fb.loss).toBeCloseTo(t.loss, 5);
        expect(opt).toMatchObject({ applied: true, step: 1 });
        expect(opt.gradNorm).toBeCloseTo(t.gradNorm, 5);
        expect(maxDiff(await probe(split), await probe(fused))).toBeLessThan(1e-5);
        await expect(split.optimStep(ADAMW)).rejects.toThrow(/no gradients accumulated/);
      });

      for (const kind of ['sft', 'grpo'] as const) {
        it(`${kind}: micro-batches weighted by their loss tokens make the whole batch's token-mean step (uneven 3 + 1 rows)`, async () => {
          const rows = grpoRows();
          const imgs = images(rows.length, 3);
          const part = (from: number, to: number) => {
            const r = rows.slice(from, to);
            const b = kind === 'sft' ? packSft(r, imgs.slice(from * PIXELS, to * PIXELS), PIXELS) : packGrpo(r, imgs.slice(from * PIXELS, to * PIXELS), PIXELS);
            return { batch: b, tokens: b.lossMask.reduce((a, x) => a + x, 0) };
          };
          const loss = kind === 'sft' ? ({ kind: 'sft' } as const) : ({ kind: 'grpo', clipEps: 0.2, klCoef: 0.04, entropyCoef: 1e-3, temperature: 1 } as const);
          const whole = await policy(12);
          const weighted = await policy(12);
          const plain = await policy(12);
          const one = await whole.forwardBackward(part(0, 4).batch, loss);
          const wholeStep = await whole.optimStep(LINEAR_ADAMW);
          const [a, b] = [part(0, 3), part(3, 4)];
          expect(a.tokens).not.toBe(b.tokens); // uneven: a plain mean of the two means is not the token mean
          const la = await weighted.forwardBackward(a.batch, loss, { weight: a.tokens });
          const lb = await weighted.forwardBackward(b.batch, loss, { weight: b.tokens });
          const weightedStep = await weighted.optimStep(LINEAR_ADAMW);
          // The token-weighted losses are the whole batch's loss; the combined gradient is its gradient.
          expect((la.loss * a.tokens + lb.loss * b.tokens) / (a.tokens + b.tokens)).toBeCloseTo(one.loss, 5);
          expect(Math.abs(weightedStep.gradNorm - wholeStep.gradNorm)).toBeLessThan(1e-5 * wholeStep.gradNorm);
          const reference = await probe(whole);
          expect(maxDiff(await probe(weighted), reference)).toBeLessThan(2e-6);
          // The plain mean of micro-batch means is another gradient: the check above can tell them apart.
          await plain.forwardBackward(a.batch, loss);
          await plain.forwardBackward(b.batch, loss);
          const plainStep = await plain.optimStep(LINEAR_ADAMW);
          expect(Math.abs(plainStep.gradNorm - wholeStep.gradNorm)).toBeGreaterThan(1e-3 * wholeStep.gradNorm);
          expect(maxDiff(await probe(plain), reference)).toBeGreaterThan(1e-4);
        });
      }

      it('rejects a weight that is not a finite number > 0, naming options.weight', async () => {
        const e = await policy(1);
        for (const weight of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
          await expect(e.forwardBackward(memorizeBatch(), { kind: 'sft' }, { weight })).rejects.toThrow(/weight/);
          await expect(e.forwardBackward(memorizeBatch(), { kind: 'sft' }, { weight })).rejects.toBeInstanceOf(RangeError);
        }
        await expect(e.optimStep(ADAMW)).rejects.toThrow(/no gradients accumulated/);
      });
    });

    describe('non-finite values', () => {
      it('reports a non-finite loss and never applies or accumulates its gradients', async () => {
        const e = await policy(1);
        const batch = memorizeBatch();
        const before = await e.saveState();
        const poisoned = { ...batch, images: batch.images.map((x, i) => (i === 0 ? Number.NaN : x)) };
        expect(await e.trainStep(poisoned, { kind: 'sft' }, ADAMW)).toMatchObject({ finite: false, applied: false, step: 0 });
        expect(byName(await e.saveState())).toEqual(byName(before));
        expect((await e.forwardBackward(poisoned, { kind: 'sft' })).finite).toBe(false);
        await expect(e.optimStep(ADAMW)).rejects.toThrow(/no gradients accumulated/);
        // A finite call and a poisoned one: only the finite gradient is applied.
        const clean = await policy(1);
        await clean.trainStep(batch, { kind: 'sft' }, ADAMW);
        await e.forwardBackward(batch, { kind: 'sft' });
        await e.forwardBackward(poisoned, { kind: 'sft' }, { weight: 5 });
        expect(await e.optimStep(ADAMW)).toMatchObject({ applied: true, step: 1 });
        expect(maxDiff(await probe(e), await probe(clean))).toBeLessThan(1e-5);
      });
    });

    describe('input checking', () => {
      it('throws a RangeError or TypeError naming the field, before any state changes', async () => {
        const e = await policy(1);
        const before = await e.saveState();
        const batch = memorizeBatch();
        const sft = { kind: 'sft' } as const;
        const rejects = async (call: Promise<unknown>, field: RegExp) => {
          const err = await call.then(
            () => undefined,
            (x: unknown) => x,
          );
          expect(err instanceof RangeError || err instanceof TypeError, `expected a RangeError or TypeError, got ${String(err)}`).toBe(true);
          expect((err as Error).message).toMatch(field);
        };
        await rejects(e.trainStep({ ...batch, tokens: batch.tokens.map((x, i) => (i === 1 ? 12 : x)) }, sft, ADAMW), /tokens/);
        await rejects(e.trainStep({ ...batch, images: new Float32Array(3) }, sft, ADAMW), /images/);
        await rejects(e.forwardBackward({ ...batch, attentionMask: new Uint8Array(2) }, sft), /attentionMask/);
        await rejects(e.trainStep({ ...batch, targets: batch.targets.map(() => 99) }, sft, ADAMW), /targets/);
        const long = packSft([{ prompt: [0, 1], response: Array.from({ length: 20 }, () => 2) }], images(1, 1), PIXELS);
        await rejects(e.trainStep(long, sft, ADAMW), /maxLength/);
        await rejects(e.trainStep(batch, sft, { ...ADAMW, lr: Number.NaN }), /lr/);
        await rejects(e.trainStep(batch as never, { kind: 'rm' }, ADAMW), /reward model/);
        await rejects(e.sample(sampleRequest({ maxTokens: 14, prompts: [Int32Array.of(0, 1, 2)], images: images(1, 1) })), /maxTokens/);
        await rejects(e.sample(sampleRequest({ topP: 0 })), /topP/);
        await rejects(e.logprobs(batch, 0), /temperature/);
        expect(e.step()).toBe(0);
        expect(byName(await e.saveState())).toEqual(byName(before));
      });

      it('keeps each model kind to its own methods (TypeError)', async () => {
        const p = await policy(1);
        const r = await reward(1);
        await expect(p.score(packSequences([[0, 1, 2]], images(1, 1), PIXELS))).rejects.toBeInstanceOf(TypeError);
        await expect(r.logprobs(memorizeBatch(), 1)).rejects.toBeInstanceOf(TypeError);
        await expect(r.sample(sampleRequest())).rejects.toBeInstanceOf(TypeError);
        await expect(r.trainStep(memorizeBatch(), { kind: 'sft' }, ADAMW)).rejects.toBeInstanceOf(TypeError);
      });
    });

    describe('sampling', () => {
      it('gives the same tokens and logprobs for the same seed, P × n sequences prompt-major, within maxTokens', async () => {
        const e = await policy(1);
        await trainOnStepBatches(e, 3);
        const a = await e.sample(sampleRequest());
        const b = await e.sample(sampleRequest());
        const c = await e.sample(sampleRequest({ seed: 124 }));
        expect(a.sequences.map((s) => s.promptIndex)).toEqual([0, 0, 0, 1, 1, 1]);
        expect(b.sequences.map((s) => Array.from(s.tokens))).toEqual(a.sequences.map((s) => Array.from(s.tokens)));
        expect(b.sequences.map((s) => Array.from(s.logprobs))).toEqual(a.sequences.map((s) => Array.from(s.logprobs)));
        expect(c.sequences.map((s) => Array.from(s.tokens))).not.toEqual(a.sequences.map((s) => Array.from(s.tokens)));
        for (const s of a.sequences) {
          expect(s.tokens.length).toBeGreaterThan(0);
          expect(s.tokens.length).toBeLessThanOrEqual(8);
          expect(s.logprobs.length).toBe(s.tokens.length);
          expect(s.stopped).toBe(s.tokens.at(-1) === 11);
          if (!s.stopped) expect(s.tokens.length).toBe(8);
        }
        expect(a.generatedTokens).toBe(a.sequences.reduce((n, s) => n + s.tokens.length, 0));
      });

      it('returns the logprobs that logprobs() gives the same tokens (what GRPO uses as old logprobs)', async () => {
        const e = await policy(1);
        await trainOnStepBatches(e, 2);
        const temperature = 0.8;
        const result = await e.sample(sampleRequest({ temperature, topP: 1 }));
        const prompts = [[0, 3, 4], [0, 5]];
        const img = images(2, 9);
        const rowImages = new Float32Array(result.sequences.length * PIXELS);
        result.sequences.forEach((s, r) => rowImages.set(img.subarray(s.promptIndex * PIXELS, (s.promptIndex + 1) * PIXELS), r * PIXELS));
        const batch = packSft(result.sequences.map((s) => ({ prompt: prompts[s.promptIndex]!, response: Array.from(s.tokens) })), rowImages, PIXELS);
        const lp = await e.logprobs(batch, temperature);
        result.sequences.forEach((s, r) => {
          const p = prompts[s.promptIndex]!.length;
          s.logprobs.forEach((x, j) => expect(lp[r * batch.seqLen + p + j - 1]).toBeCloseTo(x, 4));
        });
      });
    });

    describe('dispose', () => {
      it('frees the engine: it cannot be used afterwards', async () => {
        const e = await policy(1);
        await e.dispose();
        await expect(e.trainStep(memorizeBatch(), { kind: 'sft' }, ADAMW)).rejects.toThrow();
        await expect(e.saveState()).rejects.toThrow();
      });
    });
  });
}
