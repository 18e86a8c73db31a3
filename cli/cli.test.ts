import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConfigError } from '../common/errors';
import { findTemporalCli } from './embedded-server';
import { main } from './main';

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
    const cases: [string[], Record<string, string>, RegExp][] = [
      [['run'], {}, /--config is required/],
      [['run', '--config', 'ci', '--bogus'], {}, /bogus/],
      [['run', '--config', 'nope'], {}, /"nope" is neither a preset nor a readable file/],
      [['run', '--config', 'paper'], {}, /engine\.model: missing: the torch engine needs the model to train; add engine: \{ kind: torch, model: \/path\/to\/Qwen2\.5-VL-7B-Instruct/],
      [['run', '--config', 'ci', '--storage', 'gs://bucket'], { PATH: '' }, /unsupported storage URL/],
      [['run', '--config', 'ci', '--storage', '/tmp/x'], { TEMPORAL_ADDRESS: 'not an address' }, /TEMPORAL_ADDRESS: "not an address" is not host:port/],
      [['run', '--config', 'ci', '--run-id', '../escape'], {}, /"\.\.\/escape": not a valid run id/],
      [['status'], {}, /status needs exactly one RUN_ID/],
      [['worker', '--queue', 'tpu'], {}, /--queue: \["tpu"\]/],
      [['sft', '--preset', 'nope'], {}, /--preset: "nope" is not a preset. Use one of ci, tiny, paper/],
      [['sft', '--preset', 'paper'], {}, /engine\.model: missing: the torch engine needs the model to train/],
      [['sft', '--preset', 'ci'], { SOPHIA_MAX_RUN_STEPS: '10' }, /sft\.steps: the run would take 196 optimizer steps; this deployment allows 10 \(SOPHIA_MAX_RUN_STEPS\)/],
      [['run', '--config', 'ci'], { SOPHIA_MAX_RUN_STORAGE_GB: '0.0001' }, /data\.perFamily: the run would store about [\d.]+ [GM]iB .* allows 0\.1 MiB \(SOPHIA_MAX_RUN_STORAGE_GB\)/],
      [['ablate', '--config', 'ci'], { SOPHIA_MAX_RUN_MEMORY_GB: '0.001' }, /model: the run's engines need about .* allows 1\.0 MiB \(SOPHIA_MAX_RUN_MEMORY_GB\)/],
    ];
    for (const [argv, env, message] of cases) {
      expect(await main(argv, env)).toBe(2);
      expect(String(error.mock.calls.at(-1)?.[0])).toMatch(message);
    }
  });

  it('names the variable when the configured temporal CLI is missing', () => {
    expect(() => findTemporalCli('/nowhere', { SOPHIA_TEMPORAL_CLI: '/nowhere/temporal' })).toThrow(ConfigError);
    expect(() => findTemporalCli('/nowhere', { PATH: '' })).toThrow(/npm run tools:install/);
  });
});
