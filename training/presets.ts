/**
 * Presets for the SFT warmup and its evaluation: sizes chosen so `ci` finishes in about a minute and `tiny` in
 * under ten on a 2-core machine. (The full run config with the RL stages and its validation arrive with the
 * pipeline; these are its `data`, `sft` and `eval` parts.)
 */
import type { EvalSettings } from '../evaluation/evaluate';
import type { ModelPreset } from '../engine/model/config';
import type { Split } from '../tasks/types';
import type { SftSettings } from './sft';

export interface WarmupPreset {
  model: ModelPreset;
  seed: number;
  /** Examples per family in each split. */
  data: Record<Split, number>;
  /** Validation examples per family (drawn from a separate seed stream of the test distribution). */
  validationPerFamily: number;
  sft: SftSettings;
  eval: EvalSettings;
}

export const WARMUP_PRESETS = {
  ci: {
    model: 'tiny',
    seed: 1,
    data: { train: 200, test: 20, ood: 20 },
    validationPerFamily: 10,
    sft: { steps: 150, batchSize: 32, lr: 2e-3, warmupSteps: 20, minLrRatio: 0.1, weightDecay: 0.01, maxGradNorm: 1, evalEvery: 50, patience: 3, seed: 1 },
    eval: { k: 2, temperature: 1, maxTokens: 64, promptsPerBatch: 50, seed: 7 },
  },
  tiny: {
    model: 'tiny',
    seed: 1,
    data: { train: 2000, test: 100, ood: 100 },
    validationPerFamily: 20,
    sft: { steps: 2000, batchSize: 32, lr: 2e-3, warmupSteps: 50, minLrRatio: 0.1, weightDecay: 0.01, maxGradNorm: 1, evalEvery: 200, patience: 4, seed: 1 },
    eval: { k: 4, temperature: 1, maxTokens: 64, promptsPerBatch: 50, seed: 7 },
  },
} as const satisfies Record<string, WarmupPreset>;

export type WarmupPresetName = keyof typeof WARMUP_PRESETS;
