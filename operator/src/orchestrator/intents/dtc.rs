//! The distributed traffic controller (pure): for each inbound intent, on every cluster the
//! server app lands on, admits only the declared clients on the declared port.
//!
//! - Without a mesh: a NetworkPolicy `<name>` selecting the server pods; clients on the same
//!   cluster by pod label (and namespaces, where given), clients on other clusters by `ipBlock`
//!   (their `cidrs`, else their cluster's kv pair [`EGRESS_CIDRS`]).
//! - With `serviceMesh`: an Istio AuthorizationPolicy `<name>` instead (the cluster must serve
//!   `security.istio.io`), and on each other cluster a client runs on, a ServiceEntry and a
//!   VirtualService `<name>-<server cluster>` sending `<serviceName>` to the server cluster's
//!   ingress gateway: EMCO's kv pairs [`INGRESS_ADDRESS`] and [`INGRESS_PORT`] (15443 when
//!   absent), the host named `<serviceName>.<namespace>.<provider>.<cluster>` as EMCO names it.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::{ClusterFacts, Placed};
use crate::api::dtc::{Client, Inbound, TrafficIntent};

/// Cluster kv pair: the addresses (CIDRs, comma-separated) its pods' traffic leaves it from.
pub const EGRESS_CIDRS: &str = "dtc.emco.io/egress-cidrs";
/// Cluster kv pair (EMCO's): the address (IP or host name) of its Istio ingress gateway.
pub const INGRESS_ADDRESS: &str = "istioIngressGatewayAddress";
/// Cluster kv pair (EMCO's): the port of its Istio ingress gateway.
pub const INGRESS_PORT: &str = "istioIngressGatewayPort";

/// Why an intent cannot be carried out: (condition reason, message).
pub type Refusal = (&'static str, String);

/// `placed` with the traffic rules of `intent`, or why not. `namespace` is where the apps run.
pub fn apply(
    intent: &TrafficIntent,
    clusters: &[ClusterFacts],
    namespace: &str,
    mut placed: Placed,
) -> Result<Placed, Refusal> {
    for inbound in &intent.spec.inbound {
        let servers = clusters_of(&placed, &inbound.app)?;
        for server in &servers {
            let mut peers = Vec::new();
            for client in &inbound.clients {
                peers.extend(peers_of(client, server, &clusters_of(&placed, &client.app)?, clusters, inbound)?);
            }
            let objects = if inbound.service_mesh {
                let api = istio_security(clusters, server).ok_or_else(|| {
                    ("IstioMissing", format!("inbound {}: serviceMesh is set and cluster {server} does not serve Istio (security.istio.io)", inbound.name))
                })?;
                vec![authorization_policy(inbound, &peers, api)]
            } else {
                vec![network_policy(inbound, &peers)]
            };
            push(&mut placed, &inbound.app, server, objects);
            if inbound.service_mesh {
                for client in &inbound.clients {
                    for elsewhere in clusters_of(&placed, &client.app)?.into_iter().filter(|c| c != server) {
                        let address = kv(clusters, server, INGRESS_ADDRESS).ok_or_else(|| {
                            ("UnknownIngressAddress", format!("inbound {}: cluster {server} has no kv pair {INGRESS_ADDRESS} for clients on {elsewhere}", inbound.name))
                        })?;
                        let port = kv(clusters, server, INGRESS_PORT).and_then(|p| p.parse().ok()).unwrap_or(15443);
                        let provider =
                            clusters.iter().find(|c| c.name == *server).map(|c| c.provider.clone()).unwrap_or_default();
                        let host = format!("{}.{namespace}.{provider}.{server}", inbound.service_name);
                        push(
                            &mut placed,
                            &client.app,
                            &elsewhere,
                            remote_entry(inbound, server, &host, (&address, port)),
                        );
                    }
                }
            }
        }
    }
    Ok(placed)
}

/// The clusters `app` was placed on.
fn clusters_of(placed: &Placed, app: &str) -> Result<Vec<String>, Refusal> {
    let found = placed.apps.iter().find(|a| a.name == app);
    let found = found.ok_or_else(|| ("UnknownApp", format!("app {app} is not placed")))?;
    Ok(found.clusters.iter().map(|c| c.cluster.clone()).collect())
}

fn kv(clusters: &[ClusterFacts], cluster: &str, key: &str) -> Option<String> {
    clusters.iter().find(|c| c.name == cluster)?.kv.get(key).filter(|v| !v.trim().is_empty()).cloned()
}

/// The served version of Istio's security API on `cluster`, if any.
fn istio_security<'a>(clusters: &'a [ClusterFacts], cluster: &str) -> Option<&'a str> {
    let served = &clusters.iter().find(|c| c.name == cluster)?.api_versions;
    ["security.istio.io/v1", "security.istio.io/v1beta1"].into_iter().find(|v| served.iter().any(|s| s == v))
}

