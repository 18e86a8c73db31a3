import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeOwnedFolder, removeDeadFolders } from './owned-folders';

describe('owned temp folders', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'sophia-owned-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it("removes the folders of this host's dead processes, and only those", async () => {
    const dead = spawnSync(process.execPath, ['-e', '0']).pid; // a process that has exited
    const mine = await makeOwnedFolder(root, 'x-');
    expect(path.basename(mine)).toMatch(new RegExp(`^x-${process.pid}-[0-9a-f]{12}@${hostname().replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`));
    const names = [`x-${dead}-00aa11bb22cc@${hostname()}`, `x-${dead}-00aa11bb22cc@another-host`, `y-${dead}-00aa11bb22cc@${hostname()}`, 'x-not-a-pid'];
    for (const name of names) mkdirSync(path.join(root, name));
    expect(await removeDeadFolders(root, 'x-')).toEqual([names[0]]);
    expect(readdirSync(root).sort()).toEqual([path.basename(mine), ...names.slice(1)].sort());
    expect(existsSync(mine)).toBe(true); // a live process's folder stays
    expect(await removeDeadFolders(path.join(root, 'nowhere'), 'x-')).toEqual([]);
  });
});
