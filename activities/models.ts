/**
 * What a run's engines start from, on the worker that makes them: `modelSpecOf` (config/run-config.ts) — Sophia's
 * architecture for onnx runs, the Hugging Face model directory for torch runs.
 */
import { type RunConfig, modelSpecOf } from '../config/run-config';
import type { ModelKind } from '../engine/model/config';
import type { ModelSpec } from '../engine/types';

// eslint-disable-next-line @typescript-eslint/require-await -- async: an s3:// model is downloaded into the worker's model cache here
export async function modelSpecFor(config: RunConfig, kind: ModelKind): Promise<ModelSpec> {
  return modelSpecOf(config, kind);
}
