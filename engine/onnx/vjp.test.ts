/**
 * Gradient checks of every op's VJP against central finite differences, in float64 on onnxruntime.
 * Tolerance: |analytic − numeric| ≤ 1e-7 + 1e-5·|numeric| (ε = 1e-6), i.e. `worst` ≤ 1.
 * Each loss is Σ op(x)·W with a fixed pseudo-random W, so every output element gets a distinct weight.
 */
import { describe, expect, it } from 'vitest';
import { gradients } from './autodiff';
import { Graph, type Value } from './graph';
import { gradCheck, pseudoRandom } from './gradcheck';
import * as op from './ops';
import { Session } from './runtime';

/** Σ y·W for a constant pseudo-random W. */
function weighted(g: Graph, y: Value, seed = 99): Value {
  const w = g.constant(y.dtype, y.shape, pseudoRandom(y.shape.reduce((a, b) => a * b, 1), seed));
  return op.sumAll(g, op.mul(g, y, w));
}

const positive = (n: number, seed: number) => pseudoRandom(n, seed).map((x) => 0.5 + Math.abs(x));
/** Values kept at least 0.1 away from zero (for |x|, where the derivative jumps). */
const awayFromZero = (n: number, seed: number) => pseudoRandom(n, seed).map((x) => (x < 0 ? x - 0.1 : x + 0.1));

type Case = [string, Parameters<typeof gradCheck>[0]];

const unaryCase = (name: string, f: (g: Graph, x: Value) => Value, values?: number[]): Case => [
  name,
  { params: [{ name: 'x', shape: [3, 4], ...(values ? { values } : {}) }], build: (g, { x }) => weighted(g, f(g, x!)) },
];

const binaryCase = (name: string, f: (g: Graph, a: Value, b: Value) => Value, bShape: number[] = [4], bValues?: number[]): Case => [
  name,
  {
    params: [
      { name: 'a', shape: [3, 4] },
      { name: 'b', shape: bShape, ...(bValues ? { values: bValues } : {}) },
    ],
    build: (g, { a, b }) => weighted(g, f(g, a!, b!)),
  },
];

