/**
 * What `sophia eval --model` names: a Hugging Face model directory, or a Sophia run's checkpoint as
 * `RUN_ID[/STAGE]` in the run's storage (`--storage`, else SOPHIA_STORAGE or the local default). STAGE is the
 * checkpoint line: `grpo` (Trust-GRPO's), `sft`, or `init` (the untrained policy the run started from); without it,
 * the latest RL checkpoint, else the latest SFT one. The checkpoint is copied (each file verified against its
 * manifest) into a folder the caller removes, and evaluated from there: a PyTorch-engine checkpoint is a Hugging Face
 * directory (with its LoRA adapter, if it has one); a checkpoint of Sophia's own model (the onnx engine) is its
 * engine state, evaluated on the ONNX engine with every prompt adapted to what that tiny model reads
 * (`onnxPromptFit`: one small square image, a fixed alphabet, a few dozen positions), so that the whole path runs,
 * not so that its numbers say anything about a real vision-language model.
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { ConfigError, SophiaError } from '../common/errors';
import { STORAGE_STAGES } from '../common/run-layout';
import { type ModelConfig, validateModelConfig } from '../engine/model/config';
import { fitPromptToModel, promptRoom } from '../engine/onnx-prompts';
import { type ChatPrompt, isPretrained, type ModelSpec, type OnDiskEngineFile } from '../engine/types';
import { CheckpointStore } from '../storage/checkpoints';
import { openStorage } from '../storage/open';
import { userPath } from './paths';

type Env = Readonly<Record<string, string | undefined>>;

/** The checkpoint lines `RUN_ID/STAGE` may name, in the order a bare `RUN_ID` tries them (first with a checkpoint). */
export const EVAL_STAGES = [STORAGE_STAGES.grpo, STORAGE_STAGES.sft, STORAGE_STAGES.initialPolicy] as const;
const DEFAULT_STAGES = [STORAGE_STAGES.grpo, STORAGE_STAGES.sft];

export type ModelArg = { kind: 'dir'; dir: string } | { kind: 'run'; runId: string; stage: string | undefined };

/** A path (absolute, `./…`, or an existing folder) is a model directory; anything else is RUN_ID[/STAGE]. */
export function parseModelArg(value: string, env: Env): ModelArg {
  const dir = userPath(value, env);
  if (value.startsWith('/') || value.startsWith('.') || existsSync(dir)) return { kind: 'dir', dir };
  const [runId, stage, ...rest] = value.split('/');
  if (!runId || rest.length > 0 || (stage !== undefined && !(EVAL_STAGES as readonly string[]).includes(stage))) {
    throw new SophiaError('input', `--model ${JSON.stringify(value)} is neither a model directory nor RUN_ID[/STAGE] (STAGE: ${EVAL_STAGES.join(', ')})`, {
      hint: 'Give a Hugging Face model directory, or a run id such as my-run or my-run/sft',
    });
  }
  return { kind: 'run', runId, stage };
}

/**
 * A run's checkpoint, copied: a Hugging Face model directory (the torch engine's), or the engine state of Sophia's own
 * model with its model config (the onnx engine's), to load into an ONNX engine.
 */
export type RunModel = { engine: 'torch'; dir: string; checkpointKey: string } | { engine: 'onnx'; files: OnDiskEngineFile[]; model: ModelConfig; checkpointKey: string };

/**
 * Copies the checkpoint `arg` names from `storage` into `into`; returns what it holds and where it came from. Refuses,
 * naming --model, a run without such a checkpoint and a checkpoint whose model is neither a Hugging Face model nor a
 * valid config of Sophia's own policy.
 */
