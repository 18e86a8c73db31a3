/**
 * Fault scenarios shared by the fault test files: the weights and metrics of an uninterrupted run as the reference,
 * and a GPU worker SIGKILLed mid-stage (optionally with its newest checkpoint corrupted) that a new worker takes over.
 */
import { rmSync } from 'node:fs';
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import { expect } from 'vitest';
import { pipelineInput, startRun } from '../../clients/runs';
import { connectWorker } from '../../clients/temporal';
import type { RunConfig } from '../../config/run-config';
import { CheckpointStore } from '../../storage/checkpoints';
import { hashConfig, sha256Hex } from '../../storage/hashing';
import { LocalStorage } from '../../storage/local';
import type { CheckpointManifest } from '../../storage/manifest';
import { type MetricRecord, readMetrics } from '../../storage/metrics-log';
import { loadTemporalConfig } from '../../temporal.config';
import { WorkerSet } from '../../workers/worker';
import { quietTemporalRuntime } from '../integration/stack';
import { FAST_FAILOVER, type faultScope, faultConfigFile, kill, spawnSophia, tempDir, waitForStep } from './harness';

/** Uninterrupted runs by config, stage and final step: tests of one config compare with one reference run. */
const references = new Map<string, Promise<{ state: string[]; metrics: MetricRecord[] }>>();

