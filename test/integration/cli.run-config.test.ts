/**
 * `sophia run --run-id X` against a running run X with another config (issue 20 item 4): the real command, on the
 * stack's Temporal server, refuses with exit 2 and a message naming the run, the differing top-level fields and
 * the fixes, instead of attaching to X and silently ignoring the new config. The running run is started here on a
 * private task queue that no worker polls (so it stays running, and no shared worker picks it up), and terminated
 * at the end.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pipelineInput, runningConfigDifference, startRun } from '../../clients/runs';
import { connectClient } from '../../clients/temporal';
import { pipelineWorkflowId } from '../../common/run-layout';
import { loadRunConfig } from '../../config/load';
import type { TemporalConfig } from '../../temporal.config';
import { spawnSophia } from '../faults/harness';
import { quietTemporalRuntime, requireStack, stackTemporalConfig } from './stack';

describe('sophia run --run-id of a running run with another config', () => {
  const suffix = randomBytes(4).toString('hex');
  const queues = { SOPHIA_TASK_QUEUE_CPU: `sophia-cpu-cfg-${suffix}`, SOPHIA_TASK_QUEUE_GPU: `sophia-gpu-cfg-${suffix}` };
  const runId = `cfg-${suffix}`;
  let dir: string;
  let temporal: TemporalConfig;
  let client: Client;

  beforeAll(async () => {
    quietTemporalRuntime();
    await requireStack();
    dir = mkdtempSync(path.join(tmpdir(), 'sophia-cli-cfg-'));
    temporal = stackTemporalConfig(queues);
    client = await connectClient(temporal);
    const { state } = await startRun(client, temporal, pipelineInput(runId, loadRunConfig('ci'), `local:${dir}`, temporal));
    expect(state).toBe('started');
  }, 60_000);

  afterAll(async () => {
    await client?.workflow.getHandle(pipelineWorkflowId(temporal.deployment, runId)).terminate('cli config test finished').catch(() => undefined);
    await client?.connection.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('refuses (exit 2) naming the run, the differing fields and the fixes; the same config would attach', async () => {
    const file = path.join(dir, 'other.yaml');
    writeFileSync(file, ['extends: ci', 'sft: { steps: 7 }', 'seed: 99', ''].join('\n'));
    const env = { ...queues, TEMPORAL_ADDRESS: temporal.connection.address, TEMPORAL_NAMESPACE: temporal.connection.namespace, SOPHIA_HOME: path.join(dir, 'home') };
    const cli = spawnSophia(['run', '--config', file, '--run-id', runId, '--storage', path.join(dir, 'storage')], env, dir, 'cli');
    // The old command attached to the running run and watched it (here: forever, no worker polls its queue).
    const code = await Promise.race([cli.exited, new Promise<'still running'>((resolve) => setTimeout(() => resolve('still running'), 30_000))]);
    if (code === 'still running') cli.child.kill('SIGKILL');
    const output = cli.output();
    expect(code, output).toBe(2);
    expect(output).toMatch(new RegExp(`run ${runId} is running with another config: seed, sft differ`));
    expect(output).toMatch(/--config of the running run to watch it/);
    expect(output).toMatch(/another --run-id/);
    expect(output).toMatch(new RegExp(`sophia stop ${runId}`));
    expect(output).not.toMatch(/attached to the running run/);
    // Its own config is no difference: that command attaches, as before.
    expect(await runningConfigDifference(client, runId, loadRunConfig('ci'))).toBeUndefined();
  }, 60_000);
});
