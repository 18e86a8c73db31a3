import { describe, expect, it } from 'vitest';
import { rlCheckpointsAt, rlEvaluatesAt, rlNeedsCommittedAt } from './rl-schedule';

describe('the RL step schedule', () => {
  const rl = { steps: 10, evalEvery: 4, checkpointEvery: 3 };
  const steps = Array.from({ length: rl.steps }, (_, i) => i + 1);

  it('evaluates every evalEvery steps before the last (the pipeline evaluates the final policy itself); never with evalEvery 0', () => {
    expect(steps.filter((s) => rlEvaluatesAt(rl, s))).toEqual([4, 8]);
    expect(steps.filter((s) => rlEvaluatesAt({ ...rl, evalEvery: 5 }, s))).toEqual([5]);
    expect(steps.filter((s) => rlEvaluatesAt({ ...rl, evalEvery: 0 }, s))).toEqual([]);
  });

  it('checkpoints every checkpointEvery steps and at the last', () => {
    expect(steps.filter((s) => rlCheckpointsAt(rl, s))).toEqual([3, 6, 9, 10]);
  });

  it('needs the newest checkpoint committed where the workflow uses it: evaluations and the last step', () => {
    expect(steps.filter((s) => rlNeedsCommittedAt(rl, s))).toEqual([4, 8, 10]);
  });
});
