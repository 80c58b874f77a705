//! Benchmark (ignored; `just bench`): the operator's CPU over 60 s while one member of a deployed
//! DIG cannot be reached, next to the same 60 s with every member reachable. Retries back off to
//! two minutes, so an unreachable member should cost next to nothing between them.

use std::time::Duration;

use anyhow::Result;
use emco_e2e::*;
use serde_json::json;

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

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
    let real = std::fs::read_to_string(bed.kubeconfig("edge01"))?;
    let server = real.lines().find_map(|l| l.trim().strip_prefix("server: ")).expect("a server line").to_string();
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "emco-system"},
        "stringData": {"kubeconfig": real.replace(&server, "https://127.0.0.1:1")}});
    apply(&hub, &secret).await?;
    apply(
        &hub,
        &json!({"apiVersion": "clm.emco.io/v1alpha1", "kind": "Cluster", "metadata": {"name": name},
        "spec": {"provider": "smartcity", "kubeconfig": {"secretRef": {"namespace": "emco-system", "name": name}}}}),
    )
    .await?;
    project(&hub, &name).await?;
    let placement = json!({"app": "probe", "allOf": [{"cluster": "edge01"}, {"cluster": name}]});
    Probe { clusters: Some(vec!["edge01".into(), name.clone()]), ..Probe::new(placement) }
        .apply(&hub, &bed, &name)
        .await?;
    // Let the first retries pass, then measure.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let unreachable = cpu_over(pid, Duration::from_secs(60)).await;
    // Mended, so that the terminate can finish.
    let mut mended = secret.clone();
    mended["stringData"]["kubeconfig"] = json!(real);
    apply(&hub, &mended).await?;
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
