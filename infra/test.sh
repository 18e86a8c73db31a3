#!/usr/bin/env bash
# The project's test command (`npm test`, also what CI runs): typecheck, lint, then unit and integration tests
# in one vitest run, then the PyTorch engine's pytest suite (one closing count over both). Works on a fresh clone:
# installs npm packages, the pinned tools, the torch engine's venv, helm, MLflow and (as root on Debian-like systems) Chromium for
# the dashboard test if they are missing, and starts the local stack if it is not up (stopping it again afterwards;
# a stack that was already running is left running).
set -uo pipefail
cd "$(dirname "$0")/.."
export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true

# helm (built from the Go module proxy) and the offline Kubernetes schema validator for the chart's tests
# (infra/helm/chart.test.ts): built beside the other installs (npm, the tools, the torch venv), which mostly wait
# on the network; a no-op once installed.
helm_log=$(mktemp)
bash infra/local/install-helm.sh >"$helm_log" 2>&1 &
helm_pid=$!
# MLflow's tracking server (the trace backend of the tracing test and the tracking tests' server), beside them too.
mlflow_log=$(mktemp)
bash infra/local/install-mlflow.sh >"$mlflow_log" 2>&1 &
mlflow_pid=$!
if [[ ! -d node_modules ]]; then
  ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund || exit 1
fi
bash infra/local/install-tools.sh || exit 1
# The PyTorch engine's pinned venv (first time: a few minutes and ~6.4 GB from PyPI; then a no-op), before vitest: the
# TypeScript engine-process tests (engine/torch/*.test.ts) run in it, and the pytest step below uses it.
torch_python="$(bash infra/local/install-torch.sh)" || exit 1
if ! wait "$helm_pid"; then cat "$helm_log" >&2; exit 1; fi
rm -f "$helm_log"
if ! wait "$mlflow_pid"; then cat "$mlflow_log" >&2; exit 1; fi
rm -f "$mlflow_log"
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
junit=.sophia/pytest-report.xml
mkdir -p .sophia && rm -f "$report" "$junit"
step "unit + integration tests" npx vitest run --reporter=default --reporter=json --outputFile.json="$report"
# The PyTorch engine's own tests (engine/torch: the engine process on a tiny Qwen2.5-VL built locally, CPU, fp32),
# in the project's pinned venv (installed above).
torch_engine_tests() {
  "$torch_python" -m pytest -q -p no:cacheprovider --junitxml="$junit" engine/torch/tests
}
step "torch engine tests (pytest)" torch_engine_tests

echo
echo "== summary"
printf '   %s\n' "${results[@]}"
# The plain closing line ("tests: N passed, N failed, N skipped"), alone on its line, for CI to read.
node infra/test-counts.mjs "$report" "$junit" || failed=1
exit "$failed"
