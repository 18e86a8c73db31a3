/**
 * What `sophia run` shows of a run, as pure functions of its progress (so each rule is testable):
 *
 *  - `progressView`: the running stage as one line. A counter only where there are steps that move: a stage without
 *    steps (data preparation, evaluation), or one whose steps have not started (the reward model's sampling and
 *    annotation before its 400 training steps), says what it is doing instead of a fake `0/1` with an ETA. The
 *    counter shows the step in progress (`29/150` while step 29 runs), as the stage's own text does (`RL step
 *    29/150`); the bar's fill and the ETA count the steps finished. A running activity whose heartbeat is overdue leads
 *    the line with its message (the same line goes on: the stall is news about it, not another line).
 *  - `stageSummary`: one readable line when a stage ends (`✓ sftWarmup  2000 steps in 4m12s · best val loss 0.412 · …`).
 *  - `runSummary`: the end of a completed run in a few lines: accuracy before and after, the final checkpoint, the report.
 */
import type { LiveProgress } from '../clients/runs';
import type { StageName } from '../config/stages';
import { formatSeconds } from './progress';

export interface ProgressView {
  /** Identity of the line: when it changes (another stage, a counter appearing or going), a new line starts. */
  key: string;
  label: string;
  /** Steps to count, or undefined: no counter, the line says what is being done. */
  total: number | undefined;
  /** Steps finished (fill and ETA). */
  done: number;
  /** The step the counter shows: the one in progress while the stage runs. */
  current: number;
  detail: string;
}

const percent = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '–' : `${(100 * x).toFixed(1)} %`);
const fixed = (x: number | undefined, digits = 3) => (x === undefined || !Number.isFinite(x) ? undefined : x.toFixed(digits));

/** The running stage of `p` as one line, or undefined when the run has no running stage. */
export function progressView(p: LiveProgress): ProgressView | undefined {
  const stage = p.stages[p.stageIndex];
  if (!stage) return undefined;
  const label = `${p.stageIndex + 1}/${p.stages.length} ${stage}`;
  const current = p.current?.stage === stage ? p.current : undefined;
  const status = p.status === 'running' ? [] : [`[${p.status}]`];
  // Steps: from the training activity's heartbeat, else the stage's own count once it has moved.
  const steps = p.live ?? (current && current.totalSteps > 1 && current.step > 0 ? { step: current.step, totalSteps: current.totalSteps, loss: undefined } : undefined);
  const loss = p.live?.loss ?? current?.metrics.loss;
  const activity = [current?.activity, p.phase].filter((s): s is string => !!s && s !== 'starting');
  const stalled = p.stalled ? [p.stalled.message] : [];
  if (!steps || steps.step >= steps.totalSteps) {
    // Nothing to count (yet, or any more: a finished count while the stage still works is the work after it).
    return { key: `${label}/-`, label, total: undefined, done: 0, current: 0, detail: [...stalled, ...activity, ...status].join(' · ') || 'starting' };
  }
  const inProgress = p.status === 'running' ? steps.step + 1 : steps.step;
  const lossText = fixed(loss);
  return {
    key: `${label}/${steps.totalSteps}`,
    label,
    total: steps.totalSteps,
    done: steps.step,
    current: inProgress,
    detail: [...stalled, ...(lossText ? [`loss ${lossText}`] : []), ...activity, ...status].join(' · '),
  };
}

/** Test and ood accuracy of each evaluated policy, from the evaluation stage's metrics (`initial`, `sft`, `final`). */
function accuracies(metrics: Record<string, number> | undefined): { policy: string; test: number; ood: number | undefined }[] {
  if (!metrics || metrics.testAccuracy === undefined) return [];
  const rows: { policy: string; test: number; ood: number | undefined }[] = [];
  if (metrics.initialTestAccuracy !== undefined) rows.push({ policy: 'initial', test: metrics.initialTestAccuracy, ood: metrics.initialOodAccuracy });
  if (metrics.sftTestAccuracy !== undefined) rows.push({ policy: 'SFT', test: metrics.sftTestAccuracy, ood: metrics.sftOodAccuracy });
  else if (metrics.baselineTestAccuracy !== undefined && metrics.initialTestAccuracy === undefined) rows.push({ policy: 'baseline', test: metrics.baselineTestAccuracy, ood: undefined });
  rows.push({ policy: 'final', test: metrics.testAccuracy, ood: metrics.oodAccuracy });
  return rows;
}

