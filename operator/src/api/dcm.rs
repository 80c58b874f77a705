//! `dcm.emco.io`: logical clouds, the set of member clusters (and, for Standard and Privileged
//! clouds, the namespace, user, permissions and quotas on each) a DIG deploys through.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A logical cloud (EMCO dcm logical-cloud with its cluster references, permissions and quotas).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "dcm.emco.io",
    version = "v1alpha1",
    kind = "LogicalCloud",
    namespaced,
    category = "emco",
    shortname = "lc",
    status = "LogicalCloudStatus",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Clusters", type_ = "integer", json_path = ".status.clusterCount"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct LogicalCloudSpec {
    /// `Admin` (EMCO level 0: the cluster admin's credentials), `Standard` or `Privileged` (level 1).
    #[serde(default, rename = "type")]
    pub type_: LogicalCloudType,
    /// Standard/Privileged: the namespace created on every member. Admin: the default namespace for
    /// resources that name none (defaults to `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Standard/Privileged: the certificate user made on each member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<LogicalCloudUser>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<Permission>,
    /// ResourceQuota hard limits on each member (`pods`, `requests.cpu`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quotas: BTreeMap<String, String>,
    /// The member clusters of this logical cloud.
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["cluster"]))]
    #[schemars(length(min = 1))]
    pub clusters: Vec<ClusterReference>,
    /// Desired state.
    #[serde(default)]
    pub state: LogicalCloudDesiredState,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogicalCloudType {
    #[default]
    Admin,
    Standard,
    Privileged,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogicalCloudDesiredState {
    #[default]
    Instantiated,
    Terminated,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LogicalCloudUser {
    pub name: String,
}

/// An RBAC rule granted to the logical cloud's user; namespace `""` means cluster-wide.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Permission {
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub api_groups: Vec<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub verbs: Vec<String>,
}

/// A member cluster of the logical cloud.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterReference {
    /// A registered Cluster.
    pub cluster: String,
    /// Checked against the Cluster's provider when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_provider: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LogicalCloudStatus {
    /// `Instantiating`, `Instantiated`, `InstantiateFailed`, `Terminating`, `Terminated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub state: Option<LogicalCloudState>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<LogicalCloudClusterStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_count: Option<u32>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// EMCO's logical cloud states (dcm).
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogicalCloudState {
    Instantiating,
    Instantiated,
    InstantiateFailed,
    Terminating,
    Terminated,
}

/// How one cluster of a logical cloud stands.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogicalCloudClusterState {
    /// Registered, with the provider the logical cloud names.
    Ready,
    /// No Cluster of that name is registered.
    ClusterNotFound,
    /// The Cluster belongs to another provider than the one named.
    ProviderMismatch,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LogicalCloudClusterStatus {
    pub cluster: String,
    #[schemars(with = "String")]
    pub state: LogicalCloudClusterState,
    /// Standard/Privileged: the hub Secret with this cloud's kubeconfig for the member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig_secret: Option<String>,
}
