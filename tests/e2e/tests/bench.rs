//! Benchmark (run by `just bench`, ignored by `just test`): the SmartCity sample from `kubectl
//! apply` of its manifests to every resource Applied, and to every resource Ready, repeated.

use std::time::{Duration, Instant};

use anyhow::Result;
use emco::api::orchestrator::{DeploymentIntentGroupStatus, DigState};
use emco_e2e::*;

const RUNS: usize = 5;

#[tokio::test]
#[ignore = "benchmark: run with `just bench`"]
async fn smartcity_apply_to_applied_and_ready() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let (mut applied, mut ready) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let ns = format!("bench-{}", unique_suffix());
        project(&hub, &ns).await?;
        let start = Instant::now();
        apply_sample(&hub, &ns, &ns).await?;
        let s = poll(&hub, &ns, |s| complete(&s.deployed)).await?;
        applied.push(start.elapsed());
        poll(&hub, &ns, |s| s.state == DigState::Instantiated && complete(&s.ready)).await?;
        ready.push(start.elapsed());
        println!(
            "run: {} resources, applied {:?}, ready {:?}",
            s.deployed.unwrap_or_default(),
            applied.last().unwrap(),
            ready.last().unwrap()
        );
        let _ = kube::Api::<emco::api::orchestrator::Project>::all(hub.clone()).delete(&ns, &Default::default()).await;
    }
    for (what, mut times) in [("apply -> all Applied", applied), ("apply -> all Ready", ready)] {
        times.sort();
        println!(
            "BENCH smartcity {what}: median {:?}, min {:?}, max {:?} over {RUNS} runs",
            times[RUNS / 2],
            times[0],
            times[RUNS - 1]
        );
    }
    Ok(())
}

/// Reads the DIG every 20 ms (finer than `wait_dig`) until `done`; fails after two minutes.
async fn poll(
    hub: &kube::Client,
    ns: &str,
    done: impl Fn(&DeploymentIntentGroupStatus) -> bool,
) -> Result<DeploymentIntentGroupStatus> {
    let start = Instant::now();
    loop {
        let status = dig(hub, ns, ns).await?.status.unwrap_or_default();
        if done(&status) {
            return Ok(status);
        }
        anyhow::ensure!(start.elapsed() < Duration::from_secs(120), "DIG {ns} stuck: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
#[ignore = "benchmark: run with `just bench`"]
async fn standard_logical_cloud_apply_to_ready_on_every_member() -> Result<()> {
    use emco::api::dcm::{LogicalCloud, LogicalCloudState};
    let bed = Bed::get();
    let hub = bed.hub().await;
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let ns = format!("benchlc-{}", unique_suffix());
        project(&hub, &ns).await?;
        let clusters: Vec<_> = bed.members.iter().map(|m| serde_json::json!({"cluster": m})).collect();
        let lc = serde_json::json!({"apiVersion": "dcm.emco.io/v1alpha1", "kind": "LogicalCloud",
            "metadata": {"name": "lc", "namespace": ns},
            "spec": {"type": "Standard", "namespace": format!("{ns}-apps"), "user": {"name": format!("{ns}-user")},
                     "quotas": {"pods": "10"}, "clusters": clusters}});
        let start = Instant::now();
        apply(&hub, &lc).await?;
        let api = kube::Api::<LogicalCloud>::namespaced(hub.clone(), &ns);
        loop {
            let status = api.get("lc").await?.status.unwrap_or_default();
            if status.state == Some(LogicalCloudState::Instantiated) {
                break;
            }
            anyhow::ensure!(start.elapsed() < Duration::from_secs(120), "logical cloud {ns} stuck: {status:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        times.push(start.elapsed());
        println!("run: Standard logical cloud on {} members Ready in {:?}", bed.members.len(), times.last().unwrap());
        let _ = kube::Api::<emco::api::orchestrator::Project>::all(hub.clone()).delete(&ns, &Default::default()).await;
    }
    times.sort();
    println!(
        "BENCH logical cloud apply -> Standard Ready on {} members: median {:?}, min {:?}, max {:?} over {RUNS} runs",
        bed.members.len(),
        times[RUNS / 2],
        times[0],
        times[RUNS - 1]
    );
    Ok(())
}
