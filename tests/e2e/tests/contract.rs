//! The contract (`docs/api.md` of the design): every kind in its smallest form is accepted (no
//! `spec` where all of it is optional), and the contract's own examples deploy.

use std::time::Duration;

use anyhow::Result;
use emco::api::condition;
use emco::api::orchestrator::DigState;
use emco_e2e::*;
use kube::Api;
use serde_json::json;

#[tokio::test]
async fn every_kind_in_its_smallest_form_is_accepted_and_reconciled() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let suffix = unique_suffix();
    let ns = format!("contract-{suffix}");

    // No spec at all where every field is optional.
    apply(&hub, &json!({"apiVersion": "clm.emco.io/v1alpha1", "kind": "ClusterProvider", "metadata": {"name": format!("cp-{suffix}")}})).await?;
    apply(&hub, &json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "Project", "metadata": {"name": ns}}))
        .await?;
    let projects = Api::<emco::api::orchestrator::Project>::all(hub.clone());
    let status = wait_until("the spec-less Project Ready", Duration::from_secs(30), || async {
        let p = projects.get(&ns).await?;
        let status = p.status.unwrap_or_default();
        Ok(if condition::is_true(&status.conditions, "Ready") { Ok(status) } else { Err(format!("{status:?}")) })
    })
    .await?;
    assert_eq!(status.namespace.as_deref(), Some(ns.as_str()), "the namespace defaults to the project's name");
    apply(&hub, &json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "CompositeProfile", "metadata": {"name": "empty", "namespace": ns}})).await?;

    // The hub is closed: the platform admin grants the project its clusters, as the contract shows.
    grant(&hub, &ns, json!({"clusters": ["edge01", "cloud01"], "logicalCloudTypes": ["Admin"]})).await?;
    // The contract's examples, as written there (names adapted to the bed).
    apply(&hub, &chart_configmap(&ns, "probe-chart", &chart_tgz("probe", &probe_chart_files()))).await?;
    let docs = [
        json!({"apiVersion": "dcm.emco.io/v1alpha1", "kind": "LogicalCloud", "metadata": {"name": "default", "namespace": ns},
               "spec": {"type": "Admin", "namespace": ns, "clusters": [{"cluster": "edge01"}, {"cluster": "cloud01"}]}}),
        json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "CompositeApp", "metadata": {"name": "smtc", "namespace": ns},
               "spec": {"version": "v1", "apps": [
                   {"name": "db", "chart": {"configMap": {"name": "probe-chart", "key": "chart.tgz"}}},
                   {"name": "edge", "chart": {"configMap": {"name": "probe-chart", "key": "chart.tgz"}},
                    "dependsOn": [{"app": "db", "opStatus": "Ready", "waitSeconds": 0}]}]}}),
        json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "CompositeProfile", "metadata": {"name": "smtc-profile", "namespace": ns},
               "spec": {"profiles": [{"app": "edge", "values": {"greeting": "from the profile"}}]}}),
        json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "GenericPlacementIntent", "metadata": {"name": "smtc-placement", "namespace": ns},
               "spec": {"appIntents": [
                   {"app": "edge", "allOf": [{"clusterProvider": "smartcity", "clusterLabel": "LabelSmartCityEdge"}]},
                   {"app": "db", "anyOf": [{"clusterProvider": "smartcity", "cluster": "cloud01"}, {"clusterProvider": "smartcity", "cluster": "cloud02"}]}]}}),
        json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "DeploymentIntentGroup", "metadata": {"name": "smtc", "namespace": ns},
               "spec": {"compositeApp": "smtc", "compositeProfile": "smtc-profile", "logicalCloud": "default", "release": "smtc",
                        "overrideValues": [{"app": "db", "values": {"greeting": "from the DIG"}}],
                        "intents": {"genericPlacementIntent": "smtc-placement"},
                        "approved": true, "state": "Instantiated", "stop": false}}),
    ];
    for doc in &docs {
        apply(&hub, doc).await?;
    }
    wait_dig(&hub, &ns, "smtc", "Instantiated", Duration::from_secs(60), |s| {
        s.state == DigState::Instantiated && complete(&s.ready)
    })
    .await?;
    let greeting = |member: &'static str| {
        let bed = &bed;
        let ns = ns.clone();
        async move {
            let cms = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(bed.client(member).await, &ns);
            Ok::<_, anyhow::Error>(cms.get_opt("probe").await?.and_then(|c| c.data?.remove("greeting")))
        }
    };
    assert_eq!(
        greeting("edge01").await?.as_deref(),
        Some("from the profile"),
        "edge on the labelled member of the cloud"
    );
    assert_eq!(
        greeting("cloud01").await?.as_deref(),
        Some("from the DIG"),
        "db on the one anyOf candidate in the cloud"
    );
    assert_eq!(greeting("edge02").await?, None, "edge02 is not in the logical cloud");
    Ok(())
}
