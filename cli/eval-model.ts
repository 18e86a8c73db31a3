/**
 * What `sophia eval --model` names: a Hugging Face model directory, or a Sophia run's checkpoint as
 * `RUN_ID[/STAGE]` in the run's storage (`--storage`, else SOPHIA_STORAGE or the local default). STAGE is the
 * checkpoint line: `grpo` (Trust-GRPO's), `sft`, or `init` (the untrained policy the run started from); without it,
 * the latest RL checkpoint, else the latest SFT one. The checkpoint is copied (each file verified against its
 * manifest) into a folder the caller removes, and evaluated from there: a PyTorch-engine checkpoint is a Hugging Face
 * directory (with its LoRA adapter, if it has one). A checkpoint of Sophia's own model (the onnx engine) is refused:
 * the benchmarks need a real vision-language model.
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { SophiaError } from '../common/errors';
import { STORAGE_STAGES } from '../common/run-layout';
import { isPretrained, type ModelSpec } from '../engine/types';
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
 * Copies the checkpoint `arg` names from `storage` into `into`; returns the folder and where it came from. Refuses,
 * naming --model, a run without such a checkpoint and a checkpoint that is not a Hugging Face model.
 */
export async function fetchRunModel(arg: Extract<ModelArg, { kind: 'run' }>, storage: string, into: string, env: Env): Promise<{ dir: string; checkpointKey: string }> {
  const store = new CheckpointStore(openStorage(storage, env));
  try {
    const stages = arg.stage ? [arg.stage] : DEFAULT_STAGES;
    for (const stage of stages) {
      const manifest = await store.latest(arg.runId, stage);
      if (!manifest) continue;
      const model = manifest.meta.model as ModelSpec | undefined;
      if (!model || !isPretrained(model)) {
        throw new SophiaError('input', `--model ${arg.runId}/${stage}: ${manifest.key} holds Sophia's own model (the onnx engine), not a Hugging Face model`, {
          hint: 'Benchmarks need a vision-language model: evaluate a run of engine.kind torch',
        });
      }
      const dir = path.join(into, 'model');
      // The weights, config and processor files (and a LoRA adapter); not the optimizer's moments (2× the weights).
      await store.loadInto(manifest.key, dir, { skip: (name) => name.startsWith('sophia_optimizer') });
      return { dir, checkpointKey: manifest.key };
    }
    throw new SophiaError('not-found', `--model ${arg.runId}${arg.stage ? `/${arg.stage}` : ''}: no ${stages.join(' or ')} checkpoint of run ${arg.runId} in ${storage}`, {
      hint: 'Check the run id and --storage (the storage the run wrote to), or name another stage: RUN_ID/sft, RUN_ID/init',
    });
  } finally {
    await store.close();
  }
}
