/**
 * Where the CLI keeps local state (SOPHIA_HOME, default `.sophia/` in the repository), and where a path the user
 * typed points. The `./sophia` wrapper changes into the repository before starting the CLI and exports the
 * directory it was called from as SOPHIA_CALLER_CWD: a relative `--config`, `--storage`, `--jsonl`, `--json` or
 * `--out` (and SOPHIA_HOME, SOPHIA_STORAGE) means a path from there, not from the repository.
 */
import * as path from 'node:path';

type Env = Readonly<Record<string, string | undefined>>;

/**
 * A path the user typed, as a path from their directory: made absolute from SOPHIA_CALLER_CWD when the wrapper
 * set it; unchanged (as typed, so messages quote it) when this process runs where the user is, or for an
 * absolute path or an `s3://` URL.
 */
export function userPath(p: string, env: Env): string {
  const caller = env.SOPHIA_CALLER_CWD;
  return !caller || path.isAbsolute(p) || /^s3:\/\//i.test(p) ? p : path.resolve(caller, p);
}

/** Sophia's local state folder: the embedded server's database, the default local storage. */
export function sophiaHome(env: Env, repoRoot: string): string {
  return env.SOPHIA_HOME ? path.resolve(userPath(env.SOPHIA_HOME, env)) : path.join(repoRoot, '.sophia');
}

/** SOPHIA_STORAGE, else `{SOPHIA_HOME}/storage`. */
export function defaultStorage(env: Env, repoRoot: string): string {
  return env.SOPHIA_STORAGE ? userPath(env.SOPHIA_STORAGE, env) : path.join(sophiaHome(env, repoRoot), 'storage');
}
