/**
 * Mirrors a run to MLflow from what the run keeps in its own storage, which stays the source of truth: its config
 * as params, `metrics.jsonl` as metrics (`{stage}/{kind}/{name}`, e.g. `grpo/step/reward`, at the record's step and
 * time), its `reports/` folder as artifacts, and — for a run of a model line — the line's latest policy as a
 * registered model version with the alias `line-latest` (MLflow reserves `latest`), which always names the checkpoint `lines/{line}/latest.json`
 * names (what the next scheduled run starts from).
 *
 * `runs/{runId}/tracking/mlflow.json` remembers the MLflow run and, per stage and kind, the last step sent. A sync
 * sends what came after; when the server cannot be reached it says so once, records when the gap began, and the
 * next sync that reaches it sends everything the gap held and logs the gap (`gaps` in the state, the run's
 * `sophia.tracking_gaps` tag). Training never waits for any of this (workflows/tracking.ts).
 */
import type { RunConfig } from '../config/run-config';
import { NotFoundError } from '../common/errors';
import { metricValues } from '../observability/tensorboard';
import { getJson, putJson } from '../storage/json';
import { joinKey, runPrefix, trackingStateKey } from '../storage/keys';
import { type MetricRecord, readMetrics } from '../storage/metrics-log';
import { type ModelLineRecord, readLatest } from '../storage/model-lines';
import type { Storage } from '../storage/types';
import { LOG_BATCH_LIMITS, type MlflowClient, type MlflowMetric, MlflowUnavailable, PARAM_VALUE_LIMIT } from './mlflow';

export interface MlflowSyncState {
  uri: string;
  experimentId: string;
  mlflowRunId: string;
  artifactUri: string;
  paramsLogged: boolean;
  /** `{stage}/{kind}` → the last step sent. */
  sent: Record<string, number>;
  /** When the server stopped answering (set while a gap is open). */
  unreachableSince?: string | undefined;
  /** Gaps that were filled: when the server was away and how many records waited. */
  gaps: { from: string; to: string; records: number }[];
  /** The run's final status once sent. */
  ended?: string | undefined;
}

export type FinalStatus = 'completed' | 'failed' | 'cancelled';

export interface SyncInput {
  runId: string;
  config: RunConfig;
  /** The run is over: send the rest, upload the report, end the MLflow run, and register a line's policy. */
  final?: { status: FinalStatus; line?: string | undefined } | undefined;
}

export interface SyncResult {
  /** The server answered and everything stored was sent. */
  reached: boolean;
  /** Metric records sent by this sync. */
  sent: number;
  /** Records still waiting (when the server could not be reached). */
  waiting: number;
  mlflowRunId: string | undefined;
  /** The gap this sync closed, if any. */
  filledGap?: MlflowSyncState['gaps'][number];
}

export interface SyncLog {
  info(message: string, fields: Record<string, unknown>): void;
  warn(message: string, fields: Record<string, unknown>): void;
}

/** `{stage}/{kind}` of a record: what a state's cursor is kept per. */
const cursorOf = (r: Pick<MetricRecord, 'stage' | 'kind'>) => `${r.stage}/${r.kind}`;

/** The records a state has not sent, in order. */
export function pendingRecords(records: readonly MetricRecord[], sent: Readonly<Record<string, number>>): MetricRecord[] {
  return records.filter((r) => r.step > (sent[cursorOf(r)] ?? -Infinity));
}

/** A record's numbers as MLflow metrics (`{stage}/{kind}/{name}`); strings and non-finite values are left out. */
export function metricsOf(record: MetricRecord): MlflowMetric[] {
  const parsed = Date.parse(record.time);
  const timestamp = Number.isFinite(parsed) ? parsed : Date.now();
  return metricValues(record).map(([name, value]) => ({ key: `${record.stage}/${record.kind}/${name}`, value, timestamp, step: record.step }));
}

