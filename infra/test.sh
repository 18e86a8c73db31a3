#!/usr/bin/env bash
# The project's test command (`npm test`, also what CI runs): typecheck, lint, then unit and integration tests
# in one vitest run (one summary). Works on a fresh clone: installs npm packages, the pinned tools and (as root on
# Debian-like systems) Chromium for the dashboard test if they are missing, and starts the local stack if it is not
# up (stopping it again afterwards; a stack that was already running is left running).
set -uo pipefail
cd "$(dirname "$0")/.."
export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true

if [[ ! -d node_modules ]]; then
  ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund || exit 1
fi
bash infra/local/install-tools.sh || exit 1
bash infra/local/install-browser.sh || exit 1

started_stack=0
if ! bash infra/local/status.sh >/dev/null 2>&1; then
  bash infra/local/up.sh || exit 1
  started_stack=1
fi
cleanup() { if [[ "$started_stack" == 1 ]]; then bash infra/local/down.sh; fi; }
trap cleanup EXIT

results=()
failed=0
step() {
  local name="$1"; shift
  echo "== $name: $*"
  local start=$SECONDS
  if "$@"; then results+=("pass  $name ($((SECONDS - start))s)"); else results+=("FAIL  $name ($((SECONDS - start))s)"); failed=1; fi
}

step typecheck npx tsc --noEmit -p .
step lint npx eslint .
report=.sophia/test-report.json
mkdir -p .sophia && rm -f "$report"
step "unit + integration tests" npx vitest run --reporter=default --reporter=json --outputFile.json="$report"

echo
echo "== summary"
printf '   %s\n' "${results[@]}"
# The plain closing line ("tests: N passed, N failed, N skipped"), alone on its line, for CI to read.
node infra/test-counts.mjs "$report" || failed=1
exit "$failed"
