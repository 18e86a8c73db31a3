/**
 * The whole pipeline on the PyTorch engine (engine/torch/), through Temporal with real workers, on a tiny random
 * Qwen2.5-VL built from configs (no downloads): a run config that says only `extends: ci`-like settings and
 * `engine: { kind: torch, model: DIR }`.
 *  1. a GPU worker SIGKILLed mid-Trust-GRPO: the engine process dies with it, a new worker loads the last RL
 *     checkpoint into a new process, and the run ends with the files and curve of an uninterrupted run; the final
 *     policy loads with plain transformers (no Sophia code);
 *  2. pause (the chunk commits its step, the run waits), resume, and stop during Trust-GRPO (the policy committed at
 *     its step, then evaluated);
 *  3. LoRA through every stage; a dtype the worker cannot run, refused at once;
 *  4. a real dataset (data.source: an EasyR1 parquet with broken rows, no SFT) with vLLM rollouts (engine.rollout.backend
 *     vllm): every RL step pushes the updated policy into vLLM;
 *  5. two engine processes (engine.processes: 2, torchrun + FSDP, gloo on CPU) sampling with one vLLM engine across
 *     both (tensor parallel).
 * 4 and 5 leave the reward model's stage out (RL as plain GRPO): what they test is the policy's engine.
 * Skipped, with the reason in the suite's name, where the PyTorch engine is not installed.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pipelineInput, runProgress, startRun } from '../../clients/runs';
import { connectWorker } from '../../clients/temporal';
import { buildTinyQwen, torchSkipReason, torchVenvPython } from '../../engine/testing/tiny-qwen';
import { CheckpointStore } from '../../storage/checkpoints';
import { LocalStorage } from '../../storage/local';
import { readMetrics } from '../../storage/metrics-log';
import { loadTemporalConfig } from '../../temporal.config';
import { WorkerSet } from '../../workers/worker';
import { pauseSignal, resumeSignal, stopSignal } from '../../workflows/types';
import { quietTemporalRuntime } from '../integration/stack';
import { chartQaParquet, chartQaRows } from '../../benchmarks/testing/fixtures';
import { easyR1Parquet, trainingSetRows } from '../../datasets/testing/fixtures';
import { faultConfigFile, faultScope, tempDir, waitFor, waitForStageStep } from './harness';
import { faultScenarios, rlCurve } from './scenarios';

const skip = torchSkipReason();
const scope = faultScope();
const { cleanups, server, client } = scope;
const { gpuKillScenario } = faultScenarios(scope);

let modelDir = '';
let modelRoot = '';
beforeAll(() => {
  if (skip) return;
  modelRoot = tempDir('torch-model');
  modelDir = buildTinyQwen(path.join(modelRoot, 'qwen'), { maxPositions: 256 });
});
afterAll(() => {
  if (modelRoot) rmSync(modelRoot, { recursive: true, force: true });
});

/** A short torch run on the tiny Qwen: `sft` and `rl` as given, the rest as the fault config (ci's reward model). */
const torchLines = (sft: string, rl: string, engine = '') => [`engine: { kind: torch, model: ${JSON.stringify(modelDir)}, threads: 1${engine} }`, `sft: ${sft}`, `rl: ${rl}`];

/** The same without the reward model's stage (RL as plain GRPO): for tests of the policy's engine, where the
 * reward model's data and training add minutes of CI and nothing the test looks at. */
const torchLinesWithoutRewardModel = (sft: string, rl: string, engine = '') => [
  ...torchLines(sft, rl.replace(/ }$/, ', variant: grpo }'), engine),
  'stages: [prepareData, sftWarmup, trustGrpo, evaluation]',
];

/** Writes a checkpoint's files into a folder and loads it with plain transformers (the venv's python, no Sophia code). */
async function loadsWithTransformers(store: CheckpointStore, key: string, dir: string): Promise<string> {
  const { files } = await store.load(key);
  mkdirSync(dir, { recursive: true });
  for (const [name, data] of files) writeFileSync(path.join(dir, name), data);
  return describeWithTransformers(dir);
}

