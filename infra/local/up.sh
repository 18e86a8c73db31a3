#!/usr/bin/env bash
# Starts the local stack: the Temporal dev server (SQLite file, Web UI on) and SeaweedFS with its S3 gateway
# (bucket created, credentials set). Waits until both answer their health checks. Starting twice is harmless:
# services that are already up and healthy are left alone.
#
# Ports, folders and credentials come from infra/local/defaults.env, overridable by environment variables.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

[[ -x "$TEMPORAL_BIN" && -x "$WEED_BIN" ]] || bash "$SOPHIA_ROOT/infra/local/install-tools.sh"
command -v curl >/dev/null || die "curl is needed for the S3 health check (apt-get install curl)"
mkdir -p "$RUN_DIR" "$LOG_DIR" "$SOPHIA_STACK_DIR/temporal" "$SOPHIA_STACK_DIR/seaweedfs/data"

# start NAME PORT CMD...: runs CMD detached (own session, survives this shell), records its pid.
start() {
  local name="$1" port="$2"; shift 2
  port_free "$port" || die "port $port (needed by $name) is taken by another process; stop it or choose other ports (see infra/local/defaults.env)"
  setsid nohup "$@" >>"$LOG_DIR/$name.log" 2>&1 < /dev/null &
  echo $! >"$RUN_DIR/$name.pid"
}

# --- Temporal dev server -------------------------------------------------------------------------------
if pid_alive temporal && temporal_healthy; then
  log "temporal already running (pid $(cat "$RUN_DIR/temporal.pid"))"
elif temporal_healthy; then
  log "a Temporal server not started by this script already answers on $SOPHIA_TEMPORAL_HOST:$SOPHIA_TEMPORAL_PORT; using it"
else
  log "starting temporal dev server on $SOPHIA_TEMPORAL_HOST:$SOPHIA_TEMPORAL_PORT (db $SOPHIA_STACK_DIR/temporal/temporal.db)"
  start temporal "$SOPHIA_TEMPORAL_PORT" "$TEMPORAL_BIN" server start-dev \
    --ip "$SOPHIA_TEMPORAL_HOST" --port "$SOPHIA_TEMPORAL_PORT" \
    --ui-port "$SOPHIA_TEMPORAL_UI_PORT" --http-port "$SOPHIA_TEMPORAL_HTTP_PORT" \
    --metrics-port "$SOPHIA_TEMPORAL_METRICS_PORT" \
    --db-filename "$SOPHIA_STACK_DIR/temporal/temporal.db" \
    --namespace "$SOPHIA_TEMPORAL_NAMESPACE" --log-level warn
  wait_for temporal temporal_healthy || die "temporal failed to start (log: $LOG_DIR/temporal.log)"
  wait_for temporal temporal_ui_healthy || die "the Temporal Web UI did not answer on port $SOPHIA_TEMPORAL_UI_PORT (log: $LOG_DIR/temporal.log)"
fi

# --- SeaweedFS + S3 gateway ----------------------------------------------------------------------------
s3_answers() { [[ "$(s3_request GET '')" != "000" ]]; }
if pid_alive seaweedfs && s3_healthy; then
  log "seaweedfs already running (pid $(cat "$RUN_DIR/seaweedfs.pid"))"
elif s3_healthy; then
  log "an S3 server not started by this script already serves bucket $SOPHIA_S3_BUCKET at $(s3_url); using it"
else
  S3_CONFIG="$SOPHIA_STACK_DIR/seaweedfs/s3.json"
  umask 077
  cat >"$S3_CONFIG" <<JSON
{"identities": [{"name": "sophia", "credentials": [{"accessKey": "$SOPHIA_S3_ACCESS_KEY_ID", "secretKey": "$SOPHIA_S3_SECRET_ACCESS_KEY"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
  umask 022
  log "starting seaweedfs with S3 on $(s3_url) (data $SOPHIA_STACK_DIR/seaweedfs/data)"
  start seaweedfs "$SOPHIA_S3_PORT" "$WEED_BIN" server \
    -dir="$SOPHIA_STACK_DIR/seaweedfs/data" -ip="$SOPHIA_S3_HOST" -ip.bind="$SOPHIA_S3_HOST" \
    -master.port="$SOPHIA_SEAWEED_MASTER_PORT" -master.volumeSizeLimitMB=1024 \
    -volume.port="$SOPHIA_SEAWEED_VOLUME_PORT" -volume.max=64 -volume.preStopSeconds=0 \
    -filer -filer.port="$SOPHIA_SEAWEED_FILER_PORT" \
    -s3 -s3.port="$SOPHIA_S3_PORT" -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$S3_CONFIG"
  wait_for seaweedfs s3_answers || die "seaweedfs failed to start (log: $LOG_DIR/seaweedfs.log)"
  # Create the bucket (200 created, 409 already ours); the filer may need a moment after the gateway is up.
  deadline=$((SECONDS + SOPHIA_STACK_TIMEOUT))
  until [[ "$(s3_request PUT "$SOPHIA_S3_BUCKET")" =~ ^(200|409)$ ]] && s3_healthy; do
    (( SECONDS < deadline )) || die "could not create bucket $SOPHIA_S3_BUCKET at $(s3_url) (log: $LOG_DIR/seaweedfs.log)"
    sleep 0.5
  done
fi

cat >"$SOPHIA_STACK_DIR/stack.env" <<ENV
TEMPORAL_ADDRESS=$SOPHIA_TEMPORAL_HOST:$SOPHIA_TEMPORAL_PORT
TEMPORAL_NAMESPACE=$SOPHIA_TEMPORAL_NAMESPACE
SOPHIA_S3_ENDPOINT=$(s3_url)
SOPHIA_S3_REGION=$SOPHIA_S3_REGION
SOPHIA_S3_ACCESS_KEY_ID=$SOPHIA_S3_ACCESS_KEY_ID
SOPHIA_S3_SECRET_ACCESS_KEY=$SOPHIA_S3_SECRET_ACCESS_KEY
SOPHIA_STORAGE=s3://$SOPHIA_S3_BUCKET
ENV
log "ready: Temporal $SOPHIA_TEMPORAL_HOST:$SOPHIA_TEMPORAL_PORT (UI http://$SOPHIA_TEMPORAL_HOST:$SOPHIA_TEMPORAL_UI_PORT), S3 $(s3_url) bucket $SOPHIA_S3_BUCKET"
log "environment for clients: $SOPHIA_STACK_DIR/stack.env"
