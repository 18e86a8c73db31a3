#!/usr/bin/env bash
# The project's test command (`npm test`, also what CI runs): typecheck, lint, the unit tests and the PyTorch engine's
# pytest suite in one lane, beside the integration and fault tests in another (one closing count over all). Works on a fresh clone:
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

# Two lanes side by side, since the integration tests spend much of their time waiting on servers, workers and
# processes they start (one core busy on average) and vitest runs one file at a time on two cores:
#  - beside: typecheck, lint, the unit tests (vitest's `unit` project) and the PyTorch engine's pytest suite, one
#    after another, their output kept in a log printed when the lane ends;
#  - in front: the integration and fault tests (the `integration` and `faults` projects), printed as they run.
# Measured in CI (2 cores, d0ce4e5): the lanes took about 15.7 and 22.2 minutes, 25 min in all with the installs; without
# `nice` on the side lane they took 13.8 and 27.5. Moving the torch and watch fault tests beside made both lanes slower
# (31 min in all, not 29): the work is CPU-bound where it overlaps, so the side lane only fills the time the
# integration tests spend waiting.
# One summary and one closing count over all four reports follow.
mkdir -p .sophia
lane_dir=.sophia/test-lanes
rm -rf "$lane_dir" && mkdir -p "$lane_dir"
unit_report=.sophia/test-report-unit.json
report=.sophia/test-report.json
junit=.sophia/pytest-report.xml
rm -f "$unit_report" "$report" "$junit"

# Runs a step, appends "pass|FAIL  name (Ns)" to the lane's results file; returns the step's status.
step() {
  local results="$1" name="$2"; shift 2
  echo "== $name: $*"
  local start=$SECONDS
  if "$@"; then echo "pass  $name ($((SECONDS - start))s)" >>"$results"; else echo "FAIL  $name ($((SECONDS - start))s)" >>"$results"; return 1; fi
}
# The PyTorch engine's own tests (engine/torch: the engine process on a tiny Qwen2.5-VL built locally, CPU, fp32),
# in the project's pinned venv (installed above).
torch_engine_tests() {
  "$torch_python" -m pytest -q -p no:cacheprovider --junitxml="$junit" engine/torch/tests
}
beside_lane() {
  local results="$lane_dir/beside.results" failed=0
  step "$results" typecheck npx tsc --noEmit -p . || failed=1
  step "$results" lint npx eslint . || failed=1
  step "$results" "unit tests" npx vitest run --project unit --reporter=dot --reporter=json --outputFile.json="$unit_report" || failed=1
  step "$results" "torch engine tests (pytest)" torch_engine_tests || failed=1
  return "$failed"
}
lane_start=$SECONDS
# The side lane runs at a lower CPU priority: the integration lane is the critical path (most of the total, above),
# and the side lane has minutes of slack, so where both want a core the integration tests get it.
export -f step torch_engine_tests beside_lane
export lane_dir unit_report junit torch_python
nice -n 10 bash -c beside_lane >"$lane_dir/beside.log" 2>&1 &
beside_pid=$!
echo "== typecheck, lint, unit tests and pytest run beside the integration tests (log: $lane_dir/beside.log)"

failed=0
step "$lane_dir/front.results" "integration + fault tests" npx vitest run --project integration --project faults --reporter=default --reporter=json --outputFile.json="$report" || failed=1
wait "$beside_pid" || failed=1
echo
echo "== beside the integration tests (typecheck, lint, unit tests, pytest)"
cat "$lane_dir/beside.log"

echo
echo "== summary ($((SECONDS - lane_start))s for both lanes)"
sed 's/^/   /' "$lane_dir/beside.results" "$lane_dir/front.results"
# The plain closing line ("tests: N passed, N failed, N skipped"), alone on its line, for CI to read.
node infra/test-counts.mjs "$unit_report" "$report" "$junit" || failed=1
exit "$failed"
