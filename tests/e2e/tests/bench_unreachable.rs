//! Benchmark (ignored; `just bench`): the operator's CPU over 60 s while one member of a deployed
//! DIG cannot be reached, next to the same 60 s with every member reachable. Retries back off to
//! two minutes, so an unreachable member should cost next to nothing between them.

use std::time::Duration;

use anyhow::Result;
use emco_e2e::*;
use serde_json::json;

async fn cpu_over(pid: u32, period: Duration) -> f64 {
    let before = cpu_seconds(pid);
    tokio::time::sleep(period).await;
    cpu_seconds(pid) - before
}

#[tokio::test]
#[ignore = "benchmark: run with `just bench`"]
async fn cpu_while_a_member_is_unreachable() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let pid = operator_pid()?;
    let name = format!("away-{}", unique_suffix());
    let real = register_unreachable(&bed, &hub, &name, "edge01").await?;
    project(&hub, &name).await?;
    let placement = json!({"app": "probe", "allOf": [{"cluster": "edge01"}, {"cluster": name}]});
    Probe { clusters: Some(vec!["edge01".into(), name.clone()]), ..Probe::new(placement) }
        .apply(&hub, &bed, &name)
        .await?;
    // Let the first retries pass, then measure.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let unreachable = cpu_over(pid, Duration::from_secs(60)).await;
    // Mended, so that the terminate can finish.
    apply(&hub, &kubeconfig_secret(&name, &real)).await?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    kube::Api::<emco::api::orchestrator::Project>::all(hub.clone()).delete(&name, &Default::default()).await?;
    kube::Api::<emco::api::clm::Cluster>::all(hub.clone()).delete(&name, &Default::default()).await?;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let reachable = cpu_over(pid, Duration::from_secs(60)).await;
    println!(
        "operator CPU over 60 s: {unreachable:.2} s with one member unreachable, {reachable:.2} s with all reachable"
    );
    Ok(())
}
