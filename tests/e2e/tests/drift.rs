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
