#!/usr/bin/env bash
# Prepares the hub of the running test bed and runs the operator against it:
#   hub.sh start   CRDs, emco-system, the chart's ServiceAccount and RBAC, member kubeconfig Secrets,
#                  ClusterProvider and Clusters of the SmartCity sample, then the operator in the
#                  background as that ServiceAccount (log: $BED_DIR/operator.log), so that a rule
#                  missing from the chart fails the tests
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
  # An operator left by two restarts racing would keep the Lease: none may outlive a stop.
  local stray
  for stray in $(pgrep -xf "${EMCO_OPERATOR_BIN:-$root/target/debug/emco-operator}"); do
    kill "$stray" 2>/dev/null && log "stopped a stray operator (pid $stray)"
  done
  for _ in $(seq 50); do pgrep -xf "${EMCO_OPERATOR_BIN:-$root/target/debug/emco-operator}" >/dev/null || break; sleep 0.1; done
}

# The chart's ServiceAccount, ClusterRole, Role and bindings, as `helm install` would make them,
# and a kubeconfig that authenticates as that ServiceAccount (token in $BED_DIR, never printed).
operator_identity() {
  "$BIN_DIR/helm" template emco-operator charts/emco-operator --namespace emco-system \
    --show-only templates/serviceaccount.yaml --show-only templates/clusterrole.yaml \
    --show-only templates/clusterrolebinding.yaml --show-only templates/role.yaml --show-only templates/personas.yaml | k apply -f - >/dev/null
  local server ca token
  server=$(k config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')
  ca=$(k config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
  token=$(k -n emco-system create token emco-operator --duration=48h)
  (umask 077; cat >"$BED_DIR/operator.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: hub, cluster: {server: "$server", certificate-authority-data: "$ca"}}]
users: [{name: emco-operator, user: {token: "$token"}}]
contexts: [{name: operator, context: {cluster: hub, user: emco-operator}}]
current-context: operator
KC
  )
}

launch() {
  local bin=${EMCO_OPERATOR_BIN:-$root/target/debug/emco-operator}
  local run=("$bin")
  # EMCO_MEMORY_CGROUP: run the operator (and so its render workers) in that cgroup v1 memory
  # group, limited to EMCO_MEMORY_LIMIT bytes, as a pod's container would be.
  if [ -n "${EMCO_MEMORY_CGROUP:-}" ]; then
    mkdir -p "$EMCO_MEMORY_CGROUP"
    echo "${EMCO_MEMORY_LIMIT:?EMCO_MEMORY_LIMIT with EMCO_MEMORY_CGROUP}" >"$EMCO_MEMORY_CGROUP/memory.limit_in_bytes"
    run=(sh -c 'echo $$ >"$0/cgroup.procs" && exec "$1"' "$EMCO_MEMORY_CGROUP" "$bin")
  fi
  # The suite's Helm repositories listen on 127.0.0.2, which the platform admin allow-lists here.
  EMCO_REPOSITORY_ADDRESSES=${EMCO_REPOSITORY_ADDRESSES-127.0.0.2} KUBECONFIG=$BED_DIR/operator.kubeconfig \
    EMCO_NAMESPACE=emco-system EMCO_HEALTH_ADDR=127.0.0.1:18080 RUST_LOG=${RUST_LOG:-info,kube=warn} \
    nohup "${run[@]}" >>"$BED_DIR/operator.log" 2>&1 &
  echo $! >"$pidfile"
}

start() {
  stop
  : >"$BED_DIR/operator.log"
  cargo build -q -p emco-operator -p kubectl-emco --bin emco-operator --bin emco-example-controller --bin kubectl-emco
  k apply --server-side --force-conflicts -f crds/ >/dev/null
  k wait --for condition=Established --timeout=60s -f crds/ >/dev/null
  k create namespace emco-system --dry-run=client -o yaml | k apply -f - >/dev/null
  operator_identity
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
