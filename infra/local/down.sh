#!/usr/bin/env bash
# Stops the local stack started by up.sh (SIGTERM, then SIGKILL after 40 s; SeaweedFS takes ~16 s to shut down). Data is kept, so workflows and
# objects survive a restart; pass --wipe to delete the stack's data folder as well.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

stop() {
  local name="$1" pidfile="$RUN_DIR/$1.pid"
  if ! pid_alive "$name"; then rm -f "$pidfile"; log "$name not running"; return; fi
  local pid; pid="$(cat "$pidfile")"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 80); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name did not stop in 40s; killing"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  log "$name stopped"
}

stop seaweedfs
stop temporal
if [[ "${1:-}" == "--wipe" ]]; then
  rm -rf "$SOPHIA_STACK_DIR"
  log "wiped $SOPHIA_STACK_DIR"
fi
