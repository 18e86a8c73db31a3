/**
 * AdamW as graph nodes, appended after the gradients (docs/architecture.md §3: AdamW, decoupled weight decay, global-norm
 * gradient clipping). For every parameter p with gradient g:
 *
 *   norm   = sqrt(Σ_all g²)                  clip = min(1, maxGradNorm / (norm + 1e-6))      ĝ = g · clip
 *   m ← β1·m + (1 − β1)·ĝ                    v ← β2·v + (1 − β2)·ĝ²
 *   p ← p·(1 − lr·wd) − lr · (m / bc1) / (sqrt(v / bc2) + eps)      (wd only where decay = true)
 *
 * Sophia's graphs keep every parameter in one flat vector, so the update is a handful of large elementwise
 * ops rather than a dozen small ones per tensor; `decayMask` (float, 1 where weight decay applies, 0 elsewhere)
 * is a constant.
 *
 * The learning rate, betas, eps, weight decay, max norm and the bias corrections bc1 = 1 − β1^t,
 * bc2 = 1 − β2^t are scalar graph inputs (computed on the host from the step count), so schedules need no
 * rebuild. `finite` is false when the loss or the gradient norm is NaN/Inf: the caller then keeps the old state.
 */
import type { AdamWSettings } from '../types';
import { type FloatDType, type Graph, type Value, typedData } from './graph';
import * as op from './ops';
import type { HostTensor } from './runtime';

export interface AdamWInputs {
  lr: Value;
  beta1: Value;
  beta2: Value;
  eps: Value;
  weightDecay: Value;
  maxGradNorm: Value;
  /** 1 − β1^t and 1 − β2^t for the step being taken (t ≥ 1). */
  biasCorrection1: Value;
  biasCorrection2: Value;
}

export function adamwInputs(g: Graph): AdamWInputs {
  const s = (name: string) => g.input(name, g.floatType, []);
  return {
    lr: s('opt_lr'),
    beta1: s('opt_beta1'),
    beta2: s('opt_beta2'),
    eps: s('opt_eps'),
    weightDecay: s('opt_weight_decay'),
    maxGradNorm: s('opt_max_grad_norm'),
    biasCorrection1: s('opt_bc1'),
    biasCorrection2: s('opt_bc2'),
  };
}

/** Feeds for `adamwInputs` for taking step `step` (t ≥ 1) with `settings`, in the graph's float type. */
export function adamwFeeds(settings: AdamWSettings, step: number, dtype: FloatDType = 'float32'): Record<string, HostTensor> {
  const scalar = (x: number): HostTensor => ({ dtype, shape: [], data: typedData(dtype, [x]) });
  return {
    opt_lr: scalar(settings.lr),
    opt_beta1: scalar(settings.beta1),
    opt_beta2: scalar(settings.beta2),
    opt_eps: scalar(settings.eps),
    opt_weight_decay: scalar(settings.weightDecay),
    opt_max_grad_norm: scalar(settings.maxGradNorm),
    opt_bc1: scalar(1 - settings.beta1 ** step),
    opt_bc2: scalar(1 - settings.beta2 ** step),
  };
}

export interface FlatAdamWOutput {
  params: Value;
  m: Value;
  v: Value;
  gradNorm: Value;
}

/** AdamW on flat vectors (P): parameters, gradient, moments; `decayMask` (P, float) is 1 where weight decay applies. */
export function adamwFlat(g: Graph, params: Value, grad: Value, m: Value, v: Value, decayMask: Value, h: AdamWInputs): FlatAdamWOutput {
  // Arranged for few passes over the (P) vectors (each pass reads and writes megabytes): every scalar factor is
  // folded before it meets a vector, and g² serves both the norm and the second moment.
  const one = g.scalar(1);
  const gradSq = op.square(g, grad);
  const gradNorm = op.sqrt(g, op.sumAll(g, gradSq));
  const clip = op.min(g, one, op.div(g, h.maxGradNorm, op.addScalar(g, gradNorm, 1e-6)));
  // m ← β1·m + ((1 − β1)·clip)·g        v ← β2·v + ((1 − β2)·clip²)·g²
  const m1 = op.add(g, op.mul(g, m, h.beta1), op.mul(g, grad, op.mul(g, op.sub(g, one, h.beta1), clip)));
  const v1 = op.add(g, op.mul(g, v, h.beta2), op.mul(g, gradSq, op.mul(g, op.sub(g, one, h.beta2), op.square(g, clip))));
  // lr·(m / bc1) / (sqrt(v / bc2) + eps) = (lr·sqrt(bc2) / bc1) · m / (sqrt(v) + eps·sqrt(bc2)).
  const sqrtBc2 = op.sqrt(g, h.biasCorrection2);
  const stepSize = op.div(g, op.mul(g, h.lr, sqrtBc2), h.biasCorrection1);
  const update = op.mul(g, op.div(g, m1, op.add(g, op.sqrt(g, v1), op.mul(g, h.eps, sqrtBc2))), stepSize);
  // Decoupled decay p − p·(lr·wd) where the mask is 1, p unchanged elsewhere: products with the 0/1 mask rather
  // than a Where, which onnxruntime runs on one thread (a Where over the vectors took as long as five Muls).
  const decay = op.mul(g, params, op.mul(g, decayMask, op.mul(g, h.lr, h.weightDecay)));
  return { params: op.sub(g, op.sub(g, params, decay), update), m: m1, v: v1, gradNorm };
}

/** True when every given scalar is finite. */
export function allFinite(g: Graph, scalars: readonly Value[]): Value {
  const bad = scalars.map((s) => g.addNode('IsNaN', [s], [{ dtype: 'bool', shape: s.shape }])[0]!);
  const inf = scalars.map((s) => g.addNode('IsInf', [s], [{ dtype: 'bool', shape: s.shape }])[0]!);
  const any = [...bad, ...inf].reduce((acc, b) => g.addNode('Or', [acc, b], [{ dtype: 'bool', shape: [] }])[0]!);
  return g.addNode('Not', [any], [{ dtype: 'bool', shape: [] }])[0]!;
}
