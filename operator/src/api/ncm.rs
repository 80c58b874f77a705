//! `ncm.emco.io`: network configuration management (EMCO clusters/{c}/provider-networks and
//! networks): the OVN4NFV networks of one member cluster, applied to it by rsync.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A virtual (overlay) network of one member cluster (EMCO network; OVN4NFV `Network`).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "ncm.emco.io",
    version = "v1alpha1",
    kind = "VirtualNetwork",
    category = "emco",
    shortname = "vnet",
    status = "NetworkStatus",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = 1,
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct VirtualNetworkSpec {
    /// The member cluster the network is made on.
    #[schemars(length(min = 1, max = 253))]
    pub cluster: String,
    #[serde(default = "ovn4nfv")]
    pub cni_type: String,
    #[schemars(length(min = 1, max = 16))]
    pub ipv4_subnets: Vec<Subnet>,
}

/// A provider (underlay) network of one member cluster (EMCO provider-network; OVN4NFV
/// `ProviderNetwork`): a VLAN or a direct attachment to node interfaces.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "ncm.emco.io",
    version = "v1alpha1",
    kind = "ProviderNetwork",
    category = "emco",
    shortname = "pnet",
    status = "NetworkStatus",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.providerNetType"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.providerNetType != 'VLAN' || has(self.vlan)", "message": "a VLAN provider network needs vlan"},
    {"rule": "self.providerNetType != 'DIRECT' || has(self.direct)", "message": "a DIRECT provider network needs direct"}
]))]
pub struct ProviderNetworkSpec {
    #[schemars(length(min = 1, max = 253))]
    pub cluster: String,
    #[serde(default = "ovn4nfv")]
    pub cni_type: String,
    #[schemars(length(min = 1, max = 16))]
    pub ipv4_subnets: Vec<Subnet>,
    pub provider_net_type: ProviderNetType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<Vlan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<Direct>,
}

fn ovn4nfv() -> String {
    "ovn4nfv".into()
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(clippy::upper_case_acronyms)]
pub enum ProviderNetType {
    #[default]
    VLAN,
    DIRECT,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Subnet {
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// CIDR, e.g. `172.16.30.0/24`.
    #[schemars(length(min = 1, max = 49))]
    pub subnet: String,
    /// Gateway with prefix, e.g. `172.16.30.1/24`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Space-separated addresses or ranges not to hand out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_ips: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Vlan {
    #[schemars(length(min = 1, max = 4))]
    pub vlan_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_interface_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logical_interface_name: Option<String>,
    /// `all` or `specific` (then `nodeLabelList`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan_node_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_label_list: Vec<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Direct {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_interface_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_node_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_label_list: Vec<String>,
}

/// Where a network stands on its cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkStatus {
    /// The AppContext's state (Instantiating, Instantiated, Terminating, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The AppContext that applies it (in the operator's namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_context: Option<String>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
