/**
 * The closing count CI reads (infra/test-counts.mjs): summed over vitest JSON and pytest JUnit reports; a missing
 * report or a failure anywhere exits non-zero.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const dir = mkdtempSync(path.join(tmpdir(), 'sophia-counts-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const p = path.join(dir, name);
  writeFileSync(p, text);
  return p;
};
const counts = (...files: string[]) => {
  const r = spawnSync(process.execPath, [path.join(__dirname, 'test-counts.mjs'), ...files], { encoding: 'utf8' });
  const lines = r.stdout.trim().split('\n');
  return { status: r.status, line: lines.at(-1), failures: lines.slice(0, -1) };
};
const vitest = (passed: number, failed: number, extra: Record<string, number> = {}) => JSON.stringify({ numPassedTests: passed, numFailedTests: failed, numPendingTests: 0, numTodoTests: 0, ...extra });
const junit = (tests: number, failures: number, errors = 0, skipped = 0) => `<?xml version="1.0"?><testsuites><testsuite name="pytest" errors="${errors}" failures="${failures}" skipped="${skipped}" tests="${tests}"></testsuite></testsuites>`;

describe('test-counts', () => {
  it('sums every report it is given', () => {
    expect(counts(file('unit.json', vitest(10, 0)), file('int.json', vitest(5, 0, { numPendingTests: 1 })), file('py.xml', junit(7, 0, 0, 2)))).toEqual({ status: 0, line: 'tests: 20 passed, 0 failed, 3 skipped', failures: [] });
  });
  it('fails on a failure in any one report', () => {
    expect(counts(file('ok.json', vitest(10, 0)), file('bad.xml', junit(4, 1, 1)))).toMatchObject({ status: 1, line: 'tests: 12 passed, 2 failed, 0 skipped' });
    expect(counts(file('suite.json', vitest(3, 0, { numFailedTestSuites: 1 })))).toMatchObject({ status: 1, line: 'tests: 3 passed, 1 failed, 0 skipped' });
  });
  it('names each failed test above the closing line: file, test, first line of the error', () => {
    // The shapes vitest's JSON reporter and pytest's --junitxml write (a failed test, a file that failed to load).
    const unit = JSON.stringify({
      numPassedTests: 1,
      numFailedTests: 1,
      testResults: [
        { name: path.join(process.cwd(), 'a.test.ts'), status: 'failed', message: '', assertionResults: [
          { fullName: 'group fails here', status: 'failed', failureMessages: ['\u001b[31mAssertionError: expected 1 to be 2\u001b[39m\n    at a.test.ts:2'] },
          { fullName: 'group ok', status: 'passed', failureMessages: [] },
        ] },
        { name: path.join(process.cwd(), 'b.test.ts'), status: 'failed', message: "Cannot find module './gone'\nstack", assertionResults: [] },
      ],
    });
    const py = '<?xml version="1.0"?><testsuites><testsuite name="pytest" errors="0" failures="1" skipped="0" tests="2">'
      + '<testcase classname="tests.test_x" name="test_bad" time="0.1"><failure message="AssertionError: one &lt;two&gt; &amp; &quot;so&quot;&#10;assert 1 == 2">trace</failure></testcase>'
      + '<testcase classname="tests.test_x" name="test_ok" time="0.0" /></testsuite></testsuites>';
    expect(counts(file('named.json', unit), file('named.xml', py))).toEqual({
      status: 1,
      line: 'tests: 2 passed, 2 failed, 0 skipped',
      failures: [
        'failed: a.test.ts › group fails here: AssertionError: expected 1 to be 2',
        "failed: b.test.ts: Cannot find module './gone'",
        'failed: tests.test_x › test_bad: AssertionError: one <two> & "so"',
      ],
    });
  });
  it('fails when a report is missing or unreadable, or none is given', () => {
    const missing = counts(file('ok2.json', vitest(10, 0)), path.join(dir, 'absent.json'));
    expect(missing.status).toBe(1);
    expect(missing.line).toMatch(/^tests: no report at .*absent\.json/);
    expect(counts(file('torn.json', '{"numPassed')).line).toMatch(/is not JSON/);
    expect(counts().status).toBe(1);
  });
});