/// Who one client is, seen from the server on `server`: its pods there, and the addresses of its
/// copies on other clusters.
enum Peer {
    Pods { label: (String, String), namespaces: Vec<String> },
    Addresses(Vec<String>),
}

fn peers_of(
    client: &Client,
    server: &str,
    on: &[String],
    clusters: &[ClusterFacts],
    inbound: &Inbound,
) -> Result<Vec<Peer>, Refusal> {
    let mut peers = Vec::new();
    if on.iter().any(|c| c == server) {
        peers.push(Peer::Pods { label: label(&client.app_label), namespaces: client.namespaces.clone() });
    }
    let remote: Vec<&String> = on.iter().filter(|c| *c != server).collect();
    if remote.is_empty() {
        return Ok(peers);
    }
    let mut cidrs: BTreeSet<String> = client.cidrs.iter().cloned().collect();
    if cidrs.is_empty() {
        for cluster in &remote {
            let Some(list) = kv(clusters, cluster, EGRESS_CIDRS) else {
                let message = format!(
                    "inbound {}: client {} runs on cluster {cluster}, whose addresses are unknown: set the client's cidrs or the cluster's kv pair {EGRESS_CIDRS}",
                    inbound.name, client.app
                );
                return Err(("UnknownClientAddress", message));
            };
            cidrs.extend(list.split(',').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()));
        }
    }
    peers.push(Peer::Addresses(cidrs.into_iter().collect()));
    Ok(peers)
}

/// `key=value` (validated by the CRD) as a pair.
fn label(selector: &str) -> (String, String) {
    let (k, v) = selector.split_once('=').unwrap_or((selector, ""));
    (k.to_string(), v.to_string())
}

fn network_policy(inbound: &Inbound, peers: &[Peer]) -> Value {
    let (k, v) = label(&inbound.app_label);
    let from: Vec<Value> = peers
        .iter()
        .flat_map(|p| match p {
            Peer::Pods { label: (pk, pv), namespaces } => {
                let mut peer = json!({"podSelector": {"matchLabels": {pk.as_str(): pv}}});
                if !namespaces.is_empty() {
                    peer["namespaceSelector"] = json!({"matchExpressions": [
                        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": namespaces}]});
                }
                vec![peer]
            }
            Peer::Addresses(cidrs) => cidrs.iter().map(|c| json!({"ipBlock": {"cidr": c}})).collect(),
        })
        .collect();
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": inbound.name},
        "spec": {
            "podSelector": {"matchLabels": {k.as_str(): v}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": from, "ports": [{"port": inbound.port, "protocol": inbound.protocol}]}]
        }
    })
}

fn authorization_policy(inbound: &Inbound, peers: &[Peer], api_version: &str) -> Value {
    let (k, v) = label(&inbound.app_label);
    let from: Vec<Value> = peers
        .iter()
        .map(|p| match p {
            // Istio identifies pods by workload identity, not label: the client's namespaces.
            Peer::Pods { namespaces, .. } if !namespaces.is_empty() => json!({"source": {"namespaces": namespaces}}),
            Peer::Pods { .. } => json!({"source": {"principals": ["*"]}}),
            Peer::Addresses(cidrs) => json!({"source": {"remoteIpBlocks": cidrs}}),
        })
        .collect();
    json!({
        "apiVersion": api_version, "kind": "AuthorizationPolicy",
        "metadata": {"name": inbound.name},
        "spec": {
            "selector": {"matchLabels": {k.as_str(): v}},
            "action": "ALLOW",
            "rules": [{"from": from, "to": [{"operation": {"ports": [inbound.port.to_string()]}}]}]
        }
    })
}

/// What a client on another cluster needs to reach the server through the server cluster's
/// ingress gateway.
fn remote_entry(inbound: &Inbound, server: &str, host: &str, (address, port): (&str, u16)) -> Vec<Value> {
    let name = format!("{}-{server}", inbound.name);
    let protocol = serde_json::to_value(inbound.protocol).unwrap_or_default();
    let resolution = if address.parse::<std::net::IpAddr>().is_ok() { "STATIC" } else { "DNS" };
    let port_name = format!("{}-{}", protocol.as_str().unwrap_or("tcp").to_lowercase(), inbound.port);
    vec![
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": name},
            "spec": {"hosts": [host], "location": "MESH_INTERNAL", "resolution": resolution,
                     "ports": [{"number": inbound.port, "name": port_name, "protocol": protocol}],
                     "endpoints": [{"address": address, "ports": {port_name.as_str(): port}}]}
        }),
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": name},
            "spec": {"hosts": [inbound.service_name],
                     "tcp": [{"match": [{"port": inbound.port}],
                              "route": [{"destination": {"host": host, "port": {"number": inbound.port}}}]}]}
        }),
    ]
}

