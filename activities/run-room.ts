/**
 * The deployment's limits on runs running at once (in all, and per model line), counted through Temporal's
 * visibility API: what `POST /runs` and a schedule's trigger or backfill check before they start anything
 * (`api/runs/run-limits.ts`), and what each firing of a schedule checks before it starts training (the
 * `checkRunRoom` activity, `workflows/model-line.ts`).
 *
 * What counts:
 *  - the deployment's running `trainingPipeline` workflows, whoever started them (the CLI, the API, a schedule);
 *    a run's model line is the `modelLine` memo its launcher (`modelLineRun`) gives it;
 *  - the deployment's running launchers (`modelLineRun`) that have no running pipeline yet: a firing that is about
 *    to start one. A firing checking for itself counts only the launchers that started before it (ties broken by
 *    workflow id), so of the firings of a backfill, which all start at once, the first ones take the room there is
 *    and the later ones see them, instead of all seeing the same empty deployment.
 *
 * A check, not a lock: visibility is eventually consistent (a launcher or pipeline started an instant ago may not be
 * listed yet), so requests at the same moment may both pass. A firing waits until it sees itself listed before it
 * counts, which on a single-shard server (the dev server) means it sees the launchers started before it too. It
 * bounds what requests and schedules start; the workers' own slots bound what runs at once on a machine.
 */
import type { Client, WorkflowExecutionInfo } from '@temporalio/client';
import { deploymentPipelinesQuery } from '../common/run-layout';

/** Runs running at once that the deployment allows (`SOPHIA_API_MAX_RUNNING_RUNS`, `_PER_LINE`: `api/config.ts`). */
export interface RunningLimits {
  maxRunningRuns: number;
  maxRunningRunsPerLine: number;
}

export interface RunningCount {
  /** Running pipelines and launchers about to start one. */
  total: number;
  /** Those of the model line asked about (0 when none was). */
  inLine: number;
}

/** A launcher counting for itself: it is not counted, nor are the launchers that started after it. */
export interface LauncherSelf {
  workflowId: string;
  runId: string;
}

const RUNNING = `ExecutionStatus = 'Running'`;
/** The deployment's launchers: workflow ids `{deployment}:schedule:…` and `{deployment}:line:…` (`common/run-layout.ts`). */
const launchersQuery = (deployment: string) => `WorkflowType = 'modelLineRun' AND WorkflowId STARTS_WITH '${deployment}:' AND ${RUNNING}`;

/** What a count needs of a listed workflow (visibility's `WorkflowExecutionInfo`). */
export type Listed = Pick<WorkflowExecutionInfo, 'workflowId' | 'runId' | 'startTime' | 'memo' | 'parentExecution'>;

const lineOf = (wf: Listed) => (typeof wf.memo?.modelLine === 'string' ? wf.memo.modelLine : undefined);
const before = (a: Listed, b: Listed) =>
  a.startTime.getTime() < b.startTime.getTime() || (a.startTime.getTime() === b.startTime.getTime() && a.workflowId < b.workflowId);

async function listAll(client: Client, query: string): Promise<WorkflowExecutionInfo[]> {
  const out: WorkflowExecutionInfo[] = [];
  for await (const wf of client.workflow.list({ query })) out.push(wf);
  return out;
}

/**
 * The count from the running pipelines and launchers (the module comment says what counts); undefined when `self`
 * is given and not among `launchers`.
 */
export function tally(pipelines: readonly Listed[], launchers: readonly Listed[], line: string | undefined, self?: LauncherSelf): RunningCount | undefined {
  const me = self && launchers.find((l) => l.workflowId === self.workflowId && l.runId === self.runId);
  if (self && !me) return undefined;
  // A launcher whose pipeline is listed is counted by its pipeline.
  const launching = new Set(pipelines.map((p) => p.parentExecution && `${p.parentExecution.workflowId}/${p.parentExecution.runId}`));
  const claims = launchers.filter((l) => !launching.has(`${l.workflowId}/${l.runId}`) && (!me || (l !== me && before(l, me))));
  const runs = [...pipelines, ...claims];
  return { total: runs.length, inLine: line === undefined ? 0 : runs.filter((wf) => lineOf(wf) === line).length };
}

/**
 * The deployment's running runs, in all and of `line`. With `self`, the count of a launcher deciding whether to
 * start its run; undefined while `self` is not listed yet (ask again in a moment).
 */
export function countRunning(client: Client, deployment: string, line: string | undefined): Promise<RunningCount>;
export function countRunning(client: Client, deployment: string, line: string | undefined, self: LauncherSelf): Promise<RunningCount | undefined>;
export async function countRunning(client: Client, deployment: string, line: string | undefined, self?: LauncherSelf): Promise<RunningCount | undefined> {
  const [pipelines, launchers] = await Promise.all([listAll(client, deploymentPipelinesQuery(deployment, RUNNING)), listAll(client, launchersQuery(deployment))]);
  return tally(pipelines, launchers, line, self);
}

/** Why a new run would exceed `limits`, in words that name the setting; undefined when there is room. */
export function overLimit(limits: RunningLimits, count: RunningCount, line: string | undefined): string | undefined {
  if (count.total >= limits.maxRunningRuns) {
    return `${count.total} runs are running, the most this deployment allows at once (SOPHIA_API_MAX_RUNNING_RUNS=${limits.maxRunningRuns})`;
  }
  if (line !== undefined && count.inLine >= limits.maxRunningRunsPerLine) {
    return `${count.inLine} runs of model line ${line} are running, the most a line may have at once (SOPHIA_API_MAX_RUNNING_RUNS_PER_LINE=${limits.maxRunningRunsPerLine})`;
  }
  return undefined;
}
