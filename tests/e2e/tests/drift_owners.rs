//! Drift that respects other owners: `replicas` set by another field manager (an autoscaler) stays,
//! before and after an operator restart, while an edit of a field rsync applied is put back and
//! counted; an object annotated `emco.io/drift: ignore` is left as the member has it.

use std::time::{Duration, Instant};

use anyhow::Result;
use emco::api::orchestrator::DigState;
use emco::api::rsync::AppContext;
use emco_e2e::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

const KEEP: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep\n  annotations:\n    emco.io/drift: ignore\ndata:\n  mode: chart\n";

fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(-1)
}

fn env_a(d: &Deployment) -> String {
    let containers =
        d.spec.as_ref().map(|s| s.template.spec.clone().unwrap_or_default().containers).unwrap_or_default();
    let env = containers.first().and_then(|c| c.env.clone()).unwrap_or_default();
    env.iter().find(|e| e.name == "A").and_then(|e| e.value.clone()).unwrap_or_default()
}

/// Checks for `period` that `check` keeps holding.
async fn holds(what: &str, period: Duration, check: impl AsyncFn() -> Result<bool>) -> Result<()> {
    let until = Instant::now() + period;
    while Instant::now() < until {
        assert!(check().await?, "{what} no longer holds");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

#[tokio::test]
async fn another_managers_replicas_stay_and_an_opted_out_object_is_left_alone() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("owners-{}", unique_suffix());
    project(&hub, &ns).await?;
    let mut files = web_chart_files();
    files.push(("templates/keep.yaml", KEEP));
    Probe { chart: Some(files), ..Probe::new(json!({"app": "probe", "allOf": [{"cluster": "edge01"}]})) }
        .apply(&hub, &bed, &ns)
        .await?;
    wait_dig(&hub, &ns, &ns, "Instantiated", Duration::from_secs(60), |s| {
        s.state == DigState::Instantiated && complete(&s.ready)
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let edge01 = bed.client("edge01").await;
    let deployments = Api::<Deployment>::namespaced(edge01.clone(), &ns);
    let configmaps = Api::<ConfigMap>::namespaced(edge01, &ns);
    // An autoscaler scales; someone edits the opted-out ConfigMap; someone edits a field rsync applied.
    let hpa = PatchParams { field_manager: Some("hpa-like".into()), ..Default::default() };
    deployments.patch("web", &hpa, &Patch::Merge(json!({"spec": {"replicas": 3}}))).await?;
    let someone = PatchParams { field_manager: Some("someone".into()), ..Default::default() };
    configmaps.patch("keep", &someone, &Patch::Merge(json!({"data": {"mode": "edited"}}))).await?;
    let env = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "env": [{"name": "A", "value": "edited"}]}]}}}});
    deployments.patch("web", &someone, &Patch::Strategic(env)).await?;

    wait_until("the edited env put back", Duration::from_secs(20), || async {
        let d = deployments.get("web").await?;
        Ok(if env_a(&d) == "1" { Ok(()) } else { Err(env_a(&d)) })
    })
    .await?;
    let mode = || async {
        Ok::<_, anyhow::Error>(configmaps.get("keep").await?.data.unwrap_or_default().get("mode").cloned())
    };
    holds("replicas 3 and the opted-out edit", Duration::from_secs(5), || async {
        Ok(replicas(&deployments.get("web").await?) == 3 && mode().await?.as_deref() == Some("edited"))
    })
    .await?;

    // Counted on the AppContext.
    let contexts = Api::<AppContext>::namespaced(hub.clone(), &ns);
    let repaired = wait_until("a repair counted", Duration::from_secs(20), || async {
        let status = contexts.get(&format!("{ns}-1")).await?.status.unwrap_or_default();
        let n: u32 = status.apps.iter().flat_map(|a| &a.clusters).map(|c| c.drift_repaired).sum();
        Ok(if n >= 1 { Ok(n) } else { Err(format!("{n}")) })
    })
    .await?;
    println!("drift repaired {repaired} time(s); replicas left to their owner");

    // After a restart everything is applied once more: still not fought.
    restart_operator()?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    holds("replicas 3 after a restart", Duration::from_secs(6), || async {
        Ok(replicas(&deployments.get("web").await?) == 3 && mode().await?.as_deref() == Some("edited"))
    })
    .await?;
    assert_eq!(env_a(&deployments.get("web").await?), "1");
    Api::<emco::api::orchestrator::Project>::all(hub.clone()).delete(&ns, &Default::default()).await?;
    Ok(())
}
