/**
 * Observability end to end, on one ci run of a model line started over the API (fewer steps), with the API, the
 * client and the CPU and GPU workers in this process:
 * - traces, exported over OTLP to a real trace backend — an MLflow tracking server, whose `/v1/traces` endpoint takes
 *   OTLP over HTTP and keeps a trace's spans together wherever they came from: the run is one trace, from the API
 *   request through the pipeline and every stage's workflow and activity down to the engine calls, and the workers'
 *   log lines carry its id;
 * - experiment tracking into a second MLflow server, which goes away once the run is tracked and comes back: the run
 *   completes, every step's metrics reach MLflow, the gap is recorded, the report is an artifact, and the line's
 *   registered model names the checkpoint `lines/{line}/latest.json` names.
 */
import { randomBytes } from 'node:crypto';
import { DefaultLogger, type LogEntry } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonLogLine } from '../../observability/log';
import { activeTracing, startTracing, stopTracing } from '../../observability/tracing';
import { pipelineWorkflowId, trackingWorkflowId } from '../../common/run-layout';
import { getJson } from '../../storage/json';
import { trackingStateKey } from '../../storage/keys';
import { readMetrics } from '../../storage/metrics-log';
import { readLatest } from '../../storage/model-lines';
import { MlflowClient } from '../../tracking/mlflow';
import { LATEST_ALIAS, type MlflowSyncState, registeredModelName } from '../../tracking/sync';
import { type ApiHarness, startApiHarness } from './api-harness';
import { MlflowServer } from './mlflow-server';
import { quietTemporalRuntime, waitFor } from './stack';

interface Span {
  trace_id: string;
  span_id: string;
  parent_span_id?: string;
  name: string;
}
interface Trace {
  trace_info: { trace_id: string };
  spans: Span[];
}

const suffix = randomBytes(3).toString('hex');
const runId = `traced-${suffix}`;
const line = `observed-${suffix}`;
const OTEL_VARIABLES = ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_HEADERS'] as const;

