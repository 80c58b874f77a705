#!/usr/bin/env bash
# Gives the bed's hub one real node, able to run pods that use the host network:
#   node.sh up [IMAGE.oci.tar ...]  containerd (Debian package) with everything under
#                                   $BED_DIR/node/containerd, the images named here and in
#                                   $EMCO_NODE_IMAGES (space separated) imported into its k8s.io
#                                   namespace, and a kubelet built from the pinned Kubernetes
#                                   modules (build.sh), registered as Node $EMCO_NODE_NAME (hub-node)
#                                   and waited for until Ready. Listens on 127.0.0.1 only.
#   node.sh down                    stops the kubelet, the pods' containers and containerd, undoes
#                                   the mounts and cgroups they made and deletes the Node.
#   node.sh status                  one line: running or not, and why.
# Idempotent: `up` on a running node only imports the images, `down` on a stopped one is a no-op.
# Logs: $BED_DIR/node/{containerd,kubelet}.log. Needs root and writable cgroups; says which is
# missing otherwise. No CNI, no kube-proxy: pods must use hostNetwork (a pod network pod fails
# with the placeholder network's "failed to find plugin" error).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
D=$BED_DIR/node
NODE=${EMCO_NODE_NAME:-hub-node}
CGROUP=emco-bed-node                       # cgroupRoot of the kubelet, in every hierarchy
SOCK=$D/containerd/containerd.sock
HUB_PKI=$BED_DIR/kwok/clusters/$HUB/pki
KWOK_CONF=$BED_DIR/kwok/clusters/$HUB/kwok.yaml
k() { "$BIN_DIR/kubectl" --kubeconfig "$BED_DIR/$HUB.kubeconfig" "$@"; }
ctr_() { ctr --address "$SOCK" --namespace k8s.io "$@"; }
alive() { [ -f "$D/$1.pid" ] && kill -0 "$(cat "$D/$1.pid")" 2>/dev/null; }
node_ready() {
  [ "$(k get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

# Why this machine cannot run the node, or nothing.
unfit() {
  [ "$(id -u)" = 0 ] || { echo "the node needs root (the kubelet and containerd make mounts and cgroups); running as uid $(id -u)"; return; }
  [ -d /sys/fs/cgroup ] || { echo "no /sys/fs/cgroup: cgroups are not mounted"; return; }
  local fs; fs=$(stat -fc %T /sys/fs/cgroup)
  if [ "$fs" != cgroup2fs ]; then
    local c
    for c in cpu cpuacct cpuset memory pids; do
      [ -d /sys/fs/cgroup/$c ] || { echo "cgroup v1 controller $c is not mounted at /sys/fs/cgroup/$c (the kubelet needs cpu, cpuacct, cpuset, memory and pids)"; return; }
    done
  fi
  local probe=/sys/fs/cgroup/memory/$CGROUP-probe
  [ "$fs" = cgroup2fs ] && probe=/sys/fs/cgroup/$CGROUP-probe
  mkdir "$probe" 2>/dev/null && rmdir "$probe" || { echo "cannot create cgroups ($(dirname "$probe") is not writable)"; return; }
  [ -f "$BED_DIR/$HUB.kubeconfig" ] && [ -f "$HUB_PKI/ca.crt" ] || { echo "the bed is not up (no $BED_DIR/$HUB.kubeconfig): run tests/e2e/bed/up.sh"; return; }
}

need_packages() { # containerd and runc from Debian, when missing
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [ ${#missing[@]} = 0 ] && return
  command -v apt-get >/dev/null || die "${missing[*]} missing and no apt-get to install them"
  log "installing ${missing[*]} with apt-get"
  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"; } \
    >"$D/apt.log" 2>&1 || die "apt-get install ${missing[*]} failed: $(tail -n3 "$D/apt.log")"
}

# A daemon must not keep open what its caller holds, such as the bed's lock: flock(1) hands its
# locked file descriptor to the command it runs, and so to every process that command starts.
close_fds() { # in a subshell about to exec: closes every file descriptor above 2
  local me=$BASHPID fd
  for fd in $(ls "/proc/$me/fd"); do [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null; done
  return 0
}
daemon() { # daemon LOG COMMAND...: starts it in the background, output appended to LOG; prints the pid
  local log=$1; shift
  ( close_fds; exec nohup "$@" </dev/null >>"$log" 2>&1 ) &
  echo $!
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# kwokctl's binary runtime starts every kwok-controller with --manage-all-nodes=true, so it would
# take over this Node (fake status, heartbeats, and fake-run our pods). Make the hub's manage only
# the fake nodes, as kwokctl's kind runtime does (annotation kwok.x-k8s.io/node=fake, which
# up.sh puts on every fake node): change its stored command line and restart it alone.
kwok_leaves_real_nodes() {
  local pidf=$BED_DIR/kwok/clusters/$HUB/pids/kwok-controller.pid
  [ -f "$KWOK_CONF" ] || die "no $KWOK_CONF: is the hub made by up.sh (kwokctl, binary runtime)?"
  if grep -q -- '- --manage-all-nodes=true' "$KWOK_CONF"; then
    log "hub's kwok-controller managed all nodes: now only those annotated kwok.x-k8s.io/node=fake"
    sed -i 's|^\( *\)- --manage-all-nodes=true$|\1- --manage-all-nodes=false\n\1- --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake|' "$KWOK_CONF"
  fi
  if [ -f "$pidf" ] && ! tr '\0' '\n' <"/proc/$(cat "$pidf")/cmdline" 2>/dev/null | grep -qx -- '--manage-all-nodes=false'; then
    local pid; pid=$(cat "$pidf")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    ( close_fds; KWOK_WORKDIR=$BED_DIR/kwok exec "$BIN_DIR/kwokctl" start cluster --name "$HUB" </dev/null >"$D/kwok-restart.log" 2>&1 ) ||
      die "restarting the hub's kwok-controller failed: $(tail -n3 "$D/kwok-restart.log")"
  fi
  tr '\0' '\n' <"/proc/$(cat "$pidf")/cmdline" 2>/dev/null | grep -qx -- '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake' ||
    die "the hub's kwok-controller (pid $(cat "$pidf" 2>/dev/null)) still manages every node; see $KWOK_CONF"
}

cgroup_dirs() { # the kubelet's cgroupRoot in every mounted hierarchy
  local m
  for m in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    case $(stat -fc %T "$m") in cgroupfs|cgroup2fs) echo "${m%/}/$CGROUP" ;; esac
  done
}

make_cgroups() {
  local dir parent
  for dir in $(cgroup_dirs); do
    mkdir -p "$dir"
    parent=$(dirname "$dir")
    if [ -f "$parent/cpuset.cpus" ] && [ -z "$(cat "$dir/cpuset.cpus" 2>/dev/null)" ]; then # cgroup v1 cpuset starts empty
      cat "$parent/cpuset.cpus" >"$dir/cpuset.cpus"
      cat "$parent/cpuset.mems" >"$dir/cpuset.mems"
    fi
  done
}

start_containerd() {
  mkdir -p "$D/containerd" "$D/cni/net.d" "$D/cni/bin"
  # A placeholder network: the CRI plugin reports NetworkReady (and so the Node Ready) once one
  # config loads. Its plugin does not exist: only hostNetwork pods, which never call CNI, can run.
  cat >"$D/cni/net.d/10-emco-bed.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "emco-bed-host-network-only", "plugins": [{"type": "emco-bed-no-pod-network"}]}
JSON
  cat >"$D/containerd/config.toml" <<TOML
# containerd for the bed's node (written by tests/e2e/bed/node.sh): everything under $D.
version = 2
root = "$D/containerd/root"
state = "$D/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$SOCK"
[plugins."io.containerd.internal.v1.opt"]
  path = "$D/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  # Without CAP_SYS_RESOURCE (this VM) nothing may lower its oom_score_adj: the kubelet asks -998
  # for sandboxes, which runc's init cannot set ("can't get final child's PID from pipe: EOF").
  # Never go below containerd's own.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$D/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$D/cni/bin"
    conf_dir = "$D/cni/net.d"
TOML
  if alive containerd && ctr_ version >/dev/null 2>&1; then return; fi
  log "starting containerd (log: $D/containerd.log)"
  daemon "$D/containerd.log" containerd --config "$D/containerd/config.toml" >"$D/containerd.pid"
  for _ in $(seq 100); do ctr_ version >/dev/null 2>&1 && return; alive containerd || break; sleep 0.1; done
  die "containerd did not start: $(tail -n3 "$D/containerd.log")"
}

import_images() {
  local tarball name
  for tarball in "$D/pause.oci.tar" "$@"; do
    [ -f "$tarball" ] || die "no image tarball $tarball"
    ctr_ images import "$tarball" >"$D/import.log" 2>&1 || die "importing $tarball failed: $(tail -n3 "$D/import.log")"
    name=$(python3 -c 'import json, sys, tarfile; t = tarfile.open(sys.argv[1]); print(json.load(t.extractfile("index.json"))["manifests"][0]["annotations"]["io.containerd.image.name"])' "$tarball")
    log "image $name imported from $tarball"
  done
}

start_kubelet() {
  mkdir -p "$D/kubelet/root" "$D/kubelet/pod-logs"
  (umask 077; cp "$BED_DIR/$HUB.kubeconfig" "$D/kubelet/kubeconfig") # the hub's admin: fine on a test bed
  if alive kubelet; then return; fi
  local port healthz
  port=$(free_port); healthz=$(free_port)
  # Every path under $D; cgroup v1 without systemd; serving on 127.0.0.1 only.
  cat >"$D/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
failSwapOn: false
containerRuntimeEndpoint: unix://$SOCK
imageServiceEndpoint: unix://$SOCK
address: 127.0.0.1
port: $port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $healthz
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $HUB_PKI/ca.crt}
authorization: {mode: Webhook}
serverTLSBootstrap: false
rotateCertificates: false
podLogsDir: $D/kubelet/pod-logs
volumePluginDir: $D/kubelet/volume-plugins
# Images come from node.sh's imports only (pullPolicy Never): never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
maxPods: 30
# The kubelet's own oom_score_adj (-999 by default) needs CAP_SYS_RESOURCE: keep it as it is.
oomScoreAdj: 0
YAML
  printf 'KUBELET_PORT=%s\nKUBELET_HEALTHZ_PORT=%s\n' "$port" "$healthz" >"$D/node.env"
  # The one path the kubelet does not take from its flags: the device plugins' socket directory.
  [ -e /var/lib/kubelet ] || touch "$D/made-var-lib-kubelet"
  log "starting the kubelet as Node $NODE (127.0.0.1:$port, log: $D/kubelet.log)"
  daemon "$D/kubelet.log" "$BIN_DIR/kubelet" --config "$D/kubelet/config.yaml" --kubeconfig "$D/kubelet/kubeconfig" \
    --root-dir "$D/kubelet/root" --cert-dir "$D/kubelet/pki" --hostname-override "$NODE" \
    --node-labels emco.io/bed-node=true --v 2 >"$D/kubelet.pid"
}

up() {
  local why; why=$(unfit)
  [ -z "$why" ] || die "cannot run a node here: $why"
  local start=$SECONDS
  mkdir -p "$D"
  bash "$BED_SRC/build.sh"
  need_packages
  PAUSE_IMAGE=$(bash "$BED_SRC/pause-image.sh" "$D/pause.oci.tar")
  kwok_leaves_real_nodes
  make_cgroups
  start_containerd
  # shellcheck disable=SC2086
  import_images "$@" ${EMCO_NODE_IMAGES:-}
  start_kubelet
  for _ in $(seq 240); do
    node_ready && { log "node $NODE Ready in $((SECONDS - start)) s"; return; }
    alive kubelet || die "the kubelet exited: $(grep -E '^E|[Ff]ailed|error' "$D/kubelet.log" | tail -n3)"
    sleep 0.5
  done
  die "node $NODE not Ready after 120 s: $(k get node "$NODE" -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.message}; {end}' 2>&1); see $D/kubelet.log"
}

stop_pid() { # stop_pid NAME: SIGTERM, then SIGKILL after 10 s
  alive "$1" || { rm -f "$D/$1.pid"; return 0; }
  local pid; pid=$(cat "$D/$1.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
  rm -f "$D/$1.pid"
  log "$1 stopped"
}

down() {
  [ -d "$D" ] || { log "no node"; return; }
  stop_pid kubelet
  if alive containerd; then # the pods' containers and sandboxes, as the kubelet would remove them
    local id
    for id in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true; done
    for _ in $(seq 50); do ctr_ tasks ls 2>/dev/null | awk 'NR > 1 && $3 == "RUNNING" {r = 1} END {exit !r}' || break; sleep 0.1; done
    for id in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$id" >/dev/null 2>&1 || true; done
    for id in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$id" >/dev/null 2>&1 || true; done
  fi
  stop_pid containerd
  # Shims of this containerd that outlived it (each names its containerd's socket).
  local pid
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $SOCK" || true); do kill -9 "$pid" 2>/dev/null || true; done
  # Processes of pods still in the kubelet's cgroups (containerd gone before it could stop them).
  local dir procs
  procs=$(for dir in $(cgroup_dirs); do if [ -d "$dir" ]; then find "$dir" -name cgroup.procs -exec cat {} +; fi; done | sort -u)
  if [ -n "$procs" ]; then
    log "killing what the pods left running: $(echo $procs)"
    kill -9 $procs 2>/dev/null || true
    sleep 0.5
  fi
  # Mounts under $D, deepest first: the kubelet's rshared root-dir, volumes, rootfs, shm.
  local m
  for m in $(awk -v d="$D/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
  done
  [ "$(awk -v d="$D" '$5 == d' /proc/self/mountinfo)" = "" ] || umount -l "$D" 2>/dev/null || true
  # The kubelet's cgroups (emptied above), deepest first.
  for dir in $(cgroup_dirs); do
    if [ -d "$dir" ]; then find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true; fi
    if [ -d "$dir" ]; then log "could not remove cgroup $dir: $(find "$dir" -name cgroup.procs -exec cat {} + | tr '\n' ' ')"; fi
  done
  # Container log links the kubelet left in /var/log/containers pointing here.
  find /var/log/containers -maxdepth 1 -type l -lname "$D/*" -delete 2>/dev/null || true
  rm -rf "$D/containerd/state" "$D/containerd/runc" "$D/containerd/containerd.sock.ttrpc" "$D/kubelet/root" "$D/kubelet/pod-logs"
  if [ -f "$D/made-var-lib-kubelet" ]; then # made by our kubelet: its device plugin socket only
    rm -rf /var/lib/kubelet/device-plugins
    rmdir /var/lib/kubelet 2>/dev/null || log "/var/lib/kubelet holds more than ours; left as is"
    rm -f "$D/made-var-lib-kubelet"
  fi
  if [ -f "$BED_DIR/$HUB.kubeconfig" ] && k get --raw /readyz >/dev/null 2>&1; then
    k delete node "$NODE" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    k delete pods -A --field-selector "spec.nodeName=$NODE" --force --grace-period=0 >/dev/null 2>&1 || true
  fi
  log "node $NODE down"
}

status() {
  local why; why=$(unfit)
  if [ -n "$why" ]; then echo "unfit: $why"
  elif alive kubelet && node_ready; then echo "up: Node $NODE Ready (kubelet pid $(cat "$D/kubelet.pid"), containerd pid $(cat "$D/containerd.pid"))"
  else echo "down"
  fi
}

cmd=${1:-}
shift || true
case $cmd in
  up) up "$@" ;;
  down) down ;;
  status) status ;;
  *) die "usage: node.sh up [IMAGE.oci.tar ...] | down | status" ;;
esac
