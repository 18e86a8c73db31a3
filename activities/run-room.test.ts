import { describe, expect, it } from 'vitest';
import { type Listed, overLimit, tally } from './run-room';

const at = (s: number) => new Date(Date.UTC(2026, 11, 6, 12, 0, s));
const launcher = (id: string, s: number, line?: string): Listed => ({ workflowId: id, runId: `r-${id}`, startTime: at(s), memo: line ? { modelLine: line } : {}, parentExecution: undefined });
const pipeline = (id: string, s: number, parent?: Listed, line?: string): Listed => ({
  workflowId: id,
  runId: `r-${id}`,
  startTime: at(s),
  memo: line ? { modelLine: line } : {},
  parentExecution: parent ? { workflowId: parent.workflowId, runId: parent.runId } : undefined,
});
const self = (l: Listed) => ({ workflowId: l.workflowId, runId: l.runId });

describe('counting running runs', () => {
  it('counts pipelines, and launchers only until their pipeline is listed', () => {
    const a = launcher('sophia:schedule:a-1', 1, 'prod');
    const b = launcher('sophia:schedule:a-2', 2, 'prod');
    expect(tally([pipeline('sophia-x', 0), pipeline('sophia-a-1', 3, a, 'prod')], [a, b], 'prod')).toEqual({ total: 3, inLine: 2 });
    expect(tally([], [], undefined)).toEqual({ total: 0, inLine: 0 });
  });

  it("a firing counts the launchers started before it, never itself nor those after it (a backfill's firings take turns)", () => {
    const firings = [launcher('sophia:schedule:b-3', 5), launcher('sophia:schedule:b-1', 5), launcher('sophia:schedule:b-2', 6)];
    // Same start time: the workflow id decides.
    expect(firings.map((f) => tally([], firings, undefined, self(f))?.total)).toEqual([1, 0, 2]);
    const limits = { maxRunningRuns: 1, maxRunningRunsPerLine: 1 };
    expect(firings.map((f) => overLimit(limits, tally([], firings, undefined, self(f))!, undefined) === undefined)).toEqual([false, true, false]);
  });

  it('cannot count for a launcher that visibility does not list yet', () => {
    expect(tally([pipeline('sophia-x', 0)], [], undefined, { workflowId: 'sophia:schedule:c-1', runId: 'r' })).toBeUndefined();
  });

  it('names the limit that is reached', () => {
    const limits = { maxRunningRuns: 3, maxRunningRunsPerLine: 1 };
    expect(overLimit(limits, { total: 2, inLine: 0 }, 'prod')).toBeUndefined();
    expect(overLimit(limits, { total: 3, inLine: 0 }, undefined)).toBe('3 runs are running, the most this deployment allows at once (SOPHIA_API_MAX_RUNNING_RUNS=3)');
    expect(overLimit(limits, { total: 2, inLine: 1 }, 'prod')).toBe('1 runs of model line prod are running, the most a line may have at once (SOPHIA_API_MAX_RUNNING_RUNS_PER_LINE=1)');
  });
});
