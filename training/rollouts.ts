/**
 * Sampling responses from a policy for a set of examples: the rollouts of Trust-GRPO and the raw material of the
 * thinking-reward data. A rollout keeps its tokens and their sampling logprobs (the "old" policy of the PPO
 * ratio) as well as the decoded text the graders and judges read.
 */
import type { Engine } from '../engine/types';
import { promptsOf } from '../tasks/prompt';
import type { Example } from '../tasks/types';

export interface Rollout {
  exampleId: string;
  /** Index of the example in the step's prompt list (rollouts are grouped by it). */
  group: number;
  /** Generated tokens, the model's end token included when the response ended. */
  tokens: number[];
  /** log π_old of each generated token. */
  logprobs: number[];
  /** The response text (without the end token). */
  text: string;
  stopped: boolean;
  temperature: number;
}

/** What sampling took, summed over the engine calls (`sampleRollouts`'s optional `timing`). */
export interface RolloutTiming {
  /** Wall time of the engine calls, weight pushes included. */
  seconds: number;
  /** Of which: pushing the policy's weights into a separate rollout engine (the torch engine's vllm backend). */
  weightSyncSeconds: number;
  generatedTokens: number;
}

export interface SampleSettings {
  /** Samples per example. */
  n: number;
  temperature: number;
  topP: number;
  maxTokens: number;
  seed: number;
  /** Examples per engine call. */
  promptsPerBatch: number;
}

/** n samples for every example, prompt-major (all samples of example 0 first), `group` = index in `examples`. */
export async function sampleRollouts(engine: Engine, examples: readonly Example[], settings: SampleSettings, timing?: RolloutTiming): Promise<Rollout[]> {
  const out: Rollout[] = [];
  for (let start = 0; start < examples.length; start += settings.promptsPerBatch) {
    const chunk = examples.slice(start, start + settings.promptsPerBatch);
    const began = performance.now();
    const result = await engine.generate({
      prompts: promptsOf(chunk),
      n: settings.n,
      temperature: settings.temperature,
      topP: settings.topP,
      maxTokens: settings.maxTokens,
      seed: settings.seed + start,
    });
    if (timing) {
      timing.seconds += (performance.now() - began) / 1000;
      timing.weightSyncSeconds += result.weightSyncSeconds ?? 0;
      timing.generatedTokens += result.generatedTokens;
    }
    for (const s of result.sequences) {
      out.push({
        exampleId: chunk[s.promptIndex]!.id,
        group: start + s.promptIndex,
        tokens: Array.from(s.tokens),
        logprobs: Array.from(s.logprobs),
        text: s.text,
        stopped: s.stopped,
        temperature: settings.temperature,
      });
    }
  }
  return out;
}