export async function fetchRunModel(arg: Extract<ModelArg, { kind: 'run' }>, storage: string, into: string, env: Env): Promise<RunModel> {
  const store = new CheckpointStore(openStorage(storage, env));
  try {
    const stages = arg.stage ? [arg.stage] : DEFAULT_STAGES;
    for (const stage of stages) {
      const manifest = await store.latest(arg.runId, stage);
      if (!manifest) continue;
      const model = manifest.meta.model as ModelSpec | undefined;
      const dir = path.join(into, 'model');
      if (model && isPretrained(model)) {
        // The weights, config and processor files (and a LoRA adapter); not the optimizer's moments (2× the weights).
        await store.loadInto(manifest.key, dir, { skip: (name) => name.startsWith('sophia_optimizer') });
        return { engine: 'torch', dir, checkpointKey: manifest.key };
      }
      // Sophia's own model: one state file (weights and moments together; the load drops the moments).
      const config = onnxPolicyConfig(model, `--model ${arg.runId}/${stage}: ${manifest.key}`);
      const { files } = await store.loadInto(manifest.key, dir);
      return { engine: 'onnx', files, model: config, checkpointKey: manifest.key };
    }
    throw new SophiaError('not-found', `--model ${arg.runId}${arg.stage ? `/${arg.stage}` : ''}: no ${stages.join(' or ')} checkpoint of run ${arg.runId} in ${storage}`, {
      hint: 'Check the run id and --storage (the storage the run wrote to), or name another stage: RUN_ID/sft, RUN_ID/init',
    });
  } finally {
    await store.close();
  }
}

/** The checkpoint's `meta.model` as Sophia's policy config (the onnx engine's checkpoints record it); refused, naming `what`, otherwise. */
function onnxPolicyConfig(model: ModelSpec | undefined, what: string): ModelConfig {
  const refuse = (why: string) =>
    new SophiaError('input', `${what} records no model sophia eval can run: ${why}`, { hint: "Evaluate a policy checkpoint of a run (engine.kind torch: a Hugging Face model; onnx: Sophia's own model)" });
  if (!model) throw refuse('its manifest has no meta.model');
  try {
    validateModelConfig(model as ModelConfig, 'meta.model');
  } catch (err) {
    if (err instanceof ConfigError) throw refuse(err.message);
    throw err;
  }
  if (model.kind !== 'policy') throw refuse(`meta.model.kind is ${model.kind}, not a policy`);
  return model as ModelConfig;
}

/**
 * How `sophia eval` shows benchmark prompts to Sophia's own model (`fitPromptToModel`, engine/onnx-prompts.ts): the
 * first image resized to the model's size, the text folded into its alphabet and cut to the room `maxTokens` leaves,
 * with counts of what was cut and dropped. Throws a `SophiaError` naming --max-tokens when it leaves no room at all.
 */
export function onnxPromptFit(model: ModelConfig, maxTokens: number): { fit: (prompt: ChatPrompt) => ChatPrompt; promptTokens: number; counts: { prompts: number; textCut: number; imagesDropped: number } } {
  let promptTokens: number;
  try {
    promptTokens = promptRoom(model, maxTokens);
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
    throw new SophiaError('input', `--max-tokens ${maxTokens}: ${err.message}`, { hint: `Sophia's model has ${model.maxLength} positions for the prompt and the answer: give --max-tokens below ${model.maxLength}, or leave it out (half of them)` });
  }
  const counts = { prompts: 0, textCut: 0, imagesDropped: 0 };
  const fit = (prompt: ChatPrompt): ChatPrompt => {
    const fitted = fitPromptToModel(prompt, model, maxTokens);
    counts.prompts++;
    if (fitted.textCut) counts.textCut++;
    counts.imagesDropped += fitted.imagesDropped;
    return fitted.prompt;
  };
  return { fit, promptTokens, counts };
}

/** The line `sophia eval` prints before evaluating Sophia's own model: what its prompts are, and what the numbers are not. */
export function onnxAdaptationLine(model: ModelConfig, promptTokens: number): string {
  return (
    `Sophia's tiny model (the onnx engine, ${model.image.size}×${model.image.size} images, ${model.maxLength} text positions): every prompt is adapted to what it reads — ` +
    `images resized to ${model.image.size}×${model.image.size} (the first only), text folded to its alphabet and cut to ${promptTokens} characters (a tag counts as one) — ` +
    'so these numbers measure the plumbing, not a real vision-language model'
  );
}
