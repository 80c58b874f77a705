#!/usr/bin/env bash
# Flux on one member of the test bed: source-controller and kustomize-controller built from their Go
# modules (pinned to the newest release that builds with the machine's Go), run on 127.0.0.1 against
# the member's kubeconfig, with Flux's CRDs applied there.
#
#   flux.sh build                 build both into the bed's binary cache (cold: several minutes)
#   flux.sh start MEMBER DIR      apply the CRDs to MEMBER and start both controllers (state in DIR)
#   flux.sh stop DIR              stop the controllers started with DIR
set -euo pipefail
. "$(dirname "$0")/lib.sh"


FLUX_BIN=$EMCO_CACHE/flux/v$FLUX_VERSION
CONTROLLERS="source-controller kustomize-controller"

build() {
  local missing=""
  for c in $CONTROLLERS; do [ -x "$FLUX_BIN/$c" ] || missing="$missing $c"; done
  [ -z "$missing" ] && { log "Flux cached in $FLUX_BIN"; return; }
  command -v go >/dev/null 2>&1 || die "the Go toolchain is missing (needed to build Flux)"
  mkdir -p "$FLUX_BIN"
  for c in $missing; do
    log "building Flux $c v$FLUX_VERSION (cold: several minutes)"
    local src=$FLUX_BIN/src/$c
    if [ ! -f "$src/.ready" ]; then
      local json dir
      json=$(go mod download -json "github.com/fluxcd/$c@v$FLUX_VERSION") || die "could not download github.com/fluxcd/$c@v$FLUX_VERSION"
      dir=$(printf '%s' "$json" | sed -n 's/.*"Dir": *"\([^"]*\)".*/\1/p')
      rm -rf "$src" && mkdir -p "$src" && cp -r "$dir/." "$src/" && chmod -R u+w "$src"
      touch "$src/.ready"
    fi
    # The module's own api/ is a module of its own, not in the release: use the published one.
    (cd "$src" && go mod edit -dropreplace "github.com/fluxcd/$c/api")
    # source-controller 1.9.6 wants fluxcd/pkg/artifact v0.18.3, which the module proxy reachable
    # here does not serve; v0.18.0 (same minor) builds.
    [ "$c" = source-controller ] &&
      (cd "$src" && go mod edit -replace github.com/fluxcd/pkg/artifact=github.com/fluxcd/pkg/artifact@v0.18.0)
    (cd "$src" && go build -mod=mod -trimpath -ldflags "-s -w" -o "$FLUX_BIN/$c.tmp" . >"$FLUX_BIN/build-$c.log" 2>&1) ||
      die "building $c failed: $(tail -n5 "$FLUX_BIN/build-$c.log")"
    mv "$FLUX_BIN/$c.tmp" "$FLUX_BIN/$c"
  done
}

start() {
  local member=$1 dir=$2 kc=$BED_DIR/$1.kubeconfig
  build
  mkdir -p "$dir/storage"
  for c in $CONTROLLERS; do
    "$BIN_DIR/kubectl" --kubeconfig "$kc" apply --server-side --force-conflicts -f "$FLUX_BIN/src/$c/config/crd/bases" >/dev/null
  done
  "$BIN_DIR/kubectl" --kubeconfig "$kc" create namespace flux-system --dry-run=client -o yaml |
    "$BIN_DIR/kubectl" --kubeconfig "$kc" apply -f - >/dev/null
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  RUNTIME_NAMESPACE=flux-system KUBECONFIG=$kc nohup "$FLUX_BIN/source-controller" \
    --storage-path="$dir/storage" --storage-addr="127.0.0.1:$port" --storage-adv-addr="127.0.0.1:$port" \
    --metrics-addr=127.0.0.1:0 --health-addr=127.0.0.1:0 --watch-all-namespaces \
    >"$dir/source-controller.log" 2>&1 &
  echo $! >"$dir/source-controller.pid"
  RUNTIME_NAMESPACE=flux-system KUBECONFIG=$kc nohup "$FLUX_BIN/kustomize-controller" \
    --metrics-addr=127.0.0.1:0 --health-addr=127.0.0.1:0 --watch-all-namespaces \
    >"$dir/kustomize-controller.log" 2>&1 &
  echo $! >"$dir/kustomize-controller.pid"
  log "Flux on $member: source-controller (artifacts on 127.0.0.1:$port) and kustomize-controller, logs in $dir"
}

stop() {
  local dir=$1
  for c in $CONTROLLERS; do
    [ -f "$dir/$c.pid" ] && kill "$(cat "$dir/$c.pid")" 2>/dev/null || true
    rm -f "$dir/$c.pid"
  done
}

case "${1:-}" in
  build) build ;;
  start) start "$2" "$3" ;;
  stop) stop "$2" ;;
  *) die "usage: flux.sh build | start MEMBER DIR | stop DIR" ;;
esac
