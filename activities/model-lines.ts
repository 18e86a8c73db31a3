/**
 * Model-line activities (CPU queue) for scheduled retraining: `checkRunRoom` says whether a schedule's firing may
 * start its run under the deployment's running-run limits; `prepareLineRun` resolves what a new run of a
 * line starts from (the line's latest recorded checkpoints, or from scratch when it has none) and returns the
 * run's final config and its hash; `recordLineRun` records a completed run as the line's latest.
 */
import { Context, heartbeat, log, sleep } from '@temporalio/activity';
import { SophiaError } from '../common/errors';
import { type RunConfig, parseRunConfig } from '../config/run-config';
import type { StageName } from '../config/stages';
import { hashConfig } from '../storage/hashing';
import { readLatest, recordRun } from '../storage/model-lines';
import { withFailureMapping } from './failures';
import type { RunData, RunStore } from './run-data';
import { type RunningLimits, countRunning, overLimit } from './run-room';

export interface LineStart {
  line: string;
  /** The stage the run starts at from the line's latest policy (e.g. sftWarmup to continue SFT on fresh data). */
  stage: StageName;
}

export interface PrepareLineRunInput extends RunStore {
  runId: string;
  config: RunConfig;
  storage: string;
  /** Start from the latest checkpoint of this line (from scratch while the line has no completed run). */
  from: LineStart | undefined;
  /** Derive the data seed from the run id, so each scheduled run trains on freshly generated data. */
  freshData: boolean;
}

export interface PreparedLineRun {
  config: RunConfig;
  configHash: string;
  /** The run of the line this one starts from, if any. */
  startedFromRun: string | undefined;
}

export interface RecordLineRunInput extends RunStore {
  storage: string;
  line: string;
  runId: string;
  checkpoints: Partial<Record<StageName, string>>;
  rewardModelKey: string | undefined;
  metrics: Record<string, number>;
}

export interface CheckRunRoomInput {
  /** The deployment whose runs count (`TemporalConfig.deployment`). */
  deployment: string;
  limits: RunningLimits;
  /** The model line the run would be counted in. */
  line: string | undefined;
}

/** How long a firing waits to see itself listed by visibility before it counts (then the activity is retried). */
const SELF_VISIBLE_TIMEOUT_MS = 10_000;

/** A stable 31-bit seed from a run id (FNV-1a). */
export function seedFromRunId(runId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < runId.length; i++) {
    h ^= runId.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h & 0x7fffffff;
}

export function createModelLineActivities({ data }: { data: RunData }) {
  return withFailureMapping({
    /**
     * Whether the calling launcher may start its run: undefined, or why not (over which limit). It counts the runs
     * running and the launchers that started before it and have not started theirs (`activities/run-room.ts`), with
     * the worker's own Temporal client.
     */
    async checkRunRoom(input: CheckRunRoomInput): Promise<{ refused: string | undefined }> {
      const { client, info } = Context.current();
      const self = info.workflowExecution;
      if (!self) throw new SophiaError('input', 'checkRunRoom counts for the launcher workflow that calls it: call it from a workflow');
      const deadline = Date.now() + SELF_VISIBLE_TIMEOUT_MS;
      for (;;) {
        const count = await countRunning(client, input.deployment, input.line, self);
        if (count) return { refused: overLimit(input.limits, count, input.line) };
        if (Date.now() > deadline) {
          throw new SophiaError('unavailable', `launcher ${self.workflowId} is not listed by Temporal's visibility ${SELF_VISIBLE_TIMEOUT_MS / 1000} s after it started, so the runs before it cannot be counted yet`);
        }
        heartbeat();
        await sleep(200);
      }
    },

    async prepareLineRun(input: PrepareLineRunInput): Promise<PreparedLineRun> {
      await data.assertStorage(input);
      let config: unknown = input.config;
      if (input.freshData) config = { ...input.config, seed: seedFromRunId(input.runId) };
      let startedFromRun: string | undefined;
      if (input.from) {
        const latest = await readLatest(data.storage, input.from.line);
        if (latest) {
          startedFromRun = latest.runId;
          const withRewardModel = input.from.stage === 'trustGrpo' && latest.rewardModelKey;
          config = { ...(config as RunConfig), startFrom: { stage: input.from.stage, checkpointKey: latest.policyKey, ...(withRewardModel ? { rewardModelKey: latest.rewardModelKey } : {}) } };
        }
        log.info('model line resolved', { runId: input.runId, line: input.from.line, startedFromRun: startedFromRun ?? 'none (from scratch)' });
      }
      const parsed = parseRunConfig(config, `run ${input.runId}`);
      return { config: parsed, configHash: hashConfig(parsed), startedFromRun };
    },

    async recordLineRun(input: RecordLineRunInput): Promise<{ policyKey: string | undefined }> {
      await data.assertStorage(input);
      const policyKey = input.checkpoints.trustGrpo ?? input.checkpoints.sftWarmup;
      if (!policyKey) {
        log.warn('run produced no policy checkpoint; the model line is unchanged', { runId: input.runId, line: input.line });
        return { policyKey: undefined };
      }
      await recordRun(data.storage, {
        line: input.line,
        runId: input.runId,
        policyKey,
        rewardModelKey: input.checkpoints.rewardModel ?? input.rewardModelKey,
        completedAt: new Date().toISOString(),
        metrics: input.metrics,
      });
      return { policyKey };
    },
  });
}

export type ModelLineActivities = ReturnType<typeof createModelLineActivities>;
