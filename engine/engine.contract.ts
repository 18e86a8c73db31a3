/**
 * The engine contract: the promises every `Engine` makes (engine/types.ts), checked through its prompt-level
 * surface alone — chat prompts with images, response rows of the engine's own token ids — on an engine made by
 * `createEngine`. Both engines run it: `onnx-engine.contract.test.ts` (Sophia's micro model) and
 * `torch/engine.contract.test.ts` (a tiny random Qwen2.5-VL). A new engine proves itself with one more call:
 *
 *   describeEngineContract('my engine', { kind: 'my-kind', … }, async () => ({ policy, reward, … }));
 *
 * The setup says how to make a policy and a reward model for that engine and what it reads (ModelFixture,
 * testing/contract-fixtures.ts); prompts and responses are the same for every engine. Outputs, `step()`, grad
 * norms and saved files (opaque bytes; compared as files only where the engine promises byte-equal saves, else
 * through outputs, bit for bit) are all it looks at — never an engine's state format. The ONNX engine's
 * token-level methods have their own suite (token-engine.contract.ts).
 *
 * The tests share their engines (for torch one process each, started once for the suite: a start costs seconds,
 * a load into a running process tens of milliseconds). A test takes the engines it needs and loads into them what
 * it uses with `init`, `loadState` or `initRewardFromPolicy`, which replace the model, step, optimizer and
 * accumulated gradients whole, so nothing an engine did in an earlier test may show in a later one; the equality
 * checks (same seed or state → the same outputs, bit for bit) mostly compare engines with different pasts, and
 * would see it. The check that is about a fresh process gets one: exact resume runs its middle part in a child
 * process with an engine of its own. The dispose check takes its engine out of the shared ones.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type EngineOptions, createEngine } from './factory';
import {
  CONTRACT_ADAMW,
  type ModelFixture,
  batchForStep,
  contractPrompts,
  grpoRows,
  memoriseBatch,
  prompt,
  rewardRows,
  trainOnStepBatches,
} from './testing/contract-fixtures';
import { inMemory } from './state-files';
import type { AdamWSettings, Engine, EngineFile, GenerateRequest, GrpoRow, LossSpec, ResponseBatch } from './types';

/** What the setup gives: the fixture without the options (which the caller passes). */
export type ContractModels = Omit<ModelFixture, 'options'>;

export interface ContractOptions {
  /** Why the suite cannot run here (e.g. the torch venv is missing): it is then skipped, the reason in its name. */
  skip?: string;
  /** Runs after the suite (e.g. removes the folder the setup built a model in). */
  cleanup?: () => void | Promise<void>;
  /** Per test (default: the project's). */
  testTimeoutMs?: number;
}

/**
 * AdamW whose first step is close to plain gradient descent (m̂/(√v̂ + eps) ≈ g for |g| ≪ eps = 1), no decay and
 * no clipping: the weights after one step then reflect the gradient's size as well as its sign, so two ways of
 * combining micro-batch gradients that differ show it in the outputs.
 */
const LINEAR_ADAMW: AdamWSettings = { lr: 0.05, beta1: 0.9, beta2: 0.999, eps: 1, weightDecay: 0, maxGradNorm: 1e6 };
const GRPO: LossSpec = { kind: 'grpo', clipEps: 0.2, klCoef: 0.04, entropyCoef: 1e-3, temperature: 1 };

/**
 * A state's files as what makes them equal: name, size and sha256, by name (a difference shows the file). Not the
 * bytes themselves: vitest's toEqual walks a typed array element by element, ~3 s per MB — 15 s per comparison of
 * the torch contract's 5 MB state.
 */
const byName = async (files: readonly EngineFile[]) =>
  (await inMemory(files))
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((x) => ({ name: x.name, bytes: x.data.length, sha256: createHash('sha256').update(x.data).digest('hex') }));
const flat = (arrays: readonly Float32Array[]) => arrays.flatMap((a) => Array.from(a));
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
};
const tokensOf = (result: { sequences: { tokens: Int32Array }[] }) => result.sequences.map((s) => Array.from(s.tokens));

