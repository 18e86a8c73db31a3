/**
 * A real, small file system for tests that need a full disk: a tmpfs of a few MiB mounted on a fresh temp folder, so
 * writes fail with the kernel's own ENOSPC. Mounting needs root (CAP_SYS_ADMIN); `canMountSmallDisk()` says whether
 * this process may, and tests that need one are skipped where it may not (they say so in their name).
 */
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

export interface SmallDisk {
  /** Where it is mounted. */
  dir: string;
  /** Writes a filler file (a reserved name, which storage listings skip) until the disk is full, or only `bytes`. */
  fill(bytes?: number): void;
  /** Deletes the filler file. */
  free(): void;
  /** Unmounts the disk and removes its folder. */
  unmount(): void;
}

const FILLER = '.sophia-filler';

function run(command: string, args: string[]): boolean {
  return spawnSync(command, args, { stdio: 'ignore' }).status === 0;
}

let mountable: boolean | undefined;

/** Whether this process can mount a tmpfs (tried once). */
export function canMountSmallDisk(): boolean {
  if (mountable === undefined) {
    const dir = mkdtempSync(path.join(tmpdir(), 'sophia-disk-probe-'));
    mountable = process.platform === 'linux' && run('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir]);
    if (mountable) run('umount', [dir]);
    rmSync(dir, { recursive: true, force: true });
  }
  return mountable;
}

/** Mounts a tmpfs of `bytes` (rounded up to pages by the kernel). */
export function mountSmallDisk(bytes: number): SmallDisk {
  const dir = mkdtempSync(path.join(tmpdir(), 'sophia-small-disk-'));
  if (!run('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', dir])) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`cannot mount a ${bytes}-byte tmpfs on ${dir} (needs root)`);
  }
  const filler = path.join(dir, FILLER);
  return {
    dir,
    fill(limit = Number.POSITIVE_INFINITY) {
      const fd = openSync(filler, 'a');
      const chunk = Buffer.alloc(64 << 10);
      try {
        for (let written = 0; written < limit; ) {
          written += writeSync(fd, chunk, 0, Math.min(chunk.length, limit - written));
        }
      } catch (err) {
        if ((err as { code?: string }).code !== 'ENOSPC') throw err;
      } finally {
        closeSync(fd);
      }
    },
    free() {
      rmSync(filler, { force: true });
    },
    unmount() {
      // Lazily if something still holds a file there (a write of a failed test): the mount goes once it lets go.
      if (!run('umount', [dir])) run('umount', ['-l', dir]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
