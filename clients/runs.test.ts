/** `runFailure`: a failed run's innermost cause, with the stage and activity it passed through. */
import { WorkflowFailedError } from '@temporalio/client';
import { ActivityFailure, ApplicationFailure, ChildWorkflowFailure, TemporalFailure } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { runFailure } from './runs';

describe('runFailure', () => {
  it('walks WorkflowFailedError → ChildWorkflowFailure → ActivityFailure → ApplicationFailure', () => {
    // As the client receives it: the ApplicationFailure's own cause is the serialized original error.
    const original = new TemporalFailure('checkpoint runs/r/sft/checkpoints/00000050 is corrupt: file state.bin has sha256 ab…');
    const app = new ApplicationFailure(original.message, 'CorruptCheckpointError', true, undefined, original);
    const activity = new ActivityFailure('Activity task failed', 'trainChunk', '3', 'NON_RETRYABLE_FAILURE', 'worker@host', app);
    const child = new ChildWorkflowFailure('default', { workflowId: 'sophia-r/sftWarmup', runId: 'x' }, 'stageWorkflow', 'NON_RETRYABLE_FAILURE', activity);
    const failure = runFailure(new WorkflowFailedError('Workflow execution failed', child, 'NON_RETRYABLE_FAILURE'));
    expect(failure).toEqual({ type: 'CorruptCheckpointError', message: original.message, stage: 'sftWarmup', activity: 'trainChunk', retryState: 'non retryable failure' });
  });

  it('takes a failure without causes as it is', () => {
    expect(runFailure(new Error('boom'))).toEqual({ type: 'Error', message: 'boom', stage: undefined, activity: undefined, retryState: undefined });
  });
});