/** The scenarios over one file's fault scope (its servers, processes and cleanups). */
export function faultScenarios({ cleanups, track, server, client }: ReturnType<typeof faultScope>) {
  /** The files of a checkpoint as (name, sha256) pairs by name: an engine's whole saved state, whatever its files. */
  const stateAt = async (store: CheckpointStore, runId: string, step: number, stage = 'sft') => {
    const { files } = await store.load(`runs/${runId}/${stage}/checkpoints/${String(step).padStart(8, '0')}`);
    return [...files.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([name, data]) => `${name} ${sha256Hex(data)}`);
  };

  /** Flips one byte of a checkpoint's state file: what a bad disk or a torn copy does. */
  async function corrupt(storage: LocalStorage, manifest: CheckpointManifest): Promise<void> {
    const key = `${manifest.key}/${manifest.files.find((f) => f.name === 'state.bin')!.key}`;
    const bytes = Uint8Array.from(await storage.get(key));
    bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0x01;
    await storage.put(key, bytes);
  }


  /**
   * Checks that run `runId` ended with the weights (stage `stage` at `finalStep`) and metrics curve of `config` run
   * without interruption: run as `${name}-reference` (own queues, in-process workers) the first time a test asks for
   * that config, then remembered (weights and metrics do not depend on the run id).
   */
  async function expectLikeUninterrupted(o: {
    c: Client;
    env: Record<string, string>;
    storage: LocalStorage;
    store: CheckpointStore;
    config: RunConfig;
    runId: string;
    name: string;
    stage: string;
    finalStep: number;
    curve: (m: MetricRecord) => unknown[];
  }): Promise<void> {
    const key = `${hashConfig(o.config)}/${o.stage}/${o.finalStep}`;
    let uninterrupted = references.get(key);
    if (!uninterrupted) {
      uninterrupted = (async () => {
        const reference = `${o.name}-reference`;
        const refTemporal = loadTemporalConfig({ ...o.env, SOPHIA_TASK_QUEUE_CPU: 'ref-cpu', SOPHIA_TASK_QUEUE_GPU: 'ref-gpu' });
        const connection = await connectWorker(refTemporal);
        cleanups.push(() => connection.close());
        const workers = await WorkerSet.create({ kinds: ['cpu', 'gpu'], connection, config: refTemporal, storage: o.storage });
        const ref = await startRun(o.c, refTemporal, pipelineInput(reference, o.config, o.storage.location, refTemporal));
        expect((await workers.runUntil(ref.handle.result())).status).toBe('completed');
        return { state: await stateAt(o.store, reference, o.finalStep, o.stage), metrics: await readMetrics(o.storage, reference) };
      })();
      references.set(key, uninterrupted);
      uninterrupted.catch(() => references.delete(key)); // a failed reference is not reused
    }
    const { state, metrics } = await uninterrupted;
    expect(await stateAt(o.store, o.runId, o.finalStep, o.stage)).toEqual(state);
    expect((await readMetrics(o.storage, o.runId)).map(o.curve)).toEqual(metrics.map(o.curve));
  }

  /**
   * SIGKILLs the GPU worker of run `name` once `reached` says so, starts another, and checks that the run completes,
   * that the new worker reloaded the newest checkpoint of `stage` committed before the kill, and that the run ends
   * with the weights (at `finalStep`) and metrics of the same config run without interruption. With `corruptNewest`,
   * that newest checkpoint is corrupted before the new worker starts: it must be quarantined and the one before it
   * loaded instead.
   */
  async function gpuKillScenario(o: {
    name: string;
    extra: string[];
    stage: string;
    finalStep: number;
    minCommitted: number;
    reached: (c: Client, runId: string) => Promise<unknown>;
    loaded: RegExp;
    curve: (m: MetricRecord) => unknown[];
    corruptNewest?: boolean;
  }) {
    quietTemporalRuntime();
    const dir = tempDir(o.name);
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const srv = await server(dir);
    const env = { TEMPORAL_ADDRESS: srv.address, ...FAST_FAILOVER };
    const temporal = loadTemporalConfig(env);
    const c = await client(srv.address);
    const storageDir = path.join(dir, 'storage');
    const storage = new LocalStorage(storageDir);
    const store = new CheckpointStore(storage);
    cleanups.push(() => store.close());
    const { config } = faultConfigFile(dir, o.extra);
    const killed = `${o.name}-killed`;

    track(spawnSophia(['worker', '--queue', 'cpu', '--storage', storageDir], env, dir, 'cpu'));
    const gpuA = track(spawnSophia(['worker', '--queue', 'gpu', '--storage', storageDir], env, dir, 'gpu-a'));
    const { handle } = await startRun(c, temporal, pipelineInput(killed, config, storage.location, temporal));
    await o.reached(c, killed);
    await kill(gpuA);
    const committed = await store.list(killed, o.stage);
    const atKill = committed.at(-1);
    expect(atKill?.step).toBeGreaterThanOrEqual(o.minCommitted);
    if (o.corruptNewest) await corrupt(storage, atKill!);
    const gpuB = track(spawnSophia(['worker', '--queue', 'gpu', '--storage', storageDir], env, dir, 'gpu-b'));
    const result = await handle.result();
    expect(result.status).toBe('completed');
    // The new worker started from the newest (intact) checkpoint committed before the kill: at most the steps since it were lost.
    const expected = o.corruptNewest ? (committed.at(-2)?.step ?? 0) : atKill!.step;
    expect(Number(o.loaded.exec(gpuB.output())?.[1])).toBe(expected);
    if (o.corruptNewest) {
      // Out of use but kept for inspection, and reported as a run event.
      expect((await store.quarantined(killed, o.stage)).map((m) => [m.step, m.manifest.attempt])).toEqual([[atKill!.step, atKill!.attempt]]);
      expect(await storage.listAll(`${atKill!.key}/${atKill!.attempt}/`)).not.toEqual([]);
      expect(result.events).toEqual([expect.objectContaining({ kind: 'checkpoint-quarantined', stage: o.stage, step: atKill!.step })]);
      expect(result.events?.[0]?.message).toMatch(/state\.bin has sha256/);
      expect(gpuB.output()).toContain('corrupt checkpoint quarantined');
    }
    await expectLikeUninterrupted({ c, env, storage, store, config, runId: killed, name: o.name, stage: o.stage, finalStep: o.finalStep, curve: o.curve });
    return Object.assign(result, { storage, store });
  }

  return { stateAt, corrupt, expectLikeUninterrupted, gpuKillScenario };
}

/** The SFT kill: at step ≥ 50 of 100 (checkpoints every 20, chunks of 40), so at least step 40 is committed. */
export const SFT_KILL = {
  extra: [],
  stage: 'sft',
  finalStep: 100,
  minCommitted: 40,
  reached: (c: Client, runId: string) => waitForStep(c, runId, 50),
  loaded: /engine loaded from storage \{[^}]*"step":(\d+)/,
  curve: (m: MetricRecord) => [m.stage, m.kind, m.step, m.loss ?? m.valLoss],
};

/** What an RL run's curve is compared by: its losses, rewards, γ and periodic test accuracy per step. */
export const rlCurve = (m: MetricRecord) => [m.stage, m.kind, m.step, m.loss ?? m.valLoss, m.outcomeReward, m.gamma, m.testAccuracy];

