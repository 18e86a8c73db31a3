#!/usr/bin/env bash
# Installs MLflow (pinned with hashes: infra/local/mlflow-requirements.lock) from PyPI into its own virtualenv,
# $SOPHIA_TOOLS_DIR/mlflow-venv. The tests start its tracking server: as the backend of Sophia's experiment tracking
# and as the OTLP trace backend of the tracing test. Sophia itself talks to a tracking server over HTTP and needs
# no Python package; users point it at their own server. Idempotent: a no-op when the venv's stamp equals the lock.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

LOCK="$SOPHIA_ROOT/infra/local/mlflow-requirements.lock"
VENV="$SOPHIA_TOOLS_DIR/mlflow-venv"
STAMP="$VENV/.mlflow-requirements.lock"
PYTHON="${PYTHON:-python3}"

if [[ -x "$VENV/bin/mlflow" && -f "$STAMP" ]] && cmp -s "$LOCK" "$STAMP"; then
  log "mlflow up to date in $VENV"
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
  "${PIP[@]}" --require-hashes -r "$LOCK"
else
  log "$(uname -s)-$(uname -m), $("$PYTHON" --version): installing the pinned versions without hash check (hashes cover CPython 3.11 on Linux x86_64)"
  "${PIP[@]}" $(grep -E '^[A-Za-z0-9]' "$LOCK" | awk '{print $1}')
fi
cp "$LOCK" "$STAMP"
log "installed: mlflow $("$VENV/bin/python" -c 'import mlflow; print(mlflow.__version__)')"
