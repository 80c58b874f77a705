# Shared settings for the test-bed scripts. Sourced, never run.
BED_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
. "$BED_SRC/versions.env"
EMCO_CACHE=${EMCO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/emco-rs}
BIN_DIR=$EMCO_CACHE/k8s/v$KUBE_VERSION-kwok$KWOK_VERSION/bin
# Where the running bed keeps its state: clusters, kubeconfigs, logs.
BED_DIR=${EMCO_BED_DIR:-$(cd "$BED_SRC/../../.." && pwd)/target/bed}
MEMBERS=${EMCO_MEMBERS:-"edge01 edge02 cloud01"}
HUB=hub

die() { echo "test bed: $*" >&2; exit 1; }
log() { echo "test bed: $*" >&2; }
