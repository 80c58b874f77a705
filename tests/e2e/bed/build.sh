#!/usr/bin/env bash
# Builds the pinned upstream binaries the test bed runs (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kubelet, etcd, kwok, kwokctl, helm) from Go modules into a cache keyed by
# version. A second run finds them there and returns at once; a cache that lacks some of them builds
# only those. kubelet runs only on the hub's real node (node.sh), the others on every cluster.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

want="kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet etcd kwok kwokctl helm"
missing=""
for b in $want; do [ -x "$BIN_DIR/$b" ] || missing="$missing $b"; done
if [ -z "$missing" ]; then log "binaries cached in $BIN_DIR"; exit 0; fi

command -v go >/dev/null 2>&1 || die "the Go toolchain is missing: install Go 1.25 or newer (needed to build$missing)"
log "building$missing into $BIN_DIR (cold: about 10 minutes)"
mkdir -p "$BIN_DIR"
mod=$EMCO_CACHE/k8s/v$KUBE_VERSION-kwok$KWOK_VERSION/module
mkdir -p "$mod"
cd "$mod"

fetch() { # fetch MODULE@VERSION: download or explain why not
  go mod download -json "$1" >"$mod/download.json" 2>&1 ||
    die "could not download Go module $1 (is the Go module proxy reachable? see $mod/download.json): $(sed -n 's/.*"Error": *"\(.*\)",\{0,1\}$/\1/p' "$mod/download.json" | sed 's/\\"/"/g' | head -n1)"
}

# The packages the module graph must cover; a cache tidied for fewer (made before kubelet was added)
# is tidied again, which downloads only the new packages' modules.
tools='//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)'
if [ ! -f go.sum ] || [ ! -f .tidy-ok ] || [ "$(cat tools.go 2>/dev/null)" != "$tools" ]; then
  rm -f .tidy-ok
  fetch "k8s.io/kubernetes@v$KUBE_VERSION"
  gomod=$(sed -n 's/.*"GoMod": *"\([^"]*\)".*/\1/p' download.json)
  [ -f "$gomod" ] || die "k8s.io/kubernetes@v$KUBE_VERSION downloaded but its go.mod is missing"
  minor=${KUBE_VERSION#*.}; minor=${minor%%.*}
  {
    echo "module emco-testbed"
    echo
    echo "go 1.25.0"
    echo
    echo "require k8s.io/kubernetes v$KUBE_VERSION"
    echo
    echo "replace ("
    grep -E '=> \./staging' "$gomod" | awk -v v="v0.$minor.${KUBE_VERSION##*.}" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } >go.mod
  printf '%s\n' "$tools" >tools.go
  go mod tidy >tidy.log 2>&1 || die "go mod tidy failed for k8s.io/kubernetes@v$KUBE_VERSION (module download?): $(tail -n3 tidy.log)"
  touch .tidy-ok
fi

minor=${KUBE_VERSION#*.}; minor=${minor%%.*}
LD="-s -w -X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 \
-X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=v$KUBE_VERSION \
-X k8s.io/component-base/version.gitTreeState=clean"
for b in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet; do
  [ -x "$BIN_DIR/$b" ] && continue
  log "go build $b"
  go build -trimpath -ldflags "$LD" -o "$BIN_DIR/$b.tmp" "k8s.io/kubernetes/cmd/$b" >"build-$b.log" 2>&1 ||
    die "building $b failed: $(tail -n5 "build-$b.log")"
  mv "$BIN_DIR/$b.tmp" "$BIN_DIR/$b"
done
if [ ! -x "$BIN_DIR/etcd" ]; then
  log "go build etcd"
  go build -trimpath -ldflags "-s -w" -o "$BIN_DIR/etcd.tmp" go.etcd.io/etcd/server/v3 >build-etcd.log 2>&1 ||
    die "building etcd failed: $(tail -n5 build-etcd.log)"
  mv "$BIN_DIR/etcd.tmp" "$BIN_DIR/etcd"
fi
for t in "kwok sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION" "kwokctl sigs.k8s.io/kwok/cmd/kwokctl@v$KWOK_VERSION" \
         "helm helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"; do
  set -- $t
  [ -x "$BIN_DIR/$1" ] && continue
  log "go install $2"
  (cd "$EMCO_CACHE" && GOBIN="$BIN_DIR" GOFLAGS=-trimpath go install "$2") >"install-$1.log" 2>&1 ||
    die "go install $2 failed (module download?): $(tail -n5 "install-$1.log")"
done
log "binaries ready in $BIN_DIR"
