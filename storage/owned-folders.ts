/**
 * Temp folders that say which process made them, so that the ones a killed process left behind can be removed by the
 * next process without touching those of live ones (several workers may share a folder): a name is
 * `{prefix}{pid}-{random}@{host}`, and a folder whose process is gone from this host is dead.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import * as path from 'node:path';

/** A fresh folder `{root}/{prefix}{pid}-{random}@{host}`, created (and `root` with it). */
export async function makeOwnedFolder(root: string, prefix: string): Promise<string> {
  const dir = path.join(root, `${prefix}${process.pid}-${randomBytes(6).toString('hex')}@${hostname()}`);
  await mkdir(dir, { recursive: true });
  return dir;
}

/** Removes the folders in `root` named `{prefix}…` by `makeOwnedFolder` whose process no longer runs on this host; returns their names. */
export async function removeDeadFolders(root: string, prefix: string): Promise<string[]> {
  const removed: string[] = [];
  let names: string[];
  try {
    names = await readdir(root);
  } catch {
    return removed; // no folder yet: nothing left behind
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const match = /^(\d+)-[0-9a-f]+@(.+)$/.exec(name.slice(prefix.length));
    if (!match || match[2] !== hostname()) continue;
    if (isAlive(Number(match[1]))) continue;
    await rm(path.join(root, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}