/** "ClassName parameters" of the model in `dir` as plain transformers loads it (with its LoRA adapter, if it has one). */
function describeWithTransformers(dir: string): string {
  const script = [
    'import sys, torch',
    'from transformers import AutoModelForImageTextToText, AutoProcessor',
    'model = AutoModelForImageTextToText.from_pretrained(sys.argv[1], dtype=torch.float32)',
    'AutoProcessor.from_pretrained(sys.argv[1])',
    'print(type(model).__name__, sum(p.numel() for p in model.parameters()))',
  ].join('\n');
  return execFileSync(torchVenvPython(), ['-c', script, dir], { encoding: 'utf8', cwd: dir, env: { ...process.env, PYTHONPATH: '', HF_HUB_DISABLE_PROGRESS_BARS: '1', TRANSFORMERS_VERBOSITY: 'error' } }).trim();
}

/** A private dev server, local storage and CPU + GPU workers in this process, released after the test. */
async function inProcess(name: string) {
  quietTemporalRuntime();
  const dir = tempDir(name);
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const srv = await server(dir);
  const temporal = loadTemporalConfig({ TEMPORAL_ADDRESS: srv.address });
  const c = await client(srv.address);
  const storage = new LocalStorage(path.join(dir, 'storage'));
  const store = new CheckpointStore(storage);
  cleanups.push(() => store.close());
  const connection = await connectWorker(temporal);
  cleanups.push(() => connection.close());
  const workers = await WorkerSet.create({ kinds: ['cpu', 'gpu'], connection, config: temporal, storage });
  return { dir, temporal, c, storage, store, workers };
}

