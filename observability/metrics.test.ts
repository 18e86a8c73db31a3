import { describe, expect, it } from 'vitest';
import { RUN_GAUGE_RUNS, observeCheckpoint, observeRecords, parseNvidiaSmi, registry } from './metrics';
import { metricsPort, serveMetrics } from './serve';

const step = (stage: string, n: number, time: string, extra: Record<string, number> = {}) => ({ stage, kind: 'step', step: n, time, ...extra });

async function value(series: string): Promise<number | undefined> {
  const text = await registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('worker metrics', () => {
  it('counts steps, tokens and checkpoints, times steps from consecutive records, and keeps the run gauges', async () => {
    observeRecords('m1', [
      step('sft', 1, '2026-01-01T00:00:00.000Z', { loss: 2, tokens: 100 }),
      step('sft', 2, '2026-01-01T00:00:01.500Z', { loss: 1.5, tokens: 120 }),
      { stage: 'sft', kind: 'validation', step: 2, time: '2026-01-01T00:00:02.000Z', valLoss: 1.4 },
    ]);
    observeRecords('m1', [step('grpo', 1, '2026-01-01T00:01:00.000Z', { reward: 0.6, accuracy: 0.5, rolloutSeconds: 2, rolloutTokensPerSecond: 50, updateSeconds: 1 })]);
    observeRecords('m1', [{ stage: 'grpo', kind: 'eval', step: 1, time: '2026-01-01T00:01:05.000Z', testAccuracy: 0.7 }]);
    observeCheckpoint('sft', 4096, 0.25);
    expect(await value('sophia_training_steps_total{stage="sft"}')).toBeGreaterThanOrEqual(2);
    expect(await value('sophia_trained_tokens_total{stage="sft"}')).toBeGreaterThanOrEqual(220);
    expect(await value('sophia_step_duration_seconds_sum{stage="sft"}')).toBeGreaterThanOrEqual(1.5);
    expect(await value('sophia_generated_tokens_total{stage="grpo"}')).toBeGreaterThanOrEqual(100);
    expect(await value('sophia_rollout_tokens_per_second{stage="grpo"}')).toBe(50);
    expect(await value('sophia_checkpoint_written_bytes_total{stage="sft"}')).toBeGreaterThanOrEqual(4096);
    expect(await value('sophia_run_loss{run_id="m1",stage="sft"}')).toBe(1.5);
    expect(await value('sophia_run_reward{run_id="m1",stage="grpo"}')).toBe(0.6);
    expect(await value('sophia_run_eval_accuracy{run_id="m1",split="test"}')).toBe(0.7);
  });

  it(`keeps per-run series for the ${RUN_GAUGE_RUNS} newest runs only`, async () => {
    for (let i = 0; i <= RUN_GAUGE_RUNS; i++) observeRecords(`evict-${i}`, [step('grpo', 1, '2026-01-01T00:00:00.000Z', { reward: i })]);
    expect(await value('sophia_run_reward{run_id="evict-0",stage="grpo"}')).toBeUndefined();
    expect(await value(`sophia_run_reward{run_id="evict-${RUN_GAUGE_RUNS}",stage="grpo"}`)).toBe(RUN_GAUGE_RUNS);
  });

  it('follows Prometheus naming: a unit in every name, no run id on counters or histograms', async () => {
    const metrics = await registry.getMetricsAsJSON();
    const unitless = new Set(['sophia_run_loss', 'sophia_run_reward', 'sophia_run_accuracy', 'sophia_run_eval_accuracy', 'sophia_run_step']);
    for (const m of metrics.filter((x) => x.name.startsWith('sophia_'))) {
      if (!unitless.has(m.name)) expect(m.name).toMatch(/_(total|seconds|bytes|ratio|per_second)$/);
      if (['counter', 'histogram'].includes(String(m.type))) {
        expect((m as { values: { labels: Record<string, unknown> }[] }).values.every((v) => !('run_id' in v.labels))).toBe(true);
      }
    }
  });

  it("reads nvidia-smi's CSV", () => {
    expect(parseNvidiaSmi('0, 87, 40000, 81559\n1, 0, 3, 81559\nNo devices were found\n')).toEqual([
      { gpu: '0', utilization: 0.87, usedBytes: 40000 * 2 ** 20, totalBytes: 81559 * 2 ** 20 },
      { gpu: '1', utilization: 0, usedBytes: 3 * 2 ** 20, totalBytes: 81559 * 2 ** 20 },
    ]);
  });

  it('serves /metrics and /health over HTTP; refuses a bad SOPHIA_METRICS_PORT by name', async () => {
    const server = await serveMetrics({ port: 0, host: '127.0.0.1' });
    try {
      const res = await fetch(server.url);
      expect(res.headers.get('content-type')).toMatch(/text\/plain/);
      expect(await res.text()).toMatch(/^sophia_training_steps_total/m);
      expect((await fetch(server.url.replace('/metrics', '/health'))).status).toBe(200);
      expect((await fetch(server.url.replace('/metrics', '/other'))).status).toBe(404);
    } finally {
      await server.close();
    }
    expect(metricsPort({})).toBeUndefined();
    expect(metricsPort({ SOPHIA_METRICS_PORT: '9464' })).toBe(9464);
    expect(() => metricsPort({ SOPHIA_METRICS_PORT: 'http' })).toThrow(/SOPHIA_METRICS_PORT: "http" is not a TCP port/);
  });
});
