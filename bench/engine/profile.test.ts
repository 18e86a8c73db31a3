import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { presetConfig } from '../../engine/model/config';
import { Graph, OnnxEngine, Session, op } from '../../engine/onnx-bench';
import { type ProfileEvent, productFlop, runProfiles } from './profile';
import { VOCAB, benchSpec, engineInputs } from './shared';

const kernel = (ts: number, dur: number, op: string, inputs: number[][] = [], output: number[] = []): ProfileEvent => ({
  cat: 'Node',
  name: `${op}_${ts}_kernel_time`,
  ts,
  dur,
  args: { op_name: op, input_type_shape: inputs.map((s) => ({ float: s })), output_type_shape: [{ float: output }] },
});

describe('productFlop', () => {
  it('counts 2·M·N·K with K read from B, transposed or not, batched or 1-D', () => {
    expect(productFlop(kernel(0, 1, 'MatMul', [[6, 4], [4, 5]], [6, 5]))).toBe(2 * 6 * 5 * 4);
    expect(productFlop(kernel(0, 1, 'FusedMatMul', [[6, 4], [5, 4]], [6, 5]))).toBe(2 * 6 * 5 * 4); // transB
    expect(productFlop(kernel(0, 1, 'FusedMatMul', [[4, 6], [4, 5]], [6, 5]))).toBe(2 * 6 * 5 * 4); // transA
    expect(productFlop(kernel(0, 1, 'MatMul', [[3, 2, 6, 4], [3, 2, 4, 5]], [3, 2, 6, 5]))).toBe(2 * 3 * 2 * 6 * 5 * 4);
    expect(productFlop(kernel(0, 1, 'MatMul', [[1, 7], [7, 3]], [1, 3]))).toBe(2 * 3 * 7);
    expect(productFlop(kernel(0, 1, 'MatMul', [[6, 4], [4]], [6]))).toBe(2 * 6 * 4);
    expect(productFlop({ cat: 'Node', name: 'x_kernel_time', ts: 0, dur: 1 })).toBeUndefined();
  });
});

describe('runProfiles', () => {
  it('gives each run the kernels inside it, by op type, with products apart', () => {
    const events: ProfileEvent[] = [
      { cat: 'Session', name: 'session_initialization', ts: 0, dur: 50 },
      { cat: 'Session', name: 'model_run', ts: 200, dur: 1000 },
      kernel(5, 40, 'Add', [[2], [2]], [2]), // before any run (initialization): not counted
      kernel(210, 300, 'MatMul', [[8, 4], [4, 2]], [8, 2]),
      { cat: 'Node', name: 'Mul_fence_before', ts: 520, dur: 1 },
      kernel(520, 100, 'Mul', [[8, 2], [8, 2]], [8, 2]),
      kernel(640, 100, 'Mul', [[8, 2], [8, 2]], [8, 2]),
      { cat: 'Session', name: 'model_run', ts: 2000, dur: 500 },
      kernel(2100, 200, 'FusedMatMul', [[8, 4], [2, 4]], [8, 2]),
      kernel(2310, 50, 'Concat', [[1], [2], [3], [4], [5]], [15]),
    ];
    const [a, b, ...rest] = runProfiles(events);
    expect(rest).toHaveLength(0);
    expect(a!.runMs).toBe(1);
    expect(a!.kernelMs).toBeCloseTo(0.5);
    expect(a!.productMs).toBeCloseTo(0.3);
    expect(a!.productFlop).toBe(2 * 8 * 2 * 4);
    expect(a!.byOp.get('Mul')).toEqual({ ms: 0.2, count: 2 });
    expect(a!.byOp.has('Add')).toBe(false);
    expect([...a!.products.keys()]).toEqual(['MatMul [8,4]·[4,2]']);
    expect(a!.nodes.get('Mul_520')).toEqual({ op: 'Mul', ms: 0.1, shapes: '[8,2]·[8,2] → [8,2]' });
    expect([...a!.nodes.keys()]).toEqual(['MatMul_210', 'Mul_520', 'Mul_640']);
    expect(b!.productMs).toBeCloseTo(0.2);
    expect(b!.nodes.get('Concat_2310')!.shapes).toBe('[1]·[2]·[3]·… (5 inputs) → [15]');
    expect(b!.byOp.get('FusedMatMul')!.count).toBe(1);
  });
});

describe('onnxruntime profiles (real sessions)', () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const d = mkdtempSync(path.join(tmpdir(), 'sophia-profile-test-'));
    dirs.push(d);
    return d;
  };
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('a profiled session\'s file holds its runs once the session is disposed; product FLOPs come out exact', async () => {
    const dir = tempDir();
    const g = new Graph('profiled');
    g.output(op.tanh(g, op.matmul(g, g.input('a', 'float32', [64, 48]), g.input('b', 'float32', [48, 32]))), 'y');
    const session = await Session.create(g.toModel(), { threads: 1, profilePrefix: path.join(dir, 'p') });
    const feeds = { a: { dtype: 'float32' as const, shape: [64, 48], data: new Float32Array(64 * 48).fill(0.5) }, b: { dtype: 'float32' as const, shape: [48, 32], data: new Float32Array(48 * 32).fill(0.25) } };
    for (let i = 0; i < 3; i++) await session.run(feeds);
    await session.dispose();
    const files = readdirSync(dir);
    expect(files).toHaveLength(1);
    const runs = runProfiles(JSON.parse(readFileSync(path.join(dir, files[0]!), 'utf8')) as ProfileEvent[]);
    expect(runs).toHaveLength(3);
    for (const r of runs) {
      expect(r.productFlop).toBe(2 * 64 * 32 * 48);
      expect(r.byOp.get('Tanh')?.count).toBe(1);
      expect(r.kernelMs).toBeGreaterThan(r.productMs);
      expect(r.runMs).toBeGreaterThanOrEqual(r.kernelMs);
    }
  });

  it('an engine with profileDir writes one profile per graph, named after it', async () => {
    const dir = tempDir();
    const config = presetConfig('tiny', 'policy', VOCAB);
    const engine = new OnnxEngine({ threads: 1, profileDir: dir });
    await engine.init(config, 1);
    const { batch, adamw } = engineInputs(benchSpec(config));
    await engine.trainStep(batch, { kind: 'sft' }, adamw);
    await engine.trainStep(batch, { kind: 'sft' }, adamw);
    await engine.dispose();
    const files = readdirSync(dir);
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^train-sft-32x\d+(-from\d+)?_.*\.json$/);
    const runs = runProfiles(JSON.parse(readFileSync(path.join(dir, files[0]!), 'utf8')) as ProfileEvent[]);
    expect(runs).toHaveLength(2);
    expect(runs[0]!.productFlop).toBe(runs[1]!.productFlop);
    expect(runs[0]!.productFlop).toBeGreaterThan(0);
  });
});
