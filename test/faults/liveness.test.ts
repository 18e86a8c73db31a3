/**
 * A dead worker is visible at once (issue 20 item 9), with real processes: the GPU worker is SIGKILLed in the middle
 * of SFT; long before Temporal's heartbeat timeout retries its activity elsewhere, `runProgress` and `sophia status`
 * say "no heartbeat for N s from worker <its identity>"; a new worker takes the retry over and the stall clears.
 *
 * The GPU heartbeat timeout is 20 s here, so a heartbeat is overdue after 5 s (`SOPHIA_HEARTBEAT_OVERDUE`'s default
 * quarter of it): well above the workers' 2 s heartbeat throttle, and well before the timeout.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { pipelineInput, runProgress, startRun } from '../../clients/runs';
import { loadRunConfig } from '../../config/load';
import { LocalStorage } from '../../storage/local';
import { heartbeatOverdueMs, loadTemporalConfig } from '../../temporal.config';
import { quietTemporalRuntime } from '../integration/stack';
import { faultConfigFile, faultScope, kill, spawnSophia, tempDir, waitFor } from './harness';

const { cleanups, track, server, client } = faultScope();

describe('a dead worker is visible at once', () => {
  it('shows "no heartbeat for N s from worker W" well before the heartbeat timeout, and clears it once another worker heartbeats', async () => {
    quietTemporalRuntime();
    const dir = tempDir('liveness');
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const srv = await server(dir);
    const env = { TEMPORAL_ADDRESS: srv.address, SOPHIA_GPU_HEARTBEAT_TIMEOUT: '20s', SOPHIA_GPU_PIN_TIMEOUT: '3s', SOPHIA_RETRY_INITIAL_INTERVAL: '500ms' };
    const temporal = loadTemporalConfig(env);
    const timeoutMs = temporal.activities.gpu.heartbeatTimeoutMs;
    const overdueMs = heartbeatOverdueMs(temporal, timeoutMs);
    expect(overdueMs).toBe(5000);
    const c = await client(srv.address);
    const storageDir = path.join(dir, 'storage');
    const storage = new LocalStorage(storageDir);
    // faultConfigFile's run with an SFT stage long enough to be still running when the stall has been seen and cleared.
    const file = path.join(dir, 'run.yaml');
    writeFileSync(file, readFileSync(faultConfigFile(dir).file, 'utf8').replace(/^sft: .*$/m, 'sft: { steps: 2000, evalEvery: 50, chunkSteps: 1000, patience: 100 }'));
    const config = loadRunConfig(file);
    expect(config.sft.steps).toBe(2000);
    const runId = 'liveness';

    track(spawnSophia(['worker', '--queue', 'cpu', '--storage', storageDir], env, dir, 'cpu'));
    const gpuA = track(spawnSophia(['worker', '--queue', 'gpu', '--storage', storageDir], env, dir, 'gpu-a'));
    // The GPU worker's identity is in its own queue's name (`sophia-gpu-w-<id>`, identity `gpu@<id>`).
    const identity = await waitFor('gpu-a to start', () => Promise.resolve(/own queue \S+?-w-([\w.-]+)/.exec(gpuA.output())?.[1]), 60_000);
    await startRun(c, temporal, pipelineInput(runId, config, storage.location, temporal));

    // Healthy: steps move and nothing is overdue.
    const healthy = await waitFor('SFT step 20', async () => {
      const p = await runProgress(c, runId, temporal);
      return (p.live?.step ?? 0) >= 20 ? p : undefined;
    });
    expect(healthy.stalled).toBeUndefined();

    await kill(gpuA);
    const killedAt = Date.now();
    const stalled = await waitFor(
      'the stall to be shown',
      async () => {
        const p = await runProgress(c, runId, temporal);
        return p.stalled ? p : undefined;
      },
      timeoutMs - 2000,
    );
    expect(Date.now() - killedAt).toBeLessThan(timeoutMs - 2000);
    expect(stalled.stalled).toMatchObject({ worker: `gpu@${identity}`, activity: 'runSftChunk', attempt: 1, heartbeated: true });
    expect(stalled.stalled!.seconds).toBeGreaterThanOrEqual(overdueMs / 1000);
    expect(stalled.stalled!.seconds).toBeLessThan(timeoutMs / 1000);
    // The last step before the kill is still shown, with the stall beside it.
    expect(stalled.live?.step).toBeGreaterThanOrEqual(20);

    // `sophia status` says it too (before or after the heartbeat timeout, depending on how fast the process starts).
    // Its output is awaited, not its exit: the process sometimes outlives its output.
    const status = track(spawnSophia(['status', runId], env, dir, 'status'));
    const line = await waitFor('sophia status to print the stall', () => Promise.resolve(/^stalled +(.*)$/m.exec(status.output())?.[1]), 30_000);
    expect(line).toMatch(/^no heartbeat for \d+ s from worker \S+ \(runSftChunk, attempt 1( timed out; attempt 2 waits for a worker)?\)$/);
    expect(line).toContain(` worker gpu@${identity} `);

    // Past the heartbeat timeout the stall goes on, now saying that the next attempt waits for a worker.
    const retrying = await waitFor(
      'the heartbeat timeout',
      async () => {
        const p = await runProgress(c, runId, temporal);
        return p.stalled?.retrying ? p.stalled : undefined;
      },
      timeoutMs + 15_000,
    );
    expect(retrying).toMatchObject({ worker: `gpu@${identity}`, activity: 'runSftChunk', attempt: 1 });
    expect(retrying.message).toContain('attempt 1 timed out; attempt 2 waits for a worker');
    expect(retrying.seconds).toBeGreaterThanOrEqual(timeoutMs / 1000);

    // Another worker takes the retry over: the stall clears as it heartbeats.
    const gpuB = track(spawnSophia(['worker', '--queue', 'gpu', '--storage', storageDir], env, dir, 'gpu-b'));
    const identityB = await waitFor('gpu-b to start', () => Promise.resolve(/own queue \S+?-w-([\w.-]+)/.exec(gpuB.output())?.[1]), 60_000);
    const resumed = await waitFor(
      'the stall to clear on the new worker',
      async () => {
        const p = await runProgress(c, runId, temporal);
        return !p.stalled && (p.live?.step ?? 0) > stalled.live!.step ? p : undefined;
      },
      90_000,
    );
    expect(resumed.stalled).toBeUndefined();
    expect(identityB).not.toBe(identity);
    expect(gpuB.output()).toMatch(/engine loaded from storage/);
  });
});
