#!/usr/bin/env bash
# The demo: test bed up, operator running, the SmartCity sample applied, then its status and the
# pods on every member. The bed and the operator keep running afterwards; `just down` stops both.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
. tests/e2e/bed/lib.sh
sample=config/samples/smartcity
k() { "$BIN_DIR/kubectl" --kubeconfig "$BED_DIR/$HUB.kubeconfig" "$@"; }

bash tests/e2e/bed/up.sh
bash tests/e2e/hub.sh start
k apply -f "$sample/02-project.yaml" -f "$sample/02-grant.yaml"
k wait --for condition=Ready --timeout=60s project.orchestrator.emco.io/smtc >/dev/null
for chart in smtc-edge smtc-cloud; do # a packaged chart, as `helm package` makes it, in a ConfigMap
  tar -C "$sample/charts" -czf "$BED_DIR/$chart.tgz" "$chart"
  k -n smtc create configmap "$chart-chart" --from-file=chart.tgz="$BED_DIR/$chart.tgz" --dry-run=client -o yaml | k apply -f - >/dev/null
done
start=$(date +%s%N)
k apply -f "$sample/03-logical-cloud.yaml" -f "$sample/04-composite-app.yaml" -f "$sample/05-composite-profile.yaml" \
  -f "$sample/06-placement.yaml" -f "$sample/06-action-intent.yaml" -f "$sample/06-traffic-intent.yaml" -f "$sample/07-dig.yaml"
k -n smtc wait --for condition=Ready --timeout=180s dig/smtc >/dev/null || {
  k -n smtc get dig smtc -o yaml; die "the SmartCity DIG did not become Ready; see $BED_DIR/operator.log"; }
echo "SmartCity deployed and ready $(( ($(date +%s%N) - start) / 1000000 )) ms after kubectl apply"
echo
echo "== hub: kubectl get dig,appcontext -A"
k get dig,appcontext -A
echo
echo "== hub: kubectl emco status smtc -n smtc"
KUBECONFIG="$BED_DIR/$HUB.kubeconfig" target/debug/kubectl-emco status smtc -n smtc
for m in $MEMBERS; do
  echo
  echo "== $m: kubectl get pods -n smartcity"
  "$BIN_DIR/kubectl" --kubeconfig "$BED_DIR/$m.kubeconfig" -n smartcity get pods
done
