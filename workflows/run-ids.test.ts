import { describe, expect, it } from 'vitest';
import { launcherWorkflowId, runIdAt, scheduledRunId } from './run-ids';

describe('scheduled run ids', () => {
  it('name runs by the nominal time in the launcher workflow id, else by the fallback time', () => {
    expect(runIdAt('nightly', new Date('2026-11-27T03:00:05.123Z'))).toBe('nightly-20261127-030005');
    expect(scheduledRunId('nightly', `${launcherWorkflowId('nightly')}-2026-11-28T03:00:00Z`, new Date(0))).toBe('nightly-20261128-030000');
    expect(scheduledRunId('nightly', 'sophia:line:x', new Date('2026-01-02T03:04:05Z'))).toBe('nightly-20260102-030405');
  });
});