const cases: Case[] = [
  binaryCase('Add (broadcast row)', op.add),
  binaryCase('Add (broadcast column)', op.add, [3, 1]),
  binaryCase('Sub (broadcast)', op.sub, [1, 4]),
  binaryCase('Mul (broadcast)', op.mul, [4]),
  binaryCase('Mul (same shape)', op.mul, [3, 4]),
  binaryCase('Div (broadcast)', op.div, [4], positive(4, 5)),
  binaryCase('Min', op.min, [3, 4]),
  binaryCase('Max (broadcast)', op.max, [4]),
  unaryCase('Neg', op.neg),
  unaryCase('Exp', op.exp),
  unaryCase('Log', op.log, positive(12, 3)),
  unaryCase('Sqrt', op.sqrt, positive(12, 4)),
  unaryCase('Tanh', op.tanh),
  unaryCase('Sigmoid', op.sigmoid),
  unaryCase('Abs', op.abs, awayFromZero(12, 6)),
  unaryCase('Clip', (g, x) => op.clip(g, x, -0.5, 0.5), pseudoRandom(12, 7).map((x) => (Math.abs(Math.abs(x) - 0.5) < 0.05 ? x * 0.5 : x))),
  unaryCase('Pow', (g, x) => op.powScalar(g, x, 3)),
  unaryCase('Square', op.square),
  unaryCase('Softmax', (g, x) => op.softmax(g, x, -1)),
  unaryCase('Softmax (axis 0)', (g, x) => op.softmax(g, x, 0)),
  unaryCase('LogSoftmax', (g, x) => op.logSoftmax(g, x, -1)),
  unaryCase('Transpose', (g, x) => op.transpose(g, x, [1, 0])),
  unaryCase('Reshape', (g, x) => op.reshape(g, x, [2, 6])),
  unaryCase('Slice', (g, x) => op.slice(g, x, 1, 1, 3)),
  unaryCase('ReduceSum (axis 1, keepdims)', (g, x) => op.reduceSum(g, x, [1], true)),
  unaryCase('ReduceSum (axis 0)', (g, x) => op.reduceSum(g, x, [0])),
  unaryCase('ReduceMean (all)', (g, x) => op.reduceMean(g, x, [0, 1])),
  unaryCase('GELU (tanh form, fused Gelu node)', op.geluNode),
  // Its VJP reads the forward output and σ(−z): x = 0 exactly, and both tails, must still be right.
  unaryCase('GELU (tanh form, fused Gelu node) at 0 and in the tails', op.geluNode, [0, 0, -6, 6, -3.5, 3.5, -1e-3, 1e-3, -0.7, 0.7, 0, 12]),
  unaryCase('GELU (tanh form, float64: the composite)', op.gelu),
  unaryCase('GELU (tanh form, composite)', op.geluComposite),
  [
    'MatMul (2-D)',
    { params: [{ name: 'a', shape: [3, 4] }, { name: 'b', shape: [4, 5] }], build: (g, { a, b }) => weighted(g, op.matmul(g, a!, b!)) },
  ],
  [
    'MatMul (batched @ shared weight)',
    { params: [{ name: 'a', shape: [2, 3, 4] }, { name: 'b', shape: [4, 5] }], build: (g, { a, b }) => weighted(g, op.matmul(g, a!, b!)) },
  ],
  [
    'MatMul (batched @ batched)',
    { params: [{ name: 'a', shape: [2, 2, 3, 4] }, { name: 'b', shape: [2, 2, 4, 3] }], build: (g, { a, b }) => weighted(g, op.matmul(g, a!, b!)) },
  ],
  [
    'Split (one piece unused)',
    {
      params: [{ name: 'x', shape: [3, 6] }],
      build: (g, { x }) => {
        const [a, , c] = op.split(g, x!, 1, [2, 1, 3]);
        return op.add(g, weighted(g, a!, 5), weighted(g, c!, 6));
      },
    },
  ],
  [
    'Concat',
    { params: [{ name: 'a', shape: [2, 3] }, { name: 'b', shape: [2, 2] }], build: (g, { a, b }) => weighted(g, op.concat(g, [a!, b!, a!], 1)) },
  ],
  [
    'Gather (embedding, repeated ids)',
    {
      params: [{ name: 'table', shape: [5, 3] }],
      fixed: [{ name: 'ids', dtype: 'int64', shape: [2, 3], values: [0, 4, 4, 2, 0, 1] }],
      build: (g, { table, ids }) => weighted(g, op.gather(g, table!, ids!)),
    },
  ],
  [
    'GatherElements (axis -1)',
    {
      params: [{ name: 'x', shape: [3, 4] }],
      fixed: [{ name: 'idx', dtype: 'int64', shape: [3, 2], values: [0, 3, 2, 2, 1, 0] }],
      build: (g, { x, idx }) => weighted(g, op.gatherElements(g, x!, idx!, -1)),
    },
  ],
  [
    'Where',
    {
      params: [{ name: 'a', shape: [3, 4] }, { name: 'b', shape: [4] }],
      build: (g, { a, b }) => weighted(g, op.where(g, op.greater(g, a!, g.scalar(0)), a!, b!)),
    },
  ],
  [
    'LayerNorm (float64: composite)',
    {
      params: [{ name: 'x', shape: [3, 4] }, { name: 'gamma', shape: [4] }, { name: 'beta', shape: [4] }],
      build: (g, { x, gamma, beta }) => weighted(g, op.layerNorm(g, x!, gamma!, beta!)),
    },
  ],
  [
    'masked mean of log-softmax picked by one-hot (the SFT loss shape)',
    {
      params: [{ name: 'logits', shape: [2, 3, 5] }],
      fixed: [
        { name: 'targets', dtype: 'int64', shape: [2, 3], values: [1, 4, 0, 2, 2, 3] },
        { name: 'mask', dtype: 'float64', shape: [2, 3], values: [1, 1, 0, 1, 0, 1] },
      ],
      build: (g, { logits, targets, mask }) => {
        const picked = op.reduceSum(g, op.mul(g, op.logSoftmax(g, logits!), op.oneHot(g, targets!, 5)), [-1]);
        return op.div(g, op.neg(g, op.sumAll(g, op.mul(g, picked, mask!))), op.sumAll(g, mask!));
      },
    },
  ],
];