/** The run config as MLflow params: dotted paths of its leaves (`rl.alpha`), arrays as JSON, long values cut. */
export function paramsOf(config: RunConfig): { key: string; value: string }[] {
  const out: { key: string; value: string }[] = [];
  const walk = (value: unknown, path: string) => {
    if (value === undefined) return;
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) walk(v, path ? `${path}.${k}` : k);
      return;
    }
    const text = typeof value === 'string' ? value : JSON.stringify(value);
    out.push({ key: path, value: text.length > PARAM_VALUE_LIMIT ? `${text.slice(0, PARAM_VALUE_LIMIT - 1)}…` : text });
  };
  walk(config, '');
  return out;
}

const chunks = <T>(items: readonly T[], size: number): T[][] => Array.from({ length: Math.ceil(items.length / size) }, (_, i) => items.slice(i * size, (i + 1) * size));

/**
 * Where a checkpoint lives, in the storage's own URL syntax (what `--storage` takes): `s3://bucket/prefix/key` or
 * `local:/dir/key`. (MLflow refuses `file://` sources outside a run's artifacts; `local:` it keeps as given.)
 */
export function checkpointUri(storageLocation: string, key: string): string {
  return `${storageLocation.replace(/\/+$/, '')}/${key}`;
}

/** The registered model of a line, and its alias for the line's latest policy. */
export const registeredModelName = (line: string) => `sophia-${line}`;
export const LATEST_ALIAS = 'line-latest';

export class MlflowSync {
  constructor(
    private readonly storage: Storage,
    private readonly client: MlflowClient,
    private readonly log: SyncLog,
  ) {}

