/**
 * Differentiable ONNX ops with build-time shape inference.
 *
 * Each function appends one ONNX node (or a short composite of them) to the graph and returns the result with
 * its dtype and static shape. Shape or dtype mistakes throw at build time with the shapes in the message, so a
 * model that builds is a model whose shapes agree. Gradients for every op recorded here are in `vjp.ts`.
 *
 * Conventions: `axis` arguments may be negative (counted from the end); float ops require both operands to
 * have the same float dtype (no implicit casts).
 */
import { type DType, type Graph, type Shape, type Value, float, int, ints, numel, sameShape, shapeString, str } from './graph';

function isFloat(dtype: DType): boolean {
  return dtype === 'float32' || dtype === 'float64';
}

function normAxis(axis: number, rank: number, what: string): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) throw new RangeError(`${what}: axis ${axis} is out of range for rank ${rank}`);
  return a;
}

/** Numpy broadcasting of two shapes. */
function broadcastShape(a: Shape, b: Shape, what = 'broadcast'): number[] {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new RangeError(`${what}: shapes ${shapeString(a)} and ${shapeString(b)} do not broadcast`);
    }
    out.push(da === 1 ? db : da);
  }
  return out;
}

function sameFloat(a: Value, b: Value, what: string): void {
  if (!isFloat(a.dtype) || a.dtype !== b.dtype) {
    throw new TypeError(`${what}: operands must share one float dtype (got ${a.dtype} and ${b.dtype})`);
  }
}

function binary(g: Graph, op: string, a: Value, b: Value): Value {
  sameFloat(a, b, op);
  return g.addNode(op, [a, b], [{ dtype: a.dtype, shape: broadcastShape(a.shape, b.shape, op) }])[0]!;
}

function unary(g: Graph, op: string, x: Value, attrs: Record<string, ReturnType<typeof int>> = {}): Value {
  if (!isFloat(x.dtype)) throw new TypeError(`${op}: needs a float input (got ${x.dtype})`);
  return g.addNode(op, [x], [{ dtype: x.dtype, shape: x.shape }], attrs)[0]!;
}

export const add = (g: Graph, a: Value, b: Value) => binary(g, 'Add', a, b);
export const sub = (g: Graph, a: Value, b: Value) => binary(g, 'Sub', a, b);
export const mul = (g: Graph, a: Value, b: Value) => binary(g, 'Mul', a, b);
export const div = (g: Graph, a: Value, b: Value) => binary(g, 'Div', a, b);
export const min = (g: Graph, a: Value, b: Value) => binary(g, 'Min', a, b);
export const max = (g: Graph, a: Value, b: Value) => binary(g, 'Max', a, b);
export const neg = (g: Graph, x: Value) => unary(g, 'Neg', x);
export const exp = (g: Graph, x: Value) => unary(g, 'Exp', x);
export const log = (g: Graph, x: Value) => unary(g, 'Log', x);
export const sqrt = (g: Graph, x: Value) => unary(g, 'Sqrt', x);
export const tanh = (g: Graph, x: Value) => unary(g, 'Tanh', x);
export const sigmoid = (g: Graph, x: Value) => unary(g, 'Sigmoid', x);
export const abs = (g: Graph, x: Value) => unary(g, 'Abs', x);
export const square = (g: Graph, x: Value) => mul(g, x, x);

/** x + c, x * c with a float constant of x's dtype. */
export const addScalar = (g: Graph, x: Value, c: number) => add(g, x, g.scalar(c, x.dtype));
export const mulScalar = (g: Graph, x: Value, c: number) => mul(g, x, g.scalar(c, x.dtype));

/** Clamps to [lo, hi] (constants). Gradient passes where lo ≤ x ≤ hi. */
export function clip(g: Graph, x: Value, lo: number, hi: number): Value {
  if (!isFloat(x.dtype)) throw new TypeError(`Clip: needs a float input (got ${x.dtype})`);
  return g.addNode('Clip', [x, g.scalar(lo, x.dtype), g.scalar(hi, x.dtype)], [{ dtype: x.dtype, shape: x.shape }])[0]!;
}

