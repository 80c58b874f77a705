#!/usr/bin/env bash
# Prepares the hub of the running test bed and runs the operator against it:
#   hub.sh start   CRDs, emco-system, member kubeconfig Secrets, ClusterProvider and Clusters of the
#                  SmartCity sample, then the operator in the background (log: $BED_DIR/operator.log)
#   hub.sh restart stops the operator and starts it again (no build, no hub changes)
#   hub.sh stop    stops the operator
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
. tests/e2e/bed/lib.sh
k() { "$BIN_DIR/kubectl" --kubeconfig "$BED_DIR/$HUB.kubeconfig" "$@"; }
pidfile=$BED_DIR/operator.pid

stop() {
  if [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null; then
    for _ in $(seq 50); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.1; done
    log "operator stopped"
  fi
  rm -f "$pidfile"
}

launch() {
  KUBECONFIG=$BED_DIR/$HUB.kubeconfig EMCO_NAMESPACE=emco-system RUST_LOG=${RUST_LOG:-info,kube=warn} \
    nohup "$root/target/debug/emco-operator" >>"$BED_DIR/operator.log" 2>&1 &
  echo $! >"$pidfile"
}

start() {
  stop
  : >"$BED_DIR/operator.log"
  cargo build -q -p emco-operator --bin emco-operator
  k apply --server-side --force-conflicts -f crds/ >/dev/null
  k wait --for condition=Established --timeout=60s -f crds/ >/dev/null
  k create namespace emco-system --dry-run=client -o yaml | k apply -f - >/dev/null
  for m in $MEMBERS; do # the Secret's content is never printed
    k -n emco-system create secret generic "$m-kubeconfig" --from-file=kubeconfig="$BED_DIR/$m.kubeconfig" \
      --dry-run=client -o yaml | k apply -f - >/dev/null
  done
  k apply -f config/samples/smartcity/00-cluster-provider.yaml -f config/samples/smartcity/01-clusters.yaml >/dev/null
  launch
  k wait --for condition=Ready --timeout=60s clusters.clm.emco.io --all >/dev/null ||
    die "member clusters did not become Ready; see $BED_DIR/operator.log"
  log "operator running (pid $(cat "$pidfile")), members registered and Ready"
}

case "${1:-}" in
  start) start ;;
  restart) stop; launch; log "operator restarted (pid $(cat "$pidfile"))" ;;
  stop) stop ;;
  *) die "usage: hub.sh start|restart|stop" ;;
esac
