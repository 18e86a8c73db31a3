/**
 * Sampling responses from a policy for a set of examples: the rollouts of Trust-GRPO and the raw material of the
 * thinking-reward data. A rollout keeps its tokens and their sampling logprobs (the "old" policy of the PPO
 * ratio) as well as the decoded text the graders and judges read.
 */
import type { Engine } from '../engine/types';
import { imageToTensor } from '../tasks/render';
import { EOS, type Tokenizer } from '../tasks/tokenizer';
import type { Example } from '../tasks/types';

export interface Rollout {
  exampleId: string;
  /** Index of the example in the step's prompt list (rollouts are grouped by it). */
  group: number;
  /** Generated tokens, the stop token included when the response ended. */
  tokens: number[];
  /** log π_old of each generated token. */
  logprobs: number[];
  /** The response text (without the stop token). */
  text: string;
  stopped: boolean;
  temperature: number;
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

/** Images of `examples` as one (P, C, S, S) tensor. */
export function imagesOf(examples: readonly Example[]): Float32Array {
  const size = examples[0]!.image.size;
  const pixels = 3 * size * size;
  const images = new Float32Array(examples.length * pixels);
  examples.forEach((e, i) => imageToTensor(e.image, images, i * pixels));
  return images;
}

/** n samples for every example, prompt-major (all samples of example 0 first), `group` = index in `examples`. */
export async function sampleRollouts(engine: Engine, tokenizer: Tokenizer, examples: readonly Example[], settings: SampleSettings): Promise<Rollout[]> {
  const maxLength = engine.config().maxLength;
  const out: Rollout[] = [];
  for (let start = 0; start < examples.length; start += settings.promptsPerBatch) {
    const chunk = examples.slice(start, start + settings.promptsPerBatch);
    const prompts = chunk.map((e) => Int32Array.from(tokenizer.prompt(e.question)));
    const longest = Math.max(...prompts.map((p) => p.length));
    const maxTokens = Math.min(settings.maxTokens, maxLength - longest);
    if (maxTokens < 1) throw new RangeError(`a prompt of ${longest} tokens leaves no room for a response within model.maxLength ${maxLength}`);
    const result = await engine.sample({
      images: imagesOf(chunk),
      prompts,
      n: settings.n,
      temperature: settings.temperature,
      topP: settings.topP,
      maxTokens,
      seed: settings.seed + start,
      stopToken: EOS,
    });
    for (const s of result.sequences) {
      const tokens = Array.from(s.tokens);
      out.push({
        exampleId: chunk[s.promptIndex]!.id,
        group: start + s.promptIndex,
        tokens,
        logprobs: Array.from(s.logprobs),
        text: tokenizer.decode(tokens.filter((t) => t !== EOS)),
        stopped: s.stopped,
        temperature: settings.temperature,
      });
    }
  }
  return out;
}
