/**
 * The reward model's held-out split in mock activity contexts: annotation splits the held-out prompts into a
 * validation part and a test part; training selects its checkpoint on the validation part only, and the report
 * measures the test part only. Each is shown by poisoning the other part (items whose example does not exist, which
 * scoring refuses): training still runs with a poisoned test part, the report still runs with a poisoned
 * validation part.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mergeConfig, modelConfig, parseRunConfig, RUN_PRESETS } from '../config/run-config';
import { createEngine } from '../engine/factory';
import { Rng } from '../engine/rng';
import { CheckpointStore } from '../storage/checkpoints';
import { getJson, putJson } from '../storage/json';
import { LocalStorage } from '../storage/local';
import { readMetrics } from '../storage/metrics-log';
import { teacherResponse } from '../tasks/teacher';
import { pairwiseAccuracy } from '../rewards/metrics';
import { rolloutKey } from '../storage/keys';
import { type RewardItem, scoreResponses } from '../training/reward-model';
import { createDataActivities } from './data';
import { INFERENCE_ONLY, loadEngineCheckpoint, saveEngineCheckpoint } from './engine-checkpoints';
import { EnginePool } from './engine-pool';
import { type AnnotatedData, createRewardModelActivities, type RewardReport } from './reward-model';
import { createRlActivities } from './rl';
import { RunData } from './run-data';

const config = parseRunConfig(
  mergeConfig(RUN_PRESETS.ci, {
    model: { layers: 1, width: 32, heads: 2, mlpRatio: 2 },
    data: { perFamily: { train: 4, test: 1, ood: 1 }, validationPerFamily: 1 },
    rewardModel: { init: 'scratch', data: { heldOutShare: 0.4 }, steps: 4, batchSize: 4, evalEvery: 2, chunkSteps: 4 },
  }),
  'test',
);
const runId = 'rm-split';
/** Items whose example does not exist, which scoring and training refuse: a part that is never read stays harmless. */
const poisoned = (items: readonly RewardItem[]) => items.map((i) => ({ ...i, exampleId: `missing-${i.exampleId}` }));

