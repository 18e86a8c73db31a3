/**
 * Vector-Jacobian products: for each op that `ops.ts` records, how the gradient of the loss with respect to
 * the op's outputs turns into gradients with respect to its inputs — written in ONNX ops (standard ones, plus
 * onnxruntime's FusedMatMul for products with a transposed operand in float32 graphs), appended to the same
 * graph. `autodiff.ts` calls these while walking the tape backwards.
 *
 * A rule receives the node, the output gradients (undefined where an output does not influence the loss) and
 * which inputs need a gradient, and returns one gradient (or undefined) per input. Broadcasting in the forward
 * op becomes a sum over the broadcast axes here (`sumToShape`).
 */
import { type Graph, type NodeRecord, type Shape, type Value, int, numel, sameShape, str } from './graph';
import {
  add,
  addScalar,
  and,
  cast,
  concat,
  div,
  exp,
  fill,
  greaterOrEqual,
  lessOrEqual,
  less,
  matmul,
  matmulT,
  mul,
  mulScalar,
  neg,
  oneHot,
  powScalar,
  reduceSum,
  reshape,
  sigmoid,
  square,
  sub,
  transpose,
  where,
} from './ops';

export type VjpRule = (g: Graph, node: NodeRecord, gradOutputs: readonly (Value | undefined)[], needs: readonly boolean[]) => (Value | undefined)[];

/** Sums `grad` over the axes along which a value of `shape` was broadcast to grad's shape, then reshapes to it. */
function sumToShape(g: Graph, grad: Value, shape: Shape): Value {
  if (sameShape(grad.shape, shape)) return grad;
  const offset = grad.shape.length - shape.length;
  const axes: number[] = [];
  grad.shape.forEach((d, i) => {
    if (i < offset || (shape[i - offset] === 1 && d !== 1)) axes.push(i);
  });
  if (axes.length === 0) return reshape(g, grad, shape);
  const summed = axes.every((a, i) => a === i) ? sumLeading(g, grad, axes.length) : reduceSum(g, grad, axes, true);
  return reshape(g, summed, shape);
}

/**
 * The sum over the first `k` axes (a bias's or a norm's scale gradient) as a product with a row of ones,
 * (1, rows) @ (rows, rest): onnxruntime's GEMV reads the gradient 2–2.4× faster than its ReduceSum over a
 * leading axis, which walks the columns (2688 × 256: 0.13–0.16 vs 0.25–0.36 ms, 2 threads).
 */
function sumLeading(g: Graph, grad: Value, k: number): Value {
  const rows = numel(grad.shape.slice(0, k));
  const rest = numel(grad.shape.slice(k));
  return matmul(g, fill(g, [1, rows], 1, grad.dtype), reshape(g, grad, [rows, rest]));
}

const zerosLike = (g: Graph, v: Value) => fill(g, v.shape, 0, v.dtype);