/** `initial 2.0 % → SFT 31.0 % → final 35.5 %` for `split`, or undefined when not measured. */
function accuracyChain(metrics: Record<string, number> | undefined, split: 'test' | 'ood'): string | undefined {
  const rows = accuracies(metrics).filter((r) => r[split] !== undefined);
  return rows.length > 0 ? rows.map((r) => `${r.policy} ${percent(r[split])}`).join(' → ') : undefined;
}

/**
 * One line for a finished stage: what it did, how long it took (`seconds` undefined: it ran before this process
 * watched), its few numbers that matter, and its checkpoint.
 */
export function stageSummary(stage: StageName, metrics: Record<string, number> | undefined, checkpoint: string | undefined, seconds: number | undefined): string {
  const m = metrics ?? {};
  const took = seconds === undefined ? '' : ` in ${formatSeconds(seconds)}`;
  const steps = m.step !== undefined ? `${m.step} steps${took}${m.stoppedEarly ? ' (stopped early)' : ''}` : took.trim();
  const parts: (string | undefined)[] = [];
  switch (stage) {
    case 'prepareData':
      parts.push(`${m.train ?? '?'} train · ${m.test ?? '?'} test · ${m.ood ?? '?'} ood examples${m.reused ? ' (reused)' : ''}${took}`);
      break;
    case 'sftWarmup':
      parts.push(steps, fixed(m.bestValLoss) && `best val loss ${fixed(m.bestValLoss)}`, fixed(m.loss) && `train loss ${fixed(m.loss)}`);
      break;
    case 'rewardModel':
      parts.push(
        steps,
        m.samples !== undefined ? `${m.samples} responses annotated` : undefined,
        fixed(m.rmMae) && `test MAE ${fixed(m.rmMae)}${fixed(m.untrainedMae) ? ` (untrained ${fixed(m.untrainedMae)})` : ''}`,
        fixed(m.rmPairwiseAccuracy) && `pairwise accuracy ${percent(m.rmPairwiseAccuracy)}`,
        fixed(m.rmMixedGroupAccuracy) && `right answers preferred in ${percent(m.rmMixedGroupAccuracy)} of mixed groups`,
        fixed(m.rmOnPolicyMixedGroupAccuracy) &&
          `${percent(m.rmOnPolicyMixedGroupAccuracy)} on the policy's own samples${fixed(m.likelihoodOnPolicyMixedGroupAccuracy) ? ` (the policy's likelihood: ${percent(m.likelihoodOnPolicyMixedGroupAccuracy)})` : ''}`,
      );
      break;
    case 'trustGrpo':
      parts.push(steps, fixed(m.reward) && `reward ${fixed(m.reward)}`, m.testAccuracy !== undefined ? `test accuracy ${percent(m.testAccuracy)} (subset)` : undefined);
      break;
    case 'evaluation': {
      const test = accuracyChain(m, 'test');
      const ood = accuracyChain(m, 'ood');
      parts.push(took.trim() || undefined, test && `test ${test}`, ood && `ood ${ood}`);
      break;
    }
    default:
      parts.push(steps || undefined);
  }
  if (checkpoint && stage !== 'evaluation') parts.push(`checkpoint ${checkpoint}`);
  return `✓ ${stage.padEnd(12)} ${parts.filter((s): s is string => !!s).join(' · ')}`;
}

/** The end of a completed run: accuracy before and after, the final checkpoint, where the report is. */
export function runSummary(result: LiveProgress, reportLocation: string | undefined): string[] {
  const lines: string[] = [];
  const evaluation = result.results.evaluation;
  const test = accuracyChain(evaluation, 'test');
  const ood = accuracyChain(evaluation, 'ood');
  if (test) lines.push(`accuracy   test ${test}`);
  if (ood) lines.push(`           ood  ${ood}`);
  const final = result.checkpoints.evaluation ?? result.checkpoints.trustGrpo ?? result.checkpoints.sftWarmup;
  if (final) lines.push(`checkpoint ${final}`);
  if (reportLocation) lines.push(`report     ${reportLocation}`);
  return lines;
}