describe('VJP of each op matches float64 central differences', () => {
  it.each(cases)('%s', async (_name, spec) => {
    const result = await gradCheck(spec);
    expect(result.checked).toBeGreaterThan(0);
    expect(result.worst).toBeLessThanOrEqual(1);
  });

  // The products with folded transposes (onnxruntime's FusedMatMul) exist in float32 graphs only; float64 graphs
  // build the same value from Transpose/MatMul/Mul, whose VJPs the cases above check. So each transpose
  // combination is checked in float32: ε = 1e-2, tolerance 2e-3 absolute + 1e-2 relative, α = 0.7.
  const stored = (rows: number, cols: number, trans: boolean, batch: number[]) => [...batch, ...(trans ? [cols, rows] : [rows, cols])];
  it.each([
    [false, false, [2], []],
    [false, true, [2], [2]],
    [true, false, [2, 2], [2, 2]],
    [true, true, [2], [2]],
    [false, true, [2, 2], [1, 2]],
  ])('checks the float32 FusedMatMul VJP (transA %s, transB %s; batch %j @ %j) against float32 differences', async (transA, transB, batchA, batchB) => {
    const result = await gradCheck(
      {
        dtype: 'float32',
        params: [
          { name: 'a', shape: stored(3, 4, transA, batchA) },
          { name: 'b', shape: stored(4, 5, transB, batchB) },
        ],
        build: (g, { a, b }) => weighted(g, op.matmulT(g, a!, b!, { transA, transB, alpha: 0.7 })),
      },
      { eps: 1e-2, atol: 2e-3, rtol: 1e-2 },
    );
    expect(result.checked).toBeGreaterThan(0);
    expect(result.worst).toBeLessThanOrEqual(1);
  });

  // Wide float32 products (K and N ≥ 256) form the weight gradient from an explicit transpose of the narrower
  // operand (vjp.ts, weightGradient): each branch against a float64 reference computed here, relative error ≤ 1e-5.
  it.each([
    { a: [6, 256], b: [256, 320], transB: false, transposes: 1 },
    { a: [6, 320], b: [320, 256], transB: false, transposes: 2 },
    { a: [6, 256], b: [320, 256], transB: true, transposes: 2 },
    { a: [6, 320], b: [256, 320], transB: true, transposes: 1 },
    { a: [2, 3, 256], b: [256, 256], transB: false, transposes: 1 },
    { a: [6, 128], b: [128, 256], transB: false, transposes: 0 },
  ])('computes the float32 weight gradient of $a @ $b (transB $transB) like a float64 reference', async ({ a: aShape, b: bShape, transB, transposes }) => {
    const g = new Graph('wgrad', 'float32');
    const a = g.input('a', 'float32', aShape);
    const b = g.input('b', 'float32', bShape);
    const y = transB ? op.matmulT(g, a, b, { transB: true }) : op.matmul(g, a, b);
    const loss = weighted(g, y);
    const [, gb] = gradients(g, loss, [a, b]);
    g.output(gb!, 'gb');
    expect(g.nodes.filter((n) => n.op === 'Transpose')).toHaveLength(transposes);
    const av = pseudoRandom(aShape.reduce((x, d) => x * d, 1), 1);
    const bv = pseudoRandom(bShape.reduce((x, d) => x * d, 1), 2);
    const session = await Session.create(g.toModel());
    const out = await session.run({ a: { dtype: 'float32', shape: aShape, data: Float32Array.from(av) }, b: { dtype: 'float32', shape: bShape, data: Float32Array.from(bv) } });
    await session.dispose();
    // Reference: W is the loss's weight on y (rows R, columns N); dB = AᵀW (K, N), or WᵀA (N, K) with transB.
    const k = aShape.at(-1)!;
    const rows = av.length / k;
    const n = transB ? bShape[0]! : bShape[1]!;
    const w = pseudoRandom(rows * n, 99).map((x) => Math.fround(x));
    const af = av.map((x) => Math.fround(x));
    const expected = new Float64Array(k * n);
    for (let r = 0; r < rows; r++) {
      for (let i = 0; i < k; i++) for (let j = 0; j < n; j++) expected[transB ? j * k + i : i * n + j]! += af[r * k + i]! * w[r * n + j]!;
    }
    expect(out.gb!.shape).toEqual(bShape);
    const scale = Math.max(...expected.map(Math.abs));
    const worst = Math.max(...Array.from(out.gb!.data as Float32Array, (x, i) => Math.abs(x - expected[i]!) / scale));
    expect(worst).toBeLessThan(1e-5);
  });

  it('computes the float32 tanh-GELU gradient like the float64 derivative, from −12 to 12 and at 0', async () => {
    // The VJP reads the float32 Gelu kernel's output and a float32 σ(−z): against the derivative in float64,
    // error ≤ 3e-6 absolute + 1e-5 relative. The worst is near x = −5, where y' ≈ −1e-6 comes out of 1 − s̄
    // (s̄ → 1): 1.8e-6 absolute here, as with the former 14-pass form (1.7e-6).
    const n = 2401;
    const xs = Array.from({ length: n }, (_, i) => Math.fround(-12 + (24 * i) / (n - 1)));
    const gys = pseudoRandom(n, 7).map((v) => Math.fround(v));
    const g = new Graph('gelu32', 'float32');
    const x = g.input('x', 'float32', [n]);
    const seed = g.input('gy', 'float32', [n]);
    const [gx] = gradients(g, op.sumAll(g, op.mul(g, op.gelu(g, x), seed)), [x]);
    g.output(gx!, 'gx');
    const session = await Session.create(g.toModel());
    const out = await session.run({ x: { dtype: 'float32', shape: [n], data: Float32Array.from(xs) }, gy: { dtype: 'float32', shape: [n], data: Float32Array.from(gys) } });
    await session.dispose();
    const c = Math.sqrt(2 / Math.PI);
    const a = 0.044715;
    const derivative = (v: number) => {
      const t = Math.tanh(c * (v + a * v ** 3));
      return 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * c * (1 + 3 * a * v * v);
    };
    const got = out.gx!.data as Float32Array;
    const worst = Math.max(...xs.map((v, i) => Math.abs(got[i]! - gys[i]! * derivative(v)) / (3e-6 + 1e-5 * Math.abs(gys[i]! * derivative(v)))));
    expect(xs).toContain(0);
    expect(worst).toBeLessThanOrEqual(1);
  });

  it('gives FusedMatMul (float32) and its Transpose/MatMul/Mul form (float64) the same value', async () => {
    const values = pseudoRandom(2 * 4 * 3 + 5 * 4, 5);
    const run = async (dtype: 'float32' | 'float64') => {
      const g = new Graph('fmm', dtype);
      const a = g.input('a', dtype, [2, 4, 3]);
      const b = g.input('b', dtype, [5, 4]);
      g.output(op.matmulT(g, a, b, { transA: true, transB: true, alpha: 0.5 }), 'y');
      const session = await Session.create(g.toModel());
      const feed = (shape: number[], data: number[]) => ({ dtype, shape, data: dtype === 'float32' ? Float32Array.from(data) : Float64Array.from(data) });
      const out = await session.run({ a: feed([2, 4, 3], values.slice(0, 24)), b: feed([5, 4], values.slice(24)) });
      await session.dispose();
      expect(out.y!.shape).toEqual([2, 3, 5]);
      return Array.from(out.y!.data as Float32Array | Float64Array);
    };
    const [single, double] = [await run('float32'), await run('float64')];
    single.forEach((x, i) => expect(x).toBeCloseTo(double[i]!, 5));
  });

  it.each([[[3, 6]], [[2, 3, 6]]])('checks the fused float32 LayerNormalization VJP (kernel statistics) on %j against float32 differences', async (shape) => {
    // float32: ε = 1e-2, tolerance 2e-3 absolute + 1e-2 relative. (float64 graphs use the composite, checked above.)
    // Rank 3 as in the models: the VJP's row means are products over the last axis of a rank-3 gradient.
    const result = await gradCheck(
      {
        dtype: 'float32',
        params: [{ name: 'x', shape }, { name: 'gamma', shape: [6] }, { name: 'beta', shape: [6] }],
        build: (g, { x, gamma, beta }) => weighted(g, op.layerNorm(g, x!, gamma!, beta!)),
      },
      { eps: 1e-2, atol: 2e-3, rtol: 1e-2 },
    );
    expect(result.worst).toBeLessThanOrEqual(1);
  });

  it('matches the fused ops with their composite references in the forward pass', async () => {
    const g = new Graph('fwd', 'float32');
    const x = g.input('x', 'float32', [2, 5]);
    const gamma = g.input('gamma', 'float32', [5]);
    const beta = g.input('beta', 'float32', [5]);
    g.output(op.gelu(g, x), 'gelu');
    g.output(op.geluComposite(g, x), 'gelu_ref');
    g.output(op.layerNorm(g, x, gamma, beta), 'ln');
    g.output(op.layerNormComposite(g, x, gamma, beta), 'ln_ref');
    const session = await Session.create(g.toModel());
    const f = (n: number, seed: number) => ({ dtype: 'float32' as const, shape: [n === 10 ? 2 : 5, ...(n === 10 ? [5] : [])], data: Float32Array.from(pseudoRandom(n, seed)) });
    const out = await session.run({ x: f(10, 1), gamma: f(5, 2), beta: f(5, 3) });
    for (const [a, b] of [['gelu', 'gelu_ref'], ['ln', 'ln_ref']] as const) {
      Array.from(out[a]!.data as Float32Array).forEach((v, i) => expect(v).toBeCloseTo(Number(out[b]!.data[i]), 5));
    }
    await session.dispose();
  });

  it('computes gelu in float64 to float64 precision (onnxruntime’s float64 Gelu kernel is float32-accurate)', async () => {
    const xs = [-6, -2.1, -0.7, -1e-3, 0, 0.3, 1.1, 2.5, 12];
    const formula = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
    const g = new Graph('gelu64', 'float64');
    const x = g.input('x', 'float64', [xs.length]);
    g.output(op.gelu(g, x), 'gelu');
    g.output(op.geluNode(g, x), 'node');
    const session = await Session.create(g.toModel());
    const out = await session.run({ x: { dtype: 'float64', shape: [xs.length], data: Float64Array.from(xs) } });
    await session.dispose();
    // |error| / max(|x|, 1): the left tail is a cancellation (1 + tanh → 0) in the formula itself.
    const worst = (name: string) => Math.max(...xs.map((v, i) => Math.abs((out[name]!.data as Float64Array)[i]! - formula(v)) / Math.max(Math.abs(v), 1)));
    expect(worst('gelu')).toBeLessThan(1e-15);
    // Why float64 graphs do not use the node: its kernel is off the formula by far more than float64 rounding
    // (5e-9 at x = 1.1 here).
    expect(worst('node')).toBeGreaterThan(1e-9);
  });

  it('checks the exact (erf) Gelu op in float32, where onnxruntime has its only kernel', async () => {
    // float32 differences: ε = 1e-2, tolerance 2e-3 absolute + 1e-2 relative.
    const result = await gradCheck(
      { dtype: 'float32', params: [{ name: 'x', shape: [3, 4] }], build: (g, { x }) => weighted(g, op.geluExact(g, x!)) },
      { eps: 1e-2, atol: 2e-3, rtol: 1e-2 },
    );
    expect(result.worst).toBeLessThanOrEqual(1);
  });
});