describe('observability: one run traced and tracked', () => {
  let mlflow: MlflowServer;
  let tracking: MlflowServer;
  let h: ApiHarness;
  let experimentId: string;
  const logs: LogEntry[] = [];

  beforeAll(async () => {
    [mlflow, tracking] = await Promise.all([MlflowServer.start(), MlflowServer.start()]);
    experimentId = await mlflow.createExperiment(`sophia-traces-${suffix}`);
    // What an operator sets; the exporter reads both.
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = mlflow.url;
    process.env.OTEL_EXPORTER_OTLP_HEADERS = `x-mlflow-experiment-id=${experimentId}`;
    expect(startTracing('sophia-test')).toBeDefined();
    quietTemporalRuntime(new DefaultLogger('DEBUG', (entry) => logs.push(entry)));
    h = await startApiHarness({ workers: true, storage: 'local', tracing: true });
  }, 240_000);

  afterAll(async () => {
    await h?.close();
    await stopTracing();
    for (const name of OTEL_VARIABLES) delete process.env[name];
    await mlflow?.close();
    await tracking?.close();
  });

  it('traces the run as one trace and tracks it in MLflow through a server outage', async () => {
    // The ci preset with fewer steps (every stage and activity), tracked with a sync every 2 s.
    const overrides = {
      sft: { steps: 100, evalEvery: 50, chunkSteps: 50 },
      rewardModel: { steps: 20 },
      rl: { steps: 2, checkpointEvery: 2, evalEvery: 2 },
      tracking: { mlflow: { uri: tracking.url, experiment: `e2e-${suffix}`, syncSeconds: 2 } },
    };
    const created = await h.call('POST', '/runs', { preset: 'ci', runId, modelLine: line, overrides });
    expect(created.status).toBe(201);
    // Tracking has started (the MLflow run exists, with its params); then the tracking server goes away, before the
    // run's first metrics, and comes back once training went on. (Stopped any later, a run that is quick next to its
    // first sync, as on a loaded CI machine, can be past its last stage's metrics before the server is gone.)
    const trackingClient = new MlflowClient(tracking.url, 3000);
    const state = () => getJson<MlflowSyncState>(h.storage, trackingStateKey(runId, 'mlflow'));
    await waitFor('the MLflow run with its params', async () => ((await state()).paramsLogged ? true : undefined), 240_000);
    await tracking.stop();
    const recordsAtStop = (await readMetrics(h.storage, runId)).length;
    // The next sync with records to send notices and logs it once; training goes on, its metrics wait in storage.
    const unreachableLines = () => logs.filter((l) => l.message.startsWith('MLflow unreachable') && l.meta?.runId === runId);
    await waitFor('the sync to notice the server is away', async () => (await state()).unreachableSince, 120_000);
    await waitFor('the sync to log it', () => Promise.resolve(unreachableLines().length > 0 ? true : undefined), 30_000);
    const progress = async () => {
      const records = await readMetrics(h.storage, runId);
      const last = records.at(-1);
      return `${records.length} records, the last ${last ? `${last.stage} ${last.kind} ${last.step}` : 'none'}; ${recordsAtStop} when the server stopped`;
    };
    await waitFor('training to go on without MLflow', async () => ((await readMetrics(h.storage, runId)).length >= recordsAtStop + 20 ? true : undefined), 240_000).catch(async (err: Error) => {
      throw new Error(`${err.message} (${await progress()})`);
    });
    // Once per gap, however many syncs found the server away.
    expect(unreachableLines()).toHaveLength(1);
    await tracking.start();
    const done = await waitFor(
      'the run to complete',
      async () => {
        const detail = (await h.call('GET', `/runs/${runId}`)).json as { status: string };
        return detail.status === 'completed' || detail.status === 'failed' ? detail.status : undefined;
      },
      300_000,
    );
    expect(done).toBe('completed');
    // The tracking workflow ends after the line recorded the run.
    await h.client.workflow.getHandle(trackingWorkflowId(pipelineWorkflowId(h.temporal.deployment, runId))).result();
    const synced = await state();
    expect(synced.ended).toBe('completed');
    expect(synced.gaps).toHaveLength(1);
    expect(synced.gaps[0]!.records).toBeGreaterThan(0);
    const mlflowRun = await trackingClient.getRun(synced.mlflowRunId);
    expect(mlflowRun.info.status).toBe('FINISHED');
    // Every SFT step stored reached MLflow, gap included; the report is an artifact.
    const sftSteps = (await readMetrics(h.storage, runId)).filter((r) => r.stage === 'sft' && r.kind === 'step').map((r) => r.step);
    expect(sftSteps.length).toBeGreaterThan(50);
    expect((await trackingClient.metricHistory(synced.mlflowRunId, 'sft/step/loss')).map((m) => m.step).sort((a, b) => a - b)).toEqual(sftSteps);
    expect((await trackingClient.metricHistory(synced.mlflowRunId, 'grpo/step/reward')).length).toBe(2);
    expect((await trackingClient.listArtifacts(synced.mlflowRunId, 'reports')).map((f) => f.path)).toContain('reports/report.md');
    // The registry agrees with the line's record (what the next scheduled run starts from).
    const latest = (await readLatest(h.storage, line))!;
    expect(latest.runId).toBe(runId);
    const version = (await trackingClient.versionByAlias(registeredModelName(line), LATEST_ALIAS))!;
    expect(version.tags?.find((t) => t.key === 'sophia.checkpoint')?.value).toBe(latest.policyKey);
    expect(version.run_id).toBe(synced.mlflowRunId);

    await activeTracing()!.flush();

    // Every request is a trace of its own (the GETs above too); the run's is the one with POST /runs.
    const spansOf = async (): Promise<Trace | undefined> => {
      const found = await mlflow.api<{ traces?: { trace_id: string }[] }>('POST', '/api/3.0/mlflow/traces/search', {
        locations: [{ type: 'MLFLOW_EXPERIMENT', mlflow_experiment: { experiment_id: experimentId } }],
        max_results: 500,
      });
      const ids = (found.traces ?? []).map((t) => t.trace_id);
      for (let i = 0; i < ids.length; i += 50) {
        const query = ids.slice(i, i + 50).map((id) => `trace_ids=${encodeURIComponent(id)}`).join('&');
        const batch = await mlflow.api<{ traces: Trace[] }>('GET', `/api/3.0/mlflow/traces/batchGet?${query}`);
        const run = batch.traces.find((t) => t.spans.some((s) => s.name === 'POST /runs'));
        if (run) return run;
      }
      return undefined;
    };
    // The workflow spans end with the run; the exporter sends them within a second or two.
    const trace = await waitFor('the run trace with its pipeline span', async () => {
      const t = await spansOf();
      return t?.spans.some((s) => s.name === 'RunWorkflow:trainingPipeline') ? t : undefined;
    }, 30_000);

    const names = trace.spans.map((s) => s.name);
    const byId = new Map(trace.spans.map((s) => [s.span_id, s]));
    // One root, the request; every other span's parent is in the same trace.
    const roots = trace.spans.filter((s) => !s.parent_span_id);
    expect(roots.map((s) => s.name)).toEqual(['POST /runs']);
    for (const span of trace.spans) if (span.parent_span_id) expect(byId.has(span.parent_span_id), `${span.name}'s parent`).toBe(true);
    const ancestors = (span: Span): string[] => (span.parent_span_id ? [byId.get(span.parent_span_id)!.name, ...ancestors(byId.get(span.parent_span_id)!)] : []);

    expect(names).toEqual(expect.arrayContaining(['POST /runs', 'StartWorkflow:modelLineRun', 'RunWorkflow:modelLineRun', 'RunWorkflow:trainingPipeline', 'RunWorkflow:trackRun']));
    // Each stage: its workflow or activities ran under the pipeline's span.
    for (const activity of ['prepareData', 'runSftChunk', 'sampleRewardData', 'annotateRewardData', 'runRewardModelChunk', 'evaluateRewardModel', 'rolloutStep', 'thinkingRewards', 'policyUpdate', 'evaluateCheckpoint', 'writeRunReport', 'syncTracking']) {
      const spans = trace.spans.filter((s) => s.name === `RunActivity:${activity}`);
      expect(spans.length, `RunActivity:${activity} in ${[...new Set(names)].sort().join(', ')}`).toBeGreaterThan(0);
      expect(ancestors(spans[0]!)).toContain('RunWorkflow:trainingPipeline');
    }
    // Engine calls are children of the activity that made them.
    const engineSpans = trace.spans.filter((s) => s.name.startsWith('engine.'));
    expect(engineSpans.map((s) => s.name)).toEqual(expect.arrayContaining(['engine.generate', 'engine.trainStepResponses']));
    for (const span of engineSpans) expect(ancestors(span).find((n) => n.startsWith('RunActivity:')), span.name).toBeDefined();

    // The workers' log lines of the run's activities and workflows carry its trace id.
    const traceId = Buffer.from(trace.spans[0]!.trace_id, 'base64').toString('hex');
    expect(trace.trace_info.trace_id).toBe(`tr-${traceId}`);
    const lines = logs.map((e) => JSON.parse(jsonLogLine({ level: e.level, message: e.message, meta: e.meta, time: new Date() }, 'worker')) as { message: string; runId: string | null; traceId: string | null; activityType?: string });
    // The SDK's own "Activity started" and "Activity completed" lines are logged outside the activity's span; every
    // line logged while an activity or workflow of the run executes carries the id.
    const runLines = lines.filter((l) => l.runId === runId && l.message !== 'Activity started' && l.message !== 'Activity completed');
    expect(runLines.length).toBeGreaterThan(0);
    expect(new Set(runLines.map((l) => l.traceId))).toEqual(new Set([traceId]));
  }, 400_000);
});
