/**
 * The LLM judges a worker may call, configured by the operator on the worker, never by a run.
 *
 * Why: a run config is written by whoever holds a write-scoped API key. If it could name the judge's URL and the
 * environment variable holding its key, one `POST /runs` could make a worker send any of its secrets (the S3
 * secret, Temporal's API key) as a Bearer token to a listener of the requester's choice. So a run names a judge
 * (`rewardModel.annotator: { kind: judge, name: gpt-judge }`) and the worker looks the name up here:
 *
 *   SOPHIA_JUDGES='{"gpt-judge": {"baseUrl": "https://api.openai.com/v1", "model": "gpt-4o", "apiKeyEnv": "OPENAI_API_KEY"}}'
 *   SOPHIA_JUDGES_FILE=/etc/sophia/judges.yaml      # the same mapping as YAML or JSON
 *
 * Each judge: `baseUrl` (http or https, up to `/v1`; no credentials, query or fragment), `model`, optionally
 * `apiKeyEnv` (the worker variable holding its key: set it on every CPU worker), `concurrency`, `maxRetries`,
 * `timeoutMs`, `temperature`. The key of a judge is only ever sent to that judge's `baseUrl` (the annotator does
 * not follow redirects). An unknown name, or a judge whose key variable is unset, fails the activity at once
 * (a `ConfigError`: not retried) with the variable to set.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../common/errors';
import { JUDGE_NAME } from '../config/run-config';
import { OpenAiCompatibleAnnotator, type OpenAiAnnotatorOptions } from './llm-annotator';

type Env = Readonly<Record<string, string | undefined>>;

const JudgeSchema = z.strictObject({
  baseUrl: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL up to /v1, e.g. https://api.openai.com/v1' }),
  model: z.string().min(1),
  apiKeyEnv: z.string().regex(/^[A-Z_][A-Z0-9_]*$/, 'must be an environment variable name').optional(),
  concurrency: z.number().int().min(1).max(64).optional(),
  maxRetries: z.number().int().min(0).max(20).optional(),
  timeoutMs: z.number().int().min(1).max(3_600_000).optional(),
  temperature: z.number().min(0).max(2).optional(),
});
export type JudgeConfig = z.infer<typeof JudgeSchema>;

const JudgesSchema = z.record(z.string().regex(JUDGE_NAME, 'a judge name is 1–64 letters, digits, ".", "_" or "-"'), JudgeSchema);

const HINT = 'Configure judges on the workers: SOPHIA_JUDGES=\'{"NAME": {"baseUrl": "https://…/v1", "model": "…", "apiKeyEnv": "…"}}\' or SOPHIA_JUDGES_FILE=FILE (YAML or JSON)';

function parseJudges(text: string, source: string): Record<string, JudgeConfig> {
  let raw: unknown;
  try {
    raw = parseYaml(text); // YAML is a superset of JSON: one parser for both
  } catch (err) {
    throw new ConfigError(source, `is not JSON or YAML (${(err as Error).message.split('\n')[0]})`, { hint: HINT });
  }
  const result = JudgesSchema.safeParse(raw ?? {});
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw new ConfigError(`${source}${issue.path.map((p) => `.${String(p)}`).join('')}`, issue.message, { hint: HINT });
  }
  return result.data;
}

/** The judges configured on this worker (`SOPHIA_JUDGES` and `SOPHIA_JUDGES_FILE`; a name in both is an error). */
export function loadJudges(env: Env): Record<string, JudgeConfig> {
  const inline = env.SOPHIA_JUDGES ? parseJudges(env.SOPHIA_JUDGES, 'SOPHIA_JUDGES') : {};
  let fromFile: Record<string, JudgeConfig> = {};
  if (env.SOPHIA_JUDGES_FILE) {
    let text: string;
    try {
      text = readFileSync(env.SOPHIA_JUDGES_FILE, 'utf8');
    } catch (err) {
      throw new ConfigError('SOPHIA_JUDGES_FILE', `cannot read ${JSON.stringify(env.SOPHIA_JUDGES_FILE)} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
    fromFile = parseJudges(text, 'SOPHIA_JUDGES_FILE');
  }
  for (const name of Object.keys(fromFile)) {
    if (Object.hasOwn(inline, name)) throw new ConfigError('SOPHIA_JUDGES', `judge ${name} is defined in both SOPHIA_JUDGES and SOPHIA_JUDGES_FILE`);
  }
  return { ...inline, ...fromFile };
}

/** The annotator for the judge `name` as this worker configures it; `fetchImpl` for tests. */
export function judgeAnnotator(name: string, env: Env, extra: Pick<OpenAiAnnotatorOptions, 'fetchImpl' | 'retryDelayMs'> = {}): OpenAiCompatibleAnnotator {
  const judges = loadJudges(env);
  const judge = Object.hasOwn(judges, name) ? judges[name] : undefined;
  if (!judge) {
    const known = Object.keys(judges);
    throw new ConfigError('rewardModel.annotator.name', `no judge named ${JSON.stringify(name)} is configured on this worker (${known.length ? `configured: ${known.join(', ')}` : 'none is: SOPHIA_JUDGES and SOPHIA_JUDGES_FILE are unset'})`, { hint: HINT });
  }
  let apiKey: string | undefined;
  if (judge.apiKeyEnv) {
    apiKey = env[judge.apiKeyEnv];
    if (!apiKey) throw new ConfigError(judge.apiKeyEnv, `judge ${name} takes its API key from ${judge.apiKeyEnv}, which is not set on this worker`, { hint: `Set ${judge.apiKeyEnv} on every CPU worker` });
  }
  const { apiKeyEnv: _env, ...options } = judge;
  return new OpenAiCompatibleAnnotator({ ...options, ...extra, ...(apiKey ? { apiKey } : {}) });
}
