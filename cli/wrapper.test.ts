/**
 * The `./sophia` wrapper changes into the repository before it starts the CLI; relative paths the user typed
 * must still mean paths from where they called it (cli/paths.ts). These run the real wrapper from a temporary
 * directory that holds the files (the repository does not), so a path resolved against the repository fails.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const WRAPPER = path.resolve(__dirname, '..', 'sophia');
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'sophia-wrapper-'));
  mkdirSync(path.join(dir, 'rel'));
  writeFileSync(path.join(dir, 'rel', 'answers.jsonl'), `${JSON.stringify({ type: 'numeric', response: '<think>2+3</think><answer>5</answer>', answer: '5' })}\n`);
  writeFileSync(path.join(dir, 'rel', 'bad.yaml'), 'extends: ci\ncolour: blue\n');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `./sophia ARGS` with the temporary directory as the working directory. */
function sophia(...args: string[]) {
  const env = { ...process.env };
  delete env.SOPHIA_CALLER_CWD;
  return spawnSync('bash', [WRAPPER, ...args], { cwd: dir, env, encoding: 'utf8', timeout: 60_000 });
}

describe('./sophia from another directory', () => {
  it('grades the --jsonl file relative to the caller', () => {
    const r = sophia('grade', '--jsonl', 'rel/answers.jsonl');
    expect(r.stderr).not.toMatch(/ENOENT|not readable|no such file/i);
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout.trim())).toMatchObject({ reward: 1, formatOk: true });
  }, 60_000);

  it('reads the --config file relative to the caller (its validation error names that file)', () => {
    const r = sophia('run', '--config', 'rel/bad.yaml');
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(path.join(dir, 'rel', 'bad.yaml'));
    expect(r.stderr).toMatch(/colour: unknown field/);
  }, 60_000);
});
