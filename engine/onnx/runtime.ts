/**
 * Running built graphs on onnxruntime-node: session creation with Sophia's options (execution provider from
 * config, all graph optimizations, a fixed thread count for reproducible timings), and typed feeds/fetches.
 */
import * as ort from 'onnxruntime-node';
import { type DType, type Shape, type TypedData, numel, shapeString } from './graph';

export type ExecutionProvider = 'cpu' | 'cuda';

/** How intra-op threads wait for work (see `SessionOptions.spinning`). */
export const SPIN_POLICIES = ['always', 'during-run', 'never'] as const;
export type SpinPolicy = (typeof SPIN_POLICIES)[number];

export interface SessionOptions {
  executionProvider?: ExecutionProvider;
  /** Intra-op threads (default: onnxruntime's choice, one per core). */
  threads?: number;
  /**
   * How intra-op threads wait: `always` (onnxruntime's default: spin between and during runs), `during-run`
   * (spin inside a run, sleep once it ends), `never`.
   */
  spinning?: SpinPolicy;
  /**
   * Record onnxruntime's profile (every kernel's time, per run) to `<profilePrefix>_<date>.json`, complete once
   * the session is disposed (onnxruntime finishes the file on release). Costs a little time per kernel; for
   * finding where a graph's time goes.
   */
  profilePrefix?: string;
}

/** A tensor on the JS side: dtype, static shape, data. */
export interface HostTensor {
  dtype: DType;
  shape: Shape;
  data: TypedData;
}

const ORT_TYPE: Record<DType, ort.Tensor.Type> = { float32: 'float32', float64: 'float64', int64: 'int64', bool: 'bool' };

export function hostTensor(dtype: DType, shape: Shape, data: TypedData): HostTensor {
  if (data.length !== numel(shape)) {
    throw new RangeError(`tensor of shape ${shapeString(shape)} needs ${numel(shape)} elements, got ${data.length}`);
  }
  return { dtype, shape, data };
}

/** `run` on a session after `dispose`. */
export class SessionDisposedError extends Error {
  constructor() {
    super('session.run: the session was disposed');
    this.name = 'SessionDisposedError';
  }
}

export class Session {
  /** Runs in flight; `dispose` waits for them. */
  private active = 0;
  private idle: (() => void) | undefined;
  private released: Promise<void> | undefined;

  private constructor(
    private readonly session: ort.InferenceSession,
    readonly inputNames: readonly string[],
    readonly outputNames: readonly string[],
  ) {}

  static async create(model: Uint8Array, options: SessionOptions = {}): Promise<Session> {
    const session = await ort.InferenceSession.create(model, {
      executionProviders: [options.executionProvider ?? 'cpu'],
      graphOptimizationLevel: 'all',
      ...(options.threads ? { intraOpNumThreads: options.threads } : {}),
      extra: {
        session: {
          // Flush denormals to zero (FTZ/DAZ). Masked attention scores (−1e9) and tiny gradients otherwise send
          // exp and friends down the CPU's slow denormal path: softmax over a causal mask ran 2–3× slower, a
          // training step ~5 % slower. onnxruntime applies it to the session's own threads and, for the first
          // session created in a process, to the calling thread too; every session here asks for it, so that
          // first session is always one of ours and all threads that run kernels agree (results do not depend
          // on which thread computed which block). Side effect: that thread (Node's main thread) flushes
          // denormal doubles in JS as well, which nothing in Sophia relies on.
          set_denormal_as_zero: '1',
          ...(options.spinning === 'never' ? { intra_op: { allow_spinning: '0' } } : {}),
          ...(options.spinning === 'during-run' ? { force_spinning_stop: '1' } : {}),
        },
      },
      executionMode: 'sequential',
      ...(options.profilePrefix ? { enableProfiling: true, profileFilePrefix: options.profilePrefix } : {}),
    });
    return new Session(session, session.inputNames, session.outputNames);
  }

  /** Runs the graph; every declared input must be fed. Returns the requested outputs (default: all). */
  async run(feeds: Readonly<Record<string, HostTensor>>, fetch: readonly string[] = this.outputNames): Promise<Record<string, HostTensor>> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const name of this.inputNames) {
      const t = feeds[name];
      if (!t) throw new RangeError(`session input ${name} was not fed`);
      ortFeeds[name] = ortTensor(t);
    }
    if (this.released) throw new SessionDisposedError();
    this.active++;
    let results: ort.InferenceSession.OnnxValueMapType;
    try {
      results = await this.session.run(ortFeeds, [...fetch]);
    } finally {
      if (--this.active === 0) this.idle?.();
    }
    const out: Record<string, HostTensor> = {};
    for (const name of fetch) {
      const t = results[name]!;
      out[name] = { dtype: fromOrtType(t.type), shape: [...t.dims], data: t.data as TypedData };
    }
    return out;
  }

  /** Frees the session once its runs in flight have finished; later `run` calls throw. Idempotent. */
  dispose(): Promise<void> {
    this.released ??= (async () => {
      if (this.active > 0) await new Promise<void>((resolve) => (this.idle = resolve));
      await this.session.release();
    })();
    return this.released;
  }
}

/**
 * The onnxruntime tensor for a host tensor: it wraps the same memory (no copy), and is made once per host tensor
 * object — the sampler feeds the same objects every decoding step, rewriting their data in place — unless the
 * object's data or shape was replaced since.
 */
const wrapped = new WeakMap<HostTensor, { data: TypedData; shape: Shape; tensor: ort.Tensor }>();
function ortTensor(t: HostTensor): ort.Tensor {
  const hit = wrapped.get(t);
  if (hit && hit.data === t.data && hit.shape === t.shape) return hit.tensor;
  const tensor = new ort.Tensor(ORT_TYPE[t.dtype], t.data, [...t.shape]);
  wrapped.set(t, { data: t.data, shape: t.shape, tensor });
  return tensor;
}

function fromOrtType(type: string): DType {
  switch (type) {
    case 'float32':
      return 'float32';
    case 'float64':
      return 'float64';
    case 'int64':
      return 'int64';
    case 'bool':
      return 'bool';
    default:
      throw new TypeError(`unsupported output tensor type ${type}`);
  }
}
