/**
 * The API's settings, read once from the environment at start and validated (errors name the variable).
 *
 * API keys: `SOPHIA_API_KEYS` (inline) or `SOPHIA_API_KEYS_FILE` (a file, e.g. a mounted secret), one key per
 * entry, `name:scopes:secret`, entries separated by newlines or commas, scopes joined by `+` (`read`,
 * `write`; `write` also grants `read`). Only sha256 digests of the secrets are kept in memory.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { formatDurationMs, parseDurationMs } from '../common/duration';
import { ConfigError } from '../common/errors';
import type { RunningLimits } from '../activities/run-room';
import { type RunLimits as RunResourceLimits, loadRunLimits } from '../config/limits';

type Env = Readonly<Record<string, string | undefined>>;

const SCOPES = ['read', 'write'] as const;
export type Scope = (typeof SCOPES)[number];

export interface ApiKey {
  /** Who holds the key (logged with each request; never the secret). */
  name: string;
  scopes: ReadonlySet<Scope>;
  /** sha256 of the secret. */
  digest: Buffer;
}

export interface ApiConfig {
  host: string;
  port: number;
  keys: readonly ApiKey[];
  /** Largest accepted request body, in bytes. */
  bodyLimitBytes: number;
  /** Where runs keep their data: a directory or s3://bucket/prefix (the workers must use the same). */
  storage: string;
  /** How often the events stream polls a run's progress and metrics. */
  eventsPollMs: number;
  /** What runs and schedules may start (docs/security.md). */
  limits: RunLimits;
  /** What one run may ask for: engine memory, storage, steps (`config/limits.ts`, `SOPHIA_MAX_RUN_*`). */
  runResources: RunResourceLimits;
}

/**
 * Bounds on how many runs requests can start, for the whole deployment: a schedule fires at most once per
 * `minScheduleIntervalMs` (`every`, and the gaps between a cron expression's fire times), a backfill starts at most
 * `maxBackfillRuns` runs, and `POST /runs` and schedule triggers and backfills are refused (409) while
 * `maxRunningRuns` pipelines run, or `maxRunningRunsPerLine` of the same model line; a schedule's firing over them
 * is skipped (the schedule carries them: `activities/run-room.ts`).
 */
export interface RunLimits extends RunningLimits {
  minScheduleIntervalMs: number;
  maxBackfillRuns: number;
}

export interface ApiEnvVar {
  name: string;
  doc: string;
}

/** Every variable the API reads (the README documents each one; a test checks). */
export const API_ENV_VARS: readonly ApiEnvVar[] = [
  { name: 'SOPHIA_API_HOST', doc: 'interface to listen on (default 127.0.0.1; 0.0.0.0 in a container)' },
  { name: 'SOPHIA_API_PORT', doc: 'port to listen on (default 8080)' },
  { name: 'SOPHIA_API_KEYS', doc: 'API keys, `name:scopes:secret` separated by commas, scopes `read`, `write` or `read+write`' },
  { name: 'SOPHIA_API_KEYS_FILE', doc: 'a file with the same entries, one per line (a mounted secret); used with or instead of SOPHIA_API_KEYS' },
  { name: 'SOPHIA_API_BODY_LIMIT', doc: 'largest request body in bytes (default 262144)' },
  { name: 'SOPHIA_API_EVENTS_POLL', doc: 'how often the events stream polls a run, in ms (default 1000)' },
  { name: 'SOPHIA_API_MIN_SCHEDULE_INTERVAL', doc: 'shortest interval between a schedule\'s runs (`every`, or between cron fire times), e.g. 1h (default 1h)' },
  { name: 'SOPHIA_API_MAX_BACKFILL_RUNS', doc: 'most runs one backfill may start (default 10)' },
  { name: 'SOPHIA_API_MAX_RUNNING_RUNS', doc: 'runs running at once in the deployment beyond which POST /runs and schedule trigger/backfill are refused, and a schedule\'s firings start no run (default 8)' },
  { name: 'SOPHIA_API_MAX_RUNNING_RUNS_PER_LINE', doc: 'the same, per model line (default 2)' },
];

const MIN_SECRET = 16;

