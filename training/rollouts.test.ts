import { describe, expect, it } from 'vitest';
import { generateExample } from '../tasks/dataset';
import type { Example } from '../tasks/types';
import { keepMixedGroups, type Rollout, type SampledBatch } from './rollouts';

const example = (i: number): Example => generateExample('counting', 'train', i, 16, 1);
const response = (e: Example, right: boolean) => `<think>count</think><answer>${right ? e.answer : `${Number(e.answer) + 1}`}</answer>`;

/** A batch whose group g has responses right as `pattern[g]` says ("RW": one right, one wrong). */
function batch(examples: Example[], patterns: string[]): SampledBatch {
  const rollouts: Rollout[] = patterns.flatMap((pattern, g) =>
    [...pattern].map((c) => ({ exampleId: examples[g]!.id, group: g, tokens: [1], logprobs: [-1], text: response(examples[g]!, c === 'R'), stopped: true, temperature: 1 })),
  );
  return { examples, rollouts };
}

describe('keepMixedGroups (dynamic sampling)', () => {
  it('keeps only groups with different outcome rewards, renumbered in order, and samples more rounds until it has enough', async () => {
    const [a, b, c, d, e] = [0, 1, 2, 3, 4].map(example);
    const rounds: number[] = [];
    const kept = await keepMixedGroups(
      batch([a!, b!, c!], ['RR', 'RW', 'WW']),
      (round) => {
        rounds.push(round);
        return Promise.resolve(round === 1 ? batch([d!, b!], ['WW', 'WR']) : batch([e!], ['RW']));
      },
      2,
      5,
    );
    expect(rounds).toEqual([1, 2]);
    expect(kept.examples.map((x) => x.id)).toEqual([b!.id, e!.id]); // b again in round 1: not kept twice
    expect(kept).toMatchObject({ rounds: 3, sampledGroups: 6 });
    expect(kept.rollouts.map((r) => [r.group, r.exampleId])).toEqual([[0, b!.id], [0, b!.id], [1, e!.id], [1, e!.id]]);
  });

  it('stops at maxRounds with what it has, and at the wanted number within a round', async () => {
    const [a, b, c] = [0, 1, 2].map(example);
    const none = await keepMixedGroups(batch([a!], ['WW']), () => Promise.resolve(batch([b!], ['RR'])), 2, 2);
    expect(none).toMatchObject({ examples: [], rollouts: [], rounds: 2, sampledGroups: 2 });
    let asked = 0;
    const enough = await keepMixedGroups(batch([a!, b!, c!], ['RW', 'WR', 'RW']), () => (asked++, Promise.resolve(batch([], []))), 2, 3);
    expect(enough.examples.map((x) => x.id)).toEqual([a!.id, b!.id]);
    expect(asked).toBe(0);
  });
});
