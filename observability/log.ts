/**
 * Structured logs: with `SOPHIA_LOG_FORMAT=json` every log line of a worker or the API is one JSON object,
 *
 *   {"time":"…","level":"INFO","component":"worker","message":"checkpoint","runId":"r1","stage":"grpo","step":40,
 *    "traceId":null,"workflowId":"sophia-r1/trustGrpo","activityType":"policyUpdate",…}
 *
 * `runId`, `stage`, `step` and `traceId` are on every line (null when the line is about none; the trace id is the run's trace when tracing is on,
 * observability/tracing.ts): taken from the
 * entry's own fields, else from the workflow id of the activity or workflow that logged it (`{deployment}-{runId}`
 * or `{deployment}-{runId}/{stage}`), else null. The rest of the entry's fields follow. `text` (the default) keeps
 * the human format. Log collectors (Loki, CloudWatch, Elasticsearch) index the JSON fields as they are.
 */
import { ConfigError } from '../common/errors';

type Env = Readonly<Record<string, string | undefined>>;

export const LOG_FORMATS = ['text', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** `SOPHIA_LOG_FORMAT`: text (default) or json; anything else is refused by name. */
export function logFormat(env: Env): LogFormat {
  const raw = env.SOPHIA_LOG_FORMAT?.trim().toLowerCase();
  if (!raw) return 'text';
  if ((LOG_FORMATS as readonly string[]).includes(raw)) return raw as LogFormat;
  throw new ConfigError('SOPHIA_LOG_FORMAT', `${JSON.stringify(env.SOPHIA_LOG_FORMAT)} is not a log format`, { hint: `Use ${LOG_FORMATS.join(' or ')}` });
}

export interface LogEntry {
  level: string;
  message: string;
  /** When the entry was made. */
  time: Date;
  meta?: Record<string, unknown> | undefined;
}

/** `{deployment}-{runId}[/{stage}]` → run id and stage (the deployment is the part before the first "-"). */
function fromWorkflowId(workflowId: unknown): { runId?: string; stage?: string } {
  if (typeof workflowId !== 'string') return {};
  const m = /^[^-/:]+-([^/:]+)(?:\/([A-Za-z]+))?$/.exec(workflowId);
  return m ? { runId: m[1]!, ...(m[2] ? { stage: m[2] } : {}) } : {};
}

const field = (value: unknown): string | number | null => (typeof value === 'string' || (typeof value === 'number' && Number.isFinite(value)) ? value : null);

/** One entry as a JSON line (without the newline). Bigints become strings; the four context fields come first. */
export function jsonLogLine(entry: LogEntry, component: string): string {
  const meta = entry.meta ?? {};
  const derived = fromWorkflowId(meta.workflowId);
  // Temporal's OpenTelemetry interceptors put trace_id, span_id and trace_flags on workflow and activity lines.
  const { runId, stage, step, traceId, trace_id, span_id, trace_flags: _flags, ...rest } = meta;
  const spanId = field(rest.spanId) ?? field(span_id);
  const line = {
    time: entry.time.toISOString(),
    level: entry.level,
    component,
    message: entry.message,
    runId: field(runId) ?? derived.runId ?? null,
    stage: field(stage) ?? derived.stage ?? null,
    step: field(step),
    traceId: field(traceId) ?? field(trace_id),
    ...rest,
    ...(spanId !== null ? { spanId } : {}),
  };
  return JSON.stringify(line, (_key, value: unknown) => (typeof value === 'bigint' ? String(value) : value));
}
