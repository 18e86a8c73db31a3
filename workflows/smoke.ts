/**
 * `stackSmoke`: proves the whole stack end to end — workflow on the CPU queue, activities on a worker,
 * checkpoints committed to storage and verified — with a progress query, as every Sophia workflow has.
 * The training pipeline (later issues) follows the same shape with real stages.
 */
import { ApplicationFailure, defineQuery, setHandler } from '@temporalio/workflow';
import type { VerifiedSmokeCheckpoint } from '../activities/smoke';
import type { ActivityProfile } from '../temporal.config';
import { cpuActivities } from './proxies';

export interface StackSmokeInput {
  runId: string;
  /** Checkpoints to write, one activity each. */
  steps: number;
  payloadBytes: number;
  /** Resolved by the starter from `temporal.config.ts` + env, so it is recorded in history. */
  activityProfile: ActivityProfile;
}

export interface SmokeProgress {
  stage: 'writing' | 'verifying' | 'done';
  step: number;
  totalSteps: number;
  checkpointKeys: string[];
}

export interface StackSmokeResult {
  checkpointKeys: string[];
  verified: VerifiedSmokeCheckpoint;
}

export const smokeProgressQuery = defineQuery<SmokeProgress>('progress');

export async function stackSmoke(input: StackSmokeInput): Promise<StackSmokeResult> {
  if (!Number.isInteger(input.steps) || input.steps < 1) {
    throw ApplicationFailure.nonRetryable(`steps must be an integer ≥ 1 (got ${input.steps})`, 'ConfigError');
  }
  const acts = cpuActivities({ cpu: input.activityProfile });
  const progress: SmokeProgress = { stage: 'writing', step: 0, totalSteps: input.steps, checkpointKeys: [] };
  setHandler(smokeProgressQuery, () => progress);

  for (let step = 1; step <= input.steps; step++) {
    const ref = await acts.writeSmokeCheckpoint({ runId: input.runId, step, payloadBytes: input.payloadBytes });
    progress.step = step;
    progress.checkpointKeys.push(ref.checkpointKey);
  }
  progress.stage = 'verifying';
  const verified = await acts.verifySmokeCheckpoint({ checkpointKey: progress.checkpointKeys.at(-1)! });
  progress.stage = 'done';
  return { checkpointKeys: progress.checkpointKeys, verified };
}
