#!/usr/bin/env bash
# Stops and removes every cluster of the test bed. Idempotent: nothing running is fine.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
export KWOK_WORKDIR=$BED_DIR/kwok
[ -x "$BIN_DIR/kwokctl" ] || { log "no kwokctl built, nothing to stop"; exit 0; }
for c in $("$BIN_DIR/kwokctl" get clusters 2>/dev/null); do
  "$BIN_DIR/kwokctl" delete cluster --name "$c" >/dev/null 2>&1 || log "could not delete $c"
  rm -f "$BED_DIR/$c.kubeconfig"
  log "$c down"
done
rm -f "$BED_DIR/bed.env"
