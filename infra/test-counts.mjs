// Prints the plain closing line CI reads ("tests: N passed, N failed, N skipped") from vitest's JSON report.
// Usage: node infra/test-counts.mjs <report.json>. A missing or unreadable report prints a line saying so and
// exits 1, so a vitest run that crashed before writing it is never counted as a pass.
import { readFileSync } from 'node:fs';

const file = process.argv[2];
let report;
try {
  report = JSON.parse(readFileSync(file, 'utf8'));
} catch (err) {
  console.log(`tests: no report at ${file} (${err instanceof Error ? err.message : String(err)})`);
  process.exit(1);
}
const passed = report.numPassedTests ?? 0;
// A file that fails to load has no failed test of its own: count such files as failures too.
const failedTests = report.numFailedTests ?? 0;
const failed = failedTests > 0 ? failedTests : (report.numFailedTestSuites ?? 0);
const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
