//! Status comes from watches on the members: an object deleted behind the operator's back is seen
//! at once (well before the minute-long resync) and applied again.

use std::time::{Duration, Instant};

use anyhow::Result;
use emco::api::orchestrator::DigState;
use emco_e2e::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use serde_json::json;

#[tokio::test]
async fn an_object_deleted_on_a_member_comes_back_within_seconds() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("drift-{}", unique_suffix());
    project(&hub, &ns).await?;
    Probe::new(json!({"app": "probe", "allOf": [{"cluster": "edge02"}]})).apply(&hub, &bed, &ns).await?;
    wait_dig(&hub, &ns, &ns, "Instantiated", Duration::from_secs(60), |s| {
        s.state == DigState::Instantiated && complete(&s.ready)
    })
    .await?;
    // Let rsync settle into its slow (60 s) resync before the drift.
    tokio::time::sleep(Duration::from_secs(6)).await;

    let configmaps = Api::<ConfigMap>::namespaced(bed.client("edge02").await, &ns);
    let before = configmaps.get("probe").await?.metadata.uid;
    configmaps.delete("probe", &Default::default()).await?;
    let start = Instant::now();
    let after = wait_for("probe applied again on edge02", Duration::from_secs(20), || async {
        Ok(configmaps.get_opt("probe").await?.and_then(|c| c.metadata.uid).filter(|uid| Some(uid) != before.as_ref()))
    })
    .await?;
    println!("drift repaired after {:?}", start.elapsed());
    assert_ne!(Some(after), before);
    Ok(())
}

#[tokio::test]
async fn a_value_edited_on_a_member_is_set_back_within_two_seconds_with_an_event() -> Result<()> {
    use k8s_openapi::api::events::v1::Event;
    use kube::api::{Patch, PatchParams};
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("edit-{}", unique_suffix());
    project(&hub, &ns).await?;
    Probe::new(json!({"app": "probe", "allOf": [{"cluster": "edge01"}]})).apply(&hub, &bed, &ns).await?;
    wait_dig(&hub, &ns, &ns, "Instantiated", Duration::from_secs(60), |s| {
        s.state == DigState::Instantiated && complete(&s.ready)
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(6)).await;

    let configmaps = Api::<ConfigMap>::namespaced(bed.client("edge01").await, &ns);
    let greeting = |c: ConfigMap| c.data.unwrap_or_default().remove("greeting").unwrap_or_default();
    // Someone edits a field rsync applied, and adds one of their own.
    let edit = json!({"data": {"greeting": "edited by hand", "theirs": "kept"}});
    configmaps.patch("probe", &PatchParams::default(), &Patch::Merge(&edit)).await?;
    let start = Instant::now();
    wait_until("greeting set back on edge01", Duration::from_secs(2), || async {
        let now = configmaps.get("probe").await?;
        let value = greeting(now);
        Ok(if value == "hello" { Ok(()) } else { Err(value) })
    })
    .await?;
    println!("content drift repaired after {:?}", start.elapsed());
    let theirs = configmaps.get("probe").await?.data.unwrap_or_default().remove("theirs");
    assert_eq!(theirs.as_deref(), Some("kept"), "a field rsync does not own is left alone");

    let events = Api::<Event>::namespaced(hub.clone(), &ns);
    let repaired = wait_for("a DriftRepaired event", Duration::from_secs(10), || async {
        let list = events.list(&Default::default()).await?;
        Ok(list.items.into_iter().find(|e| e.reason.as_deref() == Some("DriftRepaired")))
    })
    .await?;
    let note = repaired.note.unwrap_or_default();
    assert!(note.contains("ConfigMap/probe on edge01"), "{note}");
    // Repaired once: the value holds and no more repairs follow.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(greeting(configmaps.get("probe").await?), "hello");
    let repairs = events
        .list(&Default::default())
        .await?
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("DriftRepaired"))
        .map(|e| e.series.as_ref().map_or(1, |s| s.count))
        .sum::<i32>();
    assert_eq!(repairs, 1, "one edit, one repair");
    Ok(())
}
