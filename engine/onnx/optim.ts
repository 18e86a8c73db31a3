/**
 * AdamW as graph nodes, appended after the gradients (DESIGN.md §3: AdamW, decoupled weight decay, global-norm
 * gradient clipping). For every parameter p with gradient g:
 *
 *   norm   = sqrt(Σ_all g²)                  clip = min(1, maxGradNorm / (norm + 1e-6))      ĝ = g · clip
 *   m ← β1·m + (1 − β1)·ĝ                    v ← β2·v + (1 − β2)·ĝ²
 *   p ← p·(1 − lr·wd) − lr · (m / bc1) / (sqrt(v / bc2) + eps)      (wd only where decay = true)
 *
 * The learning rate, betas, eps, weight decay, max norm and the bias corrections bc1 = 1 − β1^t,
 * bc2 = 1 − β2^t are scalar graph inputs (computed on the host from the step count), so schedules need no
 * rebuild. `finite` is false when the loss or the gradient norm is NaN/Inf: the caller then keeps the old state.
 */
import type { Graph, Value } from './graph';
import * as op from './ops';

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

export interface AdamWOutput {
  params: Value[];
  m: Value[];
  v: Value[];
  gradNorm: Value;
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

/** Global L2 norm of a list of tensors. */
export function globalNorm(g: Graph, tensors: readonly Value[]): Value {
  const squares = tensors.map((t) => op.sumAll(g, op.square(g, t)));
  const total = squares.slice(1).reduce((acc, s) => op.add(g, acc, s), squares[0]!);
  return op.sqrt(g, total);
}

export function adamw(
  g: Graph,
  params: readonly Value[],
  grads: readonly Value[],
  m: readonly Value[],
  v: readonly Value[],
  decay: readonly boolean[],
  h: AdamWInputs,
): AdamWOutput {
  const one = g.scalar(1);
  const gradNorm = globalNorm(g, grads);
  const clip = op.min(g, one, op.div(g, h.maxGradNorm, op.addScalar(g, gradNorm, 1e-6)));
  const oneMinusB1 = op.sub(g, one, h.beta1);
  const oneMinusB2 = op.sub(g, one, h.beta2);
  const decayFactor = op.sub(g, one, op.mul(g, h.lr, h.weightDecay));
  const out: AdamWOutput = { params: [], m: [], v: [], gradNorm };
  params.forEach((p, i) => {
    const grad = op.mul(g, grads[i]!, clip);
    const m1 = op.add(g, op.mul(g, h.beta1, m[i]!), op.mul(g, oneMinusB1, grad));
    const v1 = op.add(g, op.mul(g, h.beta2, v[i]!), op.mul(g, oneMinusB2, op.square(g, grad)));
    const mHat = op.div(g, m1, h.biasCorrection1);
    const vHat = op.div(g, v1, h.biasCorrection2);
    const update = op.mul(g, h.lr, op.div(g, mHat, op.add(g, op.sqrt(g, vHat), h.eps)));
    const decayed = decay[i] ? op.mul(g, p, decayFactor) : p;
    out.params.push(op.sub(g, decayed, update));
    out.m.push(m1);
    out.v.push(v1);
  });
  return out;
}

/** True when every given scalar is finite. */
export function allFinite(g: Graph, scalars: readonly Value[]): Value {
  const bad = scalars.map((s) => g.addNode('IsNaN', [s], [{ dtype: 'bool', shape: s.shape }])[0]!);
  const inf = scalars.map((s) => g.addNode('IsInf', [s], [{ dtype: 'bool', shape: s.shape }])[0]!);
  const any = [...bad, ...inf].reduce((acc, b) => g.addNode('Or', [acc, b], [{ dtype: 'bool', shape: [] }])[0]!);
  return g.addNode('Not', [any], [{ dtype: 'bool', shape: [] }])[0]!;
}
