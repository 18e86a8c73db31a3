/**
 * Sampling responses from a policy for a set of examples: the rollouts of Trust-GRPO and the raw material of the
 * thinking-reward data. A rollout keeps its tokens and their sampling logprobs (the "old" policy of the PPO
 * ratio) as well as the decoded text the graders and judges read.
 */
import type { Engine } from '../engine/types';
import { grade } from '../tasks/grading';
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

/**
 * n samples for every example, prompt-major (all samples of example 0 first), `group` = index in `examples`. `timing`
 * sums what the engine calls took; `onProgress(done, total)` follows each engine call (examples done of all), so a
 * long sampling can heartbeat as it goes.
 */
export async function sampleRollouts(
  engine: Engine,
  examples: readonly Example[],
  settings: SampleSettings,
  options: { timing?: RolloutTiming; onProgress?: (done: number, total: number) => void } = {},
): Promise<Rollout[]> {
  const { timing, onProgress } = options;
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
    onProgress?.(start + chunk.length, examples.length);
  }
  return out;
}

/** Examples with their rollouts (`Rollout.group` indexes `examples`). */
export interface SampledBatch {
  examples: Example[];
  rollouts: Rollout[];
}

/**
 * Dynamic sampling (DAPO): keeps the groups whose responses got different outcome rewards (the only ones GRPO's
 * group-normalised advantage learns from), in order, and asks `more(round)` for another sampled batch until `wanted`
 * are kept or `maxRounds` batches were sampled. An example kept once is not kept again from a later round. The kept
 * groups are renumbered 0, 1, … in the order kept. Outcome rewards are the grader's (`tasks/grading.ts`), the same the
 * step's outcome rewards then compute.
 */
export async function keepMixedGroups(
  first: SampledBatch,
  more: (round: number) => Promise<SampledBatch>,
  wanted: number,
  maxRounds: number,
): Promise<SampledBatch & { rounds: number; sampledGroups: number }> {
  const examples: Example[] = [];
  const rollouts: Rollout[] = [];
  const kept = new Set<string>();
  let rounds = 0;
  let sampledGroups = 0;
  for (let batch: SampledBatch | undefined = first; batch; batch = examples.length < wanted && rounds < maxRounds ? await more(rounds) : undefined) {
    rounds++;
    sampledGroups += batch.examples.length;
    for (const [g, example] of batch.examples.entries()) {
      if (examples.length >= wanted || kept.has(example.id)) continue;
      const members = batch.rollouts.filter((r) => r.group === g);
      const rewards = members.map((r) => grade(example.answerType, r.text, example.answer).reward);
      if (rewards.every((r) => r === rewards[0])) continue;
      kept.add(example.id);
      for (const r of members) rollouts.push({ ...r, group: examples.length });
      examples.push(example);
    }
  }
  return { examples, rollouts, rounds, sampledGroups };
}
