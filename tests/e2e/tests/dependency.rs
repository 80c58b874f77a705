//! EMCO app dependency: an app that depends on another being Ready (plus waitSeconds) reaches the
//! member only after that.

use std::time::Duration;

use anyhow::Result;
use emco::api::orchestrator::DigState;
use emco::api::rsync::AppContext;
use emco_e2e::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use serde_json::json;

const DB: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: db\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: db}\n  template:\n    metadata:\n      labels: {app: db}\n    spec:\n      containers:\n      - {name: db, image: registry.example/db:1}\n";
const WEB: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  db: db\n";

#[tokio::test]
async fn a_dependent_app_waits_for_ready_and_wait_seconds() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("deps-{}", unique_suffix());
    project(&hub, &ns).await?;
    for (app, template) in [("db", DB), ("web", WEB)] {
        let tgz = chart_tgz(
            app,
            &[
                ("Chart.yaml", &format!("apiVersion: v2\nname: {app}\nversion: 0.1.0\n")),
                ("templates/t.yaml", template),
            ],
        );
        apply(&hub, &chart_configmap(&ns, &format!("{app}-chart"), &tgz)).await?;
    }
    let docs = [
        json!({"apiVersion": "dcm.emco.io/v1alpha1", "kind": "LogicalCloud", "metadata": {"name": "lc", "namespace": ns},
               "spec": {"namespace": ns, "clusters": [{"cluster": "edge01"}]}}),
        json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "CompositeApp", "metadata": {"name": "ca", "namespace": ns},
               "spec": {"apps": [
                   {"name": "web", "chart": {"configMap": {"name": "web-chart"}}, "dependsOn": [{"app": "db", "opStatus": "Ready", "waitSeconds": 2}]},
                   {"name": "db", "chart": {"configMap": {"name": "db-chart"}}}]}}),
        json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "GenericPlacementIntent", "metadata": {"name": "gpi", "namespace": ns},
               "spec": {"appIntents": [{"app": "db", "allOf": [{"cluster": "edge01"}]}, {"app": "web", "allOf": [{"cluster": "edge01"}]}]}}),
        json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "DeploymentIntentGroup", "metadata": {"name": ns, "namespace": ns},
               "spec": {"compositeApp": "ca", "logicalCloud": "lc", "intents": {"genericPlacementIntent": "gpi"}, "approved": true}}),
    ];
    for doc in &docs {
        apply(&hub, doc).await?;
    }
    wait_dig(&hub, &ns, &ns, "Instantiated", Duration::from_secs(60), |s| {
        s.state == DigState::Instantiated && complete(&s.ready)
    })
    .await?;

    let context = Api::<AppContext>::namespaced(hub.clone(), &ns).get(&format!("{ns}-1")).await?;
    let status = context.status.unwrap_or_default();
    let db_ready =
        status.apps.iter().find(|a| a.name == "db").and_then(|a| a.ready_since.clone()).expect("db ready since");
    let web = Api::<ConfigMap>::namespaced(bed.client("edge01").await, &ns).get("web").await?;
    let web_created = web.metadata.creation_timestamp.expect("a creation time").0;
    // creationTimestamp has whole seconds: allow one second of truncation.
    let gap = web_created.duration_since(db_ready.0);
    assert!(gap.as_secs_f64() >= 1.0, "web was created {gap:?} after db was ready; it must wait 2 s");
    Ok(())
}
