/**
 * Run ids of runs a schedule starts (pure: the workflow and the API both use it). Temporal starts a schedule's
 * workflow as `{action workflow id}-{nominal time, ISO 8601 to the second}`; the run it launches is named
 * `{prefix}-{yyyymmdd-hhmmss}` of that nominal time, so the API can tell which run an action started.
 */
const NOMINAL_SUFFIX = /-(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z$/;

export function runIdAt(prefix: string, time: Date): string {
  const iso = time.toISOString(); // 2026-11-27T13:00:00.000Z
  return `${prefix}-${iso.slice(0, 10).replaceAll('-', '')}-${iso.slice(11, 19).replaceAll(':', '')}`;
}

/** The run id for a launcher workflow: from the nominal time in its id if it has one, else from `fallback`. */
export function scheduledRunId(prefix: string, launcherWorkflowId: string, fallback: Date): string {
  const m = NOMINAL_SUFFIX.exec(launcherWorkflowId);
  if (!m) return runIdAt(prefix, fallback);
  return `${prefix}-${m[1]}${m[2]}${m[3]}-${m[4]}${m[5]}${m[6]}`;
}

/** Workflow id of a schedule's launcher workflows (before Temporal's time suffix); ":" keeps launcher ids apart from run ids. */
export const launcherWorkflowId = (scheduleId: string) => `sophia:schedule:${scheduleId}`;

/** Workflow id of the launcher of a run started with a model line through the API. */
export const modelLineWorkflowId = (runId: string) => `sophia:line:${runId}`;
