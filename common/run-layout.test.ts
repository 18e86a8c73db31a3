import { describe, expect, it } from 'vitest';
import { defaultRunId, deploymentPipelinesQuery, launcherWorkflowId, modelLineWorkflowId, pipelineWorkflowId, runIdAt, runIdOfWorkflowId, scheduleIdOf, scheduleNameOf, scheduledRunId, stageWorkflowId } from './run-layout';

describe('run layout', () => {
  it('names scheduled runs by the nominal time in the launcher workflow id, else by the fallback time', () => {
    expect(runIdAt('nightly', new Date('2026-11-27T03:00:05.123Z'))).toBe('nightly-20261127-030005');
    expect(scheduledRunId('nightly', `${launcherWorkflowId('sophia', 'nightly')}-2026-11-28T03:00:00Z`, new Date(0))).toBe('nightly-20261128-030000');
    expect(scheduledRunId('nightly', 'sophia:line:x', new Date('2026-01-02T03:04:05Z'))).toBe('nightly-20260102-030405');
  });

  it('names runs started by hand on the same (UTC) clock as scheduled ones', () => {
    const at = new Date('2026-12-06T23:30:00Z'); // a different calendar day in most time zones east of UTC
    expect(defaultRunId(at)).toBe('run-20261206-233000');
    expect(defaultRunId(at, 'sft')).toBe('sft-20261206-233000');
  });

  it('maps run ids to workflow ids and back; the default deployment keeps the ids runs always had', () => {
    expect(pipelineWorkflowId('sophia', 'r1')).toBe('sophia-r1');
    expect(stageWorkflowId(pipelineWorkflowId('sophia', 'r1'), 'trustGrpo')).toBe('sophia-r1/trustGrpo');
    expect(runIdOfWorkflowId('sophia', 'sophia-r1')).toBe('r1');
    expect(runIdOfWorkflowId('sophia', 'sophia-r1/sftWarmup')).toBeUndefined();
    expect(runIdOfWorkflowId('sophia', 'sophia:line:r1')).toBeUndefined();
    expect(launcherWorkflowId('sophia', 'nightly')).toBe('sophia:schedule:nightly');
    expect(modelLineWorkflowId('sophia', 'r1')).toBe('sophia:line:r1');
    expect(scheduleIdOf('sophia', 'nightly')).toBe('sophia-nightly');
    expect(scheduleNameOf('sophia', 'sophia-nightly')).toBe('nightly');
  });

  it('keeps two deployments\' names apart, even for the same run or schedule id', () => {
    expect(pipelineWorkflowId('lab', 'r1')).toBe('lab-r1');
    expect(stageWorkflowId(pipelineWorkflowId('lab', 'r1'), 'sftWarmup')).toBe('lab-r1/sftWarmup');
    expect(launcherWorkflowId('lab', 'nightly')).toBe('lab:schedule:nightly');
    expect(modelLineWorkflowId('lab', 'r1')).toBe('lab:line:r1');
    expect(scheduleIdOf('lab', 'nightly')).toBe('lab-nightly');
    // Another deployment's ids are not this one's runs or schedules, whatever the run id looks like.
    expect(runIdOfWorkflowId('lab', 'sophia-r1')).toBeUndefined();
    expect(runIdOfWorkflowId('sophia', 'lab-r1')).toBeUndefined();
    expect(runIdOfWorkflowId('sophia', pipelineWorkflowId('sophia_x', 'r1'))).toBeUndefined();
    expect(scheduleNameOf('sophia', 'lab-nightly')).toBeUndefined();
    expect(deploymentPipelinesQuery('lab', "ExecutionStatus = 'Running'")).toBe("WorkflowType = 'trainingPipeline' AND WorkflowId STARTS_WITH 'lab-' AND ExecutionStatus = 'Running'");
    // Deployment names have no "-": `lab` + run `x-r1` and a deployment `lab-x` + run `r1` cannot both exist.
    expect(runIdOfWorkflowId('lab', 'lab-x-r1')).toBe('x-r1');
  });
});
