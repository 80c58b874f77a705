#!/usr/bin/env bash
# The scale bed: N member clusters as bare kube-apiservers (no controllers, --watch-cache=false)
# sharing one etcd under distinct --etcd-prefix, each on its own 127.0.0.1 port, registered on the
# test bed's hub as Clusters s0..s<N-1> (provider `scale`, label `scale`). For `just bench-scale`.
#   scale.sh up N    start (or grow to) N members and register them
#   scale.sh down    stop them, unregister them, remove their state
# Needs the test bed's hub (`just up`) and openssl. The members serve Go's /debug/pprof
# (SCALE_PROFILING=false: not): the bench has each collect its garbage before a measured phase.
# The members do not compact their etcd: a compaction at a random moment is noise in a timed
# phase, and one that passes a quiet watch's resourceVersion makes it list again later. The bench
# compacts between runs, one run back.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
dir=$BED_DIR/scale
etcd_port=23790
base_port=24000
k() { "$BIN_DIR/kubectl" --kubeconfig "$BED_DIR/$HUB.kubeconfig" "$@"; }

pki() { # one CA, one serving certificate for 127.0.0.1, one service-account key, one admin token
  [ -f "$dir/pki/serving.crt" ] && return
  mkdir -p "$dir/pki" && cd "$dir/pki"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 -subj /CN=scale-ca 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout serving.key -out serving.csr -subj /CN=127.0.0.1 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
  openssl x509 -req -in serving.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out serving.crt -days 30 -extfile san.ext 2>/dev/null
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  (umask 077; echo "$(openssl rand -hex 16),admin,admin,system:masters" >tokens.csv)
  cd - >/dev/null
}

start_etcd() {
  if curl -sf "http://127.0.0.1:$etcd_port/health" >/dev/null 2>&1; then return; fi
  mkdir -p "$dir/etcd"
  nohup "$BIN_DIR/etcd" --data-dir "$dir/etcd" --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" --listen-peer-urls http://127.0.0.1:23791 \
    --quota-backend-bytes 8589934592 --unsafe-no-fsync >"$dir/etcd.log" 2>&1 &
  echo $! >"$dir/etcd.pid"
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$etcd_port/health" >/dev/null 2>&1 && return; sleep 0.1; done
  die "scale etcd did not start; see $dir/etcd.log"
}

start_member() {
  local i=$1 port=$((base_port + $1))
  [ -f "$dir/s$i.pid" ] && kill -0 "$(cat "$dir/s$i.pid")" 2>/dev/null && return
  GOMAXPROCS=${SCALE_GOMAXPROCS:-1} nohup "$BIN_DIR/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" --etcd-prefix "/s$i" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$port" \
    --tls-cert-file "$dir/pki/serving.crt" --tls-private-key-file "$dir/pki/serving.key" \
    --client-ca-file "$dir/pki/ca.crt" --token-auth-file "$dir/pki/tokens.csv" --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$dir/pki/sa.pub" \
    --service-account-signing-key-file "$dir/pki/sa.key" --service-cluster-ip-range 10.96.0.0/16 \
    --watch-cache=false --enable-priority-and-fairness=false --endpoint-reconciler-type none \
    --etcd-compaction-interval 0 \
    --profiling="${SCALE_PROFILING:-true}" -v 0 >"$dir/s$i.log" 2>&1 &
  echo $! >"$dir/s$i.pid"
  local token ca
  token=$(cut -d, -f1 "$dir/pki/tokens.csv")
  ca=$(base64 -w0 "$dir/pki/ca.crt")
  (umask 077; cat >"$dir/s$i.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: s$i, cluster: {server: "https://127.0.0.1:$port", certificate-authority-data: "$ca"}}]
users: [{name: admin, user: {token: "$token"}}]
contexts: [{name: s$i, context: {cluster: s$i, user: admin}}]
current-context: s$i
KC
  )
}

wait_member() {
  for _ in $(seq 300); do
    "$BIN_DIR/kubectl" --kubeconfig "$dir/s$1.kubeconfig" get --raw /readyz >/dev/null 2>&1 && return
    sleep 0.2
  done
  die "member s$1 did not become ready; see $dir/s$1.log"
}

register() { # the kubeconfig Secret and the Cluster on the hub (a node, so that the Cluster is Ready)
  local i=$1
  "$BIN_DIR/kubectl" --kubeconfig "$dir/s$i.kubeconfig" apply -f - >/dev/null <<NODE
apiVersion: v1
kind: Node
metadata: {name: s$i-node-0, labels: {kubernetes.io/hostname: s$i-node-0}}
NODE
  "$BIN_DIR/kubectl" --kubeconfig "$dir/s$i.kubeconfig" patch node "s$i-node-0" --subresource status --type merge \
    -p '{"status":{"conditions":[{"type":"Ready","status":"True","reason":"Scale","message":"bare apiserver","lastHeartbeatTime":null}],"allocatable":{"cpu":"32","memory":"128Gi","pods":"250"}}}' >/dev/null
  k -n emco-system create secret generic "s$i-kubeconfig" --from-file=kubeconfig="$dir/s$i.kubeconfig" \
    --dry-run=client -o yaml | k apply -f - >/dev/null
  k apply -f - >/dev/null <<CLUSTER
apiVersion: clm.emco.io/v1alpha1
kind: Cluster
metadata: {name: s$i, labels: {scale: ""}}
spec:
  provider: scale
  kubeconfig: {secretRef: {namespace: emco-system, name: s$i-kubeconfig, key: kubeconfig}}
CLUSTER
}

up() {
  local n=${1:?usage: scale.sh up N}
  [ -f "$BED_DIR/bed.env" ] || die "the test bed is not running: just up"
  if [ "$(id -u)" = 0 ] && [ "$(cat /proc/sys/fs/inotify/max_user_instances)" -lt 1024 ]; then
    echo 1024 >/proc/sys/fs/inotify/max_user_instances && log "raised fs.inotify.max_user_instances to 1024"
  elif [ "$(id -u)" != 0 ]; then
    log "not root: fs.inotify.max_user_instances stays $(cat /proc/sys/fs/inotify/max_user_instances)"
  fi
  pki
  start_etcd
  local started=$SECONDS
  for i in $(seq 0 $((n - 1))); do start_member "$i"; done
  for i in $(seq 0 $((n - 1))); do wait_member "$i"; done
  k apply -f - >/dev/null <<'PROVIDER'
apiVersion: clm.emco.io/v1alpha1
kind: ClusterProvider
metadata: {name: scale}
PROVIDER
  for i in $(seq 0 $((n - 1))); do register "$i"; done
  echo "$n" >"$dir/members"
  log "scale bed: $n members up and registered in $((SECONDS - started)) s"
}

down() {
  # Clusters first (they go once no AppContext uses them), then their Secrets, then the servers.
  k delete clusters.clm.emco.io -l scale --timeout=60s >/dev/null 2>&1 || log "some scale Clusters are still in use"
  k -n emco-system get secret -o name 2>/dev/null | grep -E '^secret/s[0-9]+-kubeconfig$' |
    xargs -r "$BIN_DIR/kubectl" --kubeconfig "$BED_DIR/$HUB.kubeconfig" -n emco-system delete >/dev/null 2>&1 || true
  for pidfile in "$dir"/s*.pid "$dir"/etcd.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  sleep 1
  rm -rf "$dir"
  log "scale bed down"
}

case "${1:-}" in
  up) up "${2:-}" ;;
  down) down ;;
  *) die "usage: scale.sh up N | down" ;;
esac
