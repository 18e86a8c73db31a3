import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadRunConfig } from './load';
import { RUN_PRESETS, assertRunnable, mergeConfig, modelConfig, modelSpecOf, parseRunConfig, resolveRunConfig } from './run-config';
import { QWEN2_5_VL_3B, QWEN2_5_VL_7B } from './testing/hf-configs';
import { configError } from '../common/testing/config-error';

/** Model directories with only a config.json (what the config checks read; no weights). */
const modelsDir = mkdtempSync(path.join(tmpdir(), 'sophia-run-config-models-'));
function modelDir(name: string, config: unknown): string {
  const dir = path.join(modelsDir, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  return dir;
}
const QWEN_7B = modelDir('Qwen2.5-VL-7B-Instruct', QWEN2_5_VL_7B);
const QWEN_3B = modelDir('Qwen2.5-VL-3B-Instruct', QWEN2_5_VL_3B);
/** The paper preset with its two models given, as a run file would. */
const paper = () => resolveRunConfig({ extends: 'paper', engine: { model: QWEN_7B, rewardModel: QWEN_3B } }, 'paper.yaml');
afterAll(() => rmSync(modelsDir, { recursive: true, force: true }));

describe('run config', () => {
  it('validates every preset (paper with its models given), with defaults filled in', () => {
    for (const config of [resolveRunConfig('ci', 'ci'), resolveRunConfig('tiny', 'tiny'), paper()]) expect(config.checkpoints.keepLast).toBeGreaterThan(0);
    const ci = resolveRunConfig('ci', 'ci');
    expect(ci.engine).toEqual({ kind: 'onnx', executionProvider: 'cpu', threads: 0 });
    expect(ci.data.shardSize).toBe(2000);
    expect(paper().rl).toMatchObject({ groupSize: 8, alpha: 0.3, clipEps: 0.2, klCoef: 0.04, maxGradNorm: 4, weightDecay: 0.01 });
    expect(paper().engine).toEqual({ kind: 'torch', model: QWEN_7B, rewardModel: QWEN_3B, dtype: 'auto', device: 'auto', gradientCheckpointing: true, threads: 0, offloadFrozen: false, processes: 1 });
  });

  it('uses the paper\'s AdamW settings in every preset: weight decay 0.01, gradients clipped at global norm 4', () => {
    for (const config of [resolveRunConfig('ci', 'ci'), resolveRunConfig('tiny', 'tiny'), paper()]) {
      for (const section of [config.sft, config.rewardModel!, config.rl!]) expect(section).toMatchObject({ weightDecay: 0.01, maxGradNorm: 4 });
    }
  });

  it('splits the reward model\'s held-out prompts in half between validation and test unless told otherwise', () => {
    expect(resolveRunConfig('tiny', 'tiny').rewardModel?.data).toMatchObject({ heldOutShare: 0.15, heldOutTestShare: 0.5 });
    const err = configError(() => parseRunConfig(mergeConfig(RUN_PRESETS.ci, { rewardModel: { data: { heldOutTestShare: 1 } } }), 'run.yaml'));
    expect(err.message).toMatch(/rewardModel\.data\.heldOutTestShare: Too big/);
  });

  it('rejects unknown fields and bad values, naming every path and reason', () => {
    const raw = mergeConfig(RUN_PRESETS.ci, { sft: { lr: -1, stepz: 3 }, data: { perFamily: { train: 0 } }, colour: 'blue' });
    const err = configError(() => parseRunConfig(raw, 'run.yaml'));
    expect(err.message).toMatch(/sft\.lr: Too small: expected number to be >0/);
    expect(err.message).toMatch(/sft\.stepz: unknown field/);
    expect(err.message).toMatch(/data\.perFamily\.train: Too small/);
    expect(err.message).toMatch(/colour: unknown field/);
    expect(err.field).toMatch(/^run\.yaml /);
  });

  it('merges a `__proto__` key as a field (then rejected as unknown), never as the result\'s prototype', () => {
    // JSON.parse (an HTTP body) and YAML make `__proto__` an own key; assigned with `out[k] = v` it replaced the
    // merged object's prototype, so the strict schema saw no unknown key and the run started with the override ignored.
    const override = JSON.parse('{"__proto__": {"sft": {"steps": 3}}, "sft": {"constructor": 1}}') as unknown;
    const merged = mergeConfig(RUN_PRESETS.ci, override) as Record<string, unknown>;
    expect(Object.getPrototypeOf(merged)).toBe(Object.prototype);
    expect(Object.hasOwn(merged, '__proto__')).toBe(true);
    const err = configError(() => parseRunConfig(merged, 'run.yaml'));
    expect(err.message).toMatch(/__proto__: unknown field/);
    expect(err.message).toMatch(/sft\.constructor: unknown field/);
    expect(({} as Record<string, unknown>).sft).toBeUndefined();
  });

  it("refuses a judge's endpoint or key variable in a run config: judges are configured on the workers and named", () => {
    const withAnnotator = (annotator: unknown) => () => parseRunConfig(mergeConfig(RUN_PRESETS.ci, { rewardModel: { annotator } }), 'test');
    const exfiltrate = configError(withAnnotator({ kind: 'openai', baseUrl: 'http://listener.example/v1', model: 'm', apiKeyEnv: 'SOPHIA_S3_SECRET_ACCESS_KEY' }));
    expect(exfiltrate.message).toMatch(/rewardModel\.annotator\.kind: kind openai is gone/);
    expect(exfiltrate.message).toMatch(/rewardModel\.annotator\.baseUrl: a run config may not set a judge's baseUrl; configure the judge on the workers \(SOPHIA_JUDGES/);
    expect(exfiltrate.message).toMatch(/rewardModel\.annotator\.apiKeyEnv: a run config may not set/);
    expect(configError(withAnnotator({ kind: 'judge', name: 'gpt-judge', baseUrl: 'http://listener.example/v1' })).message).toMatch(/rewardModel\.annotator\.baseUrl: a run config may not/);
    expect(configError(withAnnotator({ kind: 'judge', name: 'gpt-judge', apiKeyEnv: 'AWS_SECRET_ACCESS_KEY' })).message).toMatch(/rewardModel\.annotator\.apiKeyEnv: a run config may not/);
    expect(configError(withAnnotator({ kind: 'judge', name: '../x' })).message).toMatch(/rewardModel\.annotator\.name: a judge name is/);
    expect(withAnnotator({ kind: 'judge', name: 'gpt-judge' })().rewardModel!.annotator).toEqual({ kind: 'judge', name: 'gpt-judge' });
    expect(paper().rewardModel!.annotator).toEqual({ kind: 'judge', name: 'qwen2.5-vl-72b' });
  });

  it('checks relations between fields', () => {
    const err = configError(() => parseRunConfig(mergeConfig(RUN_PRESETS.ci, { sft: { chunkSteps: 70 } }), 'x'));
    expect(err.message).toMatch(/sft\.chunkSteps: must be a multiple of sft\.evalEvery/);
    expect(() => parseRunConfig(mergeConfig(RUN_PRESETS.ci, { stages: [] }), 'x')).toThrow(/stages: Too small/);
    expect(() => parseRunConfig(mergeConfig(RUN_PRESETS.ci, { stages: ['bogus'] }), 'x')).toThrow(/stages\[0\]/);
    const { rewardModel: _rm, ...withoutRm } = RUN_PRESETS.ci as Record<string, unknown>;
    expect(() => parseRunConfig({ ...withoutRm, stages: ['prepareData', 'rewardModel'] }, 'x')).toThrow(/stages\[1\]: rewardModel needs a rewardModel section/);
    expect(() => parseRunConfig(withoutRm, 'x')).toThrow(/rl\.variant: trust-grpo needs a reward model/);
    expect(() => parseRunConfig(mergeConfig(withoutRm, { rl: { variant: 'grpo' } }), 'x')).not.toThrow();
    expect(() => parseRunConfig(mergeConfig(RUN_PRESETS.ci, { rl: { evalEvery: 4 } }), 'x')).toThrow(/rl\.evalEvery: must be a multiple of rl\.checkpointEvery/);
  });

  it('refuses configs it cannot run here, with the fix', () => {
    expect(() => assertRunnable(resolveRunConfig('tiny', 'tiny'))).not.toThrow();
    expect(() => assertRunnable(paper())).not.toThrow();
  });

  it('maps the model section onto the engine model config', () => {
    const m = modelConfig(resolveRunConfig({ extends: 'ci', model: { preset: 'tiny', layers: 3, imageSize: 24 } }, 'x'), 64);
    expect(m).toMatchObject({ kind: 'policy', vocabSize: 64, layers: 3, width: 128, image: { size: 24, patch: 4, channels: 3 } });
  });

  it('loads YAML and JSON files that extend a preset', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sophia-config-'));
    try {
      writeFileSync(path.join(dir, 'run.yaml'), 'extends: ci\nseed: 7\nsft:\n  steps: 100\n');
      const yaml = loadRunConfig(path.join(dir, 'run.yaml'));
      expect(yaml).toMatchObject({ seed: 7, sft: { steps: 100, batchSize: 32 } });
      writeFileSync(path.join(dir, 'run.json'), JSON.stringify({ extends: 'tiny', evaluation: { k: 0 } }));
      expect(loadRunConfig(path.join(dir, 'run.json')).evaluation.k).toBe(0);
      writeFileSync(path.join(dir, 'bad.yaml'), 'extends: huge\n');
      expect(() => loadRunConfig(path.join(dir, 'bad.yaml'))).toThrow(/extends: "huge" is not a preset/);
      writeFileSync(path.join(dir, 'list.yaml'), '- 1\n- 2\n');
      expect(() => loadRunConfig(path.join(dir, 'list.yaml'))).toThrow(/must contain a mapping/);
      writeFileSync(path.join(dir, 'broken.yaml'), 'a: [1, 2\n');
      expect(() => loadRunConfig(path.join(dir, 'broken.yaml'))).toThrow(/is not valid YAML\/JSON/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the engine section: onnx (default) or torch', () => {
  const torch = (engine: Record<string, unknown>, more: Record<string, unknown> = {}) => resolveRunConfig({ extends: 'ci', engine: { kind: 'torch', ...engine }, ...more }, 'run.yaml');

  it('keeps onnx the default, also for a section without kind, and refuses the old placeholders with the new spelling', () => {
    expect(resolveRunConfig({ extends: 'ci', engine: { threads: 2 } }, 'x').engine).toEqual({ kind: 'onnx', executionProvider: 'cpu', threads: 2 });
    const pytorch = configError(() => resolveRunConfig({ extends: 'ci', engine: { kind: 'pytorch' } }, 'x'));
    expect(pytorch.message).toMatch(/engine\.kind: "pytorch" is now "torch", with the model it trains: engine: \{ kind: torch, model: \/path\/to\/Qwen2\.5-VL-7B-Instruct/);
    const base = configError(() => resolveRunConfig({ extends: 'ci', model: { base: 'Qwen/Qwen2.5-VL-7B-Instruct' } }, 'x'));
    expect(base.message).toMatch(/model\.base: model\.base is gone: the torch engine names its Hugging Face model in engine\.model/);
    expect(configError(() => resolveRunConfig({ extends: 'ci', engine: { kind: 'onnx', dtype: 'float32' } }, 'x')).message).toMatch(/engine\.dtype: unknown field/);
  });

  it('validates `extends: ci` + `engine: { kind: torch, model: DIR }`, with defaults; the onnx model section does not get in the way', () => {
    const config = torch({ model: QWEN_7B });
    expect(config.engine).toEqual({ kind: 'torch', model: QWEN_7B, dtype: 'auto', device: 'auto', gradientCheckpointing: false, threads: 0, offloadFrozen: false, processes: 1 });
    expect(() => assertRunnable(config)).not.toThrow();
    // Sophia model sections that onnx refuses: width not divisible by heads; fewer positions than evaluation.maxTokens.
    const odd = { model: { width: 130, heads: 4 } };
    const short = { model: { maxLength: 16 } };
    expect(() => resolveRunConfig({ extends: 'ci', ...odd }, 'x')).toThrow(/^x model\.width: invalid run config/);
    expect(() => resolveRunConfig({ extends: 'ci', ...short }, 'x')).toThrow(/evaluation\.maxTokens: 64 is not below the model's 16 text positions/);
    expect(() => assertRunnable(torch({ model: QWEN_7B }, short))).not.toThrow();
    expect(() => assertRunnable(torch({ model: QWEN_7B }, odd))).not.toThrow();
    expect(torch({ model: 's3://models/qwen2.5-vl-7b' }).engine).toMatchObject({ model: 's3://models/qwen2.5-vl-7b' });
  });

  it('names the field and the fix for a missing, malformed or unsupported model', () => {
    const missing = configError(() => resolveRunConfig('paper', 'preset paper'));
    expect(missing.message).toMatch(/engine\.model: missing: the torch engine needs the model to train; add engine: \{ kind: torch, model: \/path\/to\/Qwen2\.5-VL-7B-Instruct, rewardModel: \/path\/to\/Qwen2\.5-VL-3B-Instruct \}/);
    expect(configError(() => torch({ model: 'Qwen/Qwen2.5-VL-7B-Instruct' })).message).toMatch(/engine\.model: "Qwen\/Qwen2\.5-VL-7B-Instruct" looks like a Hugging Face Hub id/);
    expect(configError(() => torch({ model: 's3://Models/x' })).message).toMatch(/engine\.model: "s3:\/\/Models\/x": "Models" is not an S3 bucket name/);
    expect(configError(() => torch({ model: QWEN_7B, rewardModel: 's3://models' })).message).toMatch(/engine\.rewardModel: "s3:\/\/models" names a bucket but no prefix/);
    expect(configError(() => torch({ model: QWEN_7B, dtype: 'int8' })).message).toMatch(/engine\.dtype: Invalid option: expected one of "auto"\|"float32"\|"bfloat16"\|"float16"\|"float64"/);
    expect(configError(() => torch({ model: QWEN_7B, device: 'tpu' })).message).toMatch(/engine\.device: Invalid option/);
    expect(configError(() => torch({ model: QWEN_7B, executionProvider: 'cuda' })).message).toMatch(/engine\.executionProvider: unknown field/);

    const runnable = (engine: Record<string, unknown>, more: Record<string, unknown> = {}) => configError(() => assertRunnable(torch(engine, more)));
    expect(runnable({ model: path.join(modelsDir, 'nope') }).message).toMatch(/^engine\.model: ".*nope" does not exist here \(ENOENT\)/);
    mkdirSync(path.join(modelsDir, 'empty'), { recursive: true });
    expect(runnable({ model: path.join(modelsDir, 'empty') }).message).toMatch(/^engine\.model: ".*empty" has no readable config\.json/);
    const llava = modelDir('llava', { architectures: ['LlavaForConditionalGeneration'], model_type: 'llava' });
    expect(runnable({ model: llava }).message).toMatch(/^engine\.model: .*config\.json says architectures \["LlavaForConditionalGeneration"\], which is not a supported model class.*Qwen2_5_VLForConditionalGeneration/);
    expect(runnable({ model: QWEN_7B, rewardModel: llava }).field).toBe('engine.rewardModel');
    // Responses must fit the model's positions (its config.json), with the prompt.
    const short = modelDir('short', { ...QWEN2_5_VL_3B, max_position_embeddings: 48 });
    expect(runnable({ model: short }).message).toMatch(/^evaluation\.maxTokens: 64 is not below the 48 positions of engine\.model \(max_position_embeddings in its config\.json\)/);
    expect(runnable({ model: QWEN_7B, rewardModel: short }, { evaluation: { maxTokens: 8 } }).message).toMatch(/^rewardModel\.data\.maxTokens: 48 is not below the 48 positions of engine\.rewardModel/);
  });

  it('takes engine.rollout with the torch engine, only the settings given, and names a bad one', () => {
    expect(torch({ model: QWEN_7B }).engine).not.toHaveProperty('rollout');
    expect(torch({ model: QWEN_7B, rollout: { backend: 'vllm' } }).engine).toMatchObject({ rollout: { backend: 'vllm' } });
    const full = { backend: 'vllm', gpuMemoryUtilization: 0.4, maxNumSeqs: 64, maxModelLen: 4096, sleep: false, enforceEager: true, cpuKvCacheGib: 2, imagesPerPrompt: 2 };
    expect(torch({ model: QWEN_7B, rollout: full }).engine).toMatchObject({ rollout: full });
    expect(configError(() => torch({ model: QWEN_7B, rollout: { backend: 'sglang' } })).message).toMatch(/engine\.rollout\.backend: Invalid option: expected one of "hf"\|"vllm"/);
    expect(configError(() => torch({ model: QWEN_7B, rollout: { backend: 'vllm', gpuMemoryUtilization: 1 } })).message).toMatch(/engine\.rollout\.gpuMemoryUtilization: Too big/);
    expect(configError(() => torch({ model: QWEN_7B, rollout: { backend: 'vllm', vllmFlag: 2 } })).message).toMatch(/engine\.rollout\.vllmFlag: unknown field/);
    expect(configError(() => resolveRunConfig({ extends: 'ci', engine: { kind: 'onnx', rollout: { backend: 'vllm' } } }, 'x')).message).toMatch(/engine\.rollout: unknown field/);
  });

  it('takes evaluation.benchmarks with either engine, and refuses an unknown name, a relative path or an answer longer than the model holds, naming the field', () => {
    const evaluation = (benchmarks: unknown) => ({ evaluation: { k: 0, temperature: 1, maxTokens: 64, promptsPerBatch: 8, benchmarks } });
    const ok = torch({ model: QWEN_7B }, evaluation({ mathvista: { data: '/data/MathVista', files: ['data/testmini-*.parquet'], limit: 100 }, chartqa: { data: 's3://bench/chartqa', maxTokens: 512 } }));
    expect(ok.evaluation.benchmarks).toEqual({ mathvista: { data: '/data/MathVista', files: ['data/testmini-*.parquet'], limit: 100 }, chartqa: { data: 's3://bench/chartqa', maxTokens: 512 } });
    expect(configError(() => torch({ model: QWEN_7B }, evaluation({ mathvistaa: { data: '/d' } }))).message).toMatch(/evaluation\.benchmarks\.mathvistaa/);
    expect(configError(() => torch({ model: QWEN_7B }, evaluation({ mmmu: { data: 'data/MMMU' } }))).message).toMatch(/evaluation\.benchmarks\.mmmu\.data: "data\/MMMU" must be an absolute path on the GPU workers or s3:\/\/bucket\/prefix/);
    expect(configError(() => torch({ model: QWEN_7B }, evaluation({ mmstar: { data: '/d', limit: 0 } }))).message).toMatch(/evaluation\.benchmarks\.mmstar\.limit: Too small/);
    // The onnx engine: its prompts are adapted to Sophia's tiny model when evaluated (engine/onnx-prompts.ts), so the
    // config only has to leave the answer room in the model's positions (tiny: 128).
    expect(resolveRunConfig({ extends: 'ci', ...evaluation({ chartqa: { data: '/d', maxTokens: 32 } }) }, 'x').evaluation.benchmarks).toEqual({ chartqa: { data: '/d', maxTokens: 32 } });
    expect(configError(() => resolveRunConfig({ extends: 'ci', ...evaluation({ chartqa: { data: '/d', maxTokens: 128 } }) }, 'x')).message).toMatch(/evaluation\.benchmarks\.chartqa\.maxTokens: 128 is not below the model's 128 text positions \(model\.maxLength\)/);
    expect(configError(() => resolveRunConfig({ extends: 'ci', ...evaluation({ chartqa: { data: 'rel/d' } }) }, 'x')).message).toMatch(/evaluation\.benchmarks\.chartqa\.data: "rel\/d" must be an absolute path/);
  });

  it('takes engine.processes (one per GPU) with LoRA or without, and refuses 0, naming the field', () => {
    expect(torch({ model: QWEN_7B, processes: 4 }).engine).toMatchObject({ processes: 4 });
    expect(configError(() => torch({ model: QWEN_7B, processes: 0 })).message).toMatch(/engine\.processes: Too small/);
    expect(torch({ model: QWEN_7B, processes: 2, lora: { rank: 4, alpha: 8, targetModules: ['q_proj'] } }).engine).toMatchObject({ processes: 2, lora: { rank: 4 } });
    expect(() => torch({ model: QWEN_7B, processes: 2, rollout: { backend: 'hf' } })).not.toThrow();
  });

  it('takes rollout.tensorParallel dividing engine.processes with the vllm backend, and refuses it otherwise naming the field', () => {
    expect(torch({ model: QWEN_7B, processes: 4, rollout: { backend: 'vllm', tensorParallel: 2 } }).engine).toMatchObject({ processes: 4, rollout: { tensorParallel: 2 } });
    expect(torch({ model: QWEN_7B, processes: 2, rollout: { backend: 'vllm' } }).engine).toMatchObject({ processes: 2, rollout: { backend: 'vllm' } });
    expect(configError(() => torch({ model: QWEN_7B, processes: 4, rollout: { backend: 'vllm', tensorParallel: 3 } })).message).toMatch(/engine\.rollout\.tensorParallel: 3 does not divide engine\.processes \(4\)/);
    expect(configError(() => torch({ model: QWEN_7B, rollout: { backend: 'vllm', tensorParallel: 2 } })).message).toMatch(/engine\.rollout\.tensorParallel: 2 does not divide engine\.processes \(1\)/);
    expect(configError(() => torch({ model: QWEN_7B, processes: 2, rollout: { backend: 'hf', tensorParallel: 2 } })).message).toMatch(/engine\.rollout\.tensorParallel: tensorParallel is a setting of the vllm backend/);
    expect(configError(() => torch({ model: QWEN_7B, processes: 2, rollout: { backend: 'vllm', tensorParallel: 0 } })).message).toMatch(/engine\.rollout\.tensorParallel: Too small/);
  });

  it('takes rl.ppoEpochs and rl.miniBatches (default 1 and 1), refusing more mini-batches than a step has rollouts', () => {
    const ci = resolveRunConfig({ extends: 'ci' }, 'x');
    expect(ci.rl).toMatchObject({ ppoEpochs: 1, miniBatches: 1 });
    const rollouts = ci.rl!.promptsPerStep * ci.rl!.groupSize;
    expect(resolveRunConfig({ extends: 'ci', rl: { ppoEpochs: 2, miniBatches: rollouts } }, 'x').rl).toMatchObject({ ppoEpochs: 2, miniBatches: rollouts });
    expect(configError(() => resolveRunConfig({ extends: 'ci', rl: { miniBatches: rollouts + 1 } }, 'x')).message).toMatch(new RegExp(`rl\\.miniBatches: ${rollouts + 1} mini-batches of ${rollouts} rollouts`));
    expect(configError(() => resolveRunConfig({ extends: 'ci', rl: { ppoEpochs: 0 } }, 'x')).message).toMatch(/rl\.ppoEpochs: Too small/);
  });

  it('takes rl.tisCap (≥ 1) with the torch engine and refuses it with the onnx engine, naming the field', () => {
    expect(torch({ model: QWEN_7B }, { rl: { tisCap: 2 } }).rl?.tisCap).toBe(2);
    expect(configError(() => torch({ model: QWEN_7B }, { rl: { tisCap: 0.5 } })).message).toMatch(/rl\.tisCap: Too small/);
    expect(configError(() => resolveRunConfig({ extends: 'ci', rl: { tisCap: 2 } }, 'x')).message).toMatch(/rl\.tisCap: the onnx engine samples with the graphs it trains with/);
  });

  it('validates LoRA settings', () => {
    const lora = { rank: 16, alpha: 32, targetModules: ['q_proj', 'v_proj'] };
    expect(torch({ model: QWEN_7B, lora }).engine).toMatchObject({ lora: { ...lora, dropout: 0 } });
    expect(configError(() => torch({ model: QWEN_7B, lora: { ...lora, rank: 0 } })).message).toMatch(/engine\.lora\.rank: Too small/);
    expect(configError(() => torch({ model: QWEN_7B, lora: { ...lora, targetModules: [] } })).message).toMatch(/engine\.lora\.targetModules: Too small/);
    expect(() => assertRunnable(torch({ model: QWEN_7B, lora }))).not.toThrow();
  });

  it('refuses a reward model from scratch with torch (its reward model starts from a pretrained backbone)', () => {
    expect(configError(() => torch({ model: QWEN_7B }, { rewardModel: { init: 'scratch' } })).message).toMatch(/rewardModel\.init: scratch \(random weights\) is for the onnx engine's own architecture/);
  });

  it('judges with a trained head by default, or with the SFT policy\'s likelihood (rewardModel.kind), which is no model of its own', () => {
    expect(resolveRunConfig('ci', 'ci').rewardModel).toMatchObject({ kind: 'head', likelihoodMinScore: 0.8 });
    expect(resolveRunConfig({ extends: 'ci', rewardModel: { kind: 'likelihood', likelihoodMinScore: 0.6 } }, 'x').rewardModel).toMatchObject({ kind: 'likelihood', likelihoodMinScore: 0.6 });
    expect(configError(() => resolveRunConfig({ extends: 'ci', rewardModel: { kind: 'generative' } }, 'x')).message).toMatch(/rewardModel\.kind: Invalid option: expected one of "head"\|"likelihood"/);
    expect(configError(() => resolveRunConfig({ extends: 'ci', rewardModel: { kind: 'likelihood', init: 'scratch' } }, 'x')).message).toMatch(/rewardModel\.init: a likelihood judge is the SFT policy itself/);
    expect(configError(() => torch({ model: QWEN_7B, rewardModel: QWEN_3B }, { rewardModel: { kind: 'likelihood' } })).message).toMatch(/engine\.rewardModel: a likelihood judge is the SFT policy itself, not a model of its own/);
    expect(torch({ model: QWEN_7B }, { rewardModel: { kind: 'likelihood' } }).rewardModel?.kind).toBe('likelihood');
    // 0 steps: the policy judging as it is; a head cannot go untrained.
    expect(resolveRunConfig({ extends: 'ci', rewardModel: { kind: 'likelihood', steps: 0 } }, 'x').rewardModel?.steps).toBe(0);
    expect(configError(() => resolveRunConfig({ extends: 'ci', rewardModel: { steps: 0 } }, 'x')).message).toMatch(/rewardModel\.steps: a reward model with a head needs training steps \(0 is for kind likelihood/);
  });

  it('maps a run onto the model each engine starts from (modelSpecOf)', () => {
    const ci = resolveRunConfig('ci', 'ci');
    expect(modelSpecOf(ci, 'reward')).toEqual({ ...modelConfig(ci, (modelSpecOf(ci, 'policy') as { vocabSize: number }).vocabSize), kind: 'reward' });
    expect(modelSpecOf(paper(), 'policy')).toEqual({ kind: 'policy', pretrained: QWEN_7B });
    expect(modelSpecOf(paper(), 'reward')).toEqual({ kind: 'reward', pretrained: QWEN_3B });
    // Without engine.rewardModel the reward model starts from the policy's model.
    expect(modelSpecOf(torch({ model: QWEN_7B }), 'reward')).toEqual({ kind: 'reward', pretrained: QWEN_7B });
    const s3 = torch({ model: 's3://models/qwen' });
    expect(() => modelSpecOf(s3, 'policy')).toThrow(/engine\.model is s3:\/\/models\/qwen: download it first \(resolveModel/);
    expect(modelSpecOf(s3, 'policy', '/cache/qwen')).toEqual({ kind: 'policy', pretrained: '/cache/qwen' });
  });
});
