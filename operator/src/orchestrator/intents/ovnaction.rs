//! The OVN action controller (pure): gives the pods of a workload extra interfaces on the
//! cluster's OVN4NFV networks, as EMCO's ovnaction does, through two pod template annotations:
//!
//! - `k8s.v1.cni.cncf.io/networks` (Multus) gains `{"name": "ovn-networkobj", "namespace":
//!   "default"}`, the network attachment OVN4NFV installs;
//! - `k8s.plugin.opnfv.org/nfn-network` lists the interfaces: `{"type": "ovn4nfv", "interface":
//!   [{"name": <network>, "interface": <if>, "defaultGateway": "true"|"false", "ipAddress",
//!   "macAddress"}]}`.
//!
//! Annotations the chart set are kept: its interfaces come first, then the intent's.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::Placed;
use crate::api::ovnaction::{Interface, NetworkIntent, WorkloadIntent};

pub const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
pub const NFN_NETWORK: &str = "k8s.plugin.opnfv.org/nfn-network";
const ATTACHMENT: &str = "ovn-networkobj";

/// The networks (VirtualNetwork and ProviderNetwork names) defined for each cluster.
pub type Networks = BTreeMap<String, BTreeSet<String>>;

/// Why an intent cannot be carried out: (condition reason, message).
pub type Refusal = (&'static str, String);

/// `placed` with the interfaces of `intent` on its workloads, or why not.
pub fn apply(intent: &NetworkIntent, networks: &Networks, mut placed: Placed) -> Result<Placed, Refusal> {
    for w in &intent.spec.workload_intents {
        let Some(app) = placed.apps.iter_mut().find(|a| a.name == w.app) else {
            return Err(("UnknownApp", format!("workload intent for app {}: the app is not placed", w.app)));
        };
        for cluster in &mut app.clusters {
            let defined = networks.get(&cluster.cluster);
            if let Some(i) = w.interfaces.iter().find(|i| !defined.is_some_and(|d| d.contains(&i.network))) {
                let message = format!(
                    "interface {} of {} {} names network {}, which cluster {} does not have (a VirtualNetwork or ProviderNetwork with spec.cluster {})",
                    i.interface,
                    w.type_.as_str(),
                    w.workload_resource,
                    i.network,
                    cluster.cluster,
                    cluster.cluster
                );
                return Err(("UnknownNetwork", message));
            }
            let resources = std::sync::Arc::make_mut(&mut cluster.resources);
            let Some(workload) = resources.iter_mut().find(|r| names(r, w)) else {
                let message =
                    format!("app {} has no {} {} on {}", w.app, w.type_.as_str(), w.workload_resource, cluster.cluster);
                return Err(("WorkloadNotFound", message));
            };
            annotate(workload, &w.interfaces).map_err(|m| ("InvalidAnnotation", m))?;
        }
    }
    Ok(placed)
}

fn names(obj: &Value, w: &WorkloadIntent) -> bool {
    obj["kind"] == w.type_.as_str() && obj["metadata"]["name"] == w.workload_resource.as_str()
}

/// Sets both annotations on the pod template of `workload` (a Job's too), keeping the chart's.
fn annotate(workload: &mut Value, interfaces: &[Interface]) -> Result<(), String> {
    let template = &mut workload["spec"]["template"];
    if !template["metadata"]["annotations"].is_object() {
        template["metadata"]["annotations"] = json!({});
    }
    let annotations = &mut template["metadata"]["annotations"];
    let mut attachments: Vec<Value> = match annotations[NETWORKS].as_str() {
        None => Vec::new(),
        Some(s) if s.trim_start().starts_with('[') => {
            serde_json::from_str(s).map_err(|e| format!("the chart's {NETWORKS} annotation is not a JSON list: {e}"))?
        }
        // The short form: `name`, `namespace/name`, comma-separated.
        Some(s) => s.split(',').map(str::trim).filter(|n| !n.is_empty()).map(|n| json!({"name": n})).collect(),
    };
    if !attachments.iter().any(|a| a["name"] == ATTACHMENT) {
        attachments.push(json!({"name": ATTACHMENT, "namespace": "default"}));
    }
    annotations[NETWORKS] = Value::String(serde_json::to_string(&attachments).unwrap_or_default());
    let mut nfn: Value = match annotations[NFN_NETWORK].as_str() {
        Some(s) => {
            serde_json::from_str(s).map_err(|e| format!("the chart's {NFN_NETWORK} annotation is not JSON: {e}"))?
        }
        None => json!({"type": "ovn4nfv", "interface": []}),
    };
    if !nfn["interface"].is_array() {
        nfn["interface"] = json!([]);
    }
    let list = nfn["interface"].as_array_mut().expect("an array");
    for i in interfaces {
        let mut entry = json!({
            "name": i.network, "interface": i.interface, "defaultGateway": i.default_gateway.to_string()});
        if let Some(ip) = &i.ip_address {
            entry["ipAddress"] = json!(ip);
        }
        if let Some(mac) = &i.mac_address {
            entry["macAddress"] = json!(mac);
        }
        // The chart's entry for the same interface on the same network is replaced in place.
        match list.iter_mut().find(|e| e["interface"] == i.interface.as_str() && e["name"] == i.network.as_str()) {
            Some(existing) => *existing = entry,
            None => list.push(entry),
        }
    }
    annotations[NFN_NETWORK] = Value::String(serde_json::to_string(&nfn).unwrap_or_default());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::intents::{PlacedApp, PlacedCluster};
    use std::sync::Arc;

    fn intent(network: &str) -> NetworkIntent {
        serde_json::from_value(json!({
            "apiVersion": "ovnaction.emco.io/v1alpha1", "kind": "NetworkIntent", "metadata": {"name": "n"},
            "spec": {"workloadIntents": [{"app": "web", "workloadResource": "web", "type": "Deployment", "interfaces": [
                {"interface": "net1", "network": network, "defaultGateway": false, "ipAddress": "10.10.10.3",
                 "macAddress": "02:00:00:00:00:01"}]}]}}))
        .unwrap()
    }

    fn placed() -> Placed {
        let web = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"metadata": {"annotations": {"prometheus.io/scrape": "true",
                NETWORKS: "[{\"name\":\"sriov\"}]"}}, "spec": {}}}});
        let cluster =
            |c: &str| PlacedCluster { cluster: c.into(), resources: Arc::new(vec![web.clone()]), ..Default::default() };
        Placed { apps: vec![PlacedApp { name: "web".into(), clusters: vec![cluster("edge01")] }] }
    }

    #[test]
    fn interfaces_become_annotations_next_to_the_charts() {
        let networks = Networks::from([("edge01".into(), BTreeSet::from(["blue".to_string()]))]);
        let out = apply(&intent("blue"), &networks, placed()).unwrap();
        let annotations = &out.apps[0].clusters[0].resources[0]["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(annotations["prometheus.io/scrape"], "true", "the chart's own annotation is kept");
        let attachments: Value = serde_json::from_str(annotations[NETWORKS].as_str().unwrap()).unwrap();
        assert_eq!(attachments, json!([{"name": "sriov"}, {"name": "ovn-networkobj", "namespace": "default"}]));
        let nfn: Value = serde_json::from_str(annotations[NFN_NETWORK].as_str().unwrap()).unwrap();
        assert_eq!(
            nfn,
            json!({"type": "ovn4nfv", "interface": [{"name": "blue", "interface": "net1", "defaultGateway": "false",
                "ipAddress": "10.10.10.3", "macAddress": "02:00:00:00:00:01"}]})
        );
    }

    #[test]
    fn a_network_the_cluster_lacks_is_refused() {
        let networks = Networks::from([("edge01".into(), BTreeSet::from(["blue".to_string()]))]);
        let (reason, message) = apply(&intent("red"), &networks, placed()).unwrap_err();
        assert_eq!(reason, "UnknownNetwork");
        assert!(message.contains("network red") && message.contains("edge01"), "{message}");
    }
}