/** (M, N) of op(a) @ op(b) over the last two axes (op: a transpose where asked); names both shapes if K differs. */
function productDims(what: string, a: Shape, transA: boolean, b: Shape, transB: boolean): [number, number] {
  const [ar, ac] = a.slice(-2) as [number, number];
  const [br, bc] = b.slice(-2) as [number, number];
  const [m, k] = transA ? [ac, ar] : [ar, ac];
  const [k2, n] = transB ? [bc, br] : [br, bc];
  const show = (shape: Shape, t: boolean) => `${shapeString(shape)}${t ? 'ᵀ' : ''}`;
  if (k !== k2) throw new RangeError(`${what}: inner dimensions differ: ${show(a, transA)} @ ${show(b, transB)}`);
  return [m, n];
}

/** Matrix product with numpy semantics for batch dimensions (rank ≥ 2 operands). */
export function matmul(g: Graph, a: Value, b: Value): Value {
  sameFloat(a, b, 'MatMul');
  if (a.shape.length < 2 || b.shape.length < 2) {
    throw new RangeError(`MatMul: operands need rank ≥ 2 (got ${shapeString(a.shape)} and ${shapeString(b.shape)})`);
  }
  const [m, n] = productDims('MatMul', a.shape, false, b.shape, false);
  const batch = broadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2), 'MatMul batch');
  return g.addNode('MatMul', [a, b], [{ dtype: a.dtype, shape: [...batch, m, n] }])[0]!;
}

/**
 * α · op(a) @ op(b), where op transposes the last two axes of an operand when `transA` / `transB` asks (batch
 * axes broadcast as in MatMul). float32: one onnxruntime FusedMatMul, whose kernel reads a transposed operand in
 * place (no Transpose pass, the scale applied in the product); float64 graphs (gradient checks) get the same
 * value from Transpose, MatMul and Mul.
 */
export function matmulT(g: Graph, a: Value, b: Value, options: { transA?: boolean; transB?: boolean; alpha?: number } = {}): Value {
  const { transA = false, transB = false, alpha = 1 } = options;
  sameFloat(a, b, 'FusedMatMul');
  if (a.dtype !== 'float32') {
    const y = matmul(g, transA ? transposeLast2(g, a) : a, transB ? transposeLast2(g, b) : b);
    return alpha === 1 ? y : mulScalar(g, y, alpha);
  }
  if (a.shape.length < 2 || b.shape.length < 2) {
    throw new RangeError(`FusedMatMul: operands need rank ≥ 2 (got ${shapeString(a.shape)} and ${shapeString(b.shape)})`);
  }
  const [m, n] = productDims('FusedMatMul', a.shape, transA, b.shape, transB);
  const batch = broadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2), 'FusedMatMul batch');
  return g.addNode('FusedMatMul', [a, b], [{ dtype: a.dtype, shape: [...batch, m, n] }], {
    alpha: float(alpha),
    transA: int(transA ? 1 : 0),
    transB: int(transB ? 1 : 0),
  })[0]!;
}

/**
 * A product with a b stored slot-major: b is (S, b0, …, bk, D) and is read as the (b0, …, bk, S, D) matrices
 * (onnxruntime's FusedMatMul with transBatchB: strided reads, no transpose). With `transB` the product is
 * a (…, M, D) @ (…, S, D)ᵀ → (…, M, S); without, a (…, M, S) @ (…, S, D) → (…, M, D). Scaled by `alpha`.
 * A cache kept this way takes a new slot as one contiguous block. float32, inference only (no VJP).
 */
