#!/usr/bin/env bash
# Prints the health of the local stack; exits 0 only when Temporal and S3 both answer.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
ok=0
if [[ -x "$TEMPORAL_BIN" ]] && temporal_healthy; then
  ui="down"; temporal_ui_healthy && ui="up"
  echo "temporal   up    $SOPHIA_TEMPORAL_HOST:$SOPHIA_TEMPORAL_PORT  UI http://$SOPHIA_TEMPORAL_HOST:$SOPHIA_TEMPORAL_UI_PORT ($ui)"
else
  echo "temporal   down  $SOPHIA_TEMPORAL_HOST:$SOPHIA_TEMPORAL_PORT"; ok=1
fi
if command -v curl >/dev/null && s3_healthy; then
  echo "s3         up    $(s3_url)  bucket $SOPHIA_S3_BUCKET"
else
  echo "s3         down  $(s3_url)  bucket $SOPHIA_S3_BUCKET"; ok=1
fi
exit "$ok"
