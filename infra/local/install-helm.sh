#!/usr/bin/env bash
# Installs what the Helm chart's tests (infra/helm/chart.test.ts) need, into $SOPHIA_TOOLS_DIR/helm (default
# .tools/helm):
#   - helm, the pinned version built from source with Go from the Go module proxy
#     (`go install helm.sh/helm/v4/cmd/helm@$HELM_VERSION`, GOPATH $SOPHIA_TOOLS_DIR/helm/gopath) into bin/helm;
#   - kubernetes-validate (offline Kubernetes schema validation; it ships the schemas) from PyPI into venv/, every
#     package pinned with its sha256 (infra/local/helm-requirements.lock, pip --require-hashes).
# Idempotent: skips helm when bin/helm reports the pinned version, and the venv when its stamp equals the lock.
# Prints helm's path on stdout (messages go to stderr), so callers can run:
#   SOPHIA_HELM="$(bash infra/local/install-helm.sh)" npx vitest run infra
# Needs Go (>= the version helm's go.mod asks for; the go command fetches a newer toolchain itself when allowed)
# and Python >= 3.11. First build measured: see docs/deploy.md ("What was tested").
set -euo pipefail
source "$(dirname "$0")/lib.sh"

HELM_VERSION=v4.3.2
HELM_DIR="$SOPHIA_TOOLS_DIR/helm"
HELM_BIN="$HELM_DIR/bin/helm"
VENV="$HELM_DIR/venv"
LOCK="$SOPHIA_ROOT/infra/local/helm-requirements.lock"
STAMP="$VENV/.helm-requirements.lock"
PYTHON="${PYTHON:-python3}"

# The helm module version the binary was built from: `go version -m` (what `go install` recorded; a plain
# `go install` leaves `helm version` at its source default, "v4.3"), else, without Go, what `helm version` says
# (this script's build sets it).
helm_version() {
  if command -v go >/dev/null; then
    go version -m "$HELM_BIN" 2>/dev/null | awk '$1 == "mod" && $2 == "helm.sh/helm/v4" { print $3 }' || true
  else
    "$HELM_BIN" version --template '{{.Version}}' 2>/dev/null || true
  fi
}

if [[ -x "$HELM_BIN" && "$(helm_version)" == "$HELM_VERSION" ]]; then
  log "helm $HELM_VERSION up to date in $HELM_BIN"
else
  command -v go >/dev/null || die "Go is needed to build helm $HELM_VERSION from the Go module proxy (https://go.dev/dl/); or point SOPHIA_HELM at a helm $HELM_VERSION binary"
  mkdir -p "$HELM_DIR/bin" "$HELM_DIR/gopath"
  log "building helm $HELM_VERSION with $(go version | awk '{print $3}') into $HELM_BIN (first time: downloads the modules, then compiles; minutes on 2 cores)"
  started=$SECONDS
  # -modcacherw: the module cache stays deletable (rm -rf .tools works); GOBIN puts the binary where the tests look;
  # the -X flag is what helm's Makefile sets, so `helm version` says $HELM_VERSION.
  GOPATH="$HELM_DIR/gopath" GOBIN="$HELM_DIR/bin" GOFLAGS="-modcacherw" \
    go install -ldflags "-X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" >&2
  [[ "$(helm_version)" == "$HELM_VERSION" ]] || die "built $HELM_BIN but it reports '$(helm_version)', not $HELM_VERSION"
  log "built helm $HELM_VERSION in $((SECONDS - started)) s"
fi

if [[ -x "$VENV/bin/kubernetes-validate" && -f "$STAMP" ]] && cmp -s "$LOCK" "$STAMP"; then
  log "kubernetes-validate up to date in $VENV"
else
  command -v "$PYTHON" >/dev/null || die "python3 (>= 3.11) is needed to install kubernetes-validate from PyPI (set PYTHON=/path/to/python3)"
  "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
    || die "kubernetes-validate's pinned dependencies need Python >= 3.11 ($PYTHON is $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11+"
  started=$SECONDS
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  PIP=("$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --only-binary=:all:)
  if [[ "$(uname -s)-$(uname -m)" == "Linux-x86_64" ]]; then
    "${PIP[@]}" --require-hashes -r "$LOCK"
  else
    log "$(uname -s)-$(uname -m): installing the pinned versions without hash check (hashes cover linux x86_64)"
    "${PIP[@]}" $(grep -Ev '^[[:space:]]*(#|--hash)' "$LOCK" | awk 'NF {print $1}')
  fi
  "$VENV/bin/pip" check --disable-pip-version-check >&2 || die "$LOCK is incomplete: pip check (above) names a requirement it does not pin"
  cp "$LOCK" "$STAMP"
  log "installed kubernetes-validate $("$VENV/bin/kubernetes-validate" --version 2>&1 | awk '{print $NF}') into $VENV in $((SECONDS - started)) s"
fi
printf '%s\n' "$HELM_BIN"
