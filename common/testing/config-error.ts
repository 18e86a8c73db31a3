/** Test helper: the ConfigError `fn` throws (failing the test if it throws anything else, or nothing). */
import { expect } from 'vitest';
import { ConfigError } from '../errors';

export function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}
