#!/usr/bin/env bash
# Makes sure a Chromium binary is there for the dashboard's browser test (playwright-core drives it headless):
# $SOPHIA_CHROMIUM if set, else /usr/bin/chromium. When it is missing and this runs as root on a Debian-like system,
# installs Debian's `chromium` package (as the stack tools are installed, with nothing to do by hand); otherwise it
# stops with the one command to run. Idempotent.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

CHROMIUM="${SOPHIA_CHROMIUM:-/usr/bin/chromium}"
if [[ -x "$CHROMIUM" ]]; then
  log "chromium: $CHROMIUM"
  exit 0
fi
[[ -n "${SOPHIA_CHROMIUM:-}" ]] && die "SOPHIA_CHROMIUM=$SOPHIA_CHROMIUM is not an executable Chromium: point it at one, or unset it to use /usr/bin/chromium"
if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
  log "installing Debian's chromium for the dashboard's browser test (apt-get; once)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  [[ -x "$CHROMIUM" ]] || die "apt-get installed chromium, but $CHROMIUM is still missing: set SOPHIA_CHROMIUM to the chromium binary"
  log "installed: $("$CHROMIUM" --version 2>/dev/null | head -n1)"
elif command -v apt-get >/dev/null; then
  die "the dashboard's browser test needs Chromium: run \`sudo apt-get install -y chromium\` once (or set SOPHIA_CHROMIUM=/path/to/chromium)"
else
  die "the dashboard's browser test needs Chromium: install it with your system's package manager and set SOPHIA_CHROMIUM=/path/to/chromium"
fi
