#!/usr/bin/env bash
# Starts the test bed: a hub and member clusters (etcd, kube-apiserver, controller-manager, scheduler
# and a kwok node controller each) on 127.0.0.1, one kubeconfig per cluster in $BED_DIR.
# Idempotent: clusters that already answer are left alone, stopped ones are started again.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bash "$BED_SRC/build.sh"
export KWOK_WORKDIR=$BED_DIR/kwok PATH=$BIN_DIR:$PATH
mkdir -p "$BED_DIR"

ready() { kubectl --kubeconfig "$BED_DIR/$1.kubeconfig" get --raw /readyz >/dev/null 2>&1; }

config_for() { # kwokctl config: give the controller-manager the cluster CA so CSRs get signed
  local pki=$KWOK_WORKDIR/clusters/$1/pki
  cat <<CFG
kind: KwokctlConfiguration
apiVersion: config.kwok.x-k8s.io/v1alpha1
componentsPatches:
- name: kube-controller-manager
  extraArgs:
  - {key: cluster-signing-cert-file, value: $pki/ca.crt}
  - {key: cluster-signing-key-file, value: $pki/ca.key}
# Only kwok's fake nodes are kwok's: the hub's real node (node.sh) is its kubelet's.
- name: kwok-controller
  extraArgs:
  - {key: manage-all-nodes, value: "false", override: true}
  - {key: manage-nodes-with-annotation-selector, value: kwok.x-k8s.io/node=fake}
CFG
}

flatten() { # self-contained kubeconfig (certificates inline), fit for a hub Secret
  kubectl --kubeconfig "$BED_DIR/$1.kubeconfig" config view --flatten --minify >"$BED_DIR/$1.kubeconfig.tmp"
  mv "$BED_DIR/$1.kubeconfig.tmp" "$BED_DIR/$1.kubeconfig"
}

up_cluster() {
  local name=$1 started=$SECONDS
  if kwokctl get clusters 2>/dev/null | grep -qx "$name"; then
    if ready "$name"; then log "$name already running"; flatten "$name"; return; fi
    kwokctl start cluster --name "$name" --wait 2m >"$BED_DIR/$name.up.log" 2>&1 ||
      die "starting $name failed: $(tail -n5 "$BED_DIR/$name.up.log")"
  else
    config_for "$name" >"$BED_DIR/$name.kwokctl.yaml"
    kwokctl --config "$BED_DIR/$name.kwokctl.yaml" create cluster --name "$name" --runtime binary \
      --kube-apiserver-binary "$BIN_DIR/kube-apiserver" \
      --kube-controller-manager-binary "$BIN_DIR/kube-controller-manager" \
      --kube-scheduler-binary "$BIN_DIR/kube-scheduler" \
      --kwok-controller-binary "$BIN_DIR/kwok" --etcd-binary "$BIN_DIR/etcd" \
      --kubeconfig "$BED_DIR/$name.kubeconfig" --wait 2m >"$BED_DIR/$name.up.log" 2>&1 ||
      die "creating $name failed: $(tail -n5 "$BED_DIR/$name.up.log")"
  fi
  flatten "$name"
  log "$name up in $((SECONDS - started)) s"
}

add_node() { # one fake node that kwok keeps Ready, so Deployments become Available
  kubectl --kubeconfig "$BED_DIR/$1.kubeconfig" apply -f - >/dev/null <<NODE
apiVersion: v1
kind: Node
metadata:
  name: $1-node-0
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {kubernetes.io/hostname: $1-node-0, kubernetes.io/os: linux, kubernetes.io/arch: amd64, type: kwok}
spec: {}
status:
  allocatable: {cpu: "32", memory: 128Gi, pods: "250"}
  capacity: {cpu: "32", memory: 128Gi, pods: "250"}
NODE
}

start=$SECONDS
for c in $HUB $MEMBERS; do up_cluster "$c"; done
for m in $MEMBERS; do add_node "$m"; done
printf '%s\n' "HUB=$HUB" "MEMBERS=\"$MEMBERS\"" "BIN_DIR=$BIN_DIR" >"$BED_DIR/bed.env"
log "bed ready in $((SECONDS - start)) s: kubeconfigs in $BED_DIR ($HUB $MEMBERS)"
