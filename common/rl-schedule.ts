/**
 * Which Trust-GRPO steps do what beyond the update itself: one declaration for the workflow (workflows/stages/
 * trust-grpo.ts), which evaluates the policy, and the policy-update activity (activities/rl.ts), which must have the
 * checkpoint committed by then (checkpoints otherwise commit in the background while the next steps run).
 */

/** Whether the stage evaluates the policy's newest checkpoint after step `step` (every `evalEvery`, not the last). */
export function rlEvaluatesAt(rl: { evalEvery: number; steps: number }, step: number): boolean {
  return rl.evalEvery > 0 && step % rl.evalEvery === 0 && step < rl.steps;
}

/** Whether the policy update of step `step` commits a checkpoint (every `checkpointEvery`, and the last step). */
export function rlCheckpointsAt(rl: { checkpointEvery: number; steps: number }, step: number): boolean {
  return step % rl.checkpointEvery === 0 || step === rl.steps;
}

/** Whether the workflow uses the newest checkpoint right after step `step`: the policy update commits it first. */
export function rlNeedsCommittedAt(rl: { evalEvery: number; steps: number }, step: number): boolean {
  return step === rl.steps || rlEvaluatesAt(rl, step);
}