export function matmulSlotMajor(g: Graph, a: Value, b: Value, options: { transB: boolean; alpha?: number }): Value {
  if (a.dtype !== 'float32' || b.dtype !== 'float32') throw new TypeError('FusedMatMul: float32 only');
  if (a.shape.length !== b.shape.length || a.shape.length < 3) {
    throw new RangeError(`FusedMatMul (transBatchB): operands need the same rank ≥ 3 (got ${shapeString(a.shape)} and ${shapeString(b.shape)})`);
  }
  // b as the kernel reads it: its leading axis moves to just before the last.
  const logical = [...b.shape.slice(1, -1), b.shape[0]!, b.shape.at(-1)!];
  const [m, n] = productDims('FusedMatMul', a.shape, false, logical, options.transB);
  if (!sameShape(a.shape.slice(0, -2), logical.slice(0, -2))) {
    throw new RangeError(`FusedMatMul (transBatchB): batch axes differ: ${shapeString(a.shape)} and ${shapeString(logical)}`);
  }
  return g.addNode('FusedMatMul', [a, b], [{ dtype: a.dtype, shape: [...a.shape.slice(0, -2), m, n] }], {
    alpha: float(options.alpha ?? 1),
    transB: int(options.transB ? 1 : 0),
    transBatchB: int(1),
  })[0]!;
}

export function transpose(g: Graph, x: Value, perm: readonly number[]): Value {
  if (perm.length !== x.shape.length || [...perm].sort((p, q) => p - q).some((p, i) => p !== i)) {
    throw new RangeError(`Transpose: perm [${perm.join(', ')}] is not a permutation of rank ${x.shape.length}`);
  }
  // Made once per graph: q, k and v's weight gradients transpose the same input.
  return g.once(`Transpose ${x.id} ${perm.join(',')}`, () => g.addNode('Transpose', [x], [{ dtype: x.dtype, shape: perm.map((p) => x.shape[p]!) }], { perm: ints(perm) })[0]!);
}

/** Swaps the last two axes. */
export function transposeLast2(g: Graph, x: Value): Value {
  const r = x.shape.length;
  const perm = Array.from({ length: r }, (_, i) => i);
  [perm[r - 2], perm[r - 1]] = [perm[r - 1]!, perm[r - 2]!];
  return transpose(g, x, perm);
}

/** Reshape to a static shape (one -1 allowed). */
export function reshape(g: Graph, x: Value, shape: readonly number[]): Value {
  const known = shape.filter((d) => d !== -1);
  if (shape.filter((d) => d === -1).length > 1 || known.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new RangeError(`Reshape: invalid target ${shapeString(shape)}`);
  }
  const rest = numel(x.shape) / numel(known);
  const out = shape.map((d) => (d === -1 ? rest : d));
  if (numel(out) !== numel(x.shape) || !Number.isInteger(rest)) {
    throw new RangeError(`Reshape: cannot reshape ${shapeString(x.shape)} (${numel(x.shape)} elements) to ${shapeString(shape)}`);
  }
  // A reshape to the same shape is the value itself, and a reshape of a reshape starts from the original
  // (fewer nodes per run; the intermediate is pruned when nothing else uses it).
  if (sameShape(out, x.shape)) return x;
  const producer = g.producerOf(x);
  const source = producer?.op === 'Reshape' ? producer.inputs[0]! : x;
  if (source !== x && sameShape(out, source.shape)) return source;
  return g.once(`Reshape ${source.id} ${out.join(',')}`, () => g.addNode('Reshape', [source, g.int64s(out)], [{ dtype: x.dtype, shape: out }])[0]!);
}

export function concat(g: Graph, xs: readonly Value[], axis: number): Value {
  const first = xs[0];
  if (!first) throw new RangeError('Concat: needs at least one input');
  const a = normAxis(axis, first.shape.length, 'Concat');
  let size = 0;
  for (const x of xs) {
    if (x.dtype !== first.dtype || x.shape.length !== first.shape.length || x.shape.some((d, i) => i !== a && d !== first.shape[i])) {
      throw new RangeError(`Concat: ${shapeString(x.shape)} does not match ${shapeString(first.shape)} outside axis ${a}`);
    }
    size += x.shape[a]!;
  }
  const shape = [...first.shape];
  shape[a] = size;
  return g.addNode('Concat', xs, [{ dtype: first.dtype, shape }], { axis: int(a) })[0]!;
}

