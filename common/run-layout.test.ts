import { describe, expect, it } from 'vitest';
import { defaultRunId, launcherWorkflowId, pipelineWorkflowId, runIdAt, runIdOfWorkflowId, scheduledRunId, stageWorkflowId } from './run-layout';

describe('run layout', () => {
  it('names scheduled runs by the nominal time in the launcher workflow id, else by the fallback time', () => {
    expect(runIdAt('nightly', new Date('2026-11-27T03:00:05.123Z'))).toBe('nightly-20261127-030005');
    expect(scheduledRunId('nightly', `${launcherWorkflowId('nightly')}-2026-11-28T03:00:00Z`, new Date(0))).toBe('nightly-20261128-030000');
    expect(scheduledRunId('nightly', 'sophia:line:x', new Date('2026-01-02T03:04:05Z'))).toBe('nightly-20260102-030405');
  });

  it('names runs started by hand on the same (UTC) clock as scheduled ones', () => {
    const at = new Date('2026-12-06T23:30:00Z'); // a different calendar day in most time zones east of UTC
    expect(defaultRunId(at)).toBe('run-20261206-233000');
    expect(defaultRunId(at, 'sft')).toBe('sft-20261206-233000');
  });

  it('maps run ids to workflow ids and back', () => {
    expect(pipelineWorkflowId('r1')).toBe('sophia-r1');
    expect(stageWorkflowId(pipelineWorkflowId('r1'), 'trustGrpo')).toBe('sophia-r1/trustGrpo');
    expect(runIdOfWorkflowId('sophia-r1')).toBe('r1');
    expect(runIdOfWorkflowId('sophia-r1/sftWarmup')).toBeUndefined();
    expect(runIdOfWorkflowId('sophia:line:r1')).toBeUndefined();
  });
});
