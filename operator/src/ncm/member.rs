//! The OVN4NFV (Nodus) objects a network becomes on its member, and their CRDs (pure).

use serde_json::{Value, json};

use crate::api::ncm::{ProviderNetType, ProviderNetwork, VirtualNetwork};

/// Where the objects go on the member (EMCO's ncm leaves them in `default`).
pub const NAMESPACE: &str = "default";
const GROUP: &str = "k8s.plugin.opnfv.org";

/// A VirtualNetwork as an OVN4NFV `Network`, labelled `net: <name>` as EMCO does.
pub fn network(v: &VirtualNetwork) -> Value {
    let name = kube::ResourceExt::name_any(v);
    json!({
        "apiVersion": format!("{GROUP}/v1alpha1"), "kind": "Network",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"net": name}},
        "spec": {"cniType": v.spec.cni_type, "ipv4Subnets": v.spec.ipv4_subnets}
    })
}

/// A ProviderNetwork as an OVN4NFV `ProviderNetwork`, with the block of its type only.
pub fn provider_network(p: &ProviderNetwork) -> Value {
    let mut spec = json!({"cniType": p.spec.cni_type, "ipv4Subnets": p.spec.ipv4_subnets, "providerNetType": p.spec.provider_net_type});
    match p.spec.provider_net_type {
        ProviderNetType::VLAN => spec["vlan"] = json!(p.spec.vlan),
        ProviderNetType::DIRECT => spec["direct"] = json!(p.spec.direct),
    }
    json!({
        "apiVersion": format!("{GROUP}/v1alpha1"), "kind": "ProviderNetwork",
        "metadata": {"name": kube::ResourceExt::name_any(p), "namespace": NAMESPACE},
        "spec": spec
    })
}

/// `object` preceded by the CRD of its kind (rsync creates a CRD only where it is missing and
/// never takes one over).
pub fn with_crd(object: Value) -> Vec<Value> {
    let kind = object["kind"].as_str().unwrap_or_default().to_string();
    let plural = format!("{}s", kind.to_lowercase());
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{GROUP}")},
        "spec": {
            "group": GROUP, "scope": "Namespaced",
            "names": {"kind": kind, "listKind": format!("{kind}List"), "plural": plural, "singular": kind.to_lowercase()},
            "versions": [{"name": "v1alpha1", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    });
    vec![crd, object]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vlan_provider_network_carries_its_vlan_only() {
        let p: ProviderNetwork = serde_json::from_value(json!({
            "apiVersion": "ncm.emco.io/v1alpha1", "kind": "ProviderNetwork", "metadata": {"name": "emco-pnet"},
            "spec": {"cluster": "edge01", "ipv4Subnets": [{"name": "s1", "subnet": "10.10.20.0/24", "gateway": "10.10.20.1/24"}],
                     "providerNetType": "VLAN", "vlan": {"vlanId": "102", "providerInterfaceName": "eth1"}}}))
        .unwrap();
        let obj = provider_network(&p);
        assert_eq!(obj["spec"]["vlan"]["vlanId"], "102");
        assert!(obj["spec"].get("direct").is_none());
        assert_eq!(obj["spec"]["cniType"], "ovn4nfv");
        let with = with_crd(obj);
        assert_eq!(with[0]["metadata"]["name"], "providernetworks.k8s.plugin.opnfv.org");
    }
}
