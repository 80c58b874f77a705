//! Network and traffic intents, checked on the members: ncm networks (CRD plus object on their
//! cluster only, gone on delete), ovnaction interfaces (pod template annotations, the chart's
//! kept), dtc (a NetworkPolicy admitting exactly the clients and port; Istio's
//! AuthorizationPolicy where the member serves Istio), and bad input refused with a reason and
//! nothing on any member.

use std::time::Duration;

use anyhow::Result;
use emco::api::orchestrator::DigState;
use emco_e2e::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::json;

const WEB: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata:\n      labels: {app: web}\n      annotations: {prometheus.io/scrape: \"true\"}\n    spec:\n      containers:\n      - {name: web, image: registry.example/web:1}\n";
const ANALYTICS: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: analytics\ndata:\n  role: client\n";

fn network_object(kind: &str) -> ApiResource {
    let gvk = GroupVersionKind::gvk("k8s.plugin.opnfv.org", "v1alpha1", kind);
    ApiResource::from_gvk_with_plural(&gvk, &format!("{}s", kind.to_lowercase()))
}

fn virtual_network(name: &str, cluster: &str) -> serde_json::Value {
    json!({"apiVersion": "ncm.emco.io/v1alpha1", "kind": "VirtualNetwork", "metadata": {"name": name},
           "spec": {"cluster": cluster, "ipv4Subnets": [{"name": "subnet1", "subnet": "172.16.30.0/24", "gateway": "172.16.30.1/24"}]}})
}

/// A project with apps `web` (on `web_on`) and `analytics` (on `analytics_on`), and a DIG naming
/// `intents`.
async fn deploy(
    hub: &kube::Client,
    ns: &str,
    web_on: &[&str],
    analytics_on: &[&str],
    intents: serde_json::Value,
) -> Result<()> {
    project(hub, ns).await?;
    for (app, template) in [("web", WEB), ("analytics", ANALYTICS)] {
        let chart = format!("apiVersion: v2\nname: {app}\nversion: 0.1.0\n");
        let tgz = chart_tgz(app, &[("Chart.yaml", chart.as_str()), ("templates/t.yaml", template)]);
        apply(hub, &chart_configmap(ns, &format!("{app}-chart"), &tgz)).await?;
    }
    let clusters: Vec<serde_json::Value> =
        ["edge01", "edge02", "cloud01"].iter().map(|c| json!({"cluster": c})).collect();
    let on = |cs: &[&str]| cs.iter().map(|c| json!({"cluster": c})).collect::<Vec<_>>();
    let mut intents = intents;
    intents["genericPlacementIntent"] = json!("gpi");
    for doc in [
        json!({"apiVersion": "dcm.emco.io/v1alpha1", "kind": "LogicalCloud", "metadata": {"name": "lc", "namespace": ns},
               "spec": {"namespace": ns, "clusters": clusters}}),
        json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "CompositeApp", "metadata": {"name": "ca", "namespace": ns},
               "spec": {"apps": [{"name": "web", "chart": {"configMap": {"name": "web-chart"}}},
                                 {"name": "analytics", "chart": {"configMap": {"name": "analytics-chart"}}}]}}),
        json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "GenericPlacementIntent", "metadata": {"name": "gpi", "namespace": ns},
               "spec": {"appIntents": [{"app": "web", "allOf": on(web_on)}, {"app": "analytics", "allOf": on(analytics_on)}]}}),
        json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "DeploymentIntentGroup", "metadata": {"name": ns, "namespace": ns},
               "spec": {"compositeApp": "ca", "logicalCloud": "lc", "intents": intents, "approved": true}}),
    ] {
        apply(hub, &doc).await?;
    }
    Ok(())
}

