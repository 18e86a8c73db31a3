/**
 * What bench/ needs of the ONNX engine's internals, in one module made for it: the benchmarks time and profile
 * `OnnxEngine` itself (its session options, graph builder and runtime, its state bytes that the PyTorch baseline
 * reads), so they cannot go through the engine-neutral `createEngine`. Everything else outside engine/ imports
 * only `types.ts`, `factory.ts` and the engine-neutral helpers (batch, model config, rng); the eslint rule in
 * eslint.config.mjs allows this module to bench/ alone.
 */
import * as op from './onnx/ops';
import { STATE_FILE } from './state';
import { readEngineFile } from './state-files';
import type { Engine } from './types';

export { DEFAULT_SPINNING, OnnxEngine, type OnnxEngineOptions } from './onnx-engine';
export { Graph } from './onnx/graph';
export { SPIN_POLICIES, Session, type SpinPolicy } from './onnx/runtime';
export { op };

/** An ONNX engine's state as the bytes of its one file (`state.bin`, the format bench/engine/torch_worker.py reads). */
export async function saveStateBytes(engine: Engine): Promise<Uint8Array> {
  const files = await engine.saveState();
  const file = files.find((f) => f.name === STATE_FILE);
  if (!file || files.length !== 1) throw new RangeError(`saveStateBytes: expected one file ${STATE_FILE}, got ${files.map((f) => f.name).join(', ')}`);
  return readEngineFile(file);
}

/** Loads `saveStateBytes`' bytes into an engine. */
export function loadStateBytes(engine: Engine, bytes: Uint8Array): Promise<void> {
  return engine.loadState([{ name: STATE_FILE, data: bytes }]);
}
