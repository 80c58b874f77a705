//! Objects a member user labels as the operator's do not grow it: a Standard cloud's user creates
//! 300 ConfigMaps of 900 KiB labelled `app.kubernetes.io/managed-by=emco-operator` in its
//! namespace while a DIG keeps ConfigMaps on that member (so the operator watches ConfigMaps
//! there); the operator's RSS, settled before and after, grows by less than 20 MiB. Alone in its
//! binary: no other test moves the operator's memory meanwhile.

use std::time::Duration;

use anyhow::{Result, ensure};
use emco::api::orchestrator::DigState;
use emco_e2e::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

const READY: Duration = Duration::from_secs(60);

/// The operator's resident memory in KiB.
fn operator_rss_kib() -> Result<u64> {
    Ok(rss_bytes(operator_pid()?) / 1024)
}

/// The operator's RSS once it holds still: two readings 3 s apart within 1 MiB (at most 90 s),
/// past the allocator's trims (every 5 s) and whatever the operator was still taking in.
async fn settled_rss_kib() -> Result<u64> {
    let mut last = operator_rss_kib()?;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let now = operator_rss_kib()?;
        if now.abs_diff(last) < 1024 {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

#[tokio::test]
async fn objects_a_member_user_labels_as_the_operators_do_not_grow_it() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("flood-{}", unique_suffix());
    let apps = format!("{ns}-apps");
    project(&hub, &ns).await?;
    // A DIG keeps ConfigMaps on edge01 through a Standard cloud: the operator watches ConfigMaps there.
    let probe = Probe {
        clusters: Some(vec!["edge01".into()]),
        logical_cloud: Some(json!({"type": "Standard", "namespace": apps, "user": {"name": "u"}})),
        ..Probe::new(json!({"app": "probe", "allOf": [{"cluster": "edge01"}]}))
    };
    probe.apply(&hub, &bed, &ns).await?;
    wait_dig(&hub, &ns, &ns, "Instantiated", READY, |s| s.state == DigState::Instantiated && complete(&s.ready))
        .await?;
    let user: Client = logical_cloud_user(&hub, &ns, "lc", "edge01").await?;
    let before = settled_rss_kib().await?;
    let mut peak = before;
    let configmaps = Api::<ConfigMap>::namespaced(user, &apps);
    let blob = "x".repeat(900 * 1024);
    for i in 0..300 {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": format!("flood-{i}"),
            "labels": {"app.kubernetes.io/managed-by": "emco-operator", "emco.io/project": ns,
                       "emco.io/deployment-intent-group": "not-a-dig", "flood": "true"}},
            "data": {"blob": blob}}))?;
        configmaps.create(&PostParams::default(), &cm).await?;
        if i % 20 == 0 {
            peak = peak.max(operator_rss_kib()?);
        }
    }
    // The watch takes every event in (it lags behind the creates), and the allocator trims.
    let after = settled_rss_kib().await?;
    peak = peak.max(after);
    let listed = configmaps.list_metadata(&ListParams::default()).await?.items.len();
    ensure!(listed >= 300, "{listed} ConfigMaps made");
    let grown_mib = after.saturating_sub(before) / 1024;
    println!(
        "operator RSS {} MiB before, {} MiB after 300 x 900 KiB ConfigMaps (peak {} MiB meanwhile)",
        before / 1024,
        after / 1024,
        peak / 1024
    );
    ensure!(grown_mib < 20, "the operator grew by {grown_mib} MiB");
    // The DIG is unaffected.
    let status = dig(&hub, &ns, &ns).await?.status.unwrap_or_default();
    ensure!(status.state == DigState::Instantiated && complete(&status.ready), "{status:?}");
    configmaps.delete_collection(&DeleteParams::default(), &ListParams::default().labels("flood=true")).await?;
    hub_kubectl(&["delete", "project.orchestrator.emco.io", &ns, "--wait=false"])?;
    Ok(())
}
