// Prints the plain closing line CI reads ("tests: N passed, N failed, N skipped") over every report it is given:
// vitest's JSON reports (`*.json`) and pytest's JUnit XML reports (`*.xml`, the PyTorch engine's tests). Each failed
// test (or file that failed to load) gets a line above it — file, test name, the first line of its error — so the
// tail of a CI log names what failed even when the failure scrolled by long before.
// Usage: node infra/test-counts.mjs <report> [<report> ...]. A missing or unreadable report prints a line saying so
// and exits 1, so a run that crashed before writing its report is never counted as a pass.
import { readFileSync } from 'node:fs';

const files = process.argv.slice(2);
if (files.length === 0) {
  console.log('tests: no report given (usage: node infra/test-counts.mjs <vitest.json|pytest.xml> ...)');
  process.exit(1);
}
const read = (path) => {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    console.log(`tests: no report at ${path} (${err instanceof Error ? err.message : String(err)})`);
    process.exit(1);
  }
};
let passed = 0;
let failed = 0;
let skipped = 0;
const failures = [];
const firstLine = (message) => String(message ?? '').replace(/\u001b\[[0-9;]*m/g, '').trim().split('\n')[0].slice(0, 300);
const unescapeXml = (text) => text.replace(/&#(\d+);/g, (_, code) => String.fromCharCode(Number(code))).replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&');
for (const file of files) {
  const text = read(file);
  if (file.endsWith('.xml')) {
    // pytest writes one <testsuite> with these counts (errors: failures outside the test body, e.g. in fixtures).
    const suite = /<testsuite\b[^>]*>/.exec(text)?.[0] ?? '';
    const count = (name) => Number(new RegExp(`\\b${name}="(\\d+)"`).exec(suite)?.[1] ?? 0);
    const bad = count('failures') + count('errors');
    passed += count('tests') - bad - count('skipped');
    failed += bad;
    skipped += count('skipped');
    // <testcase classname="…" name="…"><failure message="…"> (or <error …>) for each failed test.
    for (const match of text.matchAll(/<testcase\b([^>]*?)(?:\/>|>([\s\S]*?)<\/testcase>)/g)) {
      const bad = /<(failure|error)\b[^>]*?message="([^"]*)"/.exec(match[2] ?? '');
      if (!bad) continue;
      const attr = (name) => unescapeXml(new RegExp(`\\b${name}="([^"]*)"`).exec(match[1])?.[1] ?? '');
      failures.push(`${attr('classname')} › ${attr('name')}: ${firstLine(unescapeXml(bad[2]))}`);
    }
    continue;
  }
  let report;
  try {
    report = JSON.parse(text);
  } catch (err) {
    console.log(`tests: the report at ${file} is not JSON (${err instanceof Error ? err.message : String(err)})`);
    process.exit(1);
  }
  passed += report.numPassedTests ?? 0;
  // A file that fails to load has no failed test of its own: count such files as failures too.
  const failedTests = report.numFailedTests ?? 0;
  failed += failedTests > 0 ? failedTests : (report.numFailedTestSuites ?? 0);
  skipped += (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
  for (const suite of report.testResults ?? []) {
    const where = String(suite.name ?? '').replace(`${process.cwd()}/`, '');
    const failedHere = (suite.assertionResults ?? []).filter((t) => t.status === 'failed');
    for (const t of failedHere) failures.push(`${where} › ${t.fullName ?? t.title}: ${firstLine(t.failureMessages?.[0])}`);
    if (failedHere.length === 0 && suite.status === 'failed') failures.push(`${where}: ${firstLine(suite.message) || 'the file failed to run'}`);
  }
}
for (const line of failures) console.log(`failed: ${line}`);
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