/// Waits until the DIG fails with `reason` (on any condition), and checks that nothing of it
/// reached any member.
async fn refused(bed: &Bed, hub: &kube::Client, ns: &str, reason: &str) -> Result<String> {
    let message = wait_until(&format!("DIG {ns} refused with {reason}"), Duration::from_secs(30), || async {
        let status = dig(hub, ns, ns).await?.status.unwrap_or_default();
        let found = status.conditions.iter().find(|c| c.reason == reason).map(|c| c.message.clone());
        Ok(found.ok_or_else(|| format!("{status:?}")))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for member in ["edge01", "edge02", "cloud01"] {
        let client = bed.client(member).await;
        let deployments = deployed_names(&client, "apps/v1", "Deployment", "deployments", ns).await?;
        let configmaps = deployed_names(&client, "v1", "ConfigMap", "configmaps", ns).await?;
        assert!(
            deployments.is_empty() && configmaps.is_empty(),
            "nothing of {ns} on {member}: {deployments:?} {configmaps:?}"
        );
    }
    Ok(message)
}

#[tokio::test]
async fn a_virtual_network_reaches_its_cluster_only_and_goes_when_deleted() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let name = format!("blue-{}", unique_suffix());
    apply(&hub, &virtual_network(&name, "edge01")).await?;
    let networks = Api::<emco::api::ncm::VirtualNetwork>::all(hub.clone());
    wait_until("the VirtualNetwork Ready", Duration::from_secs(60), || async {
        let status = networks.get(&name).await?.status.unwrap_or_default();
        let ready = emco::api::condition::is_true(&status.conditions, "Ready");
        Ok(if ready && status.state.as_deref() == Some("Instantiated") { Ok(()) } else { Err(format!("{status:?}")) })
    })
    .await?;
    let object = network_on(&bed, "edge01", &name).await?.expect("the Network on edge01");
    assert_eq!(object.data["spec"]["ipv4Subnets"][0]["subnet"], "172.16.30.0/24");
    assert_eq!(object.metadata.labels.unwrap_or_default().get("net"), Some(&name));
    for other in ["edge02", "cloud01"] {
        assert!(
            network_on(&bed, other, &name).await.map(|o| o.is_none()).unwrap_or(true),
            "no Network {name} on {other}"
        );
    }
    let crds = Api::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>::all(
        bed.client("edge01").await,
    );
    assert!(crds.get_opt("networks.k8s.plugin.opnfv.org").await?.is_some(), "the CRD came with it");
    let out = hub_kubectl(&["get", "vnet", &name])?;
    assert!(out.contains("edge01") && out.contains("Instantiated"), "{out}");

    networks.delete(&name, &Default::default()).await?;
    wait_until("the Network gone from edge01", Duration::from_secs(60), || async {
        Ok(match network_on(&bed, "edge01", &name).await? {
            None => Ok(()),
            Some(_) => Err("still there".to_string()),
        })
    })
    .await?;
    wait_for("the VirtualNetwork gone from the hub", Duration::from_secs(30), || async {
        Ok(networks.get_opt(&name).await?.is_none().then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn interfaces_land_on_the_pod_template_and_an_unknown_network_is_refused() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let suffix = unique_suffix();
    let network = format!("green-{suffix}");
    apply(&hub, &virtual_network(&network, "edge01")).await?;
    let intent = |ns: &str, network: &str| {
        json!({"apiVersion": "ovnaction.emco.io/v1alpha1", "kind": "NetworkIntent", "metadata": {"name": "nets", "namespace": ns},
               "spec": {"workloadIntents": [{"app": "web", "workloadResource": "web", "type": "Deployment", "interfaces": [
                   {"interface": "net1", "network": network, "defaultGateway": false, "ipAddress": "172.16.30.10"}]}]}})
    };
    let ns = format!("ovn-{suffix}");
    deploy(&hub, &ns, &["edge01"], &["edge01"], json!({"ovnaction": "nets"})).await?;
    apply(&hub, &intent(&ns, &network)).await?;
    wait_dig(&hub, &ns, &ns, "Instantiated", Duration::from_secs(60), |s| {
        s.state == DigState::Instantiated && complete(&s.deployed)
    })
    .await?;
    let web = Api::<Deployment>::namespaced(bed.client("edge01").await, &ns).get("web").await?;
    let annotations = web.spec.unwrap().template.metadata.unwrap().annotations.unwrap_or_default();
    assert_eq!(
        annotations.get("prometheus.io/scrape").map(String::as_str),
        Some("true"),
        "the chart's annotation kept"
    );
    let networks: serde_json::Value = serde_json::from_str(&annotations["k8s.v1.cni.cncf.io/networks"])?;
    assert_eq!(networks, json!([{"name": "ovn-networkobj", "namespace": "default"}]));
    let nfn: serde_json::Value = serde_json::from_str(&annotations["k8s.plugin.opnfv.org/nfn-network"])?;
    assert_eq!(
        nfn,
        json!({"type": "ovn4nfv", "interface": [
        {"name": network, "interface": "net1", "defaultGateway": "false", "ipAddress": "172.16.30.10"}]})
    );

    // A network edge01 does not have: refused, nothing anywhere.
    let bad = format!("ovnbad-{suffix}");
    deploy(&hub, &bad, &["edge01"], &["edge01"], json!({"ovnaction": "nets"})).await?;
    apply(&hub, &intent(&bad, "no-such-network")).await?;
    let message = refused(&bed, &hub, &bad, "UnknownNetwork").await?;
    assert!(message.contains("no-such-network") && message.contains("edge01"), "{message}");

    for project in [&ns, &bad] {
        Api::<emco::api::orchestrator::Project>::all(hub.clone()).delete(project, &Default::default()).await?;
    }
    Api::<emco::api::ncm::VirtualNetwork>::all(hub.clone()).delete(&network, &Default::default()).await?;
    Ok(())
}

#[tokio::test]
async fn a_traffic_intent_admits_exactly_its_clients_and_istio_where_served() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let suffix = unique_suffix();
    // The edge clusters' egress addresses come from their kv pairs (config/samples/smartcity/01-clusters.yaml).
    let clusters = Api::<emco::api::clm::Cluster>::all(hub.clone());
    for (cluster, cidrs) in [("edge01", "10.1.0.0/16"), ("edge02", "10.2.0.0/16")] {
        let kv = clusters.get(cluster).await?.spec.kv;
        assert_eq!(kv.get("dtc.emco.io/egress-cidrs").map(String::as_str), Some(cidrs), "{cluster}'s kv pairs");
    }
    // cloud01 without Istio to begin with (a bed this test ran on before has its CRD).
    let cloud01 = bed.client("cloud01").await;
    let crds = Api::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>::all(
        cloud01.clone(),
    );
    if crds.get_opt("authorizationpolicies.security.istio.io").await?.is_some() {
        crds.delete("authorizationpolicies.security.istio.io", &Default::default()).await?;
        nudge_probe(&hub, "cloud01", &format!("{suffix}-0")).await?;
        wait_until("cloud01 seen without Istio", Duration::from_secs(40), || async {
            let status = clusters.get("cloud01").await?.status.unwrap_or_default();
            Ok(if status.api_versions.iter().any(|v| v.starts_with("security.istio.io/")) {
                Err("still".to_string())
            } else {
                Ok(())
            })
        })
        .await?;
    }
    let intent = |ns: &str, mesh: bool, client: &str, port: u32| {
        json!({"apiVersion": "dtc.emco.io/v1alpha1", "kind": "TrafficIntent", "metadata": {"name": "traffic", "namespace": ns},
               "spec": {"inbound": [{"name": "web-in", "app": "web", "appLabel": "app=web", "serviceName": "web", "port": port,
                   "protocol": "TCP", "serviceMesh": mesh, "clients": [{"app": client, "appLabel": "app=analytics"}]}]}})
    };

    // web on cloud01 and edge01; analytics on edge01 (local there) and edge02 (remote).
    let ns = format!("dtc-{suffix}");
    deploy(&hub, &ns, &["cloud01", "edge01"], &["edge01", "edge02"], json!({"dtc": "traffic"})).await?;
    apply(&hub, &intent(&ns, false, "analytics", 8080)).await?;
    wait_dig(&hub, &ns, &ns, "Instantiated", Duration::from_secs(60), |s| s.state == DigState::Instantiated).await?;
    let on_edge01 =
        serde_json::to_value(policy_on(&bed, "edge01", &ns).await?.expect("a NetworkPolicy on edge01").spec)?;
    assert_eq!(on_edge01["podSelector"], json!({"matchLabels": {"app": "web"}}));
    assert_eq!(on_edge01["policyTypes"], json!(["Ingress"]));
    assert_eq!(
        on_edge01["ingress"],
        json!([{"from": [{"podSelector": {"matchLabels": {"app": "analytics"}}}, {"ipBlock": {"cidr": "10.2.0.0/16"}}],
                "ports": [{"port": 8080, "protocol": "TCP"}]}])
    );
    let on_cloud01 =
        serde_json::to_value(policy_on(&bed, "cloud01", &ns).await?.expect("a NetworkPolicy on cloud01").spec)?;
    assert_eq!(
        on_cloud01["ingress"][0]["from"],
        json!([{"ipBlock": {"cidr": "10.1.0.0/16"}}, {"ipBlock": {"cidr": "10.2.0.0/16"}}]),
        "only remote clients, by address"
    );
    assert!(policy_on(&bed, "edge02", &ns).await?.is_none(), "no server on edge02, no policy");

    // A mesh where cloud01 lacks Istio: refused, naming the cluster.
    let mesh = format!("mesh-{suffix}");
    deploy(&hub, &mesh, &["cloud01"], &["cloud01"], json!({"dtc": "traffic"})).await?;
    apply(&hub, &intent(&mesh, true, "analytics", 8080)).await?;
    let message = refused(&bed, &hub, &mesh, "IstioMissing").await?;
    assert!(message.contains("cloud01"), "{message}");

    // A client app the composite app lacks: refused.
    let stranger = format!("stranger-{suffix}");
    deploy(&hub, &stranger, &["cloud01"], &["cloud01"], json!({"dtc": "traffic"})).await?;
    apply(&hub, &intent(&stranger, false, "nobody", 8080)).await?;
    let message = refused(&bed, &hub, &stranger, "UnknownApp").await?;
    assert!(message.contains("nobody"), "{message}");

    // A port out of range: the hub refuses the intent itself.
    let bad_port = apply(&hub, &intent(&stranger, false, "analytics", 70000)).await;
    let error = format!("{:#}", bad_port.expect_err("port 70000 refused"));
    assert!(error.contains("port") && error.contains("65535"), "{error}");

    // Istio's CRDs on cloud01: the AuthorizationPolicy appears there instead.
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "authorizationpolicies.security.istio.io"},
        "spec": {"group": "security.istio.io", "scope": "Namespaced",
                 "names": {"kind": "AuthorizationPolicy", "plural": "authorizationpolicies", "singular": "authorizationpolicy", "listKind": "AuthorizationPolicyList"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                     "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}});
    apply(&cloud01, &crd).await?;
    nudge_probe(&hub, "cloud01", &suffix).await?;
    wait_until("cloud01 seen serving Istio", Duration::from_secs(40), || async {
        let status = clusters.get("cloud01").await?.status.unwrap_or_default();
        Ok(if status.api_versions.iter().any(|v| v == "security.istio.io/v1") { Ok(()) } else { Err("not yet".into()) })
    })
    .await?;
    // The refused DIG is tried again (its backoff); nudge it with a change of its intent's generation.
    let retry = json!({"spec": {"inbound": [{"name": "web-in", "app": "web", "appLabel": "app=web", "serviceName": "web", "port": 8081,
        "protocol": "TCP", "serviceMesh": true, "clients": [{"app": "analytics", "appLabel": "app=analytics"}]}]}});
    Api::<emco::api::dtc::TrafficIntent>::namespaced(hub.clone(), &mesh)
        .patch("traffic", &PatchParams::default(), &Patch::Merge(&retry))
        .await?;
    wait_dig(&hub, &mesh, &mesh, "Instantiated on a mesh", Duration::from_secs(60), |s| {
        s.state == DigState::Instantiated
    })
    .await?;
    let gvk = GroupVersionKind::gvk("security.istio.io", "v1", "AuthorizationPolicy");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "authorizationpolicies");
    let authz = Api::<DynamicObject>::namespaced_with(cloud01.clone(), &mesh, &ar).get("web-in").await?;
    assert_eq!(authz.data["spec"]["selector"], json!({"matchLabels": {"app": "web"}}));
    assert_eq!(authz.data["spec"]["rules"][0]["to"], json!([{"operation": {"ports": ["8081"]}}]));
    assert!(
        Api::<NetworkPolicy>::namespaced(cloud01.clone(), &mesh).get_opt("web-in").await?.is_none(),
        "Istio instead of a NetworkPolicy"
    );

    for project in [&ns, &mesh, &stranger] {
        Api::<emco::api::orchestrator::Project>::all(hub.clone()).delete(project, &Default::default()).await?;
    }
    Ok(())
}

async fn network_on(bed: &Bed, member: &str, name: &str) -> Result<Option<DynamicObject>> {
    let api = Api::<DynamicObject>::namespaced_with(bed.client(member).await, "default", &network_object("Network"));
    Ok(api.get_opt(name).await?)
}

async fn policy_on(bed: &Bed, member: &str, ns: &str) -> Result<Option<NetworkPolicy>> {
    Ok(Api::<NetworkPolicy>::namespaced(bed.client(member).await, ns).get_opt("web-in").await?)
}

/// The cluster controller probes a member again when its kubeconfig Secret changes: a nudge
/// instead of waiting for the 30 s probe.
async fn nudge_probe(hub: &kube::Client, cluster: &str, mark: &str) -> Result<()> {
    let nudge = json!({"metadata": {"annotations": {"e2e/probe": mark}}});
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(hub.clone(), "emco-system")
        .patch(&format!("{cluster}-kubeconfig"), &PatchParams::default(), &Patch::Merge(&nudge))
        .await?;
    Ok(())
}