describe('the reward model\'s validation and test parts', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sophia-rm-'));
  const storage = new LocalStorage(dir);
  const store = new CheckpointStore(storage);
  const data = new RunData(storage);
  const engines = new EnginePool(() => createEngine({ kind: 'onnx' }));
  const acts = createRewardModelActivities({ store, data, engines, workerQueue: 'q-test', identity: 'test-worker' });
  const common = { runId, config, storage: storage.location, dataRunId: runId };
  const annotatedKey = `runs/${runId}/reward-data/annotated.json`;
  const run = <A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A): Promise<R> => new MockActivityEnvironment().run<A, R, typeof fn>(fn, ...args);
  const promptsOf = (items: readonly RewardItem[]) => new Set(items.map((i) => i.exampleId));
  let annotated: AnnotatedData;

  beforeAll(async () => {
    await run(createDataActivities({ data }).prepareData, { runId, config, storage: storage.location });
    // Responses of every quality: the teacher's, the teacher's with a wrong answer, and an empty thought.
    const train = await data.split(runId, 'train');
    const items = train.flatMap((e, k) => {
      const good = teacherResponse(e, new Rng(k));
      return [good, good.replace(/<answer>.*<\/answer>/s, '<answer>zz</answer>'), '<think></think><answer>0</answer>'].map((response) => ({ exampleId: e.id, response }));
    });
    await putJson(storage, `runs/${runId}/reward-data/samples.json`, { policyCheckpointKey: 'none', items });
    await run(acts.annotateRewardData, common);
    annotated = await getJson<AnnotatedData>(storage, annotatedKey);
  });
  afterAll(async () => {
    await engines.dispose();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('holds out whole prompts and splits them into validation and test, the same way on every call', async () => {
    const [train, validation, test] = [promptsOf(annotated.train), promptsOf(annotated.validation), promptsOf(annotated.test)];
    expect(validation.size).toBeGreaterThan(0);
    expect(test.size).toBeGreaterThan(0);
    expect([...validation, ...test].filter((p) => train.has(p))).toEqual([]);
    expect([...validation].filter((p) => test.has(p))).toEqual([]);
    expect(validation.size + test.size).toBe(Math.round(0.4 * (train.size + validation.size + test.size)));
    const out = await run(acts.annotateRewardData, common);
    expect(out).toMatchObject({ train: annotated.train.length, validation: annotated.validation.length, test: annotated.test.length, heldOut: annotated.validation.length + annotated.test.length });
  });

  it('selects the checkpoint on the validation part only, and reports on the test part only', async () => {
    // Training with a test part it cannot score: it never reads it.
    await putJson(storage, annotatedKey, { ...annotated, test: poisoned(annotated.test) });
    const chunk = await run(acts.runRewardModelChunk, { ...common, configHash: 'h', policyCheckpointKey: 'none', untilStep: 4 });
    expect(chunk).toMatchObject({ step: 4, done: true });
    expect((await readMetrics(storage, runId)).filter((m) => m.stage === 'rm' && m.kind === 'validation').map((m) => m.step)).toEqual([2, 4]);
    // …while a poisoned validation part stops it at its first validation (a second run with the same data).
    await putJson(storage, 'runs/rm-split-2/reward-data/annotated.json', { ...annotated, validation: poisoned(annotated.validation) });
    await expect(run(acts.runRewardModelChunk, { ...common, runId: 'rm-split-2', dataRunId: runId, configHash: 'h', policyCheckpointKey: 'none', untilStep: 4 })).rejects.toThrow(/no such example/);

    // The report with a validation part it cannot score: it never reads it, and counts the test part.
    await putJson(storage, annotatedKey, { ...annotated, validation: poisoned(annotated.validation) });
    const evaluated = await run(acts.evaluateRewardModel, { ...common, checkpointKey: chunk.bestCheckpointKey!, initialCheckpointKey: chunk.initialCheckpointKey });
    expect(evaluated.trained.count).toBe(annotated.test.length);
    const report = await getJson<RewardReport>(storage, evaluated.reportKey);
    expect(report).toMatchObject({ test: annotated.test.length, validation: annotated.validation.length, train: annotated.train.length });
    await putJson(storage, annotatedKey, { ...annotated, test: poisoned(annotated.test) });
    await expect(run(acts.evaluateRewardModel, { ...common, checkpointKey: chunk.bestCheckpointKey!, initialCheckpointKey: chunk.initialCheckpointKey })).rejects.toThrow(/no such example/);
    await putJson(storage, annotatedKey, annotated);
  });

  it("measures the reward models on the policy's own samples: RL's group size and temperature, held-out test prompts", async () => {
    const policy = createEngine({ kind: 'onnx' });
    await policy.init(modelConfig(config, data.tokenizer.vocabSize), 7);
    const saved = await saveEngineCheckpoint(store, policy, { runId, stage: 'init', step: 0, configHash: 'h' });
    const [rm, rmInit] = [(await store.latest(runId, 'rm'))!, (await store.latest(runId, 'rm-init'))!];
    const evaluated = await run(acts.evaluateRewardModel, { ...common, checkpointKey: rm.key, initialCheckpointKey: rmInit.key, policyCheckpointKey: saved.key });
    const test = await data.split(runId, 'test');
    const onPolicy = evaluated.onPolicy!;
    expect(onPolicy).toMatchObject({ prompts: test.length, responses: test.length * config.rl!.groupSize });
    expect(onPolicy.mixedGroups).toBeLessThanOrEqual(test.length);
    for (const accuracy of [onPolicy.trained, onPolicy.untrained, onPolicy.policyLikelihood!]) {
      if (onPolicy.mixedGroups === 0) expect(accuracy).toBeNaN(); // an untrained policy may get every answer wrong
      else expect(accuracy).toBeGreaterThanOrEqual(0);
    }
    expect((await getJson<RewardReport>(storage, evaluated.reportKey)).onPolicy).toMatchObject({ prompts: test.length });
    // Without the policy's checkpoint (inputs from before it was measured): no on-policy part.
    expect((await run(acts.evaluateRewardModel, { ...common, checkpointKey: rm.key, initialCheckpointKey: rmInit.key })).onPolicy).toBeUndefined();
  });

  it('splits the held-out items of an annotation file written before the split, deterministically', async () => {
    const legacy = { annotator: annotated.annotator, binsBefore: annotated.binsBefore, binsAfter: annotated.binsAfter, train: annotated.train, heldOut: [...annotated.validation, ...annotated.test] };
    await putJson(storage, annotatedKey, legacy);
    const out = await run(acts.annotateRewardData, common);
    expect(out.validation + out.test).toBe(legacy.heldOut.length);
    expect(out.validation).toBeGreaterThan(0);
    expect(out.test).toBeGreaterThan(0);
    expect(await run(acts.annotateRewardData, common)).toEqual(out);
    await putJson(storage, annotatedKey, annotated);
  });
});

