/**
 * A full disk at a checkpoint does not redo steps (issue 20, item 10), with real processes: SFT runs through Temporal
 * (a CPU and a GPU `sophia worker`, a private dev server) on storage that is a real 64 MiB tmpfs; after step 40's
 * checkpoint the disk is filled, so the next checkpoint's save fails with ENOSPC. The chunk keeps its engine, says
 * "disk is full: retrying the checkpoint save of step …" (its heartbeat, which `sophia status` shows, and the worker's
 * log) and, once space is freed, saves that step and goes on: every chunk ran in one attempt, the engine was never
 * reloaded from storage, and the metrics log has each of the 100 steps once.
 *
 * Before: the save's error failed the chunk; Temporal retried it, the worker reloaded the step-40 checkpoint and
 * redid the steps up to the next checkpoint, on every retry, until space came back.
 *
 * Mounting needs root: skipped elsewhere.
 */
import { rmSync } from 'node:fs';
import type { Client } from '@temporalio/client';
import { describe, expect, it } from 'vitest';
import { pipelineInput, runProgress, startRun } from '../../clients/runs';
import { LocalStorage } from '../../storage/local';
import { readMetrics } from '../../storage/metrics-log';
import { canMountSmallDisk, mountSmallDisk } from '../../storage/testing/small-disk';
import { loadTemporalConfig } from '../../temporal.config';
import { quietTemporalRuntime } from '../integration/stack';
import { FAST_FAILOVER, faultConfigFile, faultScope, spawnSophia, tempDir, waitFor, waitForStep } from './harness';

const { cleanups, track, server, client } = faultScope();

/** The attempts each finished activity of type `type` took, over every workflow on the (private) server. */
async function attemptsOf(c: Client, type: string): Promise<number[]> {
  const attempts: number[] = [];
  for await (const wf of c.workflow.list()) {
    const types = new Map<string, string>();
    for (const e of (await c.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory()).events ?? []) {
      const scheduled = e.activityTaskScheduledEventAttributes;
      if (scheduled) types.set(String(e.eventId), scheduled.activityType?.name ?? '');
      const started = e.activityTaskStartedEventAttributes;
      // A retried activity's history keeps only its last attempt's start event, carrying that attempt's number.
      if (started && types.get(String(started.scheduledEventId)) === type) attempts.push(started.attempt ?? 1);
    }
  }
  return attempts;
}

describe.skipIf(!canMountSmallDisk())('a full disk at a checkpoint (tmpfs; root only)', () => {
  it('keeps the engine and waits for space inside the chunk: the run completes with every step done once', async () => {
    quietTemporalRuntime();
    const dir = tempDir('disk-full');
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const disk = mountSmallDisk(64 << 20);
    cleanups.push(() => disk.unmount());
    const srv = await server(dir);
    const env = { TEMPORAL_ADDRESS: srv.address, ...FAST_FAILOVER };
    const temporal = loadTemporalConfig(env);
    const c = await client(srv.address);
    const storage = new LocalStorage(disk.dir);
    // 100 SFT steps in chunks of 40, a checkpoint every 20 (faultConfigFile), and nothing after SFT.
    const { config } = faultConfigFile(dir, ['stages: [prepareData, sftWarmup]', 'rl: { variant: grpo }']);
    const runId = 'disk-full';

    track(spawnSophia(['worker', '--queue', 'cpu', '--storage', disk.dir], env, dir, 'cpu'));
    const gpu = track(spawnSophia(['worker', '--queue', 'gpu', '--storage', disk.dir], env, dir, 'gpu'));
    const { handle } = await startRun(c, temporal, pipelineInput(runId, config, storage.location, temporal));
    await waitForStep(c, runId, 41);
    disk.fill();
    // The old code never said so (its chunk failed and was retried instead): then space comes back after 30 s anyway.
    const full = await waitFor(
      'the chunk to say the disk is full',
      async () => {
        const p = await runProgress(c, runId);
        return p.phase?.startsWith('disk is full') ? p : undefined;
      },
      30_000,
    ).catch(() => undefined);
    disk.free();
    const result = await handle.result();

    expect(result.status).toBe('completed');
    expect(result.results.sftWarmup?.step).toBe(100);
    const log = gpu.output();
    const steps = (await readMetrics(storage, runId)).filter((m) => m.stage === 'sft' && m.kind === 'step').map((m) => m.step);
    // One comparison, so that a failure shows every difference at once.
    expect({
      phase: full?.phase,
      logged: /disk is full: retrying the checkpoint save of step (60|80) in \d+ s/.test(log),
      // No chunk failed and was retried, and the engine never went back to a checkpoint: no step was redone.
      chunkAttempts: await attemptsOf(c, 'runSftChunk'),
      reloads: log.match(/engine loaded from storage/g)?.length ?? 0,
      steps,
    }).toEqual({
      phase: expect.stringMatching(/^disk is full: retrying the checkpoint save of step (60|80) in \d+ s$/) as unknown,
      logged: true,
      chunkAttempts: [1, 1, 1],
      reloads: 0,
      steps: Array.from({ length: 100 }, (_, i) => i + 1),
    });
  });
});