export function digestOf(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

/** Parses key entries; `source` names the variable for errors (secrets are never echoed). */
export function parseApiKeys(text: string, source: string): ApiKey[] {
  const keys: ApiKey[] = [];
  const entries = text
    .split(/[\n,]/)
    .map((e) => e.trim())
    .filter((e) => e.length > 0 && !e.startsWith('#'));
  entries.forEach((entry, i) => {
    const first = entry.indexOf(':');
    const second = entry.indexOf(':', first + 1);
    const where = `${source} entry ${i + 1}`;
    if (first <= 0 || second <= first) throw new ConfigError(where, 'is not `name:scopes:secret`', { hint: 'e.g. ci-bot:read+write:<a random secret of 16+ characters>' });
    const name = entry.slice(0, first);
    const scopes = entry.slice(first + 1, second).split('+');
    const secret = entry.slice(second + 1);
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(name)) throw new ConfigError(where, `key name ${JSON.stringify(name)} must be 1–64 letters, digits, ".", "_" or "-"`);
    for (const s of scopes) {
      if (!(SCOPES as readonly string[]).includes(s)) throw new ConfigError(where, `unknown scope ${JSON.stringify(s)}`, { hint: 'Use read, write or read+write' });
    }
    if (secret.length < MIN_SECRET) throw new ConfigError(where, `the secret of key ${name} is shorter than ${MIN_SECRET} characters`, { hint: 'Generate one with `openssl rand -hex 24`' });
    if (keys.some((k) => k.name === name)) throw new ConfigError(where, `key name ${name} appears twice`);
    const granted = new Set(scopes as Scope[]);
    if (granted.has('write')) granted.add('read');
    keys.push({ name, scopes: granted, digest: digestOf(secret) });
  });
  return keys;
}

function intOf(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) throw new ConfigError(name, `${JSON.stringify(raw)} is not an integer in [${min}, ${max}]`);
  return value;
}

/** The API config from the environment; `storage` is the resolved storage location (SOPHIA_STORAGE or the default). */
export function loadApiConfig(env: Env, storage: string): ApiConfig {
  const keys = [
    ...(env.SOPHIA_API_KEYS ? parseApiKeys(env.SOPHIA_API_KEYS, 'SOPHIA_API_KEYS') : []),
    ...(env.SOPHIA_API_KEYS_FILE ? parseApiKeys(readKeysFile(env.SOPHIA_API_KEYS_FILE), 'SOPHIA_API_KEYS_FILE') : []),
  ];
  const names = new Set<string>();
  for (const k of keys) {
    if (names.has(k.name)) throw new ConfigError('SOPHIA_API_KEYS', `key name ${k.name} is defined in both SOPHIA_API_KEYS and SOPHIA_API_KEYS_FILE`);
    names.add(k.name);
  }
  if (keys.length === 0) {
    throw new ConfigError('SOPHIA_API_KEYS', 'no API keys are configured, so no request could be authorized', {
      hint: 'Set SOPHIA_API_KEYS=admin:read+write:$(openssl rand -hex 24) or SOPHIA_API_KEYS_FILE to a file of such entries',
    });
  }
  return {
    host: env.SOPHIA_API_HOST || '127.0.0.1',
    port: intOf(env, 'SOPHIA_API_PORT', 8080, 0, 65535),
    keys,
    bodyLimitBytes: intOf(env, 'SOPHIA_API_BODY_LIMIT', 256 * 1024, 1024, 64 * 1024 * 1024),
    storage,
    eventsPollMs: intOf(env, 'SOPHIA_API_EVENTS_POLL', 1000, 50, 60_000),
    limits: {
      minScheduleIntervalMs: durationOf(env, 'SOPHIA_API_MIN_SCHEDULE_INTERVAL', 3_600_000, 1000),
      maxBackfillRuns: intOf(env, 'SOPHIA_API_MAX_BACKFILL_RUNS', 10, 1, 100_000),
      maxRunningRuns: intOf(env, 'SOPHIA_API_MAX_RUNNING_RUNS', 8, 1, 100_000),
      maxRunningRunsPerLine: intOf(env, 'SOPHIA_API_MAX_RUNNING_RUNS_PER_LINE', 2, 1, 100_000),
    },
    runResources: loadRunLimits(env),
  };
}

function durationOf(env: Env, name: string, fallback: number, minMs: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const ms = parseDurationMs(raw);
  if (ms === undefined || ms < minMs) throw new ConfigError(name, `${JSON.stringify(raw)} is not a duration of at least ${formatDurationMs(minMs)}`, { hint: 'e.g. 30m, 1h or 1d' });
  return ms;
}

function readKeysFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError('SOPHIA_API_KEYS_FILE', `cannot read ${JSON.stringify(file)} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
}
