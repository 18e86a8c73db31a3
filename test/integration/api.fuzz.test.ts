/**
 * Schema-based fuzzing of the API: schemathesis (pinned in infra/local/fuzz-requirements.txt, installed into
 * .tools/fuzz-venv by `bash infra/local/install-tools.sh`) reads /openapi.json and sends a bounded number of
 * generated requests to every operation, valid and invalid, with the admin key. It passes when no response is
 * a 5xx, every response matches the document (status, content type, headers, body schema), invalid data is
 * rejected, and every 4xx carries the JSON error body naming the field (test/fuzz/hooks.py).
 *
 * The API runs without workers: the runs and schedules the fuzzer creates are accepted by Temporal but never
 * train. They are terminated and deleted afterwards.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiHarness, startApiHarness } from './api-harness';
import { REPO_ROOT, stackEnv } from './stack';

const SCHEMATHESIS = path.resolve(REPO_ROOT, stackEnv().SOPHIA_TOOLS_DIR!, 'fuzz-venv', 'bin', 'schemathesis');
const HOOKS = path.join(REPO_ROOT, 'test', 'fuzz', 'hooks.py');
const CONFIG = path.join(REPO_ROOT, 'test', 'fuzz', 'schemathesis.toml');

/**
 * Built-in checks, plus the custom `error_names_field`. Left out: positive_data_acceptance (the document cannot
 * say "exactly one of preset or config" or which durations parse, so some schema-valid bodies get a 400 that
 * names the field), unsupported_method and allow_header_conformance (undeclared methods get 404/400, not 405),
 * object_level_authorization (one tenant: every key sees every run).
 */
const CHECKS = [
  'not_a_server_error',
  'error_names_field',
  'status_code_conformance',
  'content_type_conformance',
  'response_headers_conformance',
  'response_schema_conformance',
  'negative_data_rejection',
  'missing_required_header',
  'ignored_auth',
  'use_after_free',
  'ensure_resource_availability',
];
const MAX_EXAMPLES = 20;
const SEED = 20_260_127;

function runSchemathesis(args: string[], cwd: string): Promise<{ code: number | null; output: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, SCHEMATHESIS_HOOKS: HOOKS, NO_PROXY: '127.0.0.1,localhost', PYTHONUNBUFFERED: '1' };
  for (const name of ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'http_proxy', 'https_proxy', 'all_proxy']) delete env[name];
  return new Promise((resolve, reject) => {
    const child = spawn(SCHEMATHESIS, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    child.stderr.on('data', (c: Buffer) => chunks.push(c));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, output: Buffer.concat(chunks).toString('utf8') }));
  });
}

describe('API fuzzing (schemathesis against /openapi.json)', () => {
  let h: ApiHarness | undefined;
  let workDir: string | undefined;
  const schedulesBefore = new Set<string>();

  beforeAll(async () => {
    if (!existsSync(SCHEMATHESIS)) throw new Error(`schemathesis is not installed at ${SCHEMATHESIS}: run \`bash infra/local/install-tools.sh\``);
    h = await startApiHarness({ workers: false, storage: 'local' });
    for await (const s of h.client.schedule.list()) schedulesBefore.add(s.scheduleId);
    // schemathesis and Hypothesis keep caches in the working directory: not in the repository.
    workDir = mkdtempSync(path.join(tmpdir(), 'sophia-fuzz-'));
  });

  afterAll(async () => {
    try {
      if (h) {
        const client = h.client;
        for await (const s of client.schedule.list()) {
          if (s.scheduleId.startsWith('sophia-') && !schedulesBefore.has(s.scheduleId)) await client.schedule.getHandle(s.scheduleId).delete().catch(() => undefined);
        }
        const queues = [...new Set(Object.values(h.temporal.taskQueues))].map((q) => `'${q}'`).join(', ');
        for await (const wf of client.workflow.list({ query: `TaskQueue IN (${queues}) AND ExecutionStatus = 'Running'` })) {
          await client.workflow.getHandle(wf.workflowId, wf.runId).terminate('fuzz test finished').catch(() => undefined);
        }
      }
    } finally {
      await h?.close();
      if (workDir) rmSync(workDir, { recursive: true, force: true });
    }
  });

  it("says at once that no worker answers a running run's progress (no query left waiting or retrying)", async () => {
    const runId = `noworker-${h!.suffix}`;
    expect((await h!.call('POST', '/runs', { preset: 'ci', runId })).status).toBe(201);
    const detail = (await h!.call('GET', `/runs/${runId}`)).json as { status: string; progress: unknown; progressError: string | null };
    expect(detail.status).toBe('running');
    expect(detail.progress).toBeNull();
    expect(detail.progressError).toMatch(/no worker polls its task queue/);
    expect((await h!.call('POST', `/runs/${runId}/cancel`)).status).toBe(202);
  });

  it('gives no 5xx, conforms to the document, and names the field of every 4xx', async () => {
    const args = [
      '--config-file', CONFIG,
      'run', `${h!.url}/openapi.json`,
      '--header', `Authorization: Bearer ${h!.keys.admin}`,
      '--checks', CHECKS.join(','),
      '--max-examples', String(MAX_EXAMPLES),
      '--seed', String(SEED),
      '--workers', '1',
      '--request-timeout', '10',
      '--generation-database', 'none',
      '--no-color',
    ];
    const started = Date.now();
    const { code, output } = await runSchemathesis(args, workDir!);
    const seconds = Math.round((Date.now() - started) / 1000);
    // Schemathesis closes with a pytest-style line ("==== 2 warnings in 18.22s ===="). CI readers take such a line for
    // pytest's own closing line and count it as a run of no tests, so it is echoed without its frame and "in".
    const summary = output
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => /\d+ generated|^=+ .* in [\d.]+s =+$/.test(line))
      .map((line) => line.replace(/^=+ (.*) in ([\d.]+)s =+$/, 'ended with $1 after $2 s'));
    console.log(`schemathesis (${MAX_EXAMPLES} examples per operation, seed ${SEED}) in ${seconds} s:\n  ${summary.join('\n  ')}`);
    if (code !== 0) process.stderr.write(`\nschemathesis ${args.map((a) => (/\s/.test(a) ? `'${a}'` : a)).join(' ').replace(h!.keys.admin, '<admin key>')}\nexited with ${code} after ${seconds} s:\n${output}\n`);
    expect(code, `schemathesis found failures (its output is above):\n${summary.join('\n')}`).toBe(0);
  }, 420_000);
});
