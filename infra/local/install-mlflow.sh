#!/usr/bin/env bash
# Installs MLflow (pinned with hashes: infra/local/mlflow-requirements.lock) from PyPI into its own virtualenv,
# $SOPHIA_TOOLS_DIR/mlflow-venv. The tests start its tracking server: as the backend of Sophia's experiment tracking
# and as the OTLP trace backend of the tracing test. Sophia itself talks to a tracking server over HTTP and needs
# no Python package; users point it at their own server. TensorBoard (infra/local/tensorboard-requirements.lock) goes
# into the same venv: test/integration/tensorboard.test.ts reads Sophia's event files with it (Sophia writes them
# without it). Idempotent: a no-op when the venv's stamp equals the two locks.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

LOCKS=("$SOPHIA_ROOT/infra/local/mlflow-requirements.lock" "$SOPHIA_ROOT/infra/local/tensorboard-requirements.lock")
VENV="$SOPHIA_TOOLS_DIR/mlflow-venv"
STAMP="$VENV/.requirements.lock" # the two locks, concatenated: a change to either reinstalls
PYTHON="${PYTHON:-python3}"

if [[ -x "$VENV/bin/mlflow" && -x "$VENV/bin/tensorboard" && -f "$STAMP" ]] && cat "${LOCKS[@]}" | cmp -s - "$STAMP"; then
  log "mlflow and tensorboard up to date in $VENV"
  exit 0
fi
command -v "$PYTHON" >/dev/null || die "python3 (>= 3.11) is needed to install MLflow from PyPI (set PYTHON=/path/to/python3)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "MLflow's pinned dependencies need Python >= 3.11 ($PYTHON is $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11+"
rm -rf "$VENV"
mkdir -p "$SOPHIA_TOOLS_DIR"
"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --only-binary=:all:)
if [[ "$(uname -s)-$(uname -m)" == "Linux-x86_64" ]] && "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  for lock in "${LOCKS[@]}"; do "${PIP[@]}" --require-hashes -r "$lock"; done
else
  log "$(uname -s)-$(uname -m), $("$PYTHON" --version): installing the pinned versions without hash check (hashes cover CPython 3.11 on Linux x86_64)"
  "${PIP[@]}" $(grep -hE '^[A-Za-z0-9]' "${LOCKS[@]}" | awk '{print $1}')
fi
cat "${LOCKS[@]}" >"$STAMP"
log "installed: $("$VENV/bin/python" -c 'import mlflow, tensorboard; print(f"mlflow {mlflow.__version__}, tensorboard {tensorboard.__version__}")')"