const rules: Record<string, VjpRule> = {
  Add: (g, n, [gy]) => [sumToShape(g, gy!, n.inputs[0]!.shape), sumToShape(g, gy!, n.inputs[1]!.shape)],
  Sub: (g, n, [gy], needs) => [sumToShape(g, gy!, n.inputs[0]!.shape), needs[1] ? sumToShape(g, neg(g, gy!), n.inputs[1]!.shape) : undefined],
  Mul: (g, n, [gy], needs) => {
    const [a, b] = n.inputs as [Value, Value];
    return [needs[0] ? sumToShape(g, mul(g, gy!, b), a.shape) : undefined, needs[1] ? sumToShape(g, mul(g, gy!, a), b.shape) : undefined];
  },
  Div: (g, n, [gy], needs) => {
    const [a, b] = n.inputs as [Value, Value];
    const y = n.outputs[0]!;
    return [
      needs[0] ? sumToShape(g, div(g, gy!, b), a.shape) : undefined,
      needs[1] ? sumToShape(g, neg(g, div(g, mul(g, gy!, y), b)), b.shape) : undefined,
    ];
  },
  Min: (g, n, [gy], needs) => minMax(g, n, gy!, needs, lessOrEqual),
  Max: (g, n, [gy], needs) => minMax(g, n, gy!, needs, greaterOrEqual),
  Neg: (g, _n, [gy]) => [neg(g, gy!)],
  Exp: (g, n, [gy]) => [mul(g, gy!, n.outputs[0]!)],
  Log: (g, n, [gy]) => [div(g, gy!, n.inputs[0]!)],
  Sqrt: (g, n, [gy]) => [div(g, mulScalar(g, gy!, 0.5), n.outputs[0]!)],
  Tanh: (g, n, [gy]) => {
    const y = n.outputs[0]!;
    return [mul(g, gy!, sub(g, g.scalar(1, y.dtype), square(g, y)))];
  },
  Sigmoid: (g, n, [gy]) => {
    const y = n.outputs[0]!;
    return [mul(g, gy!, mul(g, y, sub(g, g.scalar(1, y.dtype), y)))];
  },
  Abs: (g, n, [gy]) => [where(g, less(g, n.inputs[0]!, g.scalar(0, n.inputs[0]!.dtype)), neg(g, gy!), gy!)],
  Clip: (g, n, [gy]) => {
    const [x, lo, hi] = n.inputs as [Value, Value, Value];
    const inside = and(g, greaterOrEqual(g, x, lo), lessOrEqual(g, x, hi));
    return [where(g, inside, gy!, g.scalar(0, x.dtype)), undefined, undefined];
  },
  Pow: (g, n, [gy]) => {
    const x = n.inputs[0]!;
    const p = n.meta?.exponent as number;
    return [mul(g, gy!, mulScalar(g, powScalar(g, x, p - 1), p)), undefined];
  },
  MatMul: (g, n, [gy], needs) => productVjp(g, n.inputs[0]!, n.inputs[1]!, gy!, needs, {}),
  FusedMatMul: (g, n, [gy], needs) => {
    const flag = (name: string) => (n.attrs[name] as { value: number } | undefined)?.value === 1;
    if (flag('transBatchA') || flag('transBatchB')) throw new Error('FusedMatMul with transBatchA/B (slot-major reads) has no VJP: inference graphs only');
    const alpha = (n.attrs.alpha as { value: number } | undefined)?.value ?? 1;
    return productVjp(g, n.inputs[0]!, n.inputs[1]!, gy!, needs, { transA: flag('transA'), transB: flag('transB'), alpha });
  },
  Transpose: (g, n, [gy]) => {
    const perm = (n.attrs.perm as { value: readonly number[] }).value;
    const inverse = new Array<number>(perm.length);
    perm.forEach((p, i) => (inverse[p] = i));
    return [transpose(g, gy!, inverse)];
  },
  Reshape: (g, n, [gy]) => [reshape(g, gy!, n.inputs[0]!.shape), undefined],
  Identity: (g, n, [gy]) => (n.meta?.stopGradient ? [undefined] : [gy]),
  Concat: (g, n, [gy], needs) => {
    const axis = (n.attrs.axis as { value: number }).value;
    let offset = 0;
    return n.inputs.map((x, i) => {
      const start = offset;
      offset += x.shape[axis]!;
      if (!needs[i]) return undefined;
      const size = [...gy!.shape];
      size[axis] = x.shape[axis]!;
      return g.addNode('Slice', [gy!, g.int64s([start]), g.int64s([start + x.shape[axis]!]), g.int64s([axis])], [{ dtype: gy!.dtype, shape: size }])[0]!;
    });
  },
  Split: (g, n, gys) => {
    // The pieces' gradients side by side; a piece that does not reach the loss contributes zeros.
    const axis = (n.attrs.axis as { value: number }).value;
    const parts = n.outputs.map((out, i) => gys[i] ?? fill(g, out.shape, 0, out.dtype));
    return [concat(g, parts, axis), undefined];
  },
  Slice: (g, n, [gy]) => {
    const x = n.inputs[0]!;
    const { axis, start, end } = n.meta as { axis: number; start: number; end: number };
    const parts: Value[] = [];
    const padShape = (len: number) => x.shape.map((d, i) => (i === axis ? len : d));
    if (start > 0) parts.push(fill(g, padShape(start), 0, gy!.dtype));
    parts.push(gy!);
    if (end < x.shape[axis]!) parts.push(fill(g, padShape(x.shape[axis]! - end), 0, gy!.dtype));
    return [parts.length === 1 ? gy! : concat(g, parts, axis), undefined, undefined, undefined];
  },
  ReduceSum: (g, n, [gy]) => [expandReduced(g, n, gy!), undefined],
  ReduceMean: (g, n, [gy]) => {
    const x = n.inputs[0]!;
    const axes = n.meta?.axes as number[];
    const count = axes.reduce((c, a) => c * x.shape[a]!, 1);
    return [mulScalar(g, expandReduced(g, n, gy!), 1 / count), undefined];
  },
  Softmax: (g, n, [gy]) => {
    const y = n.outputs[0]!;
    const axis = (n.attrs.axis as { value: number }).value;
    const dot = reduceSum(g, mul(g, gy!, y), [axis], true);
    return [mul(g, y, sub(g, gy!, dot))];
  },
  LogSoftmax: (g, n, [gy]) => {
    const y = n.outputs[0]!;
    const axis = (n.attrs.axis as { value: number }).value;
    return [sub(g, gy!, mul(g, exp(g, y), reduceSum(g, gy!, [axis], true)))];
  },
  Gather: (g, n, [gy]) => {
    // dTable = onehot(ids)ᵀ · dOut: a GEMM, so the sum over repeated ids has a fixed order. (ScatterND with
    // reduction "add" gives thread-order-dependent sums on onnxruntime's CPU kernels: training would not be
    // bit-for-bit reproducible.)
    const [data, indices] = n.inputs as [Value, Value];
    const rest = data.shape.slice(1);
    const rows = indices.shape.reduce((a, b) => a * b, 1);
    const width = rest.reduce((a, b) => a * b, 1);
    const hot = oneHot(g, reshape(g, indices, [rows]), data.shape[0]!, gy!.dtype); // (N, V)
    const grad = matmulT(g, hot, reshape(g, gy!, [rows, width]), { transA: true }); // (V, width)
    return [reshape(g, grad, data.shape), undefined];
  },
  GatherElements: (g, n, [gy]) => {
    // Along the last axis with one index per row (how the losses use it): gy placed at the index, zeros elsewhere.
    const [data, indices] = n.inputs as [Value, Value];
    const axis = (n.attrs.axis as { value: number }).value;
    if (axis === data.shape.length - 1 && indices.shape.at(-1) === 1) {
      const hot = oneHot(g, reshape(g, indices, indices.shape.slice(0, -1)), data.shape.at(-1)!, gy!.dtype); // (…, V)
      return [mul(g, hot, gy!), undefined];
    }
    const scattered = g.addNode('ScatterElements', [zerosLike(g, data), indices, gy!], [{ dtype: data.dtype, shape: data.shape }], {
      axis: int(axis),
      reduction: str('add'),
    })[0]!;
    return [scattered, undefined];
  },
  Where: (g, n, [gy], needs) => {
    const [cond, a, b] = n.inputs as [Value, Value, Value];
    const zero = g.scalar(0, gy!.dtype);
    return [
      undefined,
      needs[1] ? sumToShape(g, where(g, cond, gy!, zero), a.shape) : undefined,
      needs[2] ? sumToShape(g, where(g, cond, zero, gy!), b.shape) : undefined,
    ];
  },
  Cast: (g, n, [gy]) => {
    const x = n.inputs[0]!;
    return [x.dtype === 'float32' || x.dtype === 'float64' ? cast(g, gy!, x.dtype) : undefined];
  },
  Expand: (g, n, [gy]) => [sumToShape(g, gy!, n.inputs[0]!.shape), undefined],
  LayerNormalization: (g, n, [gy], needs) => layerNormVjp(g, n, gy!, needs),
  Gelu: (g, n, [gy]) => {
    const x = n.inputs[0]!;
    if ((n.attrs.approximate as { value: string } | undefined)?.value === 'tanh') return [geluTanhVjp(g, x, n.outputs[0]!, gy!)];
    // d/dx [x·Φ(x)] = Φ(x) + x·φ(x), Φ(x) = (1 + erf(x/√2))/2, φ(x) = exp(−x²/2)/√(2π).
    const erf = g.addNode('Erf', [mulScalar(g, x, Math.SQRT1_2)], [{ dtype: x.dtype, shape: x.shape }])[0]!;
    const cdf = mulScalar(g, add(g, erf, g.scalar(1, x.dtype)), 0.5);
    const pdf = mulScalar(g, exp(g, mulScalar(g, square(g, x), -0.5)), 1 / Math.sqrt(2 * Math.PI));
    return [mul(g, gy!, add(g, cdf, mul(g, x, pdf)))];
  },
};

