//! `dcm.emco.io`: logical clouds, the set of member clusters (and, for Standard and Privileged
//! clouds, the namespace, user, permissions and quotas on each) a DIG deploys through.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
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
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Namespace-On-Members", type_ = "string", json_path = ".spec.namespace", priority = 1),
    printcolumn(name = "User", type_ = "string", json_path = ".spec.user.name", priority = 1),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = 1
    )
)]
#[kube(validation = kube::core::Rule::new("!has(self.spec.type) || self.spec.type == 'Admin' || (has(self.spec.__namespace__) && has(self.spec.user))").message("a Standard or Privileged logical cloud needs `namespace` and `user`"))]
#[kube(validation = kube::core::Rule::new("!has(self.spec.type) || self.spec.type != 'Standard' || !has(self.spec.permissions) || self.spec.permissions.all(p, !has(p.__namespace__) || p.__namespace__ == self.spec.__namespace__)").message("a Standard logical cloud's permissions hold in its own namespace only"))]
#[kube(validation = kube::core::Rule::new("!has(self.spec.type) || self.spec.type != 'Privileged' || !has(self.spec.permissions) || self.spec.permissions.all(p, !has(p.__namespace__) || p.__namespace__ == '' || p.__namespace__ == self.spec.__namespace__)").message("a Privileged logical cloud's permissions hold in its own namespace or cluster-wide (namespace \"\")"))]
#[kube(validation = kube::core::Rule::new("!has(self.spec.type) || self.spec.type != 'Standard' || !has(self.spec.permissions) || self.spec.permissions.all(p, !has(p.resources) || p.resources.all(r, !r.matches('^(resourcequotas|limitranges|roles|rolebindings|namespaces)(/.*)?$')))").message("a Standard logical cloud's user may not be given its ResourceQuota, LimitRange, Role, RoleBinding or Namespace (`*` is expanded without them)"))]
#[kube(validation = kube::core::Rule::new("!has(self.spec.type) || self.spec.type == 'Admin' || !has(self.spec.__namespace__) || !(self.spec.__namespace__ == 'default' || self.spec.__namespace__.startsWith('kube-'))").message("`default` and `kube-*` cannot be a logical cloud's namespace"))]
#[kube(validation = kube::core::Rule::new("(has(self.spec.type) ? self.spec.type : 'Admin') == (has(oldSelf.spec.type) ? oldSelf.spec.type : 'Admin') && (has(self.spec.__namespace__) ? self.spec.__namespace__ : '') == (has(oldSelf.spec.__namespace__) ? oldSelf.spec.__namespace__ : '') && (has(self.spec.user) ? self.spec.user.name : '') == (has(oldSelf.spec.user) ? oldSelf.spec.user.name : '')").message("type, namespace and user cannot change: make another logical cloud"))]
#[serde(rename_all = "camelCase")]
pub struct LogicalCloudSpec {
    /// `Admin` (EMCO level 0: the cluster admin's credentials), `Standard` or `Privileged` (level 1).
    #[serde(default, rename = "type")]
    pub type_: LogicalCloudType,
    /// Standard/Privileged: the namespace created on every member. Admin: the default namespace for
    /// resources that name none (defaults to `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub namespace: Option<String>,
    /// Standard/Privileged: the certificate user made on each member; the members know it as
    /// `emco:<project namespace>:<name>` (so no tenant can take another's or a member's own user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<LogicalCloudUser>,
    /// Standard/Privileged: what the user may do on each member. None given: everything within the
    /// logical cloud's namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub permissions: Vec<Permission>,
    /// Standard/Privileged: the Pod Security level enforced in the namespace on every member
    /// (default `baseline`). Above `baseline` only where a ClusterGrant's `maxPodSecurity` allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security: Option<PodSecurityLevel>,
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

/// A Pod Security Standard level (`pod-security.kubernetes.io/enforce`), from strictest to laxest.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum PodSecurityLevel {
    Restricted,
    #[default]
    Baseline,
    Privileged,
}

impl PodSecurityLevel {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            PodSecurityLevel::Restricted => "restricted",
            PodSecurityLevel::Baseline => "baseline",
            PodSecurityLevel::Privileged => "privileged",
        }
    }
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
    /// The certificate's common name: the user the members' RBAC sees.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9][-A-Za-z0-9_.@]*$"))]
    pub name: String,
}

