import { BadRequestException, HttpException, NotFoundException } from '@nestjs/common';
import { describe, expect, it } from 'vitest';
import { ConfigError, NotFoundError, StorageConfigError, StorageUnavailableError } from '../../common/errors';
import { DEFAULT_RUN_LIMITS } from '../../config/limits';
import { downsample } from '../runs/runs.service';
import type { MetricRecord } from '../../storage/metrics-log';
import { resolveRequestConfig } from './dto';
import { ApiError, toErrorBody } from './errors';

const req = { path: '/runs/x' };
const silent = { error: () => undefined };

describe('error bodies', () => {
  it('always name a field, and map Sophia errors by category', () => {
    expect(toErrorBody(new ApiError(409, 'path.id', 'finished'), req, silent)).toMatchObject({ statusCode: 409, field: 'path.id', message: 'finished' });
    expect(toErrorBody(new NotFoundException('Cannot GET /x'), req, silent)).toMatchObject({ statusCode: 404, field: 'path', message: 'no route /runs/x' });
    expect(toErrorBody(new BadRequestException('bad', { cause: new SyntaxError('Unexpected end') }), req, silent)).toMatchObject({ statusCode: 400, field: 'body' });
    expect(toErrorBody(new HttpException('too large', 413), req, silent)).toMatchObject({ statusCode: 413, field: 'body' });
    expect(toErrorBody(new ConfigError('sft.steps', 'must be positive'), req, silent)).toMatchObject({ statusCode: 400, field: 'sft.steps' });
    expect(toErrorBody(new NotFoundError('runs/x/metrics.jsonl', 'local:/tmp'), req, silent)).toMatchObject({ statusCode: 404, field: 'id' });
    expect(toErrorBody(new StorageUnavailableError('S3 down'), req, silent)).toMatchObject({ statusCode: 503 });
    // The server's storage misconfigured is the server's problem, not a bad request.
    expect(toErrorBody(new StorageConfigError('bucket sophia does not exist'), req, silent)).toMatchObject({ statusCode: 503, field: 'storage' });
  });

  it('hide unexpected errors behind an id that is logged with the stack', () => {
    const logged: string[] = [];
    const body = toErrorBody(new Error('secret=hunter2 at /srv/app.js:10'), req, { error: (m: string) => logged.push(m) });
    expect(body).toMatchObject({ statusCode: 500, field: 'request' });
    expect(body.message).not.toContain('hunter2');
    const id = /logged as ([0-9a-f]+)/.exec(body.message)![1]!;
    expect(logged[0]).toContain(id);
    expect(logged[0]).toContain('hunter2');
  });
});

describe('run configs from requests', () => {
  it('resolves a preset with overrides, or a config extending a preset', () => {
    expect(resolveRequestConfig({ preset: 'ci', overrides: { sft: { steps: 50 } } }, DEFAULT_RUN_LIMITS).sft.steps).toBe(50);
    expect(resolveRequestConfig({ config: { extends: 'ci', seed: 7 } }, DEFAULT_RUN_LIMITS).seed).toBe(7);
  });

  it('names the body field of each problem', () => {
    const fail = (body: Parameters<typeof resolveRequestConfig>[0], limits = DEFAULT_RUN_LIMITS) => {
      try {
        resolveRequestConfig(body, limits);
      } catch (err) {
        return (err as ApiError).getResponse() as { field: string; issues?: { field: string }[] };
      }
      throw new Error('expected an error');
    };
    expect(fail({ preset: 'ci', overrides: { sft: { stepz: 1 } } }).field).toBe('body.overrides.sft.stepz');
    expect(fail({ config: { extends: 'huge' } }).field).toBe('body.config.extends');
    expect(fail({ config: { seed: 1 } }).issues!.map((i) => i.field)).toContain('body.config.data');
    // The paper preset runs on the torch engine, whose model paths a preset cannot know.
    expect(fail({ preset: 'paper' }).field).toBe('body.overrides.engine.model');
    // Beyond the deployment's resource limits: 400 naming the field, the estimate and the limit.
    const over = fail({ preset: 'ci', overrides: { sft: { steps: 400 } } }, { ...DEFAULT_RUN_LIMITS, maxTrainingSteps: 100 }) as { field: string; message?: string };
    expect(over.field).toBe('body.overrides.sft.steps');
    expect(over.message).toMatch(/the run would take 446 optimizer steps; this deployment allows 100 \(SOPHIA_MAX_RUN_STEPS\)/);
  });
});

describe('downsample', () => {
  const series = (stage: string, n: number): MetricRecord[] => Array.from({ length: n }, (_, i) => ({ stage, kind: 'step', step: i + 1, time: '', loss: i }));

  it('keeps at most N evenly spaced records per series, first and last included', () => {
    const records = [...series('sft', 100), ...series('grpo', 5)];
    const out = downsample(records, 10);
    const sft = out.filter((r) => r.stage === 'sft').map((r) => r.step);
    expect(sft).toHaveLength(10);
    expect(sft[0]).toBe(1);
    expect(sft.at(-1)).toBe(100);
    expect(out.filter((r) => r.stage === 'grpo')).toHaveLength(5);
  });
});
