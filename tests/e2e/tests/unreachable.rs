//! A member that cannot be reached: the DIG keeps trying (connectivity Retrying, reason
//! ClusterUnreachable) and completes once the cluster's kubeconfig Secret is mended, with no restart.

use std::time::Duration;

use anyhow::Result;
use emco::api::condition;
use emco::api::rsync::AppContext;
use emco_e2e::*;
use kube::Api;
use serde_json::json;

/// A Cluster `<prefix>-<suffix>` whose kubeconfig is edge01's with the server on a closed port, and
/// the probe app deployed to it in project `<prefix>-<suffix>`; returns both names and the real
/// kubeconfig.
async fn deploy_to_unreachable_cluster(
    bed: &Bed,
    hub: &kube::Client,
    prefix: &str,
) -> Result<(String, String, String)> {
    let name = format!("{prefix}-{}", unique_suffix());
    let real = register_unreachable(bed, hub, &name, "edge01").await?;
    project(hub, &name).await?;
    let placement = json!({"app": "probe", "allOf": [{"cluster": name}]});
    Probe { clusters: Some(vec![name.clone()]), ..Probe::new(placement) }.apply(hub, bed, &name).await?;
    Ok((name.clone(), name, real))
}

#[tokio::test]
async fn unreachable_member_is_retried_until_its_kubeconfig_is_mended() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let (cluster, ns, real) = deploy_to_unreachable_cluster(&bed, &hub, "flaky").await?;

    let contexts = Api::<AppContext>::namespaced(hub.clone(), &ns);
    let name = format!("{ns}-1");
    wait_until("the AppContext retrying an unreachable cluster", Duration::from_secs(60), || async {
        let status = contexts.get_opt(&name).await?.and_then(|c| c.status).unwrap_or_default();
        let connectivity: Vec<emco::api::rsync::Connectivity> =
            status.apps.iter().flat_map(|a| &a.clusters).map(|c| c.connectivity).collect();
        let reason = condition::get(&status.conditions, "Deployed").map(|c| c.reason.clone());
        Ok(
            if connectivity == [emco::api::rsync::Connectivity::Retrying]
                && reason.as_deref() == Some("ClusterUnreachable")
            {
                Ok(())
            } else {
                Err(format!("{connectivity:?} {reason:?}"))
            },
        )
    })
    .await?;
    let status = dig(&hub, &ns, &ns).await?.status.unwrap_or_default();
    assert_eq!(status.state, emco::api::orchestrator::DigState::Instantiating);
    let registered = Api::<emco::api::clm::Cluster>::all(hub.clone()).get(&cluster).await?;
    let ready = condition::get(&registered.status.unwrap_or_default().conditions, "Ready").cloned();
    assert!(
        ready.as_ref().is_some_and(|r| r.status == "False" && r.reason == "Unreachable"),
        "Cluster {cluster}: {ready:?}"
    );

    apply(&hub, &kubeconfig_secret(&cluster, &real)).await?;
    wait_dig(&hub, &ns, &ns, "Instantiated after the kubeconfig was mended", Duration::from_secs(90), |s| {
        s.state == emco::api::orchestrator::DigState::Instantiated && complete(&s.ready)
    })
    .await?;
    let on_edge01 = deployed_names(&bed.client("edge01").await, "v1", "ConfigMap", "configmaps", &ns).await?;
    assert_eq!(on_edge01, ["probe"]);

    kube::Api::<emco::api::orchestrator::Project>::all(hub.clone()).delete(&ns, &Default::default()).await?;
    wait_until("the probe removed from edge01", Duration::from_secs(60), || async {
        let left = deployed_names(&bed.client("edge01").await, "v1", "ConfigMap", "configmaps", &ns).await?;
        Ok(if left.is_empty() { Ok(()) } else { Err(format!("{left:?}")) })
    })
    .await?;
    kube::Api::<emco::api::clm::Cluster>::all(hub.clone()).delete(&cluster, &Default::default()).await?;
    Ok(())
}

#[tokio::test]
async fn stop_gives_up_and_lets_a_dig_on_an_unreachable_member_be_deleted() -> Result<()> {
    use emco::api::orchestrator::{DeploymentIntentGroup, DigState};
    use kube::api::{Patch, PatchParams};
    let bed = Bed::get();
    let hub = bed.hub().await;
    let (cluster, ns, _) = deploy_to_unreachable_cluster(&bed, &hub, "gone").await?;
    wait_dig(&hub, &ns, &ns, "Instantiating", Duration::from_secs(30), |s| s.state == DigState::Instantiating).await?;

    let digs = Api::<DeploymentIntentGroup>::namespaced(hub.clone(), &ns);
    digs.patch(&ns, &PatchParams::apply("e2e-stop"), &Patch::Merge(json!({"spec": {"stop": true}}))).await?;
    wait_dig(&hub, &ns, &ns, "InstantiateStopped", Duration::from_secs(30), |s| {
        s.state == DigState::InstantiateStopped
    })
    .await?;

    // The member never comes back: with stop set, deleting the DIG does not hang.
    digs.delete(&ns, &Default::default()).await?;
    wait_for("the DIG deleted", Duration::from_secs(30), || async {
        Ok(digs.get_opt(&ns).await?.is_none().then_some(()))
    })
    .await?;
    let contexts = Api::<AppContext>::namespaced(hub.clone(), &ns);
    wait_for("its AppContexts deleted", Duration::from_secs(30), || async {
        Ok(contexts.list(&Default::default()).await?.items.is_empty().then_some(()))
    })
    .await?;
    kube::Api::<emco::api::clm::Cluster>::all(hub.clone()).delete(&cluster, &Default::default()).await?;
    Ok(())
}
