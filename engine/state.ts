/**
 * The ONNX engine's saved state: one file, `state.bin` (what `OnnxEngine.saveState` returns and a checkpoint
 * stores; checkpoints written before states became sets of named files hold the same single file), whose bytes are:
 *
 *   "SOPHIAES" (8 bytes) | header length (uint32 LE) | header JSON (UTF-8) | zero padding to 8 bytes |
 *   float32 LE tensors: every parameter, then every AdamW first moment, then every second moment,
 *   in `parameterSpecs(config)` order.
 *
 * The header records the format, model config, step, RNG state and each tensor's name, shape and offset, so a
 * state can be inspected without the engine and a mismatch (wrong model, truncated file) is reported clearly.
 */
import { type ModelConfig, parameterSpecs, validateModelConfig } from './model/config';
import { Rng, type RngState } from './rng';
import type { InMemoryEngineFile } from './types';

const MAGIC = 'SOPHIAES';
const STATE_FORMAT = 'sophia.engine-state.v1';

/** The one file of an ONNX engine state. */
export const STATE_FILE = 'state.bin';

export interface EngineState {
  config: ModelConfig;
  step: number;
  rng: RngState;
  params: Float32Array[];
  m: Float32Array[];
  v: Float32Array[];
}

interface Header {
  format: string;
  config: ModelConfig;
  step: number;
  rng: RngState;
  tensors: { name: string; shape: number[]; offset: number; length: number }[];
}

export function encodeState(state: EngineState): Uint8Array {
  const specs = parameterSpecs(state.config);
  const groups: [string, Float32Array[]][] = [
    ['p', state.params],
    ['m', state.m],
    ['v', state.v],
  ];
  const tensors: Header['tensors'] = [];
  let offset = 0;
  for (const [prefix, arrays] of groups) {
    specs.forEach((spec, i) => {
      const length = arrays[i]!.length;
      tensors.push({ name: `${prefix}:${spec.name}`, shape: spec.shape, offset, length });
      offset += length * 4;
    });
  }
  const header: Header = { format: STATE_FORMAT, config: state.config, step: state.step, rng: state.rng, tensors };
  const headerBytes = new TextEncoder().encode(JSON.stringify(header));
  const dataStart = Math.ceil((12 + headerBytes.length) / 8) * 8;
  const out = new Uint8Array(dataStart + offset);
  out.set(new TextEncoder().encode(MAGIC), 0);
  new DataView(out.buffer).setUint32(8, headerBytes.length, true);
  out.set(headerBytes, 12);
  let at = dataStart;
  for (const [, arrays] of groups) {
    for (const a of arrays) {
      out.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), at);
      at += a.byteLength;
    }
  }
  return out;
}

export function decodeState(bytes: Uint8Array): EngineState {
  const fail = (why: string): never => {
    throw new RangeError(`engine state: ${why}`);
  };
  if (bytes.length < 12 || new TextDecoder().decode(bytes.subarray(0, 8)) !== MAGIC) fail('not a Sophia engine state (bad magic)');
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(8, true);
  if (12 + headerLength > bytes.length) fail('truncated header');
  let header: Header;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + headerLength))) as Header;
  } catch {
    return fail('header is not JSON');
  }
  if (header.format !== STATE_FORMAT) fail(`format ${JSON.stringify(header.format)}, expected ${STATE_FORMAT}`);
  const config = validateModelConfig(header.config, 'state.config');
  const specs = parameterSpecs(config);
  if (header.tensors.length !== 3 * specs.length) fail(`has ${header.tensors.length} tensors, the model needs ${3 * specs.length}`);
  const dataStart = Math.ceil((12 + headerLength) / 8) * 8;
  const read = (i: number, expectName: string, expectLength: number): Float32Array => {
    const t = header.tensors[i]!;
    if (t.name !== expectName || t.length !== expectLength) fail(`tensor ${i} is ${t.name} × ${t.length}, expected ${expectName} × ${expectLength}`);
    const start = dataStart + t.offset;
    if (start + t.length * 4 > bytes.length) fail(`truncated: ${t.name} runs past the end`);
    // Copy into an aligned, private buffer (the input may be a view at any offset, e.g. a Node Buffer).
    const out = new Float32Array(t.length);
    new Uint8Array(out.buffer).set(bytes.subarray(start, start + t.length * 4));
    return out;
  };
  const group = (prefix: string, base: number) =>
    specs.map((s, i) => read(base + i, `${prefix}:${s.name}`, s.shape.reduce((a, b) => a * b, 1)));
  return {
    config,
    step: header.step,
    rng: header.rng,
    params: group('p', 0),
    m: group('m', specs.length),
    v: group('v', 2 * specs.length),
  };
}

/**
 * A thinking reward model that starts from a policy: the same backbone weights (embeddings, patch projection,
 * transformer blocks, final norm), a fresh scalar head (normal × initStd from `seed`, zero bias) instead of the LM
 * head, zero AdamW moments, step 0. The paper starts its reward model from a pretrained VLM for the same reason:
 * the backbone already reads the images and the text.
 */
export function rewardStateFromPolicy(policy: EngineState, seed: number): EngineState {
  if (policy.config.kind !== 'policy') throw new RangeError(`rewardStateFromPolicy: the state is a ${policy.config.kind} model, expected a policy`);
  const config: ModelConfig = { ...structuredClone(policy.config), kind: 'reward' };
  const policyIndex = new Map(parameterSpecs(policy.config).map((s, i) => [s.name, i]));
  const rng = new Rng(seed);
  const params = parameterSpecs(config).map((spec) => {
    const from = policyIndex.get(spec.name);
    if (from !== undefined) return Float32Array.from(policy.params[from]!);
    const size = spec.shape.reduce((a, b) => a * b, 1);
    const out = new Float32Array(size);
    if (spec.init === 'normal') for (let k = 0; k < size; k++) out[k] = rng.nextNormal() * config.initStd;
    else if (spec.init === 'ones') out.fill(1);
    return out;
  });
  const zeros = () => params.map((p) => new Float32Array(p.length));
  return { config, step: 0, rng: rng.state(), params, m: zeros(), v: zeros() };
}

/** The same weights with a fresh optimizer: zero AdamW moments and step 0 (an RL stage starting from SFT). */
export function withFreshOptimizer(state: EngineState): EngineState {
  return { ...state, step: 0, m: state.params.map((p) => new Float32Array(p.length)), v: state.params.map((p) => new Float32Array(p.length)) };
}

/** The state as the engine's named files: `[state.bin]`. */
export function stateFiles(state: EngineState): InMemoryEngineFile[] {
  return [{ name: STATE_FILE, data: encodeState(state) }];
}

/** Reads a state from its named files (exactly one, `state.bin`); anything else is a `RangeError` naming the file. */
export function stateFromFiles(files: readonly InMemoryEngineFile[]): EngineState {
  const names = files.map((f) => f.name);
  const list = names.length ? names.join(', ') : '(no files)';
  const extra = names.filter((n) => n !== STATE_FILE);
  if (extra.length > 0) throw new RangeError(`engine state: unexpected file ${JSON.stringify(extra[0])} (this engine saves only ${STATE_FILE}; got ${list}): is it another engine's checkpoint?`);
  if (names.length !== 1) throw new RangeError(`engine state: expected one file ${STATE_FILE}, got ${list}`);
  try {
    return decodeState(files[0]!.data);
  } catch (err) {
    if (err instanceof RangeError) throw new RangeError(`${STATE_FILE}: ${err.message}`);
    throw err;
  }
}