describe('the reward-model activities heartbeat as their long loops go, not once at the end', () => {
  // Before: sampling heartbeat once per temperature and annotating or scoring not at all, so paper-scale data (hours
  // of sampling, a judge over HTTP) outlasted the heartbeat timeout and the activity was retried from the start.
  const hbConfig = parseRunConfig(
    mergeConfig(config, {
      evaluation: { promptsPerBatch: 2 },
      rewardModel: { data: { prompts: 5, samplesPerPrompt: 4, temperatures: [0.7, 1.5], maxTokens: 8 }, batchSize: 2, onPolicyPrompts: 3 },
      rl: { groupSize: 2, maxTokens: 8 },
    }),
    'test',
  );
  const dir = mkdtempSync(path.join(tmpdir(), 'sophia-rm-hb-'));
  const storage = new LocalStorage(dir);
  const store = new CheckpointStore(storage);
  const data = new RunData(storage);
  const engines = new EnginePool(() => createEngine({ kind: 'onnx' }));
  const acts = createRewardModelActivities({ store, data, engines, workerQueue: 'q-test', identity: 'test-worker' });
  const common = { runId: 'rm-hb', config: hbConfig, storage: storage.location, dataRunId: 'rm-hb' };
  /** Runs `fn` in a mock activity context; returns its result and the heartbeat details it sent, in order. */
  const beats = async <A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A): Promise<{ result: R; details: Record<string, unknown>[] }> => {
    const env = new MockActivityEnvironment();
    const details: Record<string, unknown>[] = [];
    env.on('heartbeat', (d: unknown) => details.push(d as Record<string, unknown>));
    return { result: await env.run<A, R, typeof fn>(fn, ...args), details };
  };
  afterAll(async () => {
    await engines.dispose();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('samples, annotates, trains and measures with a heartbeat after each engine call or annotation', async () => {
    await new MockActivityEnvironment().run(createDataActivities({ data }).prepareData, { runId: 'rm-hb', config: hbConfig, storage: storage.location });
    const policy = createEngine({ kind: 'onnx' });
    await policy.init(modelConfig(hbConfig, data.tokenizer.vocabSize), 7);
    const saved = await saveEngineCheckpoint(store, policy, { runId: 'rm-hb', stage: 'init', step: 0, configHash: 'h' });
    await policy.dispose();

    // 5 prompts, 2 per engine call, 2 samples at each of 2 temperatures: 3 calls per temperature.
    const sampled = await beats(acts.sampleRewardData, { ...common, policyCheckpointKey: saved.key });
    expect(sampled.result.samples).toBe(20);
    expect(sampled.details).toEqual([
      { temperature: 0.7, samples: 4 }, { temperature: 0.7, samples: 8 }, { temperature: 0.7, samples: 10 },
      { temperature: 1.5, samples: 14 }, { temperature: 1.5, samples: 18 }, { temperature: 1.5, samples: 20 },
    ]);

    const annotated = await beats(acts.annotateRewardData, common);
    expect(annotated.details.at(-1)).toEqual({ phase: 'annotating', done: 20, total: 20 });

    // Training: each validation heartbeats per scored batch (2 items), with the chunk's step.
    const { validation } = annotated.result;
    const trained = await beats(acts.runRewardModelChunk, { ...common, configHash: 'h', policyCheckpointKey: saved.key, untilStep: 2 });
    const validating = trained.details.filter((d) => String(d.phase).startsWith('validation'));
    expect(validating.map((d) => d.phase)).toEqual(Array.from({ length: Math.ceil(validation / 2) }, (_, i) => `validation ${Math.min(validation, 2 * (i + 1))}/${validation}`));
    // (the validation after step 2 of 4: evalEvery 2)
    expect(validating.every((d) => d.step === 2 && d.totalSteps === 4)).toBe(true);

    const evaluated = await beats(acts.evaluateRewardModel, { ...common, checkpointKey: trained.result.checkpointKey, initialCheckpointKey: trained.result.initialCheckpointKey, policyCheckpointKey: saved.key });
    const last = (phase: string) => evaluated.details.filter((d) => d.phase === phase).at(-1);
    const test = annotated.result.test;
    expect(last('held-out responses: scoring (trained)')).toEqual({ phase: 'held-out responses: scoring (trained)', done: test, total: test });
    expect(last('held-out responses: scoring (untrained)')).toEqual({ phase: 'held-out responses: scoring (untrained)', done: test, total: test });
    // 3 on-policy prompts (one engine call), 2 responses each, scored 2 at a time: 3 calls per reward model.
    expect(evaluated.details.filter((d) => d.phase === 'on-policy groups: sampling')).toEqual([
      { phase: 'on-policy groups: sampling', done: 0, total: 3 },
      { phase: 'on-policy groups: sampling', done: 3, total: 3 },
    ]);
    expect(evaluated.details.filter((d) => d.phase === 'on-policy groups: scoring (trained)').map((d) => d.done)).toEqual([2, 4, 6]);
  });
});

describe('a likelihood judge through the stage and RL (rewardModel.kind likelihood)', () => {
  const judgeConfig = parseRunConfig(mergeConfig(config, { rewardModel: { kind: 'likelihood', init: 'policy', likelihoodMinScore: 0.8 } }), 'test');
  const dir = mkdtempSync(path.join(tmpdir(), 'sophia-rm-lik-'));
  const storage = new LocalStorage(dir);
  const store = new CheckpointStore(storage);
  const data = new RunData(storage);
  const engines = new EnginePool(() => createEngine({ kind: 'onnx' }));
  const deps = { store, data, engines, workerQueue: 'q-test', identity: 'test-worker' };
  const acts = createRewardModelActivities(deps);
  const rl = createRlActivities(deps);
  const judgeRun = 'rm-lik';
  const common = { runId: judgeRun, config: judgeConfig, storage: storage.location, dataRunId: judgeRun };
  const annotatedKey = `runs/${judgeRun}/reward-data/annotated.json`;
  const run = <A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A): Promise<R> => new MockActivityEnvironment().run<A, R, typeof fn>(fn, ...args);
  const probe = createEngine({ kind: 'onnx' });
  let annotated: AnnotatedData;
  let policyKey: string;
  /** What the policy, or a judge checkpoint, scores the test part with. */
  const scoresOf = async (key: string) => {
    await loadEngineCheckpoint(store, key, probe, INFERENCE_ONLY);
    return scoreResponses(probe, await data.byId(judgeRun, 'train'), annotated.test, 64);
  };

  beforeAll(async () => {
    await run(createDataActivities({ data }).prepareData, { runId: judgeRun, config: judgeConfig, storage: storage.location });
    const train = await data.split(judgeRun, 'train');
    const items = train.flatMap((e, k) => {
      const good = teacherResponse(e, new Rng(k));
      return [good, good.replace(/<answer>.*<\/answer>/s, '<answer>zz</answer>'), '<think></think><answer>0</answer>'].map((response) => ({ exampleId: e.id, response }));
    });
    await putJson(storage, `runs/${judgeRun}/reward-data/samples.json`, { policyCheckpointKey: 'none', items });
    await run(acts.annotateRewardData, common);
    annotated = await getJson<AnnotatedData>(storage, annotatedKey);
    const policy = createEngine({ kind: 'onnx' });
    await policy.init(modelConfig(judgeConfig, data.tokenizer.vocabSize), 7);
    policyKey = (await saveEngineCheckpoint(store, policy, { runId: judgeRun, stage: 'sft', step: 10, configHash: 'h' })).key;
    await policy.dispose();
  });
  afterAll(async () => {
    await probe.dispose();
    await engines.dispose();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('starts from the SFT policy itself, fine-tunes on the well-annotated responses only, and validates by ranking', async () => {
    const [good, bad] = [annotated.train.filter((i) => i.score >= 0.8), annotated.train.filter((i) => i.score < 0.8)];
    expect(good.length).toBeGreaterThan(0);
    expect(bad.length).toBeGreaterThan(0);
    // Training with its low-scored responses poisoned: it never reads them…
    await putJson(storage, annotatedKey, { ...annotated, train: [...good, ...poisoned(bad)] });
    const chunk = await run(acts.runRewardModelChunk, { ...common, configHash: 'h', policyCheckpointKey: policyKey, untilStep: 4 });
    expect(chunk).toMatchObject({ step: 4, done: true });
    // …while a poisoned well-annotated one is read (a second run with the same data).
    await putJson(storage, 'runs/rm-lik-2/reward-data/annotated.json', { ...annotated, train: [...poisoned(good), ...bad] });
    await expect(run(acts.runRewardModelChunk, { ...common, runId: 'rm-lik-2', dataRunId: judgeRun, configHash: 'h', policyCheckpointKey: policyKey, untilStep: 4 })).rejects.toThrow(/no such example/);
    await putJson(storage, annotatedKey, annotated);

    // Its initial weights are the policy's (a policy, scoring as the policy does); training moved them.
    const initial = await store.manifest(chunk.initialCheckpointKey);
    expect(initial.stage).toBe('rm-init');
    const [policyScores, initialScores, trainedScores] = [await scoresOf(policyKey), await scoresOf(chunk.initialCheckpointKey), await scoresOf(chunk.checkpointKey)];
    expect(probe.config().kind).toBe('policy');
    expect(initialScores).toEqual(policyScores);
    expect(trainedScores).not.toEqual(policyScores);
    // The validation loss is 1 − the pairwise accuracy on the validation part; the initial weights are validated too.
    const validations = (await readMetrics(storage, judgeRun)).filter((m) => m.stage === 'rm' && m.kind === 'validation');
    expect(validations.map((m) => m.step)).toEqual([0, 2, 4]);
    await loadEngineCheckpoint(store, chunk.checkpointKey, probe, INFERENCE_ONLY);
    const validationScores = await scoreResponses(probe, await data.byId(judgeRun, 'train'), annotated.validation, 64);
    const expected = 1 - pairwiseAccuracy(validationScores, annotated.validation.map((i) => i.score), annotated.validation.map((i) => i.exampleId)).accuracy;
    expect(validations.at(-1)!.valLoss).toBeCloseTo(expected, 5);
    // The best of them is the stage's judge: the initial weights (the policy itself) when no step ranked better.
    const best = validations.reduce((b, v) => (Number(v.valLoss) < Number(b.valLoss) ? v : b));
    expect(chunk.bestCheckpointKey).toBe(best.step === 0 ? chunk.initialCheckpointKey : `runs/${judgeRun}/rm/checkpoints/${String(best.step).padStart(8, '0')}`);

    // The report measures the judge and the untrained policy the same way.
    const evaluated = await run(acts.evaluateRewardModel, { ...common, checkpointKey: chunk.checkpointKey, initialCheckpointKey: chunk.initialCheckpointKey });
    expect(evaluated.trained.count).toBe(annotated.test.length);
    expect(evaluated.trained.pearson).not.toBe(evaluated.untrained.pearson);

    // RL's thinking rewards from the judge's checkpoint: its likelihood of each rollout.
    const exampleIds = [...new Set(annotated.test.map((i) => i.exampleId))];
    const rollouts = annotated.test.map((i) => ({ exampleId: i.exampleId, group: exampleIds.indexOf(i.exampleId), tokens: [], logprobs: [], text: i.response, stopped: true, temperature: 1 }));
    await putJson(storage, rolloutKey(judgeRun, 1, 'rollouts.json'), { step: 1, exampleIds, rollouts, refLogprobs: [] });
    const thinking = await run(rl.thinkingRewards, { ...common, configHash: 'h', step: 1, policyStartKey: policyKey, rewardModelKey: chunk.checkpointKey });
    const { scores } = await getJson<{ scores: number[] }>(storage, thinking.thinkingKey);
    expect(scores).toHaveLength(rollouts.length);
    for (const [i, s] of scores.entries()) expect(s).toBeCloseTo(trainedScores[i]!, 5);
  });

  it('with 0 steps, judges with the SFT policy as it is: the stage\'s reward model is its initial weights', async () => {
    const asIs = parseRunConfig(mergeConfig(judgeConfig, { rewardModel: { steps: 0 } }), 'test');
    await putJson(storage, 'runs/rm-lik-0/reward-data/annotated.json', annotated);
    const chunk = await run(acts.runRewardModelChunk, { ...common, config: asIs, runId: 'rm-lik-0', configHash: 'h0', policyCheckpointKey: policyKey, untilStep: 0 });
    expect(chunk).toMatchObject({ step: 0, done: true, bestCheckpointKey: chunk.initialCheckpointKey, checkpointKey: chunk.initialCheckpointKey });
    expect(await scoresOf(chunk.checkpointKey)).toEqual(await scoresOf(policyKey));
  });
});