/** x[start:end] along one axis (static bounds). */
export function slice(g: Graph, x: Value, axis: number, start: number, end: number): Value {
  const a = normAxis(axis, x.shape.length, 'Slice');
  const dim = x.shape[a]!;
  if (!(0 <= start && start <= end && end <= dim)) throw new RangeError(`Slice: [${start}, ${end}) is outside [0, ${dim}) on axis ${a}`);
  const shape = [...x.shape];
  shape[a] = end - start;
  return g.addNode('Slice', [x, g.int64s([start]), g.int64s([end]), g.int64s([a])], [{ dtype: x.dtype, shape }], {}, { axis: a, start, end })[0]!;
}

/** Splits x along `axis` into consecutive pieces of the given sizes (one ONNX Split node). */
export function split(g: Graph, x: Value, axis: number, sizes: readonly number[]): Value[] {
  const a = normAxis(axis, x.shape.length, 'Split');
  if (sizes.reduce((p, q) => p + q, 0) !== x.shape[a] || sizes.some((d) => !Number.isInteger(d) || d < 1)) {
    throw new RangeError(`Split: sizes [${sizes.join(', ')}] do not add up to dimension ${x.shape[a]} of ${shapeString(x.shape)}`);
  }
  const specs = sizes.map((d) => ({ dtype: x.dtype, shape: x.shape.map((n, i) => (i === a ? d : n)) }));
  return g.addNode('Split', [x, g.int64s(sizes)], specs, { axis: int(a) });
}

function reduce(g: Graph, op: string, x: Value, axes: readonly number[], keepdims: boolean): Value {
  if (!isFloat(x.dtype)) throw new TypeError(`${op}: needs a float input (got ${x.dtype})`);
  const norm = [...new Set(axes.map((a) => normAxis(a, x.shape.length, op)))].sort((p, q) => p - q);
  const shape = keepdims ? x.shape.map((d, i) => (norm.includes(i) ? 1 : d)) : x.shape.filter((_, i) => !norm.includes(i));
  return g.addNode(op, [x, g.int64s(norm)], [{ dtype: x.dtype, shape }], { keepdims: int(keepdims ? 1 : 0) }, { axes: norm, keepdims })[0]!;
}

export const reduceSum = (g: Graph, x: Value, axes: readonly number[], keepdims = false) => reduce(g, 'ReduceSum', x, axes, keepdims);
export const reduceMean = (g: Graph, x: Value, axes: readonly number[], keepdims = false) => reduce(g, 'ReduceMean', x, axes, keepdims);
/** Largest element along `axes`: for metrics only (it has no VJP; put it behind `stopGradient`'s output). */
export const reduceMax = (g: Graph, x: Value, axes: readonly number[], keepdims = false) => reduce(g, 'ReduceMax', x, axes, keepdims);
/** Sum of all elements, as a scalar. */
export const sumAll = (g: Graph, x: Value) => reduceSum(g, x, x.shape.map((_, i) => i));

export function softmax(g: Graph, x: Value, axis = -1): Value {
  return unary(g, 'Softmax', x, { axis: int(normAxis(axis, x.shape.length, 'Softmax')) });
}

export function logSoftmax(g: Graph, x: Value, axis = -1): Value {
  return unary(g, 'LogSoftmax', x, { axis: int(normAxis(axis, x.shape.length, 'LogSoftmax')) });
}

/** Rows of `data` (axis 0) picked by integer `indices`: embedding lookup. Output: indices.shape + data.shape[1:]. */
export function gather(g: Graph, data: Value, indices: Value): Value {
  if (indices.dtype !== 'int64') throw new TypeError(`Gather: indices must be int64 (got ${indices.dtype})`);
  return g.addNode('Gather', [data, indices], [{ dtype: data.dtype, shape: [...indices.shape, ...data.shape.slice(1)] }], { axis: int(0) })[0]!;
}

