//! `dtc.emco.io`: the distributed traffic controller's intent (EMCO traffic-group-intents,
//! inbound-intents, clients): which clients may reach a server app, as NetworkPolicy or, on a
//! service mesh, Istio resources.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Inbound traffic rules for the DIG's apps.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "dtc.emco.io",
    version = "v1alpha1",
    kind = "TrafficIntent",
    namespaced,
    category = "emco",
    shortname = "ti",
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
pub struct TrafficIntentSpec {
    #[schemars(length(min = 1, max = 64))]
    pub inbound: Vec<Inbound>,
}

/// Who may reach one server app, on which port (EMCO inbound intent).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Inbound {
    /// Names the generated objects: `<name>` (NetworkPolicy, AuthorizationPolicy).
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// The server app of the DIG's composite app.
    #[schemars(length(min = 1, max = 63))]
    pub app: String,
    /// The server pods' label, `key=value` (e.g. `app=web`).
    #[schemars(length(min = 1, max = 317), regex(pattern = r"^[A-Za-z0-9./_-]+=[A-Za-z0-9._-]*$"))]
    pub app_label: String,
    /// The server's Service (for clients in other clusters on a mesh).
    #[schemars(length(min = 1, max = 63))]
    pub service_name: String,
    #[schemars(range(min = 1, max = 65535))]
    pub port: u32,
    #[serde(default)]
    pub protocol: Protocol,
    /// Istio instead of NetworkPolicy; the server's clusters must serve Istio's CRDs.
    #[serde(default)]
    pub service_mesh: bool,
    #[schemars(length(min = 1, max = 32))]
    pub clients: Vec<Client>,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    #[default]
    TCP,
    UDP,
    SCTP,
}

/// One client of the server (EMCO client of an inbound intent).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Client {
    /// The client app of the DIG's composite app.
    #[schemars(length(min = 1, max = 63))]
    pub app: String,
    /// The client pods' label, `key=value`.
    #[schemars(length(min = 1, max = 317), regex(pattern = r"^[A-Za-z0-9./_-]+=[A-Za-z0-9._-]*$"))]
    pub app_label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub service_name: Option<String>,
    /// Namespaces the client pods run in, on the server's cluster; the server's own when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub namespaces: Vec<String>,
    /// Addresses the client's traffic comes from when it runs in another cluster; the client
    /// cluster's kv pair `dtc.emco.io/egress-cidrs` (comma-separated) when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub cidrs: Vec<String>,
}
