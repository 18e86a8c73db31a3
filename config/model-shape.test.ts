/**
 * A run config whose model cannot be built is refused when the config is read (the CLI, `POST /runs`), naming the
 * run-config field, instead of reaching a worker that would fail to build it.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../common/errors';
import { RUN_PRESETS, mergeConfig, parseRunConfig } from './run-config';

const withModel = (model: Record<string, unknown>) => () => parseRunConfig(mergeConfig(RUN_PRESETS.ci, { model }), 'test');

describe('model shape validation', () => {
  it('refuses a width that the heads do not divide, naming model.width and a width that works', () => {
    expect(withModel({ width: 130, heads: 4 })).toThrow(ConfigError);
    expect(withModel({ width: 130, heads: 4 })).toThrow(/model\.width: 130 is not divisible by heads = 4\. Pick a width that is a multiple of 4/);
  });

  it('refuses a patch that does not divide the image, naming model.patch', () => {
    expect(withModel({ imageSize: 16, patch: 5 })).toThrow(/model\.patch.*5 does not divide image\.size = 16/);
  });

  it('accepts the presets and a consistent custom shape', () => {
    expect(() => parseRunConfig(RUN_PRESETS.tiny, 'tiny')).not.toThrow();
    expect(withModel({ width: 96, heads: 6, imageSize: 20, patch: 5 })).not.toThrow();
  });

  it('refuses generating more tokens than the model has text positions, naming the field', () => {
    const ci = (o: Record<string, unknown>) => () => parseRunConfig(mergeConfig(RUN_PRESETS.ci, o), 'test');
    expect(ci({ evaluation: { maxTokens: 1e9 } })).toThrow(/evaluation\.maxTokens: 1000000000 is not below the model's 128 text positions/);
    expect(ci({ rl: { maxTokens: 128 } })).toThrow(/rl\.maxTokens: 128 is not below/);
    expect(ci({ rewardModel: { data: { maxTokens: 500 } } })).toThrow(/rewardModel\.data\.maxTokens/);
    expect(ci({ model: { maxLength: 256 }, evaluation: { maxTokens: 200 } })).not.toThrow();
  });
});

