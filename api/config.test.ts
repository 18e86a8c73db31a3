import { describe, expect, it } from 'vitest';
import { ConfigError } from '../common/errors';
import { findKey } from './common/auth';
import { loadApiConfig, parseApiKeys } from './config';

describe('API keys', () => {
  it('parses name:scopes:secret entries; write implies read; only digests are kept', () => {
    const keys = parseApiKeys('ci:read+write:aaaaaaaaaaaaaaaa1\n# comment\nviewer:read:bbbbbbbbbbbbbbbb2', 'SOPHIA_API_KEYS');
    expect(keys.map((k) => [k.name, [...k.scopes].sort()])).toEqual([
      ['ci', ['read', 'write']],
      ['viewer', ['read']],
    ]);
    expect(JSON.stringify(keys)).not.toContain('aaaaaaaaaaaaaaaa1');
    expect([...parseApiKeys('w:write:cccccccccccccccc3', 'X')[0]!.scopes].sort()).toEqual(['read', 'write']);
  });

  it('rejects malformed entries naming the entry, never echoing the secret', () => {
    const cases: [string, RegExp][] = [
      ['justasecret', /entry 1.*name:scopes:secret/],
      ['a:admin:cccccccccccccccccccc', /unknown scope "admin"/],
      ['a:read:short', /shorter than 16/],
      ['a b:read:cccccccccccccccccccc', /key name/],
      ['a:read:cccccccccccccccccccc,a:write:dddddddddddddddddddd', /entry 2.*appears twice/],
    ];
    for (const [text, message] of cases) {
      let err: unknown;
      try {
        parseApiKeys(text, 'SOPHIA_API_KEYS');
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(message);
      expect((err as Error).message).not.toContain('cccccccccccccccccccc');
    }
  });

  it('finds the key for a token and nothing for a wrong one', () => {
    const keys = parseApiKeys('a:read:aaaaaaaaaaaaaaaa1,b:write:bbbbbbbbbbbbbbbb2', 'K');
    expect(findKey(keys, 'bbbbbbbbbbbbbbbb2')?.name).toBe('b');
    expect(findKey(keys, 'bbbbbbbbbbbbbbbb3')).toBeUndefined();
    expect(findKey(keys, '')).toBeUndefined();
  });

  it('refuses to start without keys and validates numbers, naming the variable', () => {
    expect(() => loadApiConfig({}, '/tmp/s')).toThrow(/SOPHIA_API_KEYS: no API keys/);
    const env = { SOPHIA_API_KEYS: 'a:read:aaaaaaaaaaaaaaaa1' };
    expect(loadApiConfig(env, '/tmp/s')).toMatchObject({ host: '127.0.0.1', port: 8080, bodyLimitBytes: 262144, storage: '/tmp/s' });
    expect(() => loadApiConfig({ ...env, SOPHIA_API_PORT: 'http' }, '/tmp/s')).toThrow(/SOPHIA_API_PORT/);
    expect(() => loadApiConfig({ ...env, SOPHIA_API_BODY_LIMIT: '10' }, '/tmp/s')).toThrow(/SOPHIA_API_BODY_LIMIT/);
    expect(() => loadApiConfig({ ...env, SOPHIA_API_KEYS_FILE: '/nonexistent/keys' }, '/tmp/s')).toThrow(/SOPHIA_API_KEYS_FILE: cannot read/);
  });
});

describe('run limits', () => {
  const env = { SOPHIA_API_KEYS: 'a:read:aaaaaaaaaaaaaaaa1' };
  it('has defaults for the deployment and reads each from its variable', () => {
    expect(loadApiConfig(env, '/tmp/s').limits).toEqual({ minScheduleIntervalMs: 3_600_000, maxBackfillRuns: 10, maxRunningRuns: 8, maxRunningRunsPerLine: 2 });
    const set = { ...env, SOPHIA_API_MIN_SCHEDULE_INTERVAL: '15m', SOPHIA_API_MAX_BACKFILL_RUNS: '3', SOPHIA_API_MAX_RUNNING_RUNS: '20', SOPHIA_API_MAX_RUNNING_RUNS_PER_LINE: '1' };
    expect(loadApiConfig(set, '/tmp/s').limits).toEqual({ minScheduleIntervalMs: 900_000, maxBackfillRuns: 3, maxRunningRuns: 20, maxRunningRunsPerLine: 1 });
  });

  it('refuses bad values, naming the variable', () => {
    expect(() => loadApiConfig({ ...env, SOPHIA_API_MIN_SCHEDULE_INTERVAL: 'hourly' }, '/tmp/s')).toThrow(/SOPHIA_API_MIN_SCHEDULE_INTERVAL: "hourly" is not a duration of at least 1s/);
    expect(() => loadApiConfig({ ...env, SOPHIA_API_MIN_SCHEDULE_INTERVAL: '10ms' }, '/tmp/s')).toThrow(/SOPHIA_API_MIN_SCHEDULE_INTERVAL/);
    expect(() => loadApiConfig({ ...env, SOPHIA_API_MAX_BACKFILL_RUNS: '0' }, '/tmp/s')).toThrow(/SOPHIA_API_MAX_BACKFILL_RUNS/);
    expect(() => loadApiConfig({ ...env, SOPHIA_API_MAX_RUNNING_RUNS: 'many' }, '/tmp/s')).toThrow(/SOPHIA_API_MAX_RUNNING_RUNS: "many"/);
    expect(() => loadApiConfig({ ...env, SOPHIA_API_MAX_RUNNING_RUNS_PER_LINE: '-1' }, '/tmp/s')).toThrow(/SOPHIA_API_MAX_RUNNING_RUNS_PER_LINE/);
  });
});

describe('API environment', () => {
  it('documents every variable it reads in the README', async () => {
    const { readFileSync } = await import('node:fs');
    const { API_ENV_VARS } = await import('./config');
    const readme = readFileSync(`${__dirname}/../README.md`, 'utf8');
    expect(API_ENV_VARS.map((v) => v.name).filter((name) => !readme.includes(`\`${name}\``))).toEqual([]);
  });
});
