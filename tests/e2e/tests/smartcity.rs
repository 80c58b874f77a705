//! The SmartCity sample end to end: edge app on every edge-labelled member, cloud app on the cloud
//! member, each office's sensor list from the generic action intent, DIG Instantiated with
//! everything deployed and ready; terminate and delete leave nothing.

use std::time::{Duration, Instant};

use anyhow::Result;
use emco::api::orchestrator::{DeploymentIntentGroup, DigState};
use emco_e2e::*;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;

#[tokio::test]
async fn smartcity_lands_on_the_right_members_and_terminate_removes_everything() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("smtc-{}", unique_suffix());
    project(&hub, &ns).await?;
    let start = Instant::now();
    apply_sample(&hub, &ns, &ns).await?;

    let applied = wait_dig(&hub, &ns, &ns, "deployed n/n", Duration::from_secs(120), |s| complete(&s.deployed)).await?;
    let to_applied = start.elapsed();
    let ready = wait_dig(&hub, &ns, &ns, "Instantiated and ready n/n", Duration::from_secs(120), |s| {
        s.state == DigState::Instantiated && complete(&s.ready) && complete(&s.deployed)
    })
    .await?;
    let to_ready = start.elapsed();
    println!(
        "smartcity: {} resources applied after {to_applied:?}, ready after {to_ready:?}",
        applied.deployed.unwrap()
    );
    assert_eq!(ready.revision, Some(1));
    assert_eq!(ready.controllers, ["genericPlacementIntent", "gac", "dtc"]);

    for member in &bed.members {
        let client = bed.client(member).await;
        let deployments = deployed_names(&client, "apps/v1", "Deployment", "deployments", &ns).await?;
        assert_eq!(deployments, smartcity_deployments(member), "Deployments of {ns} on {member}");
        // The traffic intent: the web on cloud01 admits only the edge offices' addresses.
        let policies = deployed_names(&client, "networking.k8s.io/v1", "NetworkPolicy", "networkpolicies", &ns).await?;
        assert_eq!(policies, if member == "cloud01" { vec!["web-in"] } else { vec![] }, "NetworkPolicies on {member}");
        if member == "cloud01" {
            let policy = Api::<k8s_openapi::api::networking::v1::NetworkPolicy>::namespaced(client.clone(), &ns)
                .get("web-in")
                .await?;
            let from = serde_json::to_value(&policy.spec.unwrap_or_default().ingress.unwrap_or_default()[0].from)?;
            assert_eq!(
                from,
                serde_json::json!([{"ipBlock": {"cidr": "10.1.0.0/16"}}, {"ipBlock": {"cidr": "10.2.0.0/16"}}])
            );
        }
        let config = deployed_names(&client, "v1", "ConfigMap", "configmaps", &ns).await?;
        assert_eq!(
            config.contains(&"smtc-edge-config".to_string()),
            member.starts_with("edge"),
            "edge ConfigMap on {member}: {config:?}"
        );
        // Each office's sensor list comes from the generic action intent's file data.
        let sensors =
            Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client, &ns).get_opt("smtc-edge-sensors").await?;
        let office =
            sensors.and_then(|c| c.data?.remove("sensors.yaml")).and_then(|y| y.lines().next().map(str::to_string));
        let expected = match member.as_str() {
            "edge01" => Some("office: office1"),
            "edge02" => Some("office: office2"),
            _ => None,
        };
        assert_eq!(office.as_deref(), expected, "smtc-edge-sensors on {member}");
    }

    // Values merge: chart < profile < DIG overrideValues.
    let edge01 = bed.client("edge01").await;
    let config =
        Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(edge01.clone(), &ns).get("smtc-edge-config").await?;
    let cloud_url = config.data.unwrap_or_default().remove("cloudUrl").unwrap_or_default();
    assert!(
        cloud_url.contains("web.smartcity.cloud01.example"),
        "the profile's cloud.host must win over the chart's: {cloud_url}"
    );
    let analytics = Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(edge01, &ns).get("analytics").await?;
    let image = analytics.spec.unwrap().template.spec.unwrap().containers[0].image.clone().unwrap_or_default();
    assert!(image.ends_with(":1.1"), "the DIG's overrideValues image.tag must win over the chart's: {image}");

    // Terminate: everything goes from every member, the DIG stays.
    let digs = Api::<DeploymentIntentGroup>::namespaced(hub.clone(), &ns);
    digs.patch(&ns, &PatchParams::apply("e2e-terminate"), &Patch::Merge(json!({"spec": {"state": "Terminated"}})))
        .await?;
    wait_dig(&hub, &ns, &ns, "Terminated", Duration::from_secs(60), |s| s.state == DigState::Terminated).await?;
    assert_nothing_left(&bed, &ns).await?;

    // Deleting the DIG: it goes, with its AppContexts.
    digs.delete(&ns, &DeleteParams::default()).await?;
    wait_for("DIG deleted", Duration::from_secs(30), || async { Ok(digs.get_opt(&ns).await?.is_none().then_some(())) })
        .await?;
    assert_nothing_left(&bed, &ns).await?;
    Ok(())
}

/// No Deployment, Service or ConfigMap of DIG `dig` on any member.
pub async fn assert_nothing_left(bed: &Bed, dig: &str) -> Result<()> {
    for member in &bed.members {
        let client = bed.client(member).await;
        for (gv, kind, plural) in
            [("apps/v1", "Deployment", "deployments"), ("v1", "Service", "services"), ("v1", "ConfigMap", "configmaps")]
        {
            let left = deployed_names(&client, gv, kind, plural, dig).await?;
            assert!(left.is_empty(), "{kind}s of {dig} left on {member}: {left:?}");
        }
    }
    Ok(())
}
