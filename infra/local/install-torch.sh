#!/usr/bin/env bash
# Installs the PyTorch engine (engine/torch: torch, torchvision, transformers and the rest, every package pinned
# with its sha256 in engine/torch/requirements.lock) into a project-local virtualenv, $SOPHIA_TOOLS_DIR/torch-venv
# (default .tools/torch-venv), from PyPI, and the engine's own package (sophia_torch) into it as an editable install.
# Idempotent: a stamp in the venv holds the sha256 of the lock it was built from; when it matches, nothing is done.
# When the lock changed, the venv is made anew (pip's cache keeps the wheels it already downloaded).
# Prints the venv's python on stdout (messages go to stderr), so callers can run:
#   PY="$(infra/local/install-torch.sh)" && "$PY" -m sophia_torch.server
# First install measured here (2 cores, PyPI, empty pip cache): see engine/README.md ("PyTorch engine").
set -euo pipefail
source "$(dirname "$0")/lib.sh"

VENV="$SOPHIA_TOOLS_DIR/torch-venv"
LOCK="$SOPHIA_ROOT/engine/torch/requirements.lock"
STAMP="$VENV/.requirements.lock.sha256"
PYTHON="${PYTHON:-python3}"

lock_sha="$(sha256sum "$LOCK" | awk '{print $1}')"
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$lock_sha" ]]; then
  log "torch engine up to date in $VENV"
else
  command -v "$PYTHON" >/dev/null || die "python3 (>= 3.10) is needed to install the PyTorch engine from PyPI (set PYTHON=/path/to/python3)"
  "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
    || die "the PyTorch engine needs Python >= 3.10 ($PYTHON is $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.10+"
  if [[ -e "$VENV" ]]; then
    log "engine/torch/requirements.lock changed (or an earlier install did not finish): making $VENV anew"
  fi
  log "installing the PyTorch engine into $VENV (first time: ~4 GB from PyPI, torch with its CUDA libraries; takes minutes)"
  mkdir -p "$SOPHIA_TOOLS_DIR"
  rm -f "$STAMP"
  "$PYTHON" -m venv --clear "$VENV"
  PIP=("$VENV/bin/pip" install --quiet --disable-pip-version-check)
  if [[ "$(uname -s)-$(uname -m)" == "Linux-x86_64" ]]; then
    "${PIP[@]}" --only-binary=:all: --require-hashes -r "$LOCK"
  else
    die "$(uname -s)-$(uname -m): engine/torch/requirements.lock was resolved for Linux x86_64 (its CUDA packages exist only there); regenerate it on this platform (see its first lines)"
  fi
  # The engine's own code, editable (the lock installed setuptools, so no build isolation and no unpinned download).
  "${PIP[@]}" --no-deps --no-build-isolation --no-index -e "$SOPHIA_ROOT/engine/torch"
  printf '%s\n' "$lock_sha" > "$STAMP"
  log "installed: $("$VENV/bin/python" -c 'import torch, transformers; print(f"torch {torch.__version__}, transformers {transformers.__version__}")')"
fi
printf '%s\n' "$VENV/bin/python"
