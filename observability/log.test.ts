import { describe, expect, it } from 'vitest';
import { jsonLogLine, logFormat } from './log';
import { JsonNestLogger } from './nest-logger';

const time = new Date('2026-12-07T10:00:00.000Z');

describe('structured logs', () => {
  it('puts time, level, component, message, run, stage, step and trace first on every line', () => {
    const line = JSON.parse(jsonLogLine({ level: 'INFO', message: 'checkpoint', time, meta: { runId: 'r1', stage: 'grpo', step: 40, checkpointKey: 'k', bytes: 12n } }, 'worker:gpu')) as Record<string, unknown>;
    expect(line).toEqual({ time: '2026-12-07T10:00:00.000Z', level: 'INFO', component: 'worker:gpu', message: 'checkpoint', runId: 'r1', stage: 'grpo', step: 40, traceId: null, checkpointKey: 'k', bytes: '12' });
    expect(Object.keys(line).slice(0, 8)).toEqual(['time', 'level', 'component', 'message', 'runId', 'stage', 'step', 'traceId']);
  });

  it("takes the run and stage from the logging workflow's id when the entry does not name them, null otherwise", () => {
    const of = (meta: Record<string, unknown>) => JSON.parse(jsonLogLine({ level: 'WARN', message: 'm', time, meta }, 'worker:cpu')) as Record<string, unknown>;
    expect(of({ workflowId: 'sophia-run-7/trustGrpo', activityType: 'outcomeRewards' })).toMatchObject({ runId: 'run-7', stage: 'trustGrpo', step: null, activityType: 'outcomeRewards' });
    expect(of({ workflowId: 'sophia-run-7' })).toMatchObject({ runId: 'run-7', stage: null });
    expect(of({ workflowId: 'sophia:schedule:nightly' })).toMatchObject({ runId: null, stage: null });
    expect(of({})).toMatchObject({ runId: null, stage: null, step: null, traceId: null });
  });

  it("takes the trace id (and span id) that Temporal's tracing interceptors put on a line", () => {
    const meta = { workflowId: 'sophia-r2/sftWarmup', trace_id: 'ab'.repeat(16), span_id: 'cd'.repeat(8), trace_flags: '01' };
    const line = JSON.parse(jsonLogLine({ level: 'INFO', message: 'm', time, meta }, 'worker:gpu')) as Record<string, unknown>;
    expect(line).toMatchObject({ runId: 'r2', stage: 'sftWarmup', traceId: 'ab'.repeat(16), spanId: 'cd'.repeat(8) });
    expect(Object.keys(line)).not.toEqual(expect.arrayContaining(['trace_id', 'span_id', 'trace_flags']));
  });

  it('SOPHIA_LOG_FORMAT is text by default, json when asked, refused otherwise', () => {
    expect(logFormat({})).toBe('text');
    expect(logFormat({ SOPHIA_LOG_FORMAT: 'JSON' })).toBe('json');
    expect(() => logFormat({ SOPHIA_LOG_FORMAT: 'xml' })).toThrow(/SOPHIA_LOG_FORMAT: "xml" is not a log format/);
  });

  it("the API's Nest logger writes the same lines, with Nest's context and an error's stack", () => {
    const lines: string[] = [];
    const logger = new JsonNestLogger(['error', 'warn'], (l) => lines.push(l));
    logger.warn('slow request', 'RunsController');
    logger.error('boom', 'Error: boom\n    at x', 'ExceptionsHandler');
    logger.log('not at this level', 'X');
    expect(lines.map((l) => JSON.parse(l) as Record<string, unknown>)).toEqual([
      expect.objectContaining({ level: 'WARN', component: 'api', message: 'slow request', runId: null, context: 'RunsController' }),
      expect.objectContaining({ level: 'ERROR', message: 'boom', context: 'ExceptionsHandler', stack: 'Error: boom\n    at x' }),
    ]);
  });
});