/** The error a call rejects with (or undefined if it resolves). */
async function failure(call: Promise<unknown>): Promise<unknown> {
  return call.then(
    () => undefined,
    (err: unknown) => err,
  );
}

export function describeEngineContract(name: string, options: EngineOptions, setup: () => ContractModels | Promise<ContractModels>, contract: ContractOptions = {}): void {
  const suite = contract.skip ? describe.skip : describe;
  suite(`engine contract: ${name}${contract.skip ? ` (skipped: ${contract.skip})` : ''}`, () => {
    let f: ModelFixture;
    let size: number;
    /** The shared engines, made on first use; a test takes them in order (`take`), from the first again in the next. */
    const pool: (Engine | undefined)[] = [];
    let taken = 0;
    const take = (): Engine => (pool[taken++] ??= createEngine(options));
    /** `e` (default: the next shared engine) holding the policy, or the reward model, fresh from `seed`. */
    const policy = async (seed = 1, e = take()) => {
      await e.init(f.policy, seed);
      return e;
    };
    const reward = async (seed = 1, e = take()) => {
      await e.init(f.reward, seed);
      return e;
    };
    /** Logprobs that depend on every weight of a policy: what "the same weights" means here. */
    const probe = async (e: Engine) => flat(await e.responseLogprobs(await memoriseBatch(e, size), 1));
    /** Equal states: the same files where saves are byte-equal, else the same probe, bit for bit. */
    const expectSameState = async (a: Engine, b: Engine) => {
      expect(b.step()).toBe(a.step());
      if (f.byteEqualFiles) expect(await byName(await b.saveState())).toEqual(await byName(await a.saveState()));
      expect(await probe(b)).toEqual(await probe(a));
    };
    const timeout = contract.testTimeoutMs;

    beforeAll(async () => {
      f = { options, ...(await setup()) };
      size = f.imageSize;
    }, 300_000);
    beforeEach(() => {
      taken = 0;
    });
    afterAll(async () => {
      const engines = pool.splice(0).filter((e) => e !== undefined);
      await Promise.all(engines.map((e) => e.dispose().catch(() => undefined)));
      await contract.cleanup?.();
    });

    describe('determinism and state', () => {
      it('init is a function of (model, seed): the same outputs (and files) for the same seed; a reward head from the seed', async () => {
        const [a, b] = await Promise.all([policy(3), policy(3)]);
        await expectSameState(a, b);
        expect(a.step()).toBe(0);
        expect(a.config()).toEqual(f.policy);
        expect(a.maxLength()).toBeGreaterThan(20);
        const batch = await memoriseBatch(a, size);
        // Reward models in the engines that held the policies and in a third: a head from the seed alone.
        const [r1, r2, r3] = await Promise.all([reward(3, a), reward(3, b), reward(4)]);
        expect(r1.config()).toEqual(f.reward);
        const scores = await r1.scoreResponses(batch);
        expect(Array.from(await r2.scoreResponses(batch))).toEqual(Array.from(scores));
        expect(maxDiff(await r3.scoreResponses(batch), scores)).toBeGreaterThan(0);
      }, timeout);

      it('the same state and batch give the same losses, metrics and state', async () => {
        const [a, b] = await Promise.all([policy(5), policy(5)]);
        const batch = await memoriseBatch(a, size);
        for (let i = 0; i < 3; i++) {
          const ra = await a.trainStepResponses(batch, { kind: 'sft' }, CONTRACT_ADAMW);
          const rb = await b.trainStepResponses(batch, { kind: 'sft' }, CONTRACT_ADAMW);
          expect(rb).toEqual(ra);
          expect(ra).toMatchObject({ finite: true, applied: true, step: i + 1 });
        }
        await expectSameState(a, b);
      }, timeout);

      it('saves named files that load (in any order) into a new engine: same step, config, outputs, samples and continuation', async () => {
        const a = await policy(6);
        await trainOnStepBatches(a, size, 2);
        const files = await a.saveState();
        expect(files.length).toBeGreaterThan(0);
        expect(new Set(files.map((x) => x.name)).size).toBe(files.length);
        for (const x of files) {
          expect(x.name).toMatch(/^[^/\\]+$/);
          expect('data' in x && x.data).toBeInstanceOf(Uint8Array); // no folder given: in memory
        }
        const b = take();
        await b.loadState([...files].reverse());
        expect(b.step()).toBe(2);
        expect(b.config()).toEqual(a.config());
        expect(b.maxLength()).toBe(a.maxLength());
        if (f.byteEqualFiles) expect(await byName(await b.saveState())).toEqual(await byName(files));
        expect(await probe(b)).toEqual(await probe(a));
        const request: GenerateRequest = { prompts: contractPrompts(size), n: 2, temperature: 1, topP: 1, maxTokens: 6, seed: 9 };
        expect(tokensOf(await b.generate(request))).toEqual(tokensOf(await a.generate(request)));
        await trainOnStepBatches(a, size, 2);
        await trainOnStepBatches(b, size, 2);
        await expectSameState(a, b);
      }, timeout);

      it('N steps = k steps, save, load in a fresh process, N − k steps — bit for bit', async () => {
        const dir = mkdtempSync(path.join(tmpdir(), 'sophia-engine-contract-resume-'));
        try {
          const [straight, first] = await Promise.all([policy(11), policy(11)]);
          await trainOnStepBatches(straight, size, 5);
          await trainOnStepBatches(first, size, 2);
          const k = path.join(dir, 'k');
          mkdirSync(k);
          for (const x of await inMemory(await first.saveState())) writeFileSync(path.join(k, x.name), x.data);
          const n = path.join(dir, 'n');
          const tsx = require.resolve('tsx/cli');
          execFileSync(process.execPath, [tsx, path.join(__dirname, 'testing', 'contract-resume-child.ts'), JSON.stringify(f), k, n, '3'], { stdio: 'inherit' });
          const files = readdirSync(n).map((name) => ({ name, data: new Uint8Array(readFileSync(path.join(n, name))) }));
          if (f.byteEqualFiles) expect(await byName(files)).toEqual(await byName(await straight.saveState()));
          const resumed = take();
          await resumed.loadState(files);
          expect(resumed.step()).toBe(5);
          expect(await probe(resumed)).toEqual(await probe(straight));
          expect(await probe(resumed)).not.toEqual(await probe(first)); // it really trained
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      }, timeout);

      it('saves into a folder it is given, files on disk or in memory, that load like the files in memory; the folder stays the caller\'s', async () => {
        const a = await policy(6);
        await trainOnStepBatches(a, size, 2);
        const dir = mkdtempSync(path.join(tmpdir(), 'sophia-contract-dir-'));
        try {
          const target = path.join(dir, 'state');
          const files = await a.saveState({ dir: target });
          for (const x of files) {
            if ('path' in x) {
              expect(path.dirname(x.path)).toBe(target);
              expect(readFileSync(x.path).length).toBe(x.size);
            } else {
              expect(x.data).toBeInstanceOf(Uint8Array);
            }
          }
          if (f.byteEqualFiles) expect(await byName(files)).toEqual(await byName(await a.saveState()));
          const b = take();
          await b.loadState(files);
          expect(b.step()).toBe(2);
          expect(await probe(b)).toEqual(await probe(a));
          // still there after the load: the engine neither moved nor removed the caller's files
          for (const x of files) if ('path' in x) expect(readFileSync(x.path).length).toBe(x.size);
          await trainOnStepBatches(a, size, 1);
          await trainOnStepBatches(b, size, 1);
          await expectSameState(a, b);
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      }, timeout);

      it('rejects files that are not its state (none, a stray file, truncated, a foreign file, a bad name) with a RangeError naming the file, keeping its state', async () => {
        const e = await policy(2);
        await trainOnStepBatches(e, size, 1);
        const before = await inMemory(await e.saveState());
        const probeBefore = await probe(e);
        const names = before.map((x) => x.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|');
        const rejects = async (files: EngineFile[], field: RegExp) => {
          const err = await failure(e.loadState(files));
          expect(err, `loadState(${files.map((x) => x.name).join(', ')})`).toBeInstanceOf(RangeError);
          expect((err as Error).message).toMatch(field);
        };
        await rejects([], /.+/);
        await rejects([...before, { name: 'stray.bin', data: Uint8Array.of(1, 2, 3) }], /stray\.bin/);
        await rejects(
          before.map((x) => ({ name: x.name, data: x.data.subarray(0, Math.floor(x.data.length / 2)) })),
          new RegExp(names),
        );
        await rejects([{ name: 'foreign.bin', data: new Uint8Array(64) }], /foreign\.bin/);
        await rejects([...before, { name: '../escape.bin', data: Uint8Array.of(1) }], /escape\.bin/);
        await expect(e.initRewardFromPolicy([{ name: 'foreign.bin', data: new Uint8Array(64) }], 1)).rejects.toBeInstanceOf(RangeError);
        expect(e.step()).toBe(1);
        expect(e.config()).toEqual(f.policy);
        if (f.byteEqualFiles) expect(await byName(await e.saveState())).toEqual(await byName(before));
        expect(await probe(e)).toEqual(probeBefore);
      }, timeout);
    });

    describe('loading with a fresh optimizer', () => {
      it('keeps the weights (same outputs) and starts at step 0 with zero moments', async () => {
        const trained = await policy(7);
        await trainOnStepBatches(trained, size, 3);
        const files = await trained.saveState();
        const fresh = take();
        await fresh.loadState(files, { freshOptimizer: true });
        expect(fresh.step()).toBe(0);
        expect(fresh.config()).toEqual(trained.config());
        expect(await probe(fresh)).toEqual(await probe(trained));
        // The trained moments are gone: the next step differs from the trained engine's own next step.
        const kept = take();
        await kept.loadState(files);
        const batch = await batchForStep(kept, size, 3);
        await fresh.trainStepResponses(batch, { kind: 'sft' }, CONTRACT_ADAMW);
        await kept.trainStepResponses(batch, { kind: 'sft' }, CONTRACT_ADAMW);
        expect(fresh.step()).toBe(1);
        expect(maxDiff(await probe(fresh), await probe(kept))).toBeGreaterThan(1e-6);
      }, timeout);
    });

    describe('reward model from a policy', () => {
      it("has the policy's model with kind reward, step 0, a head from the seed, the policy's backbone; scores in [0, 1]; trains", async () => {
        const p1 = await policy(1);
        await trainOnStepBatches(p1, size, 2);
        const files1 = await p1.saveState();
        const batch = await memoriseBatch(p1, size);
        const rm = async (files: EngineFile[], seed: number, e = take()) => {
          await e.initRewardFromPolicy(files, seed);
          return e;
        };
        const [a, again] = await Promise.all([rm(files1, 9), rm(files1, 9)]);
        expect(a.config()).toEqual({ ...p1.config(), kind: 'reward' });
        expect(a.step()).toBe(0);
        const scores = await a.scoreResponses(batch);
        expect(scores.length).toBe(batch.rows.length);
        for (const s of scores) expect(s >= 0 && s <= 1).toBe(true);
        if (f.byteEqualFiles) expect(await byName(await again.saveState())).toEqual(await byName(await a.saveState()));
        expect(Array.from(await again.scoreResponses(batch))).toEqual(Array.from(scores)); // deterministic
        // The other head in p1's engine; the other backbone (an untrained policy's) in again's.
        const p2 = await policy(1, again);
        const [otherHead, otherBackbone] = await Promise.all([rm(files1, 10, p1), rm(await p2.saveState(), 9, p2)]);
        expect(maxDiff(await otherHead.scoreResponses(batch), scores)).toBeGreaterThan(0); // another head
        expect(maxDiff(await otherBackbone.scoreResponses(batch), scores)).toBeGreaterThan(0); // another backbone
        const r = await a.trainStepResponses({ prompts: batch.prompts, rows: rewardRows(batch.rows) }, { kind: 'rm' }, CONTRACT_ADAMW);
        expect(r).toMatchObject({ finite: true, applied: true, step: 1 });
      }, timeout);

      it("rejects a state that is not a policy's with a RangeError", async () => {
        const r = await reward(1);
        await expect(r.initRewardFromPolicy(await r.saveState(), 1)).rejects.toBeInstanceOf(RangeError);
        expect(r.config()).toEqual(f.reward); // the model it had
      }, timeout);
    });

    describe('gradient accumulation', () => {
      it('forwardBackward + optimStep equals trainStep, and repeated calls are averaged', async () => {
        const [fused, split] = await Promise.all([policy(7), policy(7)]);
        const batch = await memoriseBatch(fused, size);
        const t = await fused.trainStepResponses(batch, { kind: 'sft' }, CONTRACT_ADAMW);
        const fb = await split.forwardBackwardResponses(batch, { kind: 'sft' });
        await split.forwardBackwardResponses(batch, { kind: 'sft' });
        const opt = await split.optimStep(CONTRACT_ADAMW);
        expect(fb.finite).toBe(true);
        expect(fb.loss).toBeCloseTo(t.loss, 5);
        expect(opt).toMatchObject({ applied: true, step: 1 });
        expect(opt.gradNorm).toBeCloseTo(t.gradNorm, 4);
        expect(maxDiff(await probe(split), await probe(fused))).toBeLessThan(1e-5);
        await expect(split.optimStep(CONTRACT_ADAMW)).rejects.toThrow(/no gradients accumulated/);
      }, timeout);

      for (const kind of ['sft', 'grpo'] as const) {
        it(`${kind}: micro-batches weighted by their loss tokens make the whole batch's token-mean step (uneven 3 + 1 rows)`, async () => {
          const [whole, weighted, plain] = await Promise.all([policy(12), policy(12), policy(12)]);
          const memorise = await memoriseBatch(whole, size);
          const rows: GrpoRow[] = grpoRows(memorise.rows);
          const loss: LossSpec = kind === 'sft' ? { kind: 'sft' } : GRPO;
          const part = (from: number, to: number) => {
            const r = rows.slice(from, to);
            return { batch: { prompts: memorise.prompts, rows: r } as ResponseBatch<GrpoRow>, tokens: r.reduce((n, row) => n + row.response.length, 0) };
          };
          const one = await whole.forwardBackwardResponses(part(0, 4).batch, loss);
          const wholeStep = await whole.optimStep(LINEAR_ADAMW);
          const [a, b] = [part(0, 3), part(3, 4)];
          expect(a.tokens).not.toBe(b.tokens); // uneven: a plain mean of the two means is not the token mean
          const la = await weighted.forwardBackwardResponses(a.batch, loss, { weight: a.tokens });
          const lb = await weighted.forwardBackwardResponses(b.batch, loss, { weight: b.tokens });
          const weightedStep = await weighted.optimStep(LINEAR_ADAMW);
          // The token-weighted losses are the whole batch's loss; the combined gradient is its gradient.
          expect((la.loss * a.tokens + lb.loss * b.tokens) / (a.tokens + b.tokens)).toBeCloseTo(one.loss, 5);
          expect(Math.abs(weightedStep.gradNorm - wholeStep.gradNorm)).toBeLessThan(1e-5 * wholeStep.gradNorm);
          const reference = await probe(whole);
          expect(maxDiff(await probe(weighted), reference)).toBeLessThan(2e-6);
          // The plain mean of micro-batch means is another gradient: the check above can tell them apart.
          await plain.forwardBackwardResponses(a.batch, loss);
          await plain.forwardBackwardResponses(b.batch, loss);
          const plainStep = await plain.optimStep(LINEAR_ADAMW);
          expect(Math.abs(plainStep.gradNorm - wholeStep.gradNorm)).toBeGreaterThan(1e-3 * wholeStep.gradNorm);
          expect(maxDiff(await probe(plain), reference)).toBeGreaterThan(1e-4);
        }, timeout);
      }

      it('rejects a weight that is not a finite number > 0, naming options.weight', async () => {
        const e = await policy(1);
        const batch = await memoriseBatch(e, size);
        for (const weight of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
          const err = await failure(e.forwardBackwardResponses(batch, { kind: 'sft' }, { weight }));
          expect(err).toBeInstanceOf(RangeError);
          expect((err as Error).message).toMatch(/weight/);
        }
        await expect(e.optimStep(CONTRACT_ADAMW)).rejects.toThrow(/no gradients accumulated/);
      }, timeout);
    });

    describe('non-finite values', () => {
      it('reports a non-finite loss and never applies or accumulates its gradients', async () => {
        const e = await policy(1);
        const memorise = await memoriseBatch(e, size);
        const clean: ResponseBatch<GrpoRow> = { prompts: memorise.prompts, rows: grpoRows(memorise.rows) };
        const poisoned: ResponseBatch<GrpoRow> = { prompts: memorise.prompts, rows: clean.rows.map((r, i) => (i === 0 ? { ...r, advantage: Number.NaN } : r)) };
        const before = await probe(e);
        expect(await e.trainStepResponses(poisoned, GRPO, CONTRACT_ADAMW)).toMatchObject({ finite: false, applied: false, step: 0 });
        expect(await probe(e)).toEqual(before);
        expect((await e.forwardBackwardResponses(poisoned, GRPO)).finite).toBe(false);
        await expect(e.optimStep(CONTRACT_ADAMW)).rejects.toThrow(/no gradients accumulated/);
        // A finite call and a poisoned one: only the finite gradient is applied.
        const reference = await policy(1);
        await reference.trainStepResponses(clean, GRPO, CONTRACT_ADAMW);
        await e.forwardBackwardResponses(clean, GRPO);
        await e.forwardBackwardResponses(poisoned, GRPO, { weight: 5 });
        expect(await e.optimStep(CONTRACT_ADAMW)).toMatchObject({ applied: true, step: 1 });
        expect(maxDiff(await probe(e), await probe(reference))).toBeLessThan(1e-5);
      }, timeout);
    });

    describe('input checking', () => {
      const rejects = async (call: Promise<unknown>, kind: typeof RangeError | typeof TypeError, field: RegExp) => {
        const err = await failure(call);
        expect(err, `expected a ${kind.name}, got ${String(err)}`).toBeInstanceOf(kind);
        expect((err as Error).message).toMatch(field);
      };

      it('throws a RangeError or TypeError naming the field, before any state changes', async () => {
        const e = await policy(1);
        await trainOnStepBatches(e, size, 1);
        const files = f.byteEqualFiles ? await e.saveState() : [];
        const before = await probe(e);
        const batch = await memoriseBatch(e, size);
        const sft = { kind: 'sft' } as const;
        const withRow = (i: number, change: object): ResponseBatch => ({ prompts: batch.prompts, rows: batch.rows.map((r, j) => (j === i ? { ...r, ...change } : r)) });
        await rejects(e.trainStepResponses(withRow(1, { prompt: 2 }), sft, CONTRACT_ADAMW), RangeError, /prompt/);
        await rejects(e.forwardBackwardResponses(withRow(0, { prompt: -1 }), sft), RangeError, /prompt/);
        await rejects(e.trainStepResponses(withRow(2, { response: Int32Array.of(3, 1_000_000) }), sft, CONTRACT_ADAMW), RangeError, /response/);
        await rejects(e.responseLogprobs(withRow(0, { response: Int32Array.of(-1) }), 1), RangeError, /response/);
        await rejects(e.trainStepResponses(batch, sft, { ...CONTRACT_ADAMW, lr: Number.NaN }), RangeError, /lr/);
        await rejects(e.trainStepResponses(batch, sft, { ...CONTRACT_ADAMW, beta2: 1 }), RangeError, /beta2/);
        await rejects(e.trainStepResponses(batch as never, { kind: 'rm' }, CONTRACT_ADAMW), TypeError, /reward/);
        await rejects(e.responseLogprobs(batch, 0), RangeError, /temperature/);
        await rejects(e.scoreResponses(batch), TypeError, /reward/);
        const request: GenerateRequest = { prompts: batch.prompts, n: 2, temperature: 1, topP: 0.9, maxTokens: 4, seed: 1 };
        await rejects(e.generate({ ...request, topP: 0 }), RangeError, /topP/);
        await rejects(e.generate({ ...request, maxTokens: 0 }), RangeError, /maxTokens/);
        const long = prompt('one '.repeat(e.maxLength()), size, 3);
        await rejects(e.generate({ ...request, prompts: [batch.prompts[0]!, long] }), RangeError, /prompts\[1\]/);
        await rejects(e.init(f.foreign, 1), TypeError, /model/);
        expect(e.step()).toBe(1);
        expect(e.config()).toEqual(f.policy);
        await expect(e.optimStep(CONTRACT_ADAMW)).rejects.toThrow(/no gradients accumulated/);
        if (f.byteEqualFiles) expect(await byName(await e.saveState())).toEqual(await byName(files));
        expect(await probe(e)).toEqual(before);
      }, timeout);

      it('keeps each model kind to its own methods (TypeError)', async () => {
        const r = await reward(1);
        const batch = await memoriseBatch(r, size);
        await rejects(r.responseLogprobs(batch, 1), TypeError, /.+/);
        await rejects(r.generate({ prompts: batch.prompts, n: 1, temperature: 1, topP: 1, maxTokens: 2, seed: 1 }), TypeError, /.+/);
        await rejects(r.trainStepResponses(batch, { kind: 'sft' }, CONTRACT_ADAMW), TypeError, /.+/);
        await rejects(r.forwardBackwardResponses({ prompts: batch.prompts, rows: grpoRows(batch.rows) }, GRPO), TypeError, /.+/);
        expect(r.step()).toBe(0);
      }, timeout);
    });

    describe('prompts and responses', () => {
      it('promptLengths counts rendered prompts; encodeResponses ends each text with the end token', async () => {
        const e = await policy(1);
        const prompts = contractPrompts(size);
        const lengths = await e.promptLengths(prompts);
        expect(lengths).toHaveLength(2);
        for (const n of lengths) expect(Number.isInteger(n) && n > 0 && n < e.maxLength()).toBe(true);
        const [empty, one, two] = await e.encodeResponses(['', 'four', 'four four']);
        expect(empty).toHaveLength(1); // the end token alone
        const end = empty![0]!;
        expect(one!.at(-1)).toBe(end);
        expect(two!.length).toBeGreaterThan(one!.length);
        expect(await e.encodeResponses([])).toEqual([]);
      }, timeout);
    });

    describe('sampling', () => {
      const request = (overrides: Partial<GenerateRequest> = {}): GenerateRequest => ({ prompts: contractPrompts(size), n: 3, temperature: 1, topP: 0.95, maxTokens: 8, seed: 123, ...overrides });

      it('gives the same samples for the same seed, P × n prompt-major, within maxTokens, stopping at the end token', async () => {
        const e = await policy(1);
        await trainOnStepBatches(e, size, 3);
        const [[end]] = (await e.encodeResponses([''])) as [Int32Array];
        const a = await e.generate(request());
        const b = await e.generate(request());
        const c = await e.generate(request({ seed: 124 }));
        expect(a.sequences.map((s) => s.promptIndex)).toEqual([0, 0, 0, 1, 1, 1]);
        expect(tokensOf(b)).toEqual(tokensOf(a));
        expect(b.sequences.map((s) => Array.from(s.logprobs))).toEqual(a.sequences.map((s) => Array.from(s.logprobs)));
        expect(tokensOf(c)).not.toEqual(tokensOf(a));
        for (const s of a.sequences) {
          expect(s.tokens.length).toBeGreaterThan(0);
          expect(s.tokens.length).toBeLessThanOrEqual(8);
          expect(s.logprobs.length).toBe(s.tokens.length);
          // It stops at the end token (an engine may stop at others too: a Qwen model also at <|endoftext|>).
          if (s.tokens.at(-1) === end) expect(s.stopped).toBe(true);
          expect(Array.from(s.tokens.subarray(0, -1))).not.toContain(end);
          if (!s.stopped) expect(s.tokens.length).toBe(8);
          expect(typeof s.text).toBe('string');
        }
        expect(a.generatedTokens).toBe(a.sequences.reduce((n, s) => n + s.tokens.length, 0));
      }, timeout);

      it('returns the logprobs that responseLogprobs gives the same tokens (what GRPO uses as old logprobs)', async () => {
        const e = await policy(1);
        await trainOnStepBatches(e, size, 2);
        const temperature = 0.8;
        const prompts = contractPrompts(size);
        const result = await e.generate(request({ temperature, topP: 1, prompts }));
        const lp = await e.responseLogprobs({ prompts, rows: result.sequences.map((s) => ({ prompt: s.promptIndex, response: s.tokens })) }, temperature);
        let worst = 0;
        result.sequences.forEach((s, r) => (worst = Math.max(worst, maxDiff(lp[r]!, s.logprobs))));
        expect(worst).toBeLessThanOrEqual(f.logprobTolerance);
      }, timeout);

      it("keeps each response within the model's length: maxTokens is clamped to what the prompt leaves", async () => {
        const e = await policy(1);
        const max = e.maxLength();
        // A prompt that leaves a few positions: grow its text until it leaves 2 to 6.
        let words = 1;
        const lengthOf = async (w: number) => (await e.promptLengths([prompt('one '.repeat(w), size, 4)]))[0]!;
        const [l1, l2] = [await lengthOf(1), await lengthOf(2)];
        words = Math.max(1, Math.floor((max - 4 - l1) / Math.max(1, l2 - l1)) + 1);
        while (words > 1 && (await lengthOf(words)) > max - 2) words--;
        const near = prompt('one '.repeat(words), size, 4);
        const room = max - (await e.promptLengths([near]))[0]!;
        expect(room).toBeGreaterThan(0);
        const result = await e.generate(request({ prompts: [near], maxTokens: room + 20, temperature: 1.5, topP: 1 }));
        for (const s of result.sequences) {
          expect(s.tokens.length).toBeLessThanOrEqual(room);
          if (!s.stopped) expect(s.tokens.length).toBe(room);
        }
      }, timeout);
    });

    describe('training', () => {
      it('SFT loss falls over a few steps on a memorise batch', async () => {
        const e = await policy(2);
        const batch = await memoriseBatch(e, size);
        const losses: number[] = [];
        for (let i = 0; i < 6; i++) losses.push((await e.trainStepResponses(batch, { kind: 'sft' }, CONTRACT_ADAMW)).loss);
        expect(losses.at(-1)!).toBeLessThan(0.9 * losses[0]!);
      }, timeout);
    });

    describe('dispose', () => {
      it('frees the engine: it cannot be used afterwards', async () => {
        const e = await policy(1);
        const batch = await memoriseBatch(e, size);
        pool[pool.indexOf(e)] = undefined; // a test after this one gets a new engine
        await e.dispose();
        await expect(e.trainStepResponses(batch, { kind: 'sft' }, CONTRACT_ADAMW)).rejects.toThrow();
        await expect(e.saveState()).rejects.toThrow();
      }, timeout);
    });
  });
}
