# EMCO operator: developer commands. `just --list` shows them all.

set shell := ["bash", "-euo", "pipefail", "-c"]

# The test bed: a hub and member clusters from upstream Kubernetes on 127.0.0.1.
bed := "tests/e2e/bed"

default:
    @just --list

# Bring the demo up: test bed, operator, SmartCity sample, status.
demo:
    bash tests/e2e/demo.sh

# Run every test: unit, CRD drift and end to end (brings the bed up, and down again if it started it).
test:
    bash tests/e2e/run.sh

# Benchmarks, printing figures: the controller stage on a SmartCity-sized plan, Go-template chart
# rendering next to `helm template`, then on the test bed SmartCity apply-to-Applied and apply-to-Ready.
bench:
    cargo test -q --release -p emco-operator --test bench_stage -- --ignored --nocapture
    bash tests/e2e/run.sh -p emco-e2e --release --test helm_conformance -- --ignored --nocapture
    bash tests/e2e/run.sh -p emco-e2e --release --test bench -- --ignored --nocapture --test-threads 1
    bash tests/e2e/run.sh -p emco-e2e --test bench_unreachable -- --ignored --nocapture
    bash tests/e2e/run.sh -p emco-e2e --test gitops -- --ignored --nocapture

# Scale benchmark on N bare member apiservers (default 10): fan-out and update propagation next to
# a direct server-side-apply baseline, hub requests per object, operator cost; writes
# target/bench/scale-N.md. Brings the bed and the scale members up, and the scale members down.
bench-scale n="10":
    bash tests/e2e/bed/up.sh
    cargo build -q --release -p emco-operator --bin emco-operator
    EMCO_OPERATOR_BIN=$PWD/target/release/emco-operator bash tests/e2e/hub.sh start
    bash {{bed}}/scale.sh up {{n}}
    cargo test -q -p emco-e2e --release --test bench_scale -- --ignored --nocapture --test-threads 1 || (bash {{bed}}/scale.sh down; exit 1)
    bash {{bed}}/scale.sh down

# Build the pinned upstream binaries into the cache (about 10 minutes cold, instant when cached).
build-bed:
    bash {{bed}}/build.sh

# Start the test bed (idempotent).
up:
    bash {{bed}}/up.sh

# Stop the operator and remove the test bed (idempotent).
down:
    bash tests/e2e/hub.sh stop
    bash {{bed}}/node.sh down
    bash {{bed}}/down.sh

# Memory of the running bed.
bed-stats:
    bash {{bed}}/stats.sh

# Regenerate crds/ from the Rust types.
crds:
    cargo run -q -p emco-operator --bin crdgen > crds/emco-crds.yaml
    cp crds/emco-crds.yaml charts/emco-operator/crds/emco-crds.yaml
