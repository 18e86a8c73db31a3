import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConfigError } from '../common/errors';
import { findTemporalCli } from './embedded-server';
import { main } from './main';
import { defaultRunId } from './run';

describe('sophia CLI arguments', () => {
  afterEach(() => vi.restoreAllMocks());

  it('prints usage for help and fails for unknown commands', async () => {
    const log = vi.spyOn(console, 'log').mockImplementation(() => undefined);
    const error = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    expect(await main(['help'])).toBe(0);
    expect(String(log.mock.calls[0]?.[0])).toMatch(/usage: sophia <command>/);
    expect(await main(['frobnicate'])).toBe(2);
    expect(String(error.mock.calls[0]?.[0])).toMatch(/unknown command "frobnicate"/);
  });

  it('rejects bad options before starting anything', async () => {
    const error = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    expect(await main(['run', '--steps', 'many'])).toBe(2);
    expect(String(error.mock.calls[0]?.[0])).toMatch(/--steps: "many" is not an integer ≥ 1/);
    expect(await main(['run', '--bogus'])).toBe(2);
    expect(String(error.mock.calls[1]?.[0])).toMatch(/bogus/);
    expect(await main(['run', '--storage', 'gs://bucket'], { PATH: '' })).toBe(2);
    expect(String(error.mock.calls[2]?.[0])).toMatch(/unsupported storage URL/);
    expect(await main(['run', '--storage', '/tmp/x'], { TEMPORAL_ADDRESS: 'not an address' })).toBe(2);
    expect(String(error.mock.calls[3]?.[0])).toMatch(/TEMPORAL_ADDRESS: "not an address" is not host:port/);
    expect(await main(['run', '--run-id', '../escape'])).toBe(2);
    expect(String(error.mock.calls[4]?.[0])).toMatch(/"\.\.\/escape": not a valid run id/);
  });

  it('makes readable run ids', () => {
    expect(defaultRunId(new Date(2026, 10, 27, 8, 5, 9))).toBe('run-20261127-080509');
  });

  it('names the variable when the configured temporal CLI is missing', () => {
    expect(() => findTemporalCli('/nowhere', { SOPHIA_TEMPORAL_CLI: '/nowhere/temporal' })).toThrow(ConfigError);
    expect(() => findTemporalCli('/nowhere', { PATH: '' })).toThrow(/npm run tools:install/);
  });
});
