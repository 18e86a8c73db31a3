/**
 * Schemas shared by the feature modules' DTOs, and the run-config part of a request (a preset or a config,
 * plus overrides) resolved and validated into a `RunConfig`, with errors that name the body field.
 */
import { z } from 'zod';
import { ConfigError } from '../../common/errors';
import { type RunLimits, assertWithinLimits } from '../../config/limits';
import { type RunConfig, RUN_PRESETS, RunConfigSchema, assertRunnable, mergeConfig } from '../../config/run-config';
import { ApiError } from './errors';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const NAME_RULE = '1–128 letters, digits, ".", "_" or "-", starting with a letter or digit';

export const RunId = z.string().regex(NAME, `a run id is ${NAME_RULE}`).describe(`Run id: ${NAME_RULE}`);
export const Name = (what: string) => z.string().regex(NAME, `a ${what} is ${NAME_RULE}`).describe(`${what}: ${NAME_RULE}`);

const PRESET_NAMES = Object.keys(RUN_PRESETS) as [keyof typeof RUN_PRESETS, ...(keyof typeof RUN_PRESETS)[]];

/** The run-config fields of a request: exactly one of `preset` and `config`, and optional `overrides`. */
export const RunConfigFields = {
  preset: z.enum(PRESET_NAMES).optional().describe('A built-in preset (ci ≈ 3 min, tiny ≈ 15 min on 2 CPU cores)'),
  config: z
    .record(z.string(), z.unknown())
    .optional()
    .describe('A whole run config (as in a YAML file), or one with `extends: PRESET` and the fields to change'),
  overrides: z.record(z.string(), z.unknown()).optional().describe('Fields deep-merged over the preset or config, e.g. {"sft": {"steps": 50}}'),
};

export const exactlyOneConfig = {
  check: (b: { preset?: unknown; config?: unknown }) => (b.preset === undefined) !== (b.config === undefined),
  params: { message: 'give exactly one of preset or config', path: ['preset'] },
} as const;

function formatPath(path: readonly PropertyKey[]): string {
  return path.map((p) => String(p)).join('.');
}

/** Resolves preset/config + overrides into a validated, runnable config within the deployment's resource limits; 400s name `body.<field>.<path>`. */
export function resolveRequestConfig(
  body: { preset?: string | undefined; config?: Record<string, unknown> | undefined; overrides?: Record<string, unknown> | undefined },
  resources: RunLimits,
): RunConfig {
  let base: unknown;
  let field: string;
  if (body.preset !== undefined) {
    base = RUN_PRESETS[body.preset as keyof typeof RUN_PRESETS];
    field = 'body.overrides';
  } else {
    const { extends: parent, ...rest } = body.config ?? {};
    if (parent !== undefined && (typeof parent !== 'string' || !Object.hasOwn(RUN_PRESETS, parent))) {
      throw new ApiError(400, 'body.config.extends', `body.config.extends: ${JSON.stringify(parent)} is not a preset (use one of ${PRESET_NAMES.join(', ')})`);
    }
    base = parent === undefined ? rest : mergeConfig(RUN_PRESETS[parent as keyof typeof RUN_PRESETS], rest);
    field = 'body.config';
  }
  if (body.overrides !== undefined) field = 'body.overrides';
  const merged = mergeConfig(base, body.overrides);
  const result = RunConfigSchema.safeParse(merged);
  if (!result.success) {
    const issues = result.error.issues.map((issue) => {
      const keys = issue.code === 'unrecognized_keys' ? issue.keys.map((k) => [...issue.path, k]) : [issue.path];
      const why = issue.code === 'unrecognized_keys' ? 'unknown field (remove it or check its spelling)' : issue.message;
      return keys.map((path) => ({ field: path.length ? `${field}.${formatPath(path)}` : field, message: why }));
    }).flat();
    throw new ApiError(400, issues[0]!.field, `invalid run config: ${issues.map((i) => `${i.field}: ${i.message}`).join('; ')}`, issues);
  }
  try {
    assertRunnable(result.data);
    assertWithinLimits(result.data, resources);
  } catch (err) {
    if (err instanceof ConfigError) throw new ApiError(400, `${field}.${err.field}`, err.message);
    throw err;
  }
  return result.data;
}

/** What every error response looks like (for the OpenAPI document). */
export const ErrorBodySchema = z.object({
  statusCode: z.number().int(),
  error: z.string(),
  message: z.string(),
  field: z.string().describe('What to fix: body.<path>, query.<name>, path.<name>, authorization, …'),
  issues: z.array(z.object({ field: z.string(), message: z.string() })).optional(),
});