/** `out[..., i, ...] = data[..., indices[..., i, ...], ...]` along `axis` (ONNX GatherElements). */
export function gatherElements(g: Graph, data: Value, indices: Value, axis: number): Value {
  if (indices.dtype !== 'int64') throw new TypeError(`GatherElements: indices must be int64 (got ${indices.dtype})`);
  if (indices.shape.length !== data.shape.length) {
    throw new RangeError(`GatherElements: indices ${shapeString(indices.shape)} and data ${shapeString(data.shape)} need the same rank`);
  }
  const a = normAxis(axis, data.shape.length, 'GatherElements');
  return g.addNode('GatherElements', [data, indices], [{ dtype: data.dtype, shape: indices.shape }], { axis: int(a) })[0]!;
}

/** Elementwise select; `cond` is bool, `a` and `b` floats of one dtype. */
export function where(g: Graph, cond: Value, a: Value, b: Value): Value {
  if (cond.dtype !== 'bool') throw new TypeError(`Where: condition must be bool (got ${cond.dtype})`);
  sameFloat(a, b, 'Where');
  const shape = broadcastShape(broadcastShape(cond.shape, a.shape, 'Where'), b.shape, 'Where');
  return g.addNode('Where', [cond, a, b], [{ dtype: a.dtype, shape }])[0]!;
}

function compare(g: Graph, op: string, a: Value, b: Value): Value {
  if (a.dtype !== b.dtype) throw new TypeError(`${op}: operands must share a dtype (got ${a.dtype} and ${b.dtype})`);
  return g.addNode(op, [a, b], [{ dtype: 'bool', shape: broadcastShape(a.shape, b.shape, op) }])[0]!;
}

export const less = (g: Graph, a: Value, b: Value) => compare(g, 'Less', a, b);
export const greater = (g: Graph, a: Value, b: Value) => compare(g, 'Greater', a, b);
const equal = (g: Graph, a: Value, b: Value) => compare(g, 'Equal', a, b);
export const lessOrEqual = (g: Graph, a: Value, b: Value) => compare(g, 'LessOrEqual', a, b);
export const greaterOrEqual = (g: Graph, a: Value, b: Value) => compare(g, 'GreaterOrEqual', a, b);

export function and(g: Graph, a: Value, b: Value): Value {
  if (a.dtype !== 'bool' || b.dtype !== 'bool') throw new TypeError('And: operands must be bool');
  return g.addNode('And', [a, b], [{ dtype: 'bool', shape: broadcastShape(a.shape, b.shape, 'And') }])[0]!;
}

export function cast(g: Graph, x: Value, to: DType): Value {
  const code = { float32: 1, float64: 11, int64: 7, bool: 9 }[to];
  return g.addNode('Cast', [x], [{ dtype: to, shape: x.shape }], { to: int(code) })[0]!;
}

/** Cuts the gradient: the value is used as a constant by autodiff. */
export function stopGradient(g: Graph, x: Value): Value {
  return g.addNode('Identity', [x], [{ dtype: x.dtype, shape: x.shape }], {}, { stopGradient: true })[0]!;
}

/** One-hot encoding of int64 `indices` over `depth` classes, as floats of `dtype`. */
export function oneHot(g: Graph, indices: Value, depth: number, dtype: DType = g.floatType): Value {
  if (indices.dtype !== 'int64') throw new TypeError(`oneHot: indices must be int64 (got ${indices.dtype})`);
  const classes = g.constant('int64', [depth], Array.from({ length: depth }, (_, i) => i));
  const expanded = reshape(g, indices, [...indices.shape, 1]);
  return cast(g, equal(g, expanded, classes), dtype);
}

/** Layer normalization over the last axis, from primitives (exact in float64; the reference for the fused op). */
export function layerNormComposite(g: Graph, x: Value, gamma: Value, beta: Value, eps = 1e-5): Value {
  const last = x.shape.length - 1;
  const mean = reduceMean(g, x, [last], true);
  const centered = sub(g, x, mean);
  const variance = reduceMean(g, square(g, centered), [last], true);
  const inv = div(g, g.scalar(1, x.dtype), sqrt(g, addScalar(g, variance, eps)));
  return add(g, mul(g, mul(g, centered, inv), gamma), beta);
}

