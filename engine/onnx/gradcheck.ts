/**
 * Gradient checking: compares the gradients `autodiff.ts` derives with central finite differences of the same
 * graph, evaluated by onnxruntime in float64. Used by the op and model tests.
 *
 * For each checked element x_i: numeric = (L(x + ε e_i) − L(x − ε e_i)) / 2ε, analytic = the graph's gradient
 * output; they agree when |analytic − numeric| ≤ atol + rtol·|numeric|.
 */
import { gradients } from './autodiff';
import { Graph, type DType, type FloatDType, type Shape, type Value, numel, typedData } from './graph';
import { type HostTensor, Session } from './runtime';

export interface GradCheckInput {
  name: string;
  shape: Shape;
  /** Initial values (default: deterministic pseudo-random in [-1, 1]). */
  values?: readonly number[];
}

export interface GradCheckSpec {
  /** Differentiable inputs whose gradients are checked. */
  params: GradCheckInput[];
  /** Other inputs (indices, masks): fed as given, not differentiated. */
  fixed?: { name: string; dtype: DType; shape: Shape; values: readonly number[] }[];
  /** The build function declares the fixed inputs itself (model graphs do); only feed them. */
  buildDeclaresFixed?: boolean;
  /** Builds the scalar loss from the inputs. */
  build: (g: Graph, inputs: Record<string, Value>) => Value;
  dtype?: FloatDType;
}

export interface GradCheckResult {
  /** Largest |analytic − numeric| / (atol + rtol·|numeric|) over all checked elements (≤ 1 passes). */
  worst: number;
  maxAbsError: number;
  checked: number;
  loss: number;
}

/** Deterministic pseudo-random numbers in [-1, 1) (LCG), so checks are reproducible. */
export function pseudoRandom(n: number, seed: number): number[] {
  let s = (seed * 2654435761) >>> 0 || 1;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32) * 2 - 1;
  });
}

export async function gradCheck(
  spec: GradCheckSpec,
  { eps = 1e-6, atol = 1e-7, rtol = 1e-5, maxElements = 64 }: { eps?: number; atol?: number; rtol?: number; maxElements?: number } = {},
): Promise<GradCheckResult> {
  const dtype = spec.dtype ?? 'float64';
  const g = new Graph('gradcheck', dtype);
  const inputs: Record<string, Value> = {};
  const params = spec.params.map((p) => (inputs[p.name] = g.input(p.name, dtype, p.shape)));
  if (!spec.buildDeclaresFixed) for (const f of spec.fixed ?? []) inputs[f.name] = g.input(f.name, f.dtype, f.shape);
  const loss = spec.build(g, inputs);
  const grads = gradients(g, loss, params);
  g.output(loss, 'loss');
  grads.forEach((grad, i) => g.output(grad, `grad_${spec.params[i]!.name}`));
  const session = await Session.create(g.toModel());
  try {
    const feeds: Record<string, HostTensor> = {};
    spec.params.forEach((p, i) => {
      feeds[p.name] = { dtype, shape: p.shape, data: typedData(dtype, p.values ?? pseudoRandom(numel(p.shape), i + 1)) };
    });
    for (const f of spec.fixed ?? []) feeds[f.name] = { dtype: f.dtype, shape: f.shape, data: typedData(f.dtype, f.values) };
    const base = await session.run(feeds);
    const lossAt = async () => Number((await session.run(feeds, ['loss'])).loss!.data[0]);
    let worst = 0;
    let maxAbsError = 0;
    let checked = 0;
    for (const p of spec.params) {
      const data = feeds[p.name]!.data as Float64Array | Float32Array;
      const analytic = base[`grad_${p.name}`]!.data;
      const stride = Math.max(1, Math.floor(data.length / maxElements));
      for (let i = 0; i < data.length; i += stride) {
        const x = data[i]!;
        data[i] = x + eps;
        const up = await lossAt();
        data[i] = x - eps;
        const down = await lossAt();
        data[i] = x;
        const numeric = (up - down) / (2 * eps);
        const err = Math.abs(Number(analytic[i]) - numeric);
        maxAbsError = Math.max(maxAbsError, err);
        worst = Math.max(worst, err / (atol + rtol * Math.abs(numeric)));
        checked++;
      }
    }
    return { worst, maxAbsError, checked, loss: Number(base.loss!.data[0]) };
  } finally {
    await session.dispose();
  }
}
