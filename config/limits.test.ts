/**
 * The run estimates and the deployment limits: the presets fit the defaults; the configs the hardening review
 * submitted (a 1.6e9-parameter model, a billion SFT steps, a billion examples per family) are refused with the field,
 * the estimate and the limit; the estimates grow with what they count.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../common/errors';
import { DEFAULT_RUN_LIMITS, RUN_LIMIT_VARS, assertWithinLimits, estimateRun, loadRunLimits } from './limits';
import { RUN_PRESETS, mergeConfig, parseRunConfig, resolveRunConfig } from './run-config';
import { readPretrainedShape } from './pretrained';
import { QWEN2_5_VL_3B, QWEN2_5_VL_7B, QWEN2_VL_7B } from './testing/hf-configs';
import { loraParameters } from './torch-estimate';

const ci = parseRunConfig(RUN_PRESETS.ci, 'ci');
const tiny = parseRunConfig(RUN_PRESETS.tiny, 'tiny');
const ciWith = (overrides: Record<string, unknown>) => parseRunConfig(mergeConfig(RUN_PRESETS.ci, overrides), 'test');

describe('run estimates and limits', () => {
  it('lets the presets through the default limits, with estimates of their size', () => {
    for (const config of [ci, tiny]) expect(() => assertWithinLimits(config, DEFAULT_RUN_LIMITS)).not.toThrow();
    const e = estimateRun(tiny);
    expect(e.parameters).toBeGreaterThan(400_000); // the tiny policy: 437,632 parameters (sophia sft prints it)
    expect(e.parameters).toBeLessThan(500_000);
    expect(e.trainingSteps).toBe(2000 + 400 + 150);
    expect(e.engineMemoryBytes).toBeGreaterThan(4 * 16 * e.parameters);
    expect(e.storageBytes).toBeGreaterThan(0);
  });

  it('refuses a model too large for the workers, naming model, the estimate and the limit', () => {
    const huge = ciWith({ model: { width: 16384, layers: 128, heads: 128 } });
    expect(() => assertWithinLimits(huge, DEFAULT_RUN_LIMITS)).toThrow(ConfigError);
    expect(() => assertWithinLimits(huge, DEFAULT_RUN_LIMITS)).toThrow(/^model: the run's engines need about [\d.]+ GiB \([\d,]+ parameters\); this deployment allows 16\.0 GiB \(SOPHIA_MAX_RUN_MEMORY_GB\)/);
  });

  it('refuses a billion steps, naming the stage that asks for them', () => {
    expect(() => assertWithinLimits(ciWith({ sft: { steps: 1e9, chunkSteps: 50 } }), DEFAULT_RUN_LIMITS)).toThrow(/^sft\.steps: the run would take 1,000,000,\d+ optimizer steps; this deployment allows 1,000,000 \(SOPHIA_MAX_RUN_STEPS\)/);
  });

  it('refuses a dataset that would fill the store, naming data.perFamily', () => {
    expect(() => assertWithinLimits(ciWith({ data: { perFamily: { train: 1e9, test: 20, ood: 20 } } }), DEFAULT_RUN_LIMITS)).toThrow(/^data\.perFamily: the run would store about [\d.]+ GiB .* allows 100\.0 GiB \(SOPHIA_MAX_RUN_STORAGE_GB\)/);
  });

  it('estimates grow with what they count', () => {
    const base = estimateRun(ci);
    expect(estimateRun(ciWith({ model: { width: 256, heads: 8 } })).engineMemoryBytes).toBeGreaterThan(base.engineMemoryBytes);
    expect(estimateRun(ciWith({ checkpoints: { keepLast: 10 } })).storageBytes).toBeGreaterThan(base.storageBytes);
    expect(estimateRun(ciWith({ rl: { steps: 60 } })).storageBytes).toBeGreaterThan(base.storageBytes);
  });

  it('reads limits from the environment, naming a bad variable', () => {
    expect(loadRunLimits({ SOPHIA_MAX_RUN_MEMORY_GB: '0.5', SOPHIA_MAX_RUN_STEPS: '10' })).toEqual({ ...DEFAULT_RUN_LIMITS, maxEngineMemoryBytes: 0.5 * 1024 ** 3, maxTrainingSteps: 10 });
    expect(() => assertWithinLimits(ci, loadRunLimits({ SOPHIA_MAX_RUN_STEPS: '10' }))).toThrow(/sft\.steps/);
    expect(() => loadRunLimits({ SOPHIA_MAX_RUN_STORAGE_GB: 'lots' })).toThrow(/SOPHIA_MAX_RUN_STORAGE_GB: "lots" is not a positive number/);
  });

  it('documents every limit variable, and the worker memory variable, in the README', () => {
    const readme = readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');
    expect([...RUN_LIMIT_VARS.map((v) => v.name), 'SOPHIA_WORKER_MEMORY_GB'].filter((name) => !readme.includes(`\`${name}\``))).toEqual([]);
  });
});


describe('torch run estimates', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sophia-limits-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const model = (name: string, config: unknown) => {
    mkdirSync(path.join(dir, name), { recursive: true });
    writeFileSync(path.join(dir, name, 'config.json'), JSON.stringify(config));
    return path.join(dir, name);
  };
  const Q7 = model('Qwen2.5-VL-7B-Instruct', QWEN2_5_VL_7B);
  const Q3 = model('Qwen2.5-VL-3B-Instruct', QWEN2_5_VL_3B);
  const P7 = 8_292_166_656;
  const P3 = 3_754_622_976;
  const torch = (engine: Record<string, unknown>, more: Record<string, unknown> = {}) => resolveRunConfig({ extends: 'ci', engine: { kind: 'torch', model: Q3, ...engine }, ...more }, 'x');
  const part = (e: ReturnType<typeof estimateRun>, name: RegExp) => e.memory.parts.find((p) => name.test(p.name))?.bytes;
  const GiB = 1024 ** 3;

  it('counts the paper run: 7B policy (weights, gradients, AdamW moments), and refuses it at the default limit naming the parts', () => {
    const paper = resolveRunConfig({ extends: 'paper', engine: { model: Q7, rewardModel: Q3 } }, 'paper.yaml');
    const e = estimateRun(paper);
    expect(e.parameters).toBe(P7);
    expect(e.unknownModels).toEqual([]);
    // dtype auto where runs are submitted: bfloat16 (GPU workers). No fp32 master weights; moments counted as float32.
    expect(part(e, /^policy weights \(8,292,166,656 parameters, bfloat16\)/)).toBe(P7 * 2);
    expect(part(e, /^policy gradients/)).toBe(P7 * 6);
    expect(part(e, /^policy AdamW moments \(2 × float32\)/)).toBe(P7 * 8);
    expect(e.engineMemoryBytes).toBeGreaterThan(P7 * 16);
    expect(() => assertWithinLimits(paper, DEFAULT_RUN_LIMITS)).toThrow(
      /^engine\.model: the run's engines need about [\d.]+ GiB \(8,292,166,656 parameters\) in its \w+ stage: policy weights \(8,292,166,656 parameters, bfloat16\) 15\.4 GiB, policy gradients .* 46\.3 GiB, policy AdamW moments \(2 × float32\) 61\.8 GiB, .*activations .*; this deployment allows 16\.0 GiB \(SOPHIA_MAX_RUN_MEMORY_GB\)\. Use a smaller model \(engine\.model, engine\.rewardModel\), gradient checkpointing/,
    );
  });

  it('counts the frozen reference and the reward model in the RL stage (not the reward model for plain grpo)', () => {
    // Only the RL stage, so it is the peak.
    const rlOnly = { stages: ['trustGrpo'], startFrom: { stage: 'trustGrpo', checkpointKey: 'x', rewardModelKey: 'y' } };
    const e = estimateRun(torch({ model: Q7, rewardModel: Q3 }, rlOnly));
    expect(e.memory.stage).toBe('trustGrpo');
    expect(part(e, /^reference model weights \(bfloat16\)/)).toBe(P7 * 2);
    // The reward model: the 3B backbone and a scalar head (hidden 2048 → 1).
    expect(part(e, /^reward model weights \(3,754,625,025 parameters/)).toBe((P3 + 2049) * 2);
    const grpo = estimateRun(torch({ model: Q7, rewardModel: Q3 }, { ...rlOnly, rl: { variant: 'grpo' } }));
    expect(part(grpo, /^reward model/)).toBeUndefined();
    // engine.offloadFrozen: both frozen models in host memory, one decoder layer at a time on the GPU (7B: 28 layers, 3B: 36).
    const off = estimateRun(torch({ model: Q7, rewardModel: Q3, offloadFrozen: true }, rlOnly));
    expect(part(off, /^reference model weights \(8,292,166,656 parameters, bfloat16, offloaded to host memory/)).toBe((P7 * 2) / 28);
    expect(part(off, /^reward model weights \(3,754,625,025 parameters, bfloat16, offloaded/)).toBe(((P3 + 2049) * 2) / 36);
    expect(e.engineMemoryBytes - off.engineMemoryBytes).toBeCloseTo(P7 * 2 * (1 - 1 / 28) + (P3 + 2049) * 2 * (1 - 1 / 36), -3);
  });

  it('takes bytes from the dtype: auto is bfloat16 on a GPU, float32 on CPU', () => {
    expect(part(estimateRun(torch({})), /^policy weights/)).toBe(P3 * 2);
    expect(part(estimateRun(torch({}), { cuda: false }), /^policy weights .*float32/)).toBe(P3 * 4);
    expect(part(estimateRun(torch({ device: 'cpu' })), /^policy weights .*float32/)).toBe(P3 * 4);
    expect(part(estimateRun(torch({ dtype: 'float64' })), /^policy AdamW moments \(2 × float64\)/)).toBe(P3 * 16);
  });

  it('counts activations per token, far fewer with gradient checkpointing, growing with the rows', () => {
    const sftOnly = { stages: ['prepareData', 'sftWarmup'], rl: { variant: 'grpo' } };
    const acts = (engine: Record<string, unknown>, more: Record<string, unknown> = {}) => part(estimateRun(torch(engine, { ...sftOnly, ...more })), /^activations/)!;
    const full = acts({});
    const checkpointed = acts({ gradientCheckpointing: true });
    // Per token and layer: 4h + 3q + 3kv + 4I values (Qwen2.5-VL-3B: 59,136); checkpointing keeps h per layer + one layer.
    expect(full / checkpointed).toBeGreaterThan(2);
    expect(acts({}, { sft: { batchSize: 64 } }) / full).toBeCloseTo(2, 5);
    expect(estimateRun(torch({}, sftOnly)).memory.parts.map((p) => p.name).at(-1)).toMatch(/^activations \(32 rows × 388 positions, no gradient checkpointing\)/);
  });

  it('does not count an s3:// model where it is not downloaded, and counts it from the directory the worker downloaded', () => {
    const s3 = torch({ model: 's3://models/qwen2.5-vl-3b' });
    const unknown = estimateRun(s3);
    expect(unknown.unknownModels).toEqual(['engine.model (s3://models/qwen2.5-vl-3b)']);
    expect(unknown.engineMemoryBytes).toBe(0);
    expect(() => assertWithinLimits(s3, DEFAULT_RUN_LIMITS)).not.toThrow();
    const known = estimateRun(s3, { models: { policy: Q3 } });
    expect(known.parameters).toBe(P3);
    expect(known.engineMemoryBytes).toBe(estimateRun(torch({})).engineMemoryBytes);
  });

  it('counts LoRA: the frozen weights, and gradients and moments for the adapter only', () => {
    const lora = { rank: 64, alpha: 128, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj'] };
    const sftOnly = { stages: ['prepareData', 'sftWarmup'], rl: { variant: 'grpo' } };
    // Qwen2.5-VL-7B: 28 layers, hidden 3584, q 28 × 128, k/v 4 × 128: 64 · 28 · (7168 + 4096 + 4096 + 7168) (the vision tower has no *_proj attention).
    const adapter = 64 * 28 * (7168 + 4096 + 4096 + 7168);
    expect(loraParameters(readPretrainedShape(Q7, 'engine.model'), 64, lora.targetModules)).toBe(adapter);
    const full = estimateRun(torch({ model: Q7 }, sftOnly));
    const e = estimateRun(torch({ model: Q7, lora }, sftOnly));
    expect(part(e, /^policy weights \(8,292,166,656 parameters, bfloat16, frozen\)/)).toBe(P7 * 2);
    expect(part(e, /^policy LoRA adapter \(40,370,176 parameters, float32/)).toBe(adapter * 20);
    expect(part(e, /^policy gradients/)).toBeUndefined();
    expect(part(e, /^policy AdamW/)).toBeUndefined();
    expect(full.engineMemoryBytes - e.engineMemoryBytes).toBe(P7 * (6 + 8) - adapter * 20);
    // A checkpoint: the frozen weights, the adapter and its moments.
    expect(e.storageBytes).toBeLessThan(full.storageBytes / 4);
    // RL's reference is the SFT adapter over the policy's base weights, not a second copy of them.
    const rlOnly = { stages: ['trustGrpo'], startFrom: { stage: 'trustGrpo', checkpointKey: 'x', rewardModelKey: 'y' }, rl: { variant: 'grpo' } };
    const rl = estimateRun(torch({ model: Q7, lora }, rlOnly));
    expect(part(rl, /^reference model weights/)).toBeUndefined();
    expect(part(rl, /^reference LoRA adapter \(float32, over the policy's base weights\)/)).toBe(adapter * 4);
    expect(part(estimateRun(torch({ model: Q7 }, rlOnly)), /^reference model weights \(bfloat16\)/)).toBe(P7 * 2);
    // The MLP's names are the vision blocks' too; a name it does not know counts as the largest projection of each layer and block.
    const shape = readPretrainedShape(Q3, 'engine.model');
    const v = shape.vision!;
    expect(loraParameters(shape, 8, ['down_proj']) - loraParameters(shape, 8, ['q_proj'])).toBe(8 * (shape.text.layers * (shape.text.intermediate - shape.text.heads * shape.text.headDim) + v.depth * (v.intermediate + v.hidden)));
    // Qwen2-VL's vision MLP is fc1/fc2: gate_proj is the decoder's alone there.
    const q2 = readPretrainedShape(model('Qwen2-VL-7B-Instruct', QWEN2_VL_7B), 'engine.model');
    expect(loraParameters(q2, 8, ['gate_proj'])).toBe(8 * q2.text.layers * (q2.text.hidden + q2.text.intermediate));
    expect(loraParameters(q2, 8, ['fc1'])).toBe(8 * q2.vision!.depth * (q2.vision!.hidden + q2.vision!.intermediate));
    expect(loraParameters(shape, 8, ['*'])).toBe(8 * (shape.text.layers * (shape.text.hidden + shape.text.intermediate) + v.depth * Math.max(4 * v.hidden, v.hidden + v.intermediate)));
  });

  it('counts torch checkpoints (weights in the dtype + float32 moments) in storage', () => {
    const e = estimateRun(torch({}));
    const keep = 3 + 2;
    // SFT, reward model (the policy's backbone + head) and RL checkpoints.
    expect(e.storageBytes).toBeGreaterThan(keep * (2 * P3 + (P3 + 2049)) * 10);
    expect(e.storageBytes / GiB).toBeLessThan(600);
  });
});
