/**
 * `sophia run`'s watch and its interruption, with real processes (issue 20 items 7 and 8):
 *  1. the Temporal server stops for 25 s and starts again (same SQLite file, same port) while `sophia run --workers`
 *     watches a run: the watch notes the lost server, reconnects and the command ends with the completed run (exit 0);
 *  2. SIGINT to `sophia run` (embedded server, in-process workers): it stops its workers within the shutdown grace
 *     time, prints the command that re-attaches and exits with 130; running that command finishes the run.
 * Each test uses its own dev server and storage folder.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { quietTemporalRuntime } from '../integration/stack';
import { FAST_FAILOVER, embeddedServerOf, faultConfigFile, faultScope, spawnSophia, tempDir, waitForStep } from './harness';

const { cleanups, track, server, client } = faultScope();

function scratch(name: string): string {
  const dir = tempDir(name);
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

describe('sophia run: watching and interrupting', () => {
  it('keeps watching across a restart of the Temporal server and ends with the completed run', async () => {
    quietTemporalRuntime();
    const dir = scratch('watch-restart');
    const srv = await server(dir);
    const port = Number(srv.address.split(':')[1]);
    const { file } = faultConfigFile(dir);
    const env = { SOPHIA_HOME: path.join(dir, 'home'), TEMPORAL_ADDRESS: srv.address, ...FAST_FAILOVER };
    const cli = track(spawnSophia(['run', '--config', file, '--run-id', 'watch-restart', '--storage', path.join(dir, 'storage'), '--workers'], env, dir, 'cli'));
    const c = await client(srv.address);
    await waitForStep(c, 'watch-restart', 30);
    await srv.stop();
    // Down for longer than the client retries a call (about 20 s): the watch's calls fail, not just slow down.
    await new Promise((r) => setTimeout(r, 25_000));
    await server(dir, port);
    expect(await cli.exited, cli.output()).toBe(0);
    const out = cli.output();
    expect(out).toMatch(/finished +completed/);
    expect(out).toMatch(/✓ sftWarmup +100 steps/);
    expect(out).toContain('lost the Temporal server');
    expect(out).toMatch(/reconnected to the Temporal server after/);
  });

  it('stops its workers on SIGINT, prints how to re-attach and exits 130; the printed command finishes the run', async () => {
    const dir = scratch('watch-sigint');
    const home = path.join(dir, 'home');
    const { file } = faultConfigFile(dir);
    const graceMs = 5000;
    const env = { SOPHIA_HOME: home, ...FAST_FAILOVER, SOPHIA_SHUTDOWN_GRACE: `${graceMs}ms`, TEMPORAL_ADDRESS: '' };
    const args = ['run', '--config', file, '--run-id', 'watch-sigint', '--storage', path.join(dir, 'storage')];
    const first = track(spawnSophia(args, env, dir, 'cli-a'));
    const record = await embeddedServerOf(home);
    quietTemporalRuntime();
    const c = await client(record.address);
    await waitForStep(c, 'watch-sigint', 10);
    const sent = Date.now();
    first.child.kill('SIGINT');
    expect(await first.exited, first.output()).toBe(130);
    // The grace time, plus stopping the embedded server and closing connections.
    expect(Date.now() - sent).toBeLessThan(graceMs + 15_000);
    const command = /watch it again with: (sophia run .*)$/m.exec(first.output())?.[1];
    expect(command).toBe(`sophia run ${args.slice(1).join(' ')}`);

    const second = track(spawnSophia(command!.split(' ').slice(1), env, dir, 'cli-b'));
    cleanups.push(() => {
      // If the second command failed, the server it started is still up (its record, if any, names it).
      const record = path.join(home, 'embedded', 'server.json');
      if (existsSync(record)) process.kill((JSON.parse(readFileSync(record, 'utf8')) as { pid: number }).pid, 'SIGTERM');
    });
    expect(await second.exited, second.output()).toBe(0);
    const out = second.output();
    expect(out).toContain('attached to the running run');
    expect(out).toMatch(/finished +completed/);
    expect(out).toMatch(/✓ sftWarmup +100 steps/);
  });
});
