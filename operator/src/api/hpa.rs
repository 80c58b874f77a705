//! `hpa.emco.io`: the hardware-platform-aware intent (EMCO hpa-intents, resource consumers and
//! requirements): what an app's workloads need of a node, used to place the app and to set the
//! workloads' resources and node affinity.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// What one app's workloads need of the nodes of the clusters it goes to.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "hpa.emco.io",
    version = "v1alpha1",
    kind = "HpaIntent",
    namespaced,
    category = "emco",
    shortname = "hpai",
    printcolumn(name = "App", type_ = "string", json_path = ".spec.app"),
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
pub struct HpaIntentSpec {
    /// The app of the DIG's composite app these workloads belong to.
    #[schemars(length(min = 1, max = 253))]
    pub app: String,
    #[schemars(length(min = 1, max = 16))]
    pub consumers: Vec<Consumer>,
}

/// A workload of the app's chart (EMCO resource consumer) and what each of its replicas needs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Consumer {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    /// Replicas to account for when deciding whether a cluster's nodes can host the workload.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 10000))]
    pub replicas: u32,
    /// The container whose resources are set.
    pub container: String,
    #[schemars(length(max = 16))]
    pub requirements: Vec<Requirement>,
}

fn one() -> u32 {
    1
}

/// One need: an allocatable resource per replica, or a node label.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!has(self.allocatable) || self.allocatable == has(self.resource.name)").message("allocatable requirements name a resource (name, requests), node-label ones a key and value"))]
pub struct Requirement {
    /// An allocatable resource (`resource.name`) rather than a node label (`resource.key`);
    /// follows from `resource` when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocatable: Option<bool>,
    /// A cluster none of whose nodes meets a mandatory requirement is not a candidate.
    #[serde(default = "yes")]
    pub mandatory: bool,
    /// For optional requirements: how much meeting it counts when ordering candidates.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub weight: u32,
    pub resource: RequirementResource,
}

fn yes() -> bool {
    true
}

/// `{name, requests, limits}` for an allocatable resource, or `{key, value}` for a node label.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.name) != has(self.key)").message("a requirement names either a resource (name) or a node label (key)"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.name) || has(self.requests)").message("a resource requirement needs requests"))]
pub struct RequirementResource {
    /// An allocatable resource: `cpu`, `memory`, `nvidia.com/gpu`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Per replica, as a Kubernetes quantity (`500m`, `2Gi`, `2`).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "quantity")]
    #[schemars(schema_with = "quantity_schema")]
    pub requests: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "quantity")]
    #[schemars(schema_with = "quantity_schema")]
    pub limits: Option<String>,
    /// A node label that must be present (with `value`, when given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A quantity as Kubernetes writes it: a number or a string of the Quantity pattern.
fn quantity_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
    })
}

/// A quantity written as a number or a string, kept as its text.
fn quantity<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        Some(other) => return Err(serde::de::Error::custom(format!("a quantity, not {other}"))),
    })
}