describe.skipIf(skip !== undefined)(`the pipeline on the PyTorch engine (tiny Qwen2.5-VL, CPU)${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('survives a SIGKILLed GPU worker during Trust-GRPO: a new engine process reloads the last RL checkpoint, the run ends like an uninterrupted one, and its policy loads with plain transformers', async () => {
    const result = await gpuKillScenario({
      name: 'torch-rl',
      extra: torchLines('{ steps: 20, evalEvery: 10, chunkSteps: 10, patience: 10 }', '{ steps: 8, checkpointEvery: 2, evalEvery: 4 }'),
      stage: 'grpo',
      finalStep: 8,
      minCommitted: 2,
      reached: (c, runId) => waitForStageStep(c, runId, 'trustGrpo', 3),
      loaded: /policy loaded from storage \{[^}]*"step":(\d+)/,
      curve: rlCurve,
    });
    expect(result.status).toBe('completed');
    expect(result.results.trustGrpo?.step).toBe(8);
    const out = await loadsWithTransformers(result.store, result.checkpoints.trustGrpo!, path.join(modelRoot, 'final'));
    expect(out).toMatch(/^Qwen2_5_VLForConditionalGeneration \d+$/);
    // Each RL step reports the sampler–trainer logprob mismatch; on CPU in float32 it is float noise.
    const steps = (await readMetrics(result.storage, 'torch-rl-killed')).filter((m) => m.stage === 'grpo' && m.kind === 'step');
    expect(steps.length).toBeGreaterThanOrEqual(8);
    for (const m of steps) expect(Number(m.logprobDiffMax)).toBeLessThan(1e-5);
    for (const m of steps) expect(Math.abs(Number(m.importanceEss) - 1)).toBeLessThan(1e-6); // the importance weights' ESS
  }, 900_000);

  it('trains with LoRA through every stage: only adapters train, the base weights stay as they were, the final policy loads with its adapter in plain transformers', async () => {
    const { dir, temporal, c, storage, store, workers } = await inProcess('torch-lora');
    const { config } = faultConfigFile(dir, [
      `engine: { kind: torch, model: ${JSON.stringify(modelDir)}, threads: 1, lora: { rank: 4, alpha: 8, targetModules: [q_proj, v_proj] } }`,
      'sft: { steps: 12, evalEvery: 6, chunkSteps: 6, patience: 10, lr: 1e-2 }',
      'rewardModel: { data: { prompts: 12, samplesPerPrompt: 4, maxTokens: 24 }, steps: 6, batchSize: 8, evalEvery: 3, chunkSteps: 3 }',
      'rl: { steps: 4, checkpointEvery: 2, evalEvery: 2, maxTokens: 24, tisCap: 2 }',
    ]);
    const runId = 'torch-lora';
    const { handle } = await startRun(c, temporal, pipelineInput(runId, config, storage.location, temporal));
    const result = await workers.runUntil(handle.result());
    expect(result.status).toBe('completed');
    expect(result.results.trustGrpo?.step).toBe(4);
    const sft = await store.load(result.checkpoints.sftWarmup!);
    const rm = await store.load(result.checkpoints.rewardModel!);
    const rl = await store.load(result.checkpoints.trustGrpo!);
    const sha = (files: Map<string, Uint8Array>, name: string) => createHash('sha256').update(files.get(name)!).digest('hex');
    for (const { files } of [sft, rm, rl]) {
      expect(files.has('adapter_model.safetensors')).toBe(true);
      const meta = JSON.parse(Buffer.from(files.get('sophia_engine.json')!).toString('utf8')) as { lora: { rank: number }; trainable: string[] };
      expect(meta.lora.rank).toBe(4);
      expect(meta.trainable.every((n) => n.includes('.lora_') || n.startsWith('score_head.'))).toBe(true);
    }
    // The policy's base weights are the pretrained model's through SFT and RL; the reward model's backbone is the SFT
    // policy with its adapter folded in.
    expect(sha(rl.files, 'model.safetensors')).toBe(sha(sft.files, 'model.safetensors'));
    expect(sha(rm.files, 'model.safetensors')).not.toBe(sha(sft.files, 'model.safetensors'));
    expect(sha(rl.files, 'adapter_model.safetensors')).not.toBe(sha(sft.files, 'adapter_model.safetensors'));
    const [, baseCount] = describeWithTransformers(modelDir).split(' ');
    const [cls, count] = (await loadsWithTransformers(store, result.checkpoints.trustGrpo!, path.join(modelRoot, 'lora-final'))).split(' ');
    expect(cls).toBe('Qwen2_5_VLForConditionalGeneration');
    expect(Number(count)).toBeGreaterThan(Number(baseCount)); // the adapter's A and B came with it
    // The reference is the SFT adapter beside the policy's own: at RL step 1 the policy is the SFT state, so the KL to
    // the reference is float noise (the base model without the SFT adapter, or a stale adapter, would be far off).
    const steps = (await readMetrics(storage, runId)).filter((m) => m.stage === 'grpo' && m.kind === 'step');
    expect(steps.map((m) => m.step)).toEqual([1, 2, 3, 4]);
    expect(Math.abs(Number(steps[0]!.kl))).toBeLessThan(1e-6);
    // rl.tisCap: the correction runs; sampler and trainer agree to float noise here, so no weight reaches the cap.
    for (const m of steps) expect(m.tisCappedFraction).toBe(0);
  }, 900_000);

  it('trains on a real dataset (data.source: an EasyR1 parquet with broken rows; no SFT) sampling with vLLM (engine.rollout.backend vllm) in the GPU worker\'s engine process: every RL step pushes the updated policy into it, and the trainer scores its samples as vLLM did', async () => {
    const { dir, temporal, c, storage, workers } = await inProcess('torch-vllm');
    // A real benchmark in its published layout (ChartQA's test parquet, generated): evaluated on every policy.
    mkdirSync(path.join(dir, 'chartqa'));
    writeFileSync(path.join(dir, 'chartqa', 'test-00000-of-00001.parquet'), chartQaParquet(chartQaRows()));
    // A real training set in EasyR1's layout: 24 good rows (images of several sizes, numerical and OCR questions), 2 broken.
    mkdirSync(path.join(dir, 'train', 'data'), { recursive: true });
    writeFileSync(path.join(dir, 'train', 'data', 'train-00000-of-00001.parquet'), easyR1Parquet(trainingSetRows(24, 2)));
    const { config } = faultConfigFile(dir, [
      ...torchLinesWithoutRewardModel('{ steps: 0 }', '{ steps: 3, checkpointEvery: 3, evalEvery: 3, maxTokens: 24 }', ', rollout: { backend: vllm, maxNumSeqs: 16, cpuKvCacheGib: 1 }'),
      `data: { perFamily: { train: 1, test: 1, ood: 1 }, validationPerFamily: 1, source: { format: easyr1, location: ${JSON.stringify(path.join(dir, 'train'))}, maxBadShare: 0.1, testShare: 0.25 } }`,
      `evaluation: { k: 0, temperature: 1, maxTokens: 24, promptsPerBatch: 50, baseline: false, benchmarks: { chartqa: { data: ${JSON.stringify(path.join(dir, 'chartqa'))}, maxTokens: 8 } } }`,
    ]);
    expect(config.rl?.variant).toBe('grpo');
    const runId = 'torch-vllm';
    const { handle } = await startRun(c, temporal, pipelineInput(runId, config, storage.location, temporal));
    const result = await workers.runUntil(handle.result());
    expect(result.status).toBe('completed');
    // The dataset: every good row in train or test, the broken ones counted; no ood split; no SFT (the model as it is).
    const prepared = result.results.prepareData!;
    expect([prepared.train! + prepared.test!, prepared.ood, prepared.rowsRead, prepared.badRows]).toEqual([24, 0, 26, 2]);
    expect(prepared.test).toBeGreaterThan(0);
    expect(result.results.sftWarmup?.step).toBe(0);
    expect(result.results.trustGrpo?.step).toBe(3);
    expect(result.results.evaluation?.testAccuracy).toBeGreaterThanOrEqual(0);
    expect(result.results.evaluation).not.toHaveProperty('oodAccuracy');
    const test = JSON.parse(new TextDecoder().decode(await storage.get(`runs/${runId}/eval/final/test.json`))) as { examples: { family: string }[]; byFamily: Record<string, unknown> };
    expect(test.examples).toHaveLength(prepared.test!);
    for (const family of Object.keys(test.byFamily)) expect(['numerical', 'OCR']).toContain(family);
    // evaluation.benchmarks: ChartQA on the final policy (no baselines here: CI time), its rows answered or skipped by name.
    expect(result.results.evaluation?.chartqaAccuracy).toBeGreaterThanOrEqual(0);
    for (const label of ['final']) {
      const bench = JSON.parse(new TextDecoder().decode(await storage.get(`runs/${runId}/eval/${label}/benchmarks/chartqa.json`))) as { overall: { examples: number }; skipped: { byField: Record<string, number> }; predictions: { index: number; tokens: number }[] };
      expect(bench.overall.examples).toBe(2);
      expect(bench.skipped.byField).toEqual({ image: 1 });
      expect(bench.predictions.map((p) => p.index)).toEqual([0, 1]);
    }
    const report = new TextDecoder().decode(await storage.get(result.reportKey!));
    expect(report).toMatch(/## Benchmarks[\s\S]*\| after grpo \| [\d.]+ \(2\) \|[\s\S]*SophiaVL-R1-7B/);
    expect(report).toMatch(/## Data\n\neasyr1 dataset at [\s\S]*26 rows read in 1 file, 24 kept, 2 skipped[\s\S]*\| missing-image \| 1 \|[\s\S]*\| empty-answer \| 1 \|/);
    const steps = (await readMetrics(storage, runId)).filter((m) => m.stage === 'grpo' && m.kind === 'step');
    expect(steps.map((m) => m.step)).toEqual([1, 2, 3]);
    for (const m of steps) {
      // Each step's rollouts came after the previous step's update (or the SFT state's load): the weights were pushed.
      expect(Number(m.weightSyncSeconds)).toBeGreaterThan(0);
      expect(Number(m.rolloutSeconds)).toBeGreaterThan(Number(m.weightSyncSeconds));
      expect(Number(m.rolloutTokensPerSecond)).toBeGreaterThan(0);
      expect(Number(m.updateSeconds)).toBeGreaterThan(0);
      // The update's first forward scores vLLM's tokens with the trainer: the same logprobs in fp32 (a stale push,
      // or samples from another model, would be far off).
      expect(Number(m.logprobDiffMax)).toBeLessThan(1e-4);
      expect(Number(m.importanceEss)).toBeGreaterThan(0.9999);
    }
  }, 900_000);

  it('trains with two engine processes (engine.processes: 2, torchrun and FSDP; gloo on CPU) sampling with one vLLM engine across both (tensorParallel 2): the checkpoints are whole Hugging Face models', async () => {
    const { dir, temporal, c, storage, store, workers } = await inProcess('torch-fsdp');
    const { config } = faultConfigFile(dir, torchLinesWithoutRewardModel('{ steps: 4, evalEvery: 4, chunkSteps: 4, patience: 10, lr: 1e-2 }', '{ steps: 2, checkpointEvery: 2, evalEvery: 2, maxTokens: 24 }', ', processes: 2, rollout: { backend: vllm, tensorParallel: 2, maxNumSeqs: 16, cpuKvCacheGib: 1 }'));
    const { handle } = await startRun(c, temporal, pipelineInput('torch-fsdp', config, storage.location, temporal));
    const result = await workers.runUntil(handle.result());
    expect(result.status).toBe('completed');
    expect(result.results.trustGrpo?.step).toBe(2);
    const steps = (await readMetrics(storage, 'torch-fsdp')).filter((m) => m.stage === 'grpo' && m.kind === 'step');
    expect(steps.map((m) => m.step)).toEqual([1, 2]);
    for (const m of steps) {
      // The sharded policy's weights, gathered whole, pushed into vLLM before each step's rollouts; the update scores
      // vLLM's samples as vLLM did.
      expect(Number(m.weightSyncSeconds)).toBeGreaterThan(0);
      expect(Number(m.logprobDiffMax)).toBeLessThan(1e-4);
    }
    const [cls, count] = (await loadsWithTransformers(store, result.checkpoints.trustGrpo!, path.join(modelRoot, 'fsdp-final'))).split(' ');
    expect(cls).toBe('Qwen2_5_VLForConditionalGeneration');
    expect(count).toBe(describeWithTransformers(modelDir).split(' ')[1]);
  }, 900_000);

  it('fails a run at once, naming engine.dtype, when the worker cannot run the dtype (bfloat16 on a CPU): not retried', async () => {
    const { dir, temporal, c, storage, workers } = await inProcess('torch-dtype');
    const { config } = faultConfigFile(dir, [`engine: { kind: torch, model: ${JSON.stringify(modelDir)}, device: cpu, dtype: bfloat16 }`]);
    const { handle } = await startRun(c, temporal, pipelineInput('torch-dtype', config, storage.location, temporal));
    const started = Date.now();
    const failure = await workers.runUntil(handle.result().then(() => undefined, (err: unknown) => err));
    expect(failure).toBeInstanceOf(Error);
    // The workflow failure → the stage's child failure → … → the activity's ConfigError: one of them names the field.
    const messages: string[] = [];
    for (let e: unknown = failure; e instanceof Error; e = e.cause) messages.push(e.message);
    expect(messages.join(' | ')).toMatch(/engine\.dtype/);
    // One attempt: a retried activity would wait out the retry policy's backoff first.
    expect(Date.now() - started).toBeLessThan(60_000);
  }, 300_000);

  it('pauses (checkpoint, wait), resumes, and stops during Trust-GRPO (the policy committed at its step, then evaluated), with the frozen reference offloaded', async () => {
    const { dir, temporal, c, storage, store, workers } = await inProcess('torch-control');
    const { config } = faultConfigFile(dir, torchLines('{ steps: 60, evalEvery: 20, chunkSteps: 60, patience: 10 }', '{ variant: grpo, steps: 200, checkpointEvery: 100, evalEvery: 0 }', ', offloadFrozen: true'));
    const runId = 'torch-control';
    const { handle } = await startRun(c, temporal, pipelineInput(runId, { ...config, stages: ['prepareData', 'sftWarmup', 'trustGrpo', 'evaluation'] }, storage.location, temporal));
    const result = await workers.runUntil(
      (async () => {
        await waitFor('SFT step 3', async () => ((await runProgress(c, runId)).live?.step ?? 0) >= 3 || undefined);
        await handle.signal(pauseSignal);
        const paused = await waitFor('the pause to take effect', async () => {
          const p = await runProgress(c, runId);
          return p.status === 'paused' && p.current?.activity === 'paused' ? p : undefined;
        });
        // The chunk committed the step it had reached, and nothing runs while paused.
        expect(paused.current?.stage).toBe('sftWarmup');
        expect((await store.latest(runId, 'sft'))?.step).toBe(paused.current?.step);
        await new Promise((r) => setTimeout(r, 2000));
        expect((await store.latest(runId, 'sft'))?.step).toBe(paused.current?.step);
        await handle.signal(resumeSignal);
        await waitFor('RL step 2', async () => {
          const p = await runProgress(c, runId);
          return p.current?.stage === 'trustGrpo' && p.current.step >= 2 ? true : undefined;
        }, 600_000);
        await handle.signal(stopSignal);
        return handle.result();
      })(),
    );
    expect(result.status).toBe('completed');
    expect(result.results.sftWarmup?.step).toBe(60);
    const stoppedAt = result.results.trustGrpo!.step!;
    expect(stoppedAt).toBeGreaterThanOrEqual(2);
    expect(stoppedAt).toBeLessThan(200);
    const committed = await store.latest(runId, 'grpo');
    expect(committed?.step).toBe(stoppedAt);
    expect(committed?.meta.stopped).toBe(true);
    expect(result.checkpoints.trustGrpo).toBe(committed!.key);
    expect(result.results.evaluation?.testAccuracy).toBeGreaterThanOrEqual(0);
    // The offloaded reference is the SFT policy: at RL step 1 the policy is too, so their KL is float noise.
    const first = (await readMetrics(storage, runId)).find((m) => m.stage === 'grpo' && m.kind === 'step' && m.step === 1);
    expect(Math.abs(Number(first?.kl))).toBeLessThan(1e-6);
  }, 900_000);
});
