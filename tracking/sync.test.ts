import { describe, expect, it } from 'vitest';
import { RUN_PRESETS, mergeConfig, parseRunConfig } from '../config/run-config';
import type { MetricRecord } from '../storage/metrics-log';
import { checkpointUri, metricsOf, paramsOf, pendingRecords } from './sync';

const rec = (stage: string, kind: string, step: number, fields: Record<string, number | string> = {}): MetricRecord => ({ stage, kind, step, time: '2026-12-07T10:00:00.000Z', ...fields });

describe('what a sync sends to MLflow', () => {
  it('sends the records after each stage-and-kind cursor, in order', () => {
    const records = [rec('sft', 'step', 1), rec('sft', 'step', 2), rec('sft', 'validation', 2), rec('grpo', 'step', 1), rec('sft', 'step', 3)];
    expect(pendingRecords(records, {})).toEqual(records);
    expect(pendingRecords(records, { 'sft/step': 2 }).map((r) => `${r.stage}/${r.kind}/${r.step}`)).toEqual(['sft/validation/2', 'grpo/step/1', 'sft/step/3']);
    expect(pendingRecords(records, { 'sft/step': 3, 'sft/validation': 2, 'grpo/step': 1 })).toEqual([]);
  });

  it("turns a record's finite numbers into metrics named stage/kind/name at its step and time; strings and NaN stay out", () => {
    expect(metricsOf(rec('grpo', 'step', 7, { reward: 0.5, gamma: Number.NaN, note: 'x', loss: -1 }))).toEqual([
      { key: 'grpo/step/reward', value: 0.5, timestamp: Date.parse('2026-12-07T10:00:00.000Z'), step: 7 },
      { key: 'grpo/step/loss', value: -1, timestamp: Date.parse('2026-12-07T10:00:00.000Z'), step: 7 },
    ]);
  });

  it('flattens the run config into dotted params, arrays as JSON, within MLflow’s value limit', () => {
    const config = parseRunConfig(mergeConfig(RUN_PRESETS.ci, { tracking: { mlflow: { uri: 'http://mlflow:5000' } } }), 'test');
    const params = new Map(paramsOf(config).map((p) => [p.key, p.value]));
    expect(params.get('rl.alpha')).toBe('0.3');
    expect(params.get('rewardModel.data.temperatures')).toBe('[0.7,1.5]');
    expect(params.get('tracking.mlflow.uri')).toBe('http://mlflow:5000');
    expect(params.get('tracking.mlflow.experiment')).toBe('sophia');
    expect(params.get('tracking.mlflow.syncSeconds')).toBe('30');
    for (const p of paramsOf(config)) expect(p.value.length).toBeLessThanOrEqual(6000);
  });

  it("names a checkpoint in the storage's own URL syntax", () => {
    expect(checkpointUri('s3://bucket/prefix/', 'runs/r/grpo/checkpoints/00000006')).toBe('s3://bucket/prefix/runs/r/grpo/checkpoints/00000006');
    expect(checkpointUri('local:/data/sophia', 'runs/r/sft/checkpoints/00000150')).toBe('local:/data/sophia/runs/r/sft/checkpoints/00000150');
  });

  it('refuses a tracking URI that is not http(s), naming the field', () => {
    expect(() => parseRunConfig(mergeConfig(RUN_PRESETS.ci, { tracking: { mlflow: { uri: 'mlflow:5000' } } }), 'run.yaml')).toThrow(/tracking\.mlflow\.uri: must be the http\(s\) URL of an MLflow tracking server/);
    expect(() => parseRunConfig(mergeConfig(RUN_PRESETS.ci, { tracking: { mlflow: { uri: 'http://m:5000', syncSeconds: 0 } } }), 'run.yaml')).toThrow(/tracking\.mlflow\.syncSeconds/);
  });
});
