/**
 * The one place that knows which engines exist: `createEngine(options)` makes an `Engine` from its kind and that
 * kind's settings. Workers, the CLI and tests outside engine/ create engines only through it and import nothing of
 * an engine's internals (an eslint rule keeps it so), so a second engine — e.g. a PyTorch process serving Hugging
 * Face models — is one more case here, and it proves itself with the same contract suite (`engine.contract.ts`).
 */
import { OnnxEngine, type OnnxEngineOptions } from './onnx-engine';
import type { Engine } from './types';

/** The built-in engine: Sophia's ONNX graphs on onnxruntime-node, with its settings (provider, threads, …). */
export type OnnxEngineSettings = { kind: 'onnx' } & OnnxEngineOptions;

/** Which engine to make, with its settings; `kind` picks the engine. */
export type EngineOptions = OnnxEngineSettings;

export type EngineKind = EngineOptions['kind'];

/** Every kind `createEngine` can make. */
const ENGINE_KINDS: readonly EngineKind[] = ['onnx'];

export function createEngine(options: EngineOptions): Engine {
  const { kind, ...settings } = options;
  switch (kind) {
    case 'onnx':
      return new OnnxEngine(settings);
    default:
      throw new RangeError(`engine.kind ${JSON.stringify(kind)} is not an engine this build has: use one of ${ENGINE_KINDS.join(', ')}`);
  }
}
