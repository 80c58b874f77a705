//! Hardware-platform-aware placement and action on the bed's members: edge02 gets a kwok node with
//! more CPU than edge01's and a label edge01 lacks. An app needing 48 CPUs and that label lands on
//! edge02 only, with its requests, limits and node affinity set there; asking for 100 CPUs refuses
//! the next revision naming `cpu`, and what is deployed stays.

use std::time::Duration;

use anyhow::Result;
use emco::api::clm::Cluster;
use emco::api::orchestrator::DigState;
use emco_e2e::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;

fn hpa(ns: &str, cpu: &str) -> serde_json::Value {
    json!({"apiVersion": "hpa.emco.io/v1alpha1", "kind": "HpaIntent", "metadata": {"name": "needs", "namespace": ns},
        "spec": {"app": "probe", "consumers": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "container": "web",
            "replicas": 1, "requirements": [
                {"resource": {"name": "cpu", "requests": cpu, "limits": 50}},
                {"resource": {"key": format!("emco-test.io/accel-{ns}"), "value": "gpu"}},
                {"mandatory": false, "weight": 5, "resource": {"name": "memory", "requests": "1Gi"}}]}]}})
}

#[tokio::test]
async fn hpa_places_on_the_cluster_whose_nodes_fit_and_sets_requests() -> Result<()> {
    let bed = Bed::get();
    let ns = format!("hpa-{}", unique_suffix());
    let node = format!("{ns}-big");
    let result = places_and_sets_requests(&bed, &ns, &node).await;
    // The node goes whatever happened: other tests count edge02's nodes.
    Api::<Node>::all(bed.client("edge02").await).delete(&node, &DeleteParams::default()).await?;
    result
}

async fn places_and_sets_requests(bed: &Bed, ns: &str, node: &str) -> Result<()> {
    let hub = bed.hub().await;
    let label = format!("emco-test.io/accel-{ns}");
    let edge02 = bed.client("edge02").await;
    apply(
        &edge02,
        &json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": node, "annotations": {"kwok.x-k8s.io/node": "fake"},
                     "labels": {"type": "kwok", "kubernetes.io/hostname": node, label.clone(): "gpu"}},
        "status": {"allocatable": {"cpu": "64", "memory": "256Gi", "pods": "110"},
                   "capacity": {"cpu": "64", "memory": "256Gi", "pods": "110"}}}),
    )
    .await?;
    // The cluster controller re-probes on a change to the Cluster; the inventory must show the node.
    let clusters: Api<Cluster> = Api::all(hub.clone());
    let touch = json!({"metadata": {"annotations": {"emco-test.io/probe": ns}}});
    clusters.patch("edge02", &PatchParams::default(), &Patch::Merge(&touch)).await?;
    wait_for("edge02's inventory to list the big node Ready", Duration::from_secs(60), || async {
        let c = clusters.get("edge02").await?;
        let nodes = c.status.unwrap_or_default().nodes;
        Ok(nodes.iter().any(|n| n.name == node && n.ready).then_some(()))
    })
    .await?;

    project(&hub, ns).await?;
    apply(&hub, &hpa(ns, "48")).await?;
    let probe = Probe {
        chart: Some(web_chart_files()),
        ..Probe::new(
            json!({"app": "probe", "allOf": [{"cluster": "edge01"}, {"cluster": "edge02"}, {"cluster": "cloud01"}]}),
        )
    };
    probe.apply(&hub, bed, ns).await?;
    let dig = dig_manifest(ns, json!({"genericPlacementIntent": "gpi", "hpa": "needs"}));
    apply(&hub, &dig).await?;
    let status = wait_dig(&hub, ns, ns, "Instantiated", Duration::from_secs(60), |s| {
        s.state == DigState::Instantiated && complete(&s.deployed)
    })
    .await?;
    assert_eq!(status.controllers, ["genericPlacementIntent", "hpa", "hpa"]);

    for member in ["edge01", "cloud01"] {
        let web = Api::<Deployment>::namespaced(bed.client(member).await, ns).get_opt("web").await?;
        assert!(web.is_none(), "{member}'s nodes cannot host 48 CPUs with the label: nothing lands there");
    }
    let web = Api::<Deployment>::namespaced(edge02.clone(), ns).get("web").await?;
    let pod = web.spec.unwrap_or_default().template.spec.unwrap_or_default();
    let resources = serde_json::to_value(&pod.containers[0].resources)?;
    assert_eq!(resources, json!({"requests": {"cpu": "48", "memory": "1Gi"}, "limits": {"cpu": "50"}}));
    let affinity = serde_json::to_value(&pod.affinity)?;
    assert_eq!(
        affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"],
        json!([{"matchExpressions": [{"key": label, "operator": "In", "values": ["gpu"]}]}])
    );

    // No member can host 100 CPUs: the next revision is refused naming cpu; revision 1 stays.
    apply(&hub, &hpa(ns, "100")).await?;
    let status = wait_dig(&hub, ns, ns, "refused with NoClusterFits", Duration::from_secs(30), |s| {
        s.conditions.iter().any(|c| c.type_ == "Placed" && c.reason == "NoClusterFits")
    })
    .await?;
    let placed = status.conditions.iter().find(|c| c.type_ == "Placed").unwrap();
    assert!(placed.message.contains("cpu 100 per replica"), "{}", placed.message);
    assert!(placed.message.contains("edge02:") && placed.message.contains("edge01:"), "{}", placed.message);
    assert_eq!(status.revision, Some(1));
    let web = Api::<Deployment>::namespaced(edge02.clone(), ns).get("web").await?;
    assert!(web.spec.is_some(), "what is deployed stays");

    // A requirement that is not a quantity is refused at apply.
    let err = apply(&hub, &hpa(ns, "lots")).await.unwrap_err();
    assert!(format!("{err:#}").contains("requests"), "{err:#}");

    set_dig_state(&hub, ns, ns, "Terminated").await?;
    wait_dig(&hub, ns, ns, "Terminated", Duration::from_secs(60), |s| s.state == DigState::Terminated).await?;
    assert!(Api::<Deployment>::namespaced(edge02, ns).get_opt("web").await?.is_none());
    Ok(())
}