/**
 * gy · d/dx of y = x·s, s = σ(z), z = 2c·(x + a·x³) (the tanh form: 0.5·(1 + tanh(z/2)) = σ(z)), c = √(2/π),
 * a = 0.044715, using the forward output y (kept for the next product's weight gradient anyway):
 *
 *   y' = s + x·s·(1 − s)·z' = 1 + s̄·(y·z' − 1),   s̄ = 1 − s = σ(−z),   z' = 2c·(1 + 3a·x²)
 *   gy·y' = gy + (gy·s̄)·(y·z' − 1)
 *
 * 12 passes over the tensor where the form (1 + t)·(½ + ½c·x·(1 + 3a·x²)·(1 − t)) took 14; the two saved are
 * products and sums with a scalar. In the tails s̄ → 0 (x ≫ 0: y' → 1) or y → 0 (x ≪ 0: y' → 1 − s̄ → 0, an
 * absolute error of float rounding, as the former form had).
 */
function geluTanhVjp(g: Graph, x: Value, y: Value, gy: Value): Value {
  const c = Math.sqrt(2 / Math.PI);
  const a = 0.044715;
  const x2 = square(g, x);
  const negZ = mul(g, x, addScalar(g, mulScalar(g, x2, -2 * a * c), -2 * c)); // −z = x·(−2c − 2ac·x²)
  const sBar = sigmoid(g, negZ);
  const slope = addScalar(g, mulScalar(g, x2, 6 * a * c), 2 * c); // z'
  const inner = addScalar(g, mul(g, y, slope), -1); // y·z' − 1
  return add(g, gy, mul(g, mul(g, gy, sBar), inner));
}

