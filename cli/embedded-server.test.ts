/**
 * Start-up of the embedded dev server when the server process dies before it answers (a port taken between the pick
 * and the bind): it is started again, a bounded number of times, and the error names the log. A stand-in executable
 * (a shell script) plays the dying server; the real server is started in test/integration/temporal-restart.test.ts.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startEmbeddedServer } from './embedded-server';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('startEmbeddedServer', () => {
  it('starts a server that exits during start-up again, three times in all, then names its log', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sophia-embedded-'));
    dirs.push(dir);
    const script = path.join(dir, 'dying-temporal');
    writeFileSync(script, '#!/bin/sh\necho "bind: address already in use"\nexit 2\n');
    chmodSync(script, 0o755);
    await expect(startEmbeddedServer({ dir: path.join(dir, 'embedded'), executable: script })).rejects.toThrow(/exited during start-up 3 times; see .*server\.log/);
    const log = readFileSync(path.join(dir, 'embedded', 'server.log'), 'utf8');
    expect(log.match(/address already in use/g)).toHaveLength(3);
  });
});
