/** Where the CLI keeps local state: SOPHIA_HOME (default `.sophia/` in the repository). */
import * as path from 'node:path';

type Env = Readonly<Record<string, string | undefined>>;

/** Sophia's local state folder: the embedded server's database, the default local storage. */
export function sophiaHome(env: Env, repoRoot: string): string {
  return env.SOPHIA_HOME ? path.resolve(env.SOPHIA_HOME) : path.join(repoRoot, '.sophia');
}

/** SOPHIA_STORAGE, else `{SOPHIA_HOME}/storage`. */
export function defaultStorage(env: Env, repoRoot: string): string {
  return env.SOPHIA_STORAGE ?? path.join(sophiaHome(env, repoRoot), 'storage');
}
