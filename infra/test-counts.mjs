// Prints the plain closing line CI reads ("tests: N passed, N failed, N skipped") from vitest's JSON report and,
// when given, pytest's JUnit XML report (the PyTorch engine's tests).
// Usage: node infra/test-counts.mjs <vitest-report.json> [<pytest-junit.xml>]. A missing or unreadable report prints
// a line saying so and exits 1, so a run that crashed before writing its report is never counted as a pass.
import { readFileSync } from 'node:fs';

const [file, junit] = process.argv.slice(2);
const unreadable = (path, err) => {
  console.log(`tests: no report at ${path} (${err instanceof Error ? err.message : String(err)})`);
  process.exit(1);
};
let report;
try {
  report = JSON.parse(readFileSync(file, 'utf8'));
} catch (err) {
  unreadable(file, err);
}
let passed = report.numPassedTests ?? 0;
// A file that fails to load has no failed test of its own: count such files as failures too.
const failedTests = report.numFailedTests ?? 0;
let failed = failedTests > 0 ? failedTests : (report.numFailedTestSuites ?? 0);
let skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
if (junit) {
  let xml;
  try {
    xml = readFileSync(junit, 'utf8');
  } catch (err) {
    unreadable(junit, err);
  }
  // pytest writes one <testsuite> with these counts (errors: failures outside the test body, e.g. in fixtures).
  const suite = /<testsuite\b[^>]*>/.exec(xml)?.[0] ?? '';
  const count = (name) => Number(new RegExp(`\\b${name}="(\\d+)"`).exec(suite)?.[1] ?? 0);
  const bad = count('failures') + count('errors');
  passed += count('tests') - bad - count('skipped');
  failed += bad;
  skipped += count('skipped');
}
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
