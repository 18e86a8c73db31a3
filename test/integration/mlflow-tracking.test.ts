/**
 * Experiment tracking against a real MLflow tracking server (the pinned one, started here): a run's params,
 * metrics, report artifacts and a model line's registry entry, synced from the run's storage; the server goes away
 * between syncs and the gap is filled when it is back. (The whole pipeline with tracking, and the server going away
 * mid-run, is in observability.e2e.test.ts.)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RUN_PRESETS, mergeConfig, parseRunConfig } from '../../config/run-config';
import { reportKey } from '../../storage/keys';
import { LocalStorage } from '../../storage/local';
import { appendMetrics, type MetricRecord } from '../../storage/metrics-log';
import { readLatest, recordRun } from '../../storage/model-lines';
import { MlflowClient, MlflowUnavailable } from '../../tracking/mlflow';
import { LATEST_ALIAS, MlflowSync, checkpointUri, registeredModelName } from '../../tracking/sync';
import { MlflowServer } from './mlflow-server';

const step = (stage: string, n: number, fields: Record<string, number>): MetricRecord => ({ stage, kind: 'step', step: n, time: new Date(Date.UTC(2026, 11, 7, 10, 0, n)).toISOString(), ...fields });

describe('MLflow tracking from a run storage', () => {
  let server: MlflowServer;
  let dir: string;
  let storage: LocalStorage;
  const logs: { level: string; message: string; fields: Record<string, unknown> }[] = [];
  const log = { info: (message: string, fields: Record<string, unknown>) => logs.push({ level: 'info', message, fields }), warn: (message: string, fields: Record<string, unknown>) => logs.push({ level: 'warn', message, fields }) };

  beforeAll(async () => {
    server = await MlflowServer.start();
    dir = mkdtempSync(path.join(tmpdir(), 'sophia-tracking-'));
    storage = new LocalStorage(dir);
  }, 180_000);
  afterAll(async () => {
    await server?.close();
    await storage?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('sends params and metrics, says once when the server is away, fills the gap when it is back, then the report and the end', async () => {
    const config = parseRunConfig(mergeConfig(RUN_PRESETS.ci, { tracking: { mlflow: { uri: server.url, experiment: 'sync-test' } } }), 'test');
    const runId = 'tracked-1';
    const client = new MlflowClient(server.url, 3000);
    const sync = new MlflowSync(storage, client, log);

    await appendMetrics(storage, runId, [1, 2, 3].map((n) => step('sft', n, { loss: 1 / n, lr: 0.001 })));
    const first = await sync.sync({ runId, config });
    expect(first).toMatchObject({ reached: true, sent: 3, waiting: 0 });
    const mlflowRunId = first.mlflowRunId!;
    const run = await client.getRun(mlflowRunId);
    expect(run.info.status).toBe('RUNNING');
    const params = new Map(run.data.params?.map((p) => [p.key, p.value]));
    expect(params.get('sft.steps')).toBe('150');
    expect(params.get('rl.variant')).toBe('trust-grpo');
    expect(params.get('tracking.mlflow.experiment')).toBe('sync-test');
    expect((await client.metricHistory(mlflowRunId, 'sft/step/loss')).map((m) => [m.step, m.value])).toEqual([[1, 1], [2, 0.5], [3, 1 / 3]]);

    // Away: training goes on (the metrics land in storage), the sync says so once and keeps them waiting.
    await server.stop();
    await appendMetrics(storage, runId, [4, 5].map((n) => step('sft', n, { loss: 1 / n, lr: 0.001 })));
    expect(await sync.sync({ runId, config })).toMatchObject({ reached: false, sent: 0, waiting: 2, mlflowRunId });
    await appendMetrics(storage, runId, [1, 2].map((n) => step('grpo', n, { reward: n / 10 })));
    expect(await sync.sync({ runId, config })).toMatchObject({ reached: false, waiting: 4 });
    expect(logs.filter((l) => l.level === 'warn').map((l) => l.message)).toEqual(['MLflow unreachable: training goes on, metrics wait in the run storage and are sent when it answers']);
    // A final sync does not give up: it throws for its caller to try again.
    await expect(sync.sync({ runId, config, final: { status: 'completed' } })).rejects.toBeInstanceOf(MlflowUnavailable);

    // Back: one sync sends all that waited, and records the gap.
    await server.start();
    const back = await sync.sync({ runId, config });
    expect(back).toMatchObject({ reached: true, sent: 4, waiting: 0, mlflowRunId });
    expect(back.filledGap).toMatchObject({ records: 4 });
    expect((await client.metricHistory(mlflowRunId, 'sft/step/loss')).map((m) => m.step)).toEqual([1, 2, 3, 4, 5]);
    expect((await client.metricHistory(mlflowRunId, 'grpo/step/reward')).map((m) => [m.step, m.value])).toEqual([[1, 0.1], [2, 0.2]]);
    expect(JSON.parse((await client.getRun(mlflowRunId)).data.tags!.find((t) => t.key === 'sophia.tracking_gaps')!.value)).toHaveLength(1);
    // Nothing is sent twice.
    expect(await sync.sync({ runId, config })).toMatchObject({ reached: true, sent: 0 });
    expect(await client.metricHistory(mlflowRunId, 'sft/step/loss')).toHaveLength(5);

    // The end: the report folder as artifacts, the run finished.
    await storage.put(reportKey(runId, 'report.md'), new TextEncoder().encode('# report\n'));
    await storage.put(reportKey(runId, 'plots/loss.png'), new Uint8Array([0x89, 0x50, 0x4e, 0x47]));
    await sync.sync({ runId, config, final: { status: 'completed' } });
    const ended = await client.getRun(mlflowRunId);
    expect(ended.info.status).toBe('FINISHED');
    expect((await client.listArtifacts(mlflowRunId, 'reports')).map((f) => f.path).sort()).toEqual(['reports/plots', 'reports/report.md']);
    expect((await client.listArtifacts(mlflowRunId, 'reports/plots')).map((f) => f.path)).toEqual(['reports/plots/loss.png']);
    const uploaded = await fetch(`${server.url}/get-artifact?path=reports/report.md&run_uuid=${mlflowRunId}`).then((r) => r.text());
    expect(uploaded).toBe('# report\n');
  }, 240_000);

  it("keeps a line's registered model in agreement with lines/{line}/latest.json, one version per recorded policy", async () => {
    const client = new MlflowClient(server.url, 3000);
    const sync = new MlflowSync(storage, client, log);
    const line = 'nightly';
    const name = registeredModelName(line);
    await expect(sync.registerLine(line, 'r1', undefined)).rejects.toBeInstanceOf(MlflowUnavailable); // nothing recorded yet
    const record = (runId: string, policyKey: string) => recordRun(storage, { line, runId, policyKey, rewardModelKey: 'runs/r0/rm/checkpoints/00000040', completedAt: new Date().toISOString(), metrics: { testAccuracy: 0.5 } });
    const agree = async () => {
      const latest = (await readLatest(storage, line))!;
      const version = (await client.versionByAlias(name, LATEST_ALIAS))!;
      expect(version.tags?.find((t) => t.key === 'sophia.checkpoint')?.value).toBe(latest.policyKey);
      expect(version.source).toBe(checkpointUri(storage.location, latest.policyKey));
      return version;
    };
    await record('r1', 'runs/r1/grpo/checkpoints/00000006');
    await sync.registerLine(line, 'r1', undefined);
    const v1 = await agree();
    await sync.registerLine(line, 'r1', undefined); // again: no second version
    expect(await client.searchModelVersions(name)).toHaveLength(1);
    await record('r2', 'runs/r2/grpo/checkpoints/00000006');
    await sync.registerLine(line, 'r2', undefined);
    const v2 = await agree();
    expect(Number(v2.version)).toBe(Number(v1.version) + 1);
    expect((await client.searchModelVersions(name)).map((v) => v.version).sort()).toEqual([v1.version, v2.version].sort());
  }, 120_000);
});
