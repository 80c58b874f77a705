#!/usr/bin/env bash
# The demo: brings the test bed up and shows every cluster's nodes.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
. tests/e2e/bed/lib.sh
bash tests/e2e/bed/up.sh
for c in $HUB $MEMBERS; do
  echo "== $c: kubectl get nodes"
  "$BIN_DIR/kubectl" --kubeconfig "$BED_DIR/$c.kubeconfig" get nodes
done
