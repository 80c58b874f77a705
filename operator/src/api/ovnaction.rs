//! `ovnaction.emco.io`: the OVN action controller's intent (EMCO network-controller-intent,
//! workload-intents, interfaces): extra network interfaces for an app's workloads, set as network
//! annotations on their pod templates.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Network interfaces for the workloads of the DIG's apps.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "ovnaction.emco.io",
    version = "v1alpha1",
    kind = "NetworkIntent",
    namespaced,
    category = "emco",
    shortname = "ni",
    status = "crate::api::condition::InputStatus",
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
pub struct NetworkIntentSpec {
    #[schemars(length(min = 1, max = 64))]
    pub workload_intents: Vec<WorkloadIntent>,
}

/// One workload of one app (EMCO workload intent).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadIntent {
    /// The app of the DIG's composite app.
    #[schemars(length(min = 1, max = 63))]
    pub app: String,
    /// The workload's name in the app's chart.
    #[schemars(length(min = 1, max = 253))]
    pub workload_resource: String,
    /// Its kind.
    #[serde(rename = "type")]
    pub type_: WorkloadKind,
    #[schemars(length(min = 1, max = 16))]
    pub interfaces: Vec<Interface>,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WorkloadKind {
    #[default]
    Deployment,
    StatefulSet,
    DaemonSet,
    Job,
}

impl WorkloadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::Job => "Job",
        }
    }
}

/// One interface of the workload's pods, on a network defined for the cluster (ncm).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    /// The interface name in the pod, e.g. `net1`.
    #[schemars(length(min = 1, max = 15), regex(pattern = r"^[a-zA-Z0-9_.-]+$"))]
    pub interface: String,
    /// A VirtualNetwork or ProviderNetwork of the cluster.
    #[schemars(length(min = 1, max = 253))]
    pub network: String,
    #[serde(default)]
    pub default_gateway: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 45))]
    pub ip_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$"))]
    pub mac_address: Option<String>,
}
