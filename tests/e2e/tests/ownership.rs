//! Ownership on the members: rsync applies and deletes only objects that carry its DIG's owner
//! labels (or do not exist yet). A Namespace that existed before and a ConfigMap another DIG
//! deployed are neither adopted, changed nor deleted, and terminating the intruder leaves them.

use std::time::Duration;

use anyhow::{Result, ensure};
use emco::api::orchestrator::DigState;
use emco_e2e::*;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

#[tokio::test]
async fn objects_of_others_are_never_adopted_changed_or_deleted() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let edge02 = bed.client("edge02").await;
    let suffix = unique_suffix();
    let (owner, intruder, existing) = (format!("own-{suffix}"), format!("intrude-{suffix}"), format!("pre-{suffix}"));

    // A namespace made on the member by someone else, and a ConfigMap that DIG `owner` deploys.
    let namespaces = Api::<Namespace>::all(edge02.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": existing, "labels": {"team": "other"}}}))?;
    namespaces.create(&PostParams::default(), &ns).await?;
    project(&hub, &owner).await?;
    Probe::new(json!({"app": "probe", "allOf": [{"cluster": "edge02"}]})).apply(&hub, &bed, &owner).await?;
    wait_dig(&hub, &owner, &owner, "Instantiated", Duration::from_secs(60), |s| {
        s.state == DigState::Instantiated && complete(&s.ready)
    })
    .await?;

    // DIG `intruder` (another project) renders both: the namespace, and the owner's ConfigMap.
    let chart_ns: &'static str =
        Box::leak(format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {existing}\n").into_boxed_str());
    let chart_cm: &'static str = Box::leak(
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\n  namespace: {owner}\ndata:\n  greeting: taken\n")
            .into_boxed_str(),
    );
    project(&hub, &intruder).await?;
    let probe = Probe {
        chart: Some(vec![
            ("Chart.yaml", "apiVersion: v2\nname: probe\nversion: 0.1.0\n"),
            ("templates/ns.yaml", chart_ns),
            ("templates/cm.yaml", chart_cm),
            ("templates/mine.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: mine\n"),
        ]),
        ..Probe::new(json!({"app": "probe", "allOf": [{"cluster": "edge02"}]}))
    };
    probe.apply(&hub, &bed, &intruder).await?;
    let status = wait_dig(&hub, &intruder, &intruder, "refused on edge02", Duration::from_secs(60), |s| {
        s.state == DigState::InstantiateFailed
    })
    .await?;
    let message =
        status.conditions.iter().find(|c| c.type_ == "Deployed").map(|c| c.message.clone()).unwrap_or_default();
    ensure!(message.contains("exists and is not managed by DIG"), "Deployed condition: {message}");
    let actx =
        Api::<emco::api::rsync::AppContext>::namespaced(hub.clone(), &intruder).get(&format!("{intruder}-1")).await?;
    let failed: Vec<String> =
        actx.status.unwrap_or_default().apps.iter().flat_map(|a| &a.clusters).flat_map(|c| c.failed.clone()).collect();
    for what in [format!("Namespace/{existing}"), "ConfigMap/probe".to_string()] {
        ensure!(failed.iter().any(|f| f.starts_with(&what) && f.contains("is not managed by")), "{what} in {failed:?}");
    }

    let configmaps = Api::<ConfigMap>::namespaced(edge02.clone(), &owner);
    let check_untouched = || async {
        let cm = configmaps.get("probe").await?;
        let labels = cm.metadata.labels.clone().unwrap_or_default();
        ensure!(labels.get(emco::api::labels::DIG) == Some(&owner), "owner label changed: {labels:?}");
        ensure!(cm.data.unwrap_or_default().get("greeting").map(String::as_str) == Some("hello"), "value changed");
        let ns = namespaces.get(&existing).await?;
        let labels = ns.metadata.labels.unwrap_or_default();
        ensure!(!labels.contains_key(emco::api::labels::DIG), "the namespace was adopted: {labels:?}");
        ensure!(ns.metadata.deletion_timestamp.is_none(), "the namespace is being deleted");
        Ok(())
    };
    check_untouched().await?;

    // Terminating the intruder deletes what it made and nothing else.
    set_dig_state(&hub, &intruder, &intruder, "Terminated").await?;
    wait_dig(&hub, &intruder, &intruder, "Terminated", Duration::from_secs(60), |s| s.state == DigState::Terminated)
        .await?;
    check_untouched().await?;
    ensure!(
        Api::<ConfigMap>::namespaced(edge02.clone(), &intruder).get_opt("mine").await?.is_none(),
        "its own object stays"
    );
    namespaces.delete(&existing, &Default::default()).await?;
    Ok(())
}
