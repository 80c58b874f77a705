#!/usr/bin/env bash
# Runs every test of the workspace on the test bed (or, with arguments, `cargo test <arguments>`). Brings the bed up first; takes it down again at
# the end only if this run started it, so a developer's running bed stays up.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
. tests/e2e/bed/lib.sh

was_up=0
[ -f "$BED_DIR/bed.env" ] && "$BIN_DIR/kubectl" --kubeconfig "$BED_DIR/$HUB.kubeconfig" get --raw /readyz >/dev/null 2>&1 && was_up=1
cleanup() {
  bash tests/e2e/hub.sh stop
  [ "$was_up" = 1 ] || bash tests/e2e/bed/down.sh
}
trap cleanup EXIT

bash tests/e2e/bed/up.sh
bash tests/e2e/hub.sh start
if [ $# -gt 0 ]; then cargo test "$@"; else cargo test --workspace --no-fail-fast; fi