/**
 * Gradients of C = α · op(A) @ op(B) (op: optional transpose of the last two axes), each as one product with the
 * transposes folded into it:  nn: dA = α G Bᵀ, dB = α Aᵀ G;  nt: dA = α G B, dB = α Gᵀ A;  tn: dA = α B Gᵀ,
 * dB = α A G;  tt: dA = α Bᵀ Gᵀ, dB = α Gᵀ Aᵀ. Broadcast batch axes are summed back to each operand's shape.
 */
function productVjp(g: Graph, a: Value, b: Value, gy: Value, needs: readonly boolean[], t: { transA?: boolean; transB?: boolean; alpha?: number }): (Value | undefined)[] {
  const { transA = false, transB = false, alpha = 1 } = t;
  let ga: Value | undefined;
  let gb: Value | undefined;
  if (needs[0]) {
    const d = transA ? matmulT(g, b, gy, { transA: transB, transB: true, alpha }) : matmulT(g, gy, b, { transB: !transB, alpha });
    ga = sumToShape(g, d, a.shape);
  }
  if (needs[1]) {
    if (!transA && !transB && b.shape.length === 2 && a.shape.length > 2) {
      // (…, M, K) @ (K, N): fold the batch into rows, one (K, M·…) @ (M·…, N) product instead of a batched one.
      gb = weightGradient(g, reshape(g, a, [-1, a.shape.at(-1)!]), reshape(g, gy, [-1, gy.shape.at(-1)!]), false, alpha);
    } else if (!transA && a.shape.length === 2 && b.shape.length === 2) {
      gb = weightGradient(g, a, gy, transB, alpha);
    } else {
      const d = transB ? matmulT(g, gy, a, { transA: true, transB: transA, alpha }) : matmulT(g, a, gy, { transA: !transA, alpha });
      gb = sumToShape(g, d, b.shape);
    }
  }
  return [ga, gb];
}

/**
 * Weight gradients of float32 products whose operands are both at least this wide (K and N ≥ 256) read an
 * explicitly transposed operand. Their contraction runs over the rows (tokens), so the product has the form
 * Aᵀ·G, and onnxruntime's GEMM (MLAS) with transA copies A transposed once per block of output columns; one
 * Transpose up front and a plain product were faster from this width on (small preset: train step 0.96–0.98×; the
 * tiny preset's 128-wide products were ≈ 1.02× slower, so they keep transA).
 */
const TRANSPOSED_WEIGHT_GRADIENT_MIN_WIDTH = 256;

/**
 * The gradient of B in C = A @ B (or A @ Bᵀ with `transB`) for 2-D A (R, K) and G = dC (R, N): α·Aᵀ G (K, N), or
 * α·Gᵀ A (N, K). Wide float32 products (see above) transpose the smaller of A and G — a transpose shared by several
 * products (q, k and v read the same A) is made once — and, where that leaves the result transposed, transpose the
 * (K, N) result, which is small. The transposed operand enters the MatMul as (1, ·, R): onnxruntime's
 * MatmulTransposeFusion folds a Transpose that feeds a MatMul directly back into transA, and the Reshape between
 * them keeps it out.
 */
