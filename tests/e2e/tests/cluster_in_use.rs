//! A Cluster that AppContexts still use stays while it is deleted (Ready=False, InUse), so that
//! terminate can still reach the member; once nothing uses it, it goes.

use std::time::Duration;

use anyhow::{Result, ensure};
use emco::api::condition;
use emco::api::orchestrator::DigState;
use emco_e2e::*;
use kube::Api;
use serde_json::json;

#[tokio::test]
async fn a_cluster_in_use_waits_for_terminate_before_it_goes() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let suffix = unique_suffix();
    let (ns, alias) = (format!("inuse-{suffix}"), format!("edge01-alias-{suffix}"));
    apply(&hub, &json!({"apiVersion": "clm.emco.io/v1alpha1", "kind": "Cluster", "metadata": {"name": alias},
        "spec": {"provider": "smartcity", "kubeconfig": {"secretRef": {"namespace": "emco-system", "name": "edge01-kubeconfig"}}}}))
    .await?;
    project(&hub, &ns).await?;
    let probe = Probe {
        clusters: Some(vec![alias.clone()]),
        ..Probe::new(json!({"app": "probe", "allOf": [{"cluster": alias}]}))
    };
    probe.apply(&hub, &bed, &ns).await?;
    wait_dig(&hub, &ns, &ns, "Instantiated", Duration::from_secs(60), |s| {
        s.state == DigState::Instantiated && complete(&s.ready)
    })
    .await?;
    let clusters = Api::<emco::api::clm::Cluster>::all(hub.clone());
    clusters.delete(&alias, &Default::default()).await?;
    let message = wait_until("the Cluster InUse", Duration::from_secs(30), || async {
        let c = clusters.get(&alias).await?;
        let conditions = c.status.map(|s| s.conditions).unwrap_or_default();
        Ok(match condition::get(&conditions, "Ready") {
            Some(r) if r.reason == "InUse" => Ok(r.message.clone()),
            other => Err(format!("{other:?}")),
        })
    })
    .await?;
    ensure!(message.contains(&format!("{ns}/{ns}-1")), "{message}");

    Api::<emco::api::orchestrator::DeploymentIntentGroup>::namespaced(hub.clone(), &ns)
        .delete(&ns, &Default::default())
        .await?;
    wait_for("the Cluster gone", Duration::from_secs(60), || async {
        Ok(clusters.get_opt(&alias).await?.is_none().then_some(()))
    })
    .await?;
    let left = deployed_names(&bed.client("edge01").await, "v1", "ConfigMap", "configmaps", &ns).await?;
    ensure!(left.is_empty(), "terminate left {left:?} on edge01");
    Ok(())
}
