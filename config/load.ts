/**
 * Reading a run config from the command line's `--config` argument: a preset name or a YAML/JSON file.
 */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { ConfigError } from '../common/errors';
import { RUN_PRESETS, type RunConfig, resolveRunConfig } from './run-config';

export function loadRunConfig(arg: string): RunConfig {
  if (Object.hasOwn(RUN_PRESETS, arg)) return resolveRunConfig(arg, `preset ${arg}`);
  let text: string;
  try {
    text = readFileSync(arg, 'utf8');
  } catch (err) {
    throw new ConfigError('--config', `${JSON.stringify(arg)} is neither a preset nor a readable file (${(err as NodeJS.ErrnoException).code ?? String(err)})`, {
      hint: `Use one of ${Object.keys(RUN_PRESETS).join(', ')}, or the path of a YAML or JSON file`,
    });
  }
  let data: unknown;
  try {
    data = parse(text);
  } catch (err) {
    throw new ConfigError(arg, `is not valid YAML/JSON: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new ConfigError(arg, 'must contain a mapping of fields (e.g. `extends: tiny`)');
  return resolveRunConfig(data as Record<string, unknown>, arg);
}