function weightGradient(g: Graph, a: Value, gy: Value, transB: boolean, alpha: number): Value {
  const [k, n] = [a.shape[1]!, gy.shape[1]!];
  if (a.dtype !== 'float32' || alpha !== 1 || Math.min(k, n) < TRANSPOSED_WEIGHT_GRADIENT_MIN_WIDTH) {
    return transB ? matmulT(g, gy, a, { transA: true, alpha }) : matmulT(g, a, gy, { transA: true, alpha });
  }
  const rowsLast = (x: Value) => reshape(g, transpose(g, x, [1, 0]), [1, x.shape[1]!, x.shape[0]!]);
  const product = (x: Value, y: Value) => reshape(g, matmul(g, rowsLast(x), y), [x.shape[1]!, y.shape[1]!]);
  // Aᵀ G = (Gᵀ A)ᵀ: transpose A when it is the narrower operand, else G and then the result.
  const aFirst = k <= n;
  if (!transB) return aFirst ? product(a, gy) : transpose(g, product(gy, a), [1, 0]);
  return aFirst ? transpose(g, product(a, gy), [1, 0]) : product(gy, a);
}

/**
 * LayerNormalization over the last axis (float32, fused kernel): with x̂ = (x − μ)·r from the kernel's Mean and
 * InvStdDev outputs and ĝ = gy·γ:  dx = r·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)),  dγ = Σ gy·x̂,  dβ = Σ gy.
 * The row means are products with γ/d, mean(ĝ) = gy @ γ/d and mean(ĝ·x̂) = (gy·x̂) @ γ/d, so gy·x̂ is formed
 * once for both dγ and the second mean and ĝ·x̂ never is; onnxruntime's GEMV over a row is ~2× faster than
 * its ReduceMean of a product formed first. 8 passes over (rows, d) and 4 GEMVs instead of 14 passes.
 */
function layerNormVjp(g: Graph, n: NodeRecord, gy: Value, needs: readonly boolean[]): (Value | undefined)[] {
  const [x, gamma, beta] = n.inputs as [Value, Value, Value];
  const [, mean, invStd] = n.outputs as [Value, Value, Value];
  const d = x.shape.at(-1)!;
  const xhat = mul(g, sub(g, x, mean), invStd);
  const gyXhat = needs[0] || needs[1] ? mul(g, gy, xhat) : undefined;
  let dx: Value | undefined;
  if (needs[0]) {
    const gammaOverD = mulScalar(g, reshape(g, gamma, [d, 1]), 1 / d);
    const meanG = matmul(g, gy, gammaOverD); // (…, 1)
    const meanGx = matmul(g, gyXhat!, gammaOverD);
    const ghat = mul(g, gy, gamma);
    dx = mul(g, invStd, sub(g, sub(g, ghat, meanG), mul(g, xhat, meanGx)));
  }
  return [dx, needs[1] ? sumToShape(g, gyXhat!, gamma.shape) : undefined, needs[2] ? sumToShape(g, gy, beta.shape) : undefined];
}

function minMax(g: Graph, n: NodeRecord, gy: Value, needs: readonly boolean[], pick: typeof lessOrEqual): (Value | undefined)[] {
  const [a, b] = n.inputs as [Value, Value];
  const takeA = pick(g, a, b); // ties go to the first operand
  const zero = g.scalar(0, gy.dtype);
  return [
    needs[0] ? sumToShape(g, where(g, takeA, gy, zero), a.shape) : undefined,
    needs[1] ? sumToShape(g, where(g, takeA, zero, gy), b.shape) : undefined,
  ];
}

/** Broadcasts the gradient of a reduction back over the reduced axes. */
function expandReduced(g: Graph, n: NodeRecord, gy: Value): Value {
  const x = n.inputs[0]!;
  const axes = n.meta?.axes as number[];
  const keepShape = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const kept = n.meta?.keepdims ? gy : reshape(g, gy, keepShape);
  return g.addNode('Expand', [kept, g.int64s(x.shape)], [{ dtype: gy.dtype, shape: x.shape }])[0]!;
}

/** Ops whose outputs carry no gradient (comparisons, logic, integer ops, shape ops on indices). */
export const NON_DIFFERENTIABLE = new Set(['Less', 'Greater', 'Equal', 'LessOrEqual', 'GreaterOrEqual', 'And', 'Or', 'Not', 'IsNaN', 'IsInf']);

export function vjpRule(op: string): VjpRule | undefined {
  return rules[op];
}
