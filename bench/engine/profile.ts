/**
 * Reading onnxruntime's profile (the Chrome-trace JSON a session writes with profiling on): per run, the run's
 * time, its kernels' time by op type, and its matrix products' time and FLOPs. bench/engine-profile prints these.
 */

/** The parts of a profile event used here (onnxruntime writes more). Times are in microseconds. */
export interface ProfileEvent {
  cat: string;
  name: string;
  ts: number;
  dur: number;
  args?: { op_name?: string; input_type_shape?: Record<string, number[]>[]; output_type_shape?: Record<string, number[]>[] };
}

/** Matrix products: their kernels are counted apart from everything else. */
export const PRODUCT_OPS: ReadonlySet<string> = new Set(['MatMul', 'FusedMatMul', 'Gemm']);

export interface OpTime {
  ms: number;
  count: number;
}

export interface RunProfile {
  /** The whole run as onnxruntime timed it (`model_run`). */
  runMs: number;
  /** Sum of the run's kernel times. */
  kernelMs: number;
  productMs: number;
  productFlop: number;
  /** Kernel time per op type. */
  byOp: Map<string, OpTime>;
  /** Product kernel time per op and input shapes (e.g. `MatMul [2688,256]·[256,1024]`), with its FLOPs. */
  products: Map<string, OpTime & { flop: number }>;
  /** Kernel time per graph node (its name in the model, e.g. `Mul_784`), with its op and shapes. */
  nodes: Map<string, NodeTime>;
}

export interface NodeTime {
  op: string;
  ms: number;
  /** Input shapes → output shapes, e.g. `[3246848]·[] → [3246848]` (past four inputs: the first three and a count). */
  shapes: string;
}

const dims = (shapes: Record<string, number[]>[] | undefined, i: number): number[] | undefined => {
  const entry = shapes?.[i];
  return entry ? Object.values(entry)[0] : undefined;
};
const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/**
 * Floating-point operations of one matrix-product kernel: 2 · (output elements) · K. K comes from the second
 * operand B, whatever the transposes: B is (…, K, N), or (…, N, K) when transposed, and the output ends in N; a
 * 1-D B is (K). Undefined when the event lacks shapes.
 */
export function productFlop(event: ProfileEvent): number | undefined {
  const b = dims(event.args?.input_type_shape, 1);
  const out = dims(event.args?.output_type_shape, 0);
  if (!b || !out || b.length === 0) return undefined;
  let k: number;
  if (b.length === 1) k = b[0]!;
  else {
    const [b1, b2] = b.slice(-2) as [number, number];
    k = b2 === out[out.length - 1] ? b1 : b2;
  }
  return 2 * numel(out) * k;
}

const shapeList = (shapes: Record<string, number[]>[] | undefined): string[] => (shapes ?? []).map((_, i) => `[${dims(shapes, i)!.join(',')}]`);

function productKey(event: ProfileEvent): string {
  return `${event.args?.op_name} ${shapeList(event.args?.input_type_shape).join('·')}`;
}

/** `NodeTime.shapes` of a kernel event. */
function nodeShapes(event: ProfileEvent): string {
  const ins = shapeList(event.args?.input_type_shape);
  const inputs = ins.length > 4 ? `${ins.slice(0, 3).join('·')}·… (${ins.length} inputs)` : ins.join('·');
  return `${inputs} → ${shapeList(event.args?.output_type_shape).join(' ')}`;
}

const KERNEL_SUFFIX = '_kernel_time';

/**
 * The profile's runs in time order, each with the kernels that ran inside it. Kernels are the `Node` events
 * named `…_kernel_time` (onnxruntime also writes fence events, which are skipped).
 */
export function runProfiles(events: readonly ProfileEvent[]): RunProfile[] {
  const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').sort((a, b) => a.ts - b.ts);
  const kernels = events.filter((e) => e.cat === 'Node' && e.name.endsWith(KERNEL_SUFFIX)).sort((a, b) => a.ts - b.ts);
  const out: RunProfile[] = [];
  let k = 0;
  for (const run of runs) {
    const p: RunProfile = { runMs: run.dur / 1000, kernelMs: 0, productMs: 0, productFlop: 0, byOp: new Map(), products: new Map(), nodes: new Map() };
    while (k < kernels.length && kernels[k]!.ts < run.ts) k++;
    for (; k < kernels.length && kernels[k]!.ts <= run.ts + run.dur; k++) {
      const e = kernels[k]!;
      const ms = e.dur / 1000;
      const op = e.args?.op_name ?? '?';
      p.kernelMs += ms;
      const o = p.byOp.get(op) ?? { ms: 0, count: 0 };
      p.byOp.set(op, { ms: o.ms + ms, count: o.count + 1 });
      const node = e.name.slice(0, -KERNEL_SUFFIX.length);
      const seen = p.nodes.get(node);
      if (seen) seen.ms += ms;
      else p.nodes.set(node, { op, ms, shapes: nodeShapes(e) });
      if (PRODUCT_OPS.has(op)) {
        const flop = productFlop(e) ?? 0;
        p.productMs += ms;
        p.productFlop += flop;
        const key = productKey(e);
        const q = p.products.get(key) ?? { ms: 0, count: 0, flop: 0 };
        p.products.set(key, { ms: q.ms + ms, count: q.count + 1, flop: q.flop + flop });
      }
    }
    out.push(p);
  }
  return out;
}
