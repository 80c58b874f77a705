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