/// Adds `objects` to `app`'s resources on `cluster`, replacing any of the same kind and name.
fn push(placed: &mut Placed, app: &str, cluster: &str, objects: Vec<Value>) {
    let Some(c) =
        placed.apps.iter_mut().filter(|a| a.name == app).flat_map(|a| &mut a.clusters).find(|c| c.cluster == cluster)
    else {
        return;
    };
    let resources = std::sync::Arc::make_mut(&mut c.resources);
    for obj in objects {
        resources.retain(|r| !(r["kind"] == obj["kind"] && r["metadata"]["name"] == obj["metadata"]["name"]));
        resources.push(obj);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::intents::{PlacedApp, PlacedCluster};
    use std::collections::BTreeMap;

    fn intent(mesh: bool) -> TrafficIntent {
        serde_json::from_value(json!({
            "apiVersion": "dtc.emco.io/v1alpha1", "kind": "TrafficIntent", "metadata": {"name": "t"},
            "spec": {"inbound": [{"name": "web-in", "app": "cloud", "appLabel": "app=web", "serviceName": "web", "port": 8080,
                "serviceMesh": mesh, "clients": [{"app": "edge", "appLabel": "app=analytics"}, {"app": "ops", "appLabel": "app=ops",
                "namespaces": ["ops"]}]}]}}))
        .unwrap()
    }

    fn placed() -> Placed {
        let app = |name: &str, clusters: &[&str]| PlacedApp {
            name: name.into(),
            clusters: clusters.iter().map(|c| PlacedCluster { cluster: c.to_string(), ..Default::default() }).collect(),
        };
        Placed { apps: vec![app("cloud", &["cloud01"]), app("edge", &["edge01", "edge02"]), app("ops", &["cloud01"])] }
    }

    fn facts(istio: bool) -> Vec<ClusterFacts> {
        let fact = |name: &str, kv: &[(&str, &str)]| ClusterFacts {
            name: name.into(),
            kv: kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
            api_versions: if istio { vec!["security.istio.io/v1".into()] } else { vec![] },
            provider: "smartcity".into(),
            ..Default::default()
        };
        vec![
            fact("cloud01", &[(INGRESS_ADDRESS, "192.0.2.10"), (INGRESS_PORT, "32001")]),
            fact("edge01", &[(EGRESS_CIDRS, "10.1.0.0/16")]),
            fact("edge02", &[(EGRESS_CIDRS, "10.2.0.0/16, 10.3.0.0/16")]),
        ]
    }

    #[test]
    fn a_network_policy_admits_exactly_the_clients() {
        let out = apply(&intent(false), &facts(false), "smtc", placed()).unwrap();
        let policy = &out.apps[0].clusters[0].resources[0];
        assert_eq!(policy["kind"], "NetworkPolicy");
        assert_eq!(policy["spec"]["podSelector"], json!({"matchLabels": {"app": "web"}}));
        assert_eq!(
            policy["spec"]["ingress"],
            json!([{"from": [
                {"ipBlock": {"cidr": "10.1.0.0/16"}}, {"ipBlock": {"cidr": "10.2.0.0/16"}}, {"ipBlock": {"cidr": "10.3.0.0/16"}},
                {"podSelector": {"matchLabels": {"app": "ops"}}, "namespaceSelector": {"matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["ops"]}]}}],
                "ports": [{"port": 8080, "protocol": "TCP"}]}])
        );
        assert!(out.apps[1].clusters.iter().all(|c| c.resources.is_empty()), "nothing for the clients without a mesh");
    }

    #[test]
    fn a_mesh_gets_istio_resources_or_a_reason() {
        let out = apply(&intent(true), &facts(true), "smtc", placed()).unwrap();
        let policy = &out.apps[0].clusters[0].resources[0];
        assert_eq!(
            (policy["apiVersion"].as_str(), policy["kind"].as_str()),
            (Some("security.istio.io/v1"), Some("AuthorizationPolicy"))
        );
        let on_edge01: Vec<&str> =
            out.apps[1].clusters[0].resources.iter().filter_map(|r| r["kind"].as_str()).collect();
        assert_eq!(on_edge01, ["ServiceEntry", "VirtualService"]);
        let entry = &out.apps[1].clusters[0].resources[0];
        assert_eq!(entry["spec"]["endpoints"], json!([{"address": "192.0.2.10", "ports": {"tcp-8080": 32001}}]));
        assert_eq!(entry["spec"]["hosts"], json!(["web.smtc.smartcity.cloud01"]));
        let (reason, message) = apply(&intent(true), &facts(false), "smtc", placed()).unwrap_err();
        assert_eq!(reason, "IstioMissing");
        assert!(message.contains("cloud01"), "{message}");
    }

    #[test]
    fn a_remote_client_without_addresses_is_refused() {
        let mut facts = facts(false);
        facts[1].kv.clear();
        let (reason, message) = apply(&intent(false), &facts, "smtc", placed()).unwrap_err();
        assert_eq!(reason, "UnknownClientAddress");
        assert!(message.contains("edge01"), "{message}");
    }
}