/// An RBAC rule granted to the logical cloud's user: in `namespace` (default: the logical cloud's
/// own), or cluster-wide with `namespace: ""` (Privileged only).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Permission {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub api_groups: Vec<String>,
    #[serde(default)]
    #[schemars(length(max = 64), inner(length(max = 253)))]
    pub resources: Vec<String>,
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub verbs: Vec<String>,
}

impl LogicalCloud {
    /// The user the members' RBAC sees (the certificate's common name): unique to the project,
    /// and never a name a member's own users have (`:` is in no project namespace or user name).
    pub fn member_user(&self) -> String {
        let name = self.spec.user.as_ref().map(|u| u.name.as_str()).unwrap_or_default();
        format!("emco:{}:{name}", kube::ResourceExt::namespace(self).unwrap_or_default())
    }
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
    /// Standard/Privileged: the AppContext that carries the namespace, RBAC and quota to the members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_context: Option<String>,
    /// Standard/Privileged: the revision of that AppContext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u32>,
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
    /// No ClusterGrant lets the project use this cluster with this type of logical cloud.
    NotGranted,
    /// Standard/Privileged: the user or the member objects are on their way.
    Pending,
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
    /// Standard/Privileged: when the user's certificate expires (it is renewed before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_expiry: Option<Time>,
    /// What is under way or wrong on this cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A platform admin's grant: which projects may use which clusters, with which types of logical
/// cloud (cluster-scoped, so a project admin cannot make one).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "dcm.emco.io",
    version = "v1alpha1",
    kind = "ClusterGrant",
    category = "emco",
    shortname = "cgrant",
    printcolumn(name = "Projects", type_ = "string", json_path = ".spec.projects"),
    printcolumn(name = "Clusters", type_ = "string", json_path = ".spec.clusters"),
    printcolumn(name = "Provider", type_ = "string", json_path = ".spec.clusterProvider"),
    printcolumn(name = "Types", type_ = "string", json_path = ".spec.logicalCloudTypes"),
    printcolumn(name = "Max-Pod-Security", type_ = "string", json_path = ".spec.maxPodSecurity", priority = 1),
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
pub struct ClusterGrantSpec {
    /// Projects (by name) the grant is for; `*` is every project (a single-tenant hub says so
    /// with one such grant).
    #[schemars(length(min = 1, max = 256))]
    pub projects: Vec<String>,
    /// Clusters granted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<String>,
    /// Clusters granted by their labels (every cluster when empty and no names are given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_selector: Option<LabelSelector>,
    /// Only clusters of this provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_provider: Option<String>,
    /// The types of logical cloud the projects may make on these clusters (default `[Standard]`).
    /// `Admin` hands out the clusters' own admin credentials.
    #[serde(default = "standard_only")]
    #[schemars(with = "Vec<String>", length(max = 3))]
    pub logical_cloud_types: Vec<LogicalCloudType>,
    /// The laxest Pod Security level a Standard or Privileged logical cloud may ask for on these
    /// clusters (default `baseline`).
    #[serde(default)]
    pub max_pod_security: PodSecurityLevel,
}

fn standard_only() -> Vec<LogicalCloudType> {
    vec![LogicalCloudType::Standard]
}

/// The hub Secret (in the project's namespace) holding a logical cloud user's credentials on one
/// member: the key made by dcm, the certificate the member issued, and the kubeconfig for both.
pub mod user_secret {
    /// Secret type.
    pub const TYPE: &str = "emco.io/logical-cloud-user";
    /// PEM private key (made on the hub; it never leaves the hub).
    pub const KEY: &str = "tls.key";
    /// PEM certificate issued by the member's CSR API.
    pub const CERTIFICATE: &str = "tls.crt";
    /// A kubeconfig for the user on the member, in the logical cloud's namespace.
    pub const KUBECONFIG: &str = "kubeconfig";
    /// Annotation: the user's name.
    pub const USER: &str = "dcm.emco.io/user";
    /// Label: the logical cloud.
    pub const LOGICAL_CLOUD: &str = "dcm.emco.io/logical-cloud";
    /// Label: the member cluster.
    pub const CLUSTER: &str = "dcm.emco.io/cluster";

    /// The Secret's name.
    pub fn name(logical_cloud: &str, cluster: &str) -> String {
        format!("emco-lc-{logical_cloud}-{cluster}")
    }
}