  private async readState(runId: string): Promise<MlflowSyncState | undefined> {
    try {
      return await getJson<MlflowSyncState>(this.storage, trackingStateKey(runId, 'mlflow'));
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
  }

  private saveState(runId: string, state: MlflowSyncState): Promise<void> {
    return putJson(this.storage, trackingStateKey(runId, 'mlflow'), state);
  }

  /**
   * One sync. A server that cannot be reached is not an error here (the result says so) unless the sync is the
   * final one, which throws `MlflowUnavailable` so that its caller tries again later.
   */
  async sync(input: SyncInput): Promise<SyncResult> {
    const settings = input.config.tracking?.mlflow;
    if (!settings) throw new Error(`run ${input.runId} has no tracking.mlflow settings`);
    let state = await this.readState(input.runId);
    const records = await readMetrics(this.storage, input.runId);
    try {
      if (!state || state.uri !== this.client.uri) {
        const experimentId = await this.client.experimentId(settings.experiment);
        const run = await this.client.createRun(experimentId, input.runId, { 'sophia.run_id': input.runId, 'sophia.storage': this.storage.location, ...(input.config.name ? { 'sophia.config': input.config.name } : {}) }, Date.now());
        state = { uri: this.client.uri, experimentId, mlflowRunId: run.runId, artifactUri: run.artifactUri, paramsLogged: false, sent: {}, gaps: [] };
        await this.saveState(input.runId, state);
        this.log.info('MLflow run created', { runId: input.runId, mlflowRunId: run.runId, experimentId, uri: this.client.uri });
      }
      if (state.ended && !input.final) {
        // A resumed run trains again.
        await this.client.setTag(state.mlflowRunId, 'sophia.resumed', new Date().toISOString());
        state.ended = undefined;
      }
      if (!state.paramsLogged) {
        for (const params of chunks(paramsOf(input.config), LOG_BATCH_LIMITS.params)) await this.client.logBatch(state.mlflowRunId, { params });
        state.paramsLogged = true;
        await this.saveState(input.runId, state);
      }
      const pending = pendingRecords(records, state.sent);
      let sent = 0;
      // Records in batches of whole records; the cursor moves after each batch.
      let batch: MetricRecord[] = [];
      let size = 0;
      const flush = async () => {
        if (batch.length === 0) return;
        await this.client.logBatch(state!.mlflowRunId, { metrics: batch.flatMap(metricsOf) });
        for (const r of batch) state!.sent[cursorOf(r)] = Math.max(state!.sent[cursorOf(r)] ?? -Infinity, r.step);
        sent += batch.length;
        batch = [];
        size = 0;
        await this.saveState(input.runId, state!);
      };
      for (const r of pending) {
        const n = metricsOf(r).length;
        if (size + n > LOG_BATCH_LIMITS.metrics) await flush();
        batch.push(r);
        size += n;
      }
      await flush();
      let filledGap: SyncResult['filledGap'];
      if (state.unreachableSince) {
        filledGap = { from: state.unreachableSince, to: new Date().toISOString(), records: sent };
        state.gaps.push(filledGap);
        state.unreachableSince = undefined;
        await this.client.setTag(state.mlflowRunId, 'sophia.tracking_gaps', JSON.stringify(state.gaps));
        await this.saveState(input.runId, state);
        this.log.info('MLflow reachable again: the gap is filled', { runId: input.runId, uri: this.client.uri, since: filledGap.from, records: sent });
      }
      if (input.final) await this.finish(input.runId, state, input.final);
      return { reached: true, sent, waiting: 0, mlflowRunId: state.mlflowRunId, ...(filledGap ? { filledGap } : {}) };
    } catch (err) {
      if (!(err instanceof MlflowUnavailable)) throw err;
      const waiting = state ? pendingRecords(records, state.sent).length : records.length;
      if (state && !state.unreachableSince) {
        state.unreachableSince = new Date().toISOString();
        // Logged before the state says so, so that whoever sees the gap in storage finds its line in the log too.
        this.log.warn('MLflow unreachable: training goes on, metrics wait in the run storage and are sent when it answers', { runId: input.runId, uri: this.client.uri, waiting, error: err.message });
        await this.saveState(input.runId, state);
      }
      if (input.final) throw err;
      return { reached: false, sent: 0, waiting, mlflowRunId: state?.mlflowRunId };
    }
  }

  /** The report and plots, the run's end, and a line's registry entry. */
  private async finish(runId: string, state: MlflowSyncState, final: NonNullable<SyncInput['final']>): Promise<void> {
    const reports = joinKey(runPrefix(runId), 'reports');
    for (const object of await this.storage.listAll(`${reports}/`)) {
      await this.client.uploadArtifact(state.artifactUri, joinKey('reports', object.key.slice(reports.length + 1)), await this.storage.get(object.key));
    }
    if (final.line && final.status === 'completed') await this.registerLine(final.line, runId, state);
    await this.client.endRun(state.mlflowRunId, final.status === 'completed' ? 'FINISHED' : final.status === 'failed' ? 'FAILED' : 'KILLED', Date.now());
    state.ended = final.status;
    await this.saveState(runId, state);
  }

  /**
   * Makes the line's registered model agree with `lines/{line}/latest.json`: its policy checkpoint is a model version
   * (created once, tagged with the checkpoint key and run) and the alias `line-latest` points at it. Waits (throws
   * `MlflowUnavailable`, so the caller retries) while the line does not name a record yet.
   */
  async registerLine(line: string, runId: string, state: MlflowSyncState | undefined): Promise<ModelLineRecord> {
    const latest = await readLatest(this.storage, line);
    if (!latest) throw new MlflowUnavailable(`model line ${line} has no latest record yet (run ${runId} is being recorded)`);
    const name = registeredModelName(line);
    await this.client.createRegisteredModel(name, `Sophia model line ${line}: each version is a policy checkpoint the line recorded; the alias "${LATEST_ALIAS}" is the one lines/${line}/latest.json names.`);
    const versions = await this.client.searchModelVersions(name);
    let version = versions.find((v) => v.tags?.some((t) => t.key === 'sophia.checkpoint' && t.value === latest.policyKey));
    if (!version) {
      version = await this.client.createModelVersion(
        name,
        checkpointUri(this.storage.location, latest.policyKey),
        latest.runId === runId ? state?.mlflowRunId : undefined,
        { 'sophia.checkpoint': latest.policyKey, 'sophia.run_id': latest.runId, ...(latest.rewardModelKey ? { 'sophia.reward_model': latest.rewardModelKey } : {}) },
        `policy of run ${latest.runId}, recorded ${latest.completedAt}`,
      );
      this.log.info('model version registered', { runId, line, name, version: version.version, checkpointKey: latest.policyKey });
    }
    await this.client.setAlias(name, LATEST_ALIAS, version.version);
    return latest;
  }
}