/**
 * Layer normalization over the last axis. float32: onnxruntime's fused LayerNormalization kernel, whose Mean
 * and InvStdDev outputs the hand-written VJP reuses; float64 (gradient checks): the composite, because
 * onnxruntime computes LayerNormalization statistics in float32 only.
 */
export function layerNorm(g: Graph, x: Value, gamma: Value, beta: Value, eps = 1e-5): Value {
  if (x.dtype !== 'float32') return layerNormComposite(g, x, gamma, beta, eps);
  const last = x.shape.length - 1;
  if (gamma.shape.length !== 1 || gamma.shape[0] !== x.shape[last] || beta.shape[0] !== x.shape[last]) {
    throw new RangeError(`LayerNormalization: scale/bias must have shape [${x.shape[last]}] (got ${shapeString(gamma.shape)}, ${shapeString(beta.shape)})`);
  }
  const stats = x.shape.map((d, i) => (i === last ? 1 : d));
  return g.addNode(
    'LayerNormalization',
    [x, gamma, beta],
    [
      { dtype: x.dtype, shape: x.shape },
      { dtype: 'float32', shape: stats },
      { dtype: 'float32', shape: stats },
    ],
    { axis: int(-1), epsilon: float(eps) },
    { eps },
  )[0]!;
}

/** GELU, tanh approximation, from primitives: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). */
export function geluComposite(g: Graph, x: Value): Value {
  const cube = mul(g, square(g, x), x);
  const inner = mulScalar(g, add(g, x, mulScalar(g, cube, 0.044715)), Math.sqrt(2 / Math.PI));
  return mul(g, mulScalar(g, x, 0.5), addScalar(g, tanh(g, inner), 1));
}

/**
 * GELU, tanh approximation. float32: one ONNX Gelu node with a compact hand-written VJP (`geluNode`); float64
 * (gradient checks, the torch engine's cross-engine check): the composite, because onnxruntime's float64 Gelu
 * kernel is only float32-accurate (5e-9 off the formula at x = 1.1; vjp.test.ts), as `layerNorm` does.
 */
export function gelu(g: Graph, x: Value): Value {
  return x.dtype === 'float64' ? geluComposite(g, x) : geluNode(g, x);
}

/** The ONNX Gelu node, tanh form, whatever the float type (float64 graphs take `gelu`'s composite instead). */
export function geluNode(g: Graph, x: Value): Value {
  if (!isFloat(x.dtype)) throw new TypeError(`Gelu: needs a float input (got ${x.dtype})`);
  return g.addNode('Gelu', [x], [{ dtype: x.dtype, shape: x.shape }], { approximate: str('tanh') })[0]!;
}

/** The ONNX Gelu op (exact, erf-based; onnxruntime has float32 kernels only). */
export function geluExact(g: Graph, x: Value): Value {
  if (x.dtype !== 'float32') throw new TypeError('Gelu (exact): onnxruntime implements it for float32 only; use gelu() (tanh form) for float64');
  return g.addNode('Gelu', [x], [{ dtype: x.dtype, shape: x.shape }], { approximate: str('none') })[0]!;
}

/** Elementwise x^p for a constant exponent. */
export function powScalar(g: Graph, x: Value, p: number): Value {
  if (!isFloat(x.dtype)) throw new TypeError(`Pow: needs a float input (got ${x.dtype})`);
  return g.addNode('Pow', [x, g.scalar(p, x.dtype)], [{ dtype: x.dtype, shape: x.shape }], {}, { exponent: p })[0]!;
}

/** A constant tensor of `shape` filled with `value` (Expand of a scalar: no data stored in the model). */
export function fill(g: Graph, shape: Shape, value: number, dtype: DType = g.floatType): Value {
  return g.addNode('Expand', [g.scalar(value, dtype), g.int64s(shape)], [{ dtype, shape }])[0]!;
}