describe('autodiff', () => {
  it('catches a wrong gradient (the check can fail)', async () => {
    // Exp's true gradient is exp(x); scaling the seed by 1.01 makes every analytic gradient 1% off.
    const g = new Graph('wrong', 'float64');
    const x = g.input('x', 'float64', [4]);
    const loss = op.sumAll(g, op.exp(g, x));
    const [grad] = gradients(g, loss, [x], g.scalar(1.01));
    g.output(grad!, 'grad');
    const session = await Session.create(g.toModel());
    const data = Float64Array.from([0.1, 0.2, 0.3, 0.4]);
    const out = (await session.run({ x: { dtype: 'float64', shape: [4], data } })).grad!.data as Float64Array;
    const numeric = Array.from(data, Math.exp);
    const rel = Math.max(...Array.from(out, (a, i) => Math.abs(a - numeric[i]!) / numeric[i]!));
    expect(rel).toBeGreaterThan(0.009);
    await session.dispose();
  });

  it('treats stopGradient values as constants', async () => {
    // d/dx Σ x·sg(exp x) = exp(x), not exp(x)·(1 + x).
    const g = new Graph('sg', 'float64');
    const x = g.input('x', 'float64', [3]);
    const [grad] = gradients(g, op.sumAll(g, op.mul(g, x, op.stopGradient(g, op.exp(g, x)))), [x]);
    g.output(grad!, 'grad');
    const session = await Session.create(g.toModel());
    const data = Float64Array.from([-1, 0.5, 2]);
    const out = (await session.run({ x: { dtype: 'float64', shape: [3], data } })).grad!.data as Float64Array;
    Array.from(data).forEach((v, i) => expect(out[i]).toBeCloseTo(Math.exp(v), 12));
    await session.dispose();
  });

  it('sums gradients that reach a value along several paths, and gives unused params zero', async () => {
    const result = await gradCheck({
      params: [{ name: 'x', shape: [2, 3] }, { name: 'unused', shape: [2] }],
      build: (g, { x }) => op.sumAll(g, op.add(g, op.mul(g, x!, x!), op.tanh(g, x!))),
    });
    expect(result.worst).toBeLessThanOrEqual(1);
  });

  it('refuses a non-scalar loss and ops without a rule, naming them', () => {
    const g = new Graph('bad', 'float64');
    const x = g.input('x', 'float64', [2]);
    expect(() => gradients(g, x, [x])).toThrow(/must be a scalar \(got shape \[2\]\)/);
    const odd = g.addNode('Erf', [x], [{ dtype: 'float64', shape: [2] }])[0]!;
    expect(() => gradients(g, op.sumAll(g, odd), [x])).toThrow(/no gradient rule for Erf/);
  });
});

describe('shape checking at build time', () => {
  it('names the shapes that do not fit', () => {
    const g = new Graph('shapes');
    const a = g.input('a', 'float32', [2, 3]);
    const b = g.input('b', 'float32', [4, 5]);
    expect(() => op.matmul(g, a, b)).toThrow(/MatMul: inner dimensions differ: \[2, 3\] @ \[4, 5\]/);
    expect(() => op.matmulT(g, a, b, { transA: true })).toThrow(/FusedMatMul: inner dimensions differ: \[2, 3\]ᵀ @ \[4, 5\]/);
    expect(() => op.add(g, a, b)).toThrow(/Add: shapes \[2, 3\] and \[4, 5\] do not broadcast/);
    expect(() => op.reshape(g, a, [4, 2])).toThrow(/cannot reshape \[2, 3\]/);
    expect(() => op.slice(g, a, 1, 2, 5)).toThrow(/Slice: \[2, 5\) is outside \[0, 3\)/);
    expect(() => op.add(g, a, g.input('c', 'float64', [3]))).toThrow(/share one float dtype/);
  });
});
