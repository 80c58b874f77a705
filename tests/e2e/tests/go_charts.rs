//! A DIG whose apps are ordinary Helm charts (Go templates; one an umbrella with subcharts, an
//! alias, a condition and a library chart) deploys to the members, updates with a new values
//! profile (the old objects go and stay gone), terminates like any other, and a template error
//! fails the DIG naming the file and line.

use std::time::Duration;

use anyhow::Result;
use emco::api::orchestrator::DigState;
use emco_e2e::*;
use serde_json::json;

const CHARTS: &str = "tests/e2e/charts";

async fn deployments(bed: &Bed, member: &str, dig: &str) -> Result<Vec<String>> {
    deployed_names(&bed.client(member).await, "apps/v1", "Deployment", "deployments", dig).await
}

fn profile(ns: &str, umbrella: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "CompositeProfile", "metadata": {"name": "profile", "namespace": ns},
           "spec": {"profiles": [{"app": "umbrella", "values": umbrella}, {"app": "basics", "values": {"name": "Basics", "ports": [{"name": "http", "port": 80}]}}]}})
}

#[tokio::test]
async fn go_template_charts_deploy_update_and_terminate() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("gochart-{}", unique_suffix());
    project(&hub, &ns).await?;
    for (app, chart) in [("umbrella", "gt-umbrella"), ("basics", "gt-basics")] {
        apply(&hub, &chart_configmap(&ns, &format!("{app}-chart"), &chart_dir_tgz(&format!("{CHARTS}/{chart}"))))
            .await?;
    }
    let docs = [
        json!({"apiVersion": "dcm.emco.io/v1alpha1", "kind": "LogicalCloud", "metadata": {"name": "lc", "namespace": ns},
               "spec": {"type": "Admin", "namespace": ns, "clusters": [{"cluster": "edge01"}, {"cluster": "edge02"}]}}),
        json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "CompositeApp", "metadata": {"name": "ca", "namespace": ns},
               "spec": {"apps": [{"name": "umbrella", "chart": {"configMap": {"name": "umbrella-chart"}}},
                                 {"name": "basics", "chart": {"configMap": {"name": "basics-chart"}}}]}}),
        json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "GenericPlacementIntent", "metadata": {"name": "gpi", "namespace": ns},
               "spec": {"appIntents": [{"app": "umbrella", "allOf": [{"cluster": "edge01"}]}, {"app": "basics", "allOf": [{"cluster": "edge02"}]}]}}),
        profile(&ns, json!({"backend": {"size": 2}})),
        json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "DeploymentIntentGroup", "metadata": {"name": ns, "namespace": ns},
               "spec": {"compositeApp": "ca", "compositeProfile": "profile", "logicalCloud": "lc", "release": "shop",
                        "intents": {"genericPlacementIntent": "gpi"}, "approved": true}}),
    ];
    for doc in &docs {
        apply(&hub, doc).await?;
    }
    wait_dig(&hub, &ns, &ns, "Instantiated and ready", Duration::from_secs(90), |s| {
        s.state == DigState::Instantiated && complete(&s.deployed) && complete(&s.ready)
    })
    .await?;
    assert_eq!(
        deployments(&bed, "edge01", &ns).await?,
        ["shop-backend-2", "shop-frontend"],
        "umbrella and its backend subchart"
    );
    assert!(deployments(&bed, "edge02", &ns).await?.is_empty(), "basics has no Deployment");
    let services = deployed_names(&bed.client("edge02").await, "v1", "Service", "services", &ns).await?;
    assert_eq!(services, ["basics"], "the basics chart's Service, named by its helper");

    // A new values profile: the backend resized (renamed) and the aliased replica switched on.
    apply(&hub, &profile(&ns, json!({"backend": {"size": 4}, "replica": {"enabled": true}}))).await?;
    wait_dig(&hub, &ns, &ns, "revision 2 applied", Duration::from_secs(90), |s| {
        s.revision == Some(2) && complete(&s.deployed)
    })
    .await?;
    let expected = ["shop-backend-4", "shop-frontend", "shop-replica-1"];
    wait_for("the update on edge01", Duration::from_secs(30), || async {
        Ok((deployments(&bed, "edge01", &ns).await? == expected).then_some(()))
    })
    .await?;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(deployments(&bed, "edge01", &ns).await?, expected, "the update holds");
    }

    // A template error: the DIG says which file and line; what is deployed stays.
    let broken = chart_tgz(
        "basics",
        &[
            ("Chart.yaml", "apiVersion: v2\nname: basics\nversion: 0.3.0\n"),
            (
                "templates/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Values.name | nosuchfunc }}\n",
            ),
        ],
    );
    apply(&hub, &chart_configmap(&ns, "basics-chart", &broken)).await?;
    let status = wait_dig(&hub, &ns, &ns, "refused with TemplateError", Duration::from_secs(30), |s| {
        s.conditions.iter().any(|c| c.type_ == "Placed" && c.reason == "TemplateError")
    })
    .await?;
    let placed = status.conditions.iter().find(|c| c.type_ == "Placed").unwrap();
    assert!(
        placed.message.contains("basics/templates/cm.yaml")
            && placed.message.contains(":4:")
            && placed.message.contains("nosuchfunc"),
        "{}",
        placed.message
    );
    assert_eq!(status.revision, Some(2));

    set_dig_state(&hub, &ns, &ns, "Terminated").await?;
    wait_dig(&hub, &ns, &ns, "Terminated", Duration::from_secs(60), |s| s.state == DigState::Terminated).await?;
    for member in ["edge01", "edge02"] {
        assert!(deployments(&bed, member, &ns).await?.is_empty(), "nothing left on {member}");
    }
    Ok(())
}
