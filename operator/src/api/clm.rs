//! `clm.emco.io`: cluster registration. ClusterProvider groups clusters; a Cluster points at the
//! kubeconfig Secret of one member and carries EMCO's labels (as metadata labels) and kv-pairs.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A cluster provider: the owner of a set of member clusters (EMCO cluster-provider).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "clm.emco.io",
    version = "v1alpha1",
    kind = "ClusterProvider",
    category = "emco",
    shortname = "cp",
    printcolumn(name = "Description", type_ = "string", json_path = ".spec.description"),
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
pub struct ClusterProviderSpec {
    /// Free text for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A member cluster registered with the hub (EMCO cluster). EMCO cluster labels are the object's
/// metadata labels: placement matches on their keys (`clusterLabel`) or with a label selector.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "clm.emco.io",
    version = "v1alpha1",
    kind = "Cluster",
    category = "emco",
    shortname = "emcocluster",
    status = "ClusterStatus",
    validation = kube::core::Rule::new("has(self.spec.kubeconfig) != has(self.spec.gitOps)").message("a Cluster is reached either with a kubeconfig or through gitOps: set exactly one"),
    printcolumn(name = "Provider", type_ = "string", json_path = ".spec.provider"),
    printcolumn(name = "Access", type_ = "string", json_path = ".status.access"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Version", type_ = "string", json_path = ".status.kubernetesVersion"),
    printcolumn(name = "Nodes", type_ = "integer", json_path = ".status.nodeCount"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = "1"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// The ClusterProvider this cluster belongs to.
    #[schemars(length(min = 1, max = 253))]
    pub provider: String,
    /// How the hub reaches the member: with a kubeconfig (exactly one of this and `gitOps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<KubeconfigSource>,
    /// Or through a Git repository that an agent on the member applies from (EMCO's GitOps
    /// access method), for members the hub cannot dial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_ops: Option<GitOps>,
    /// EMCO kv-pairs: free key/value facts about the cluster, readable by intents.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kv: BTreeMap<String, String>,
    /// Free text for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Where the member's kubeconfig lives.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KubeconfigSource {
    /// A key of a Secret on the hub, normally in the operator's namespace.
    pub secret_ref: SecretKeyRef,
}

/// A key of a Secret in a given namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    pub namespace: String,
    pub name: String,
    /// Key in the Secret's data; defaults to `kubeconfig`.
    #[serde(default = "default_kubeconfig_key")]
    pub key: String,
}

fn default_kubeconfig_key() -> String {
    "kubeconfig".into()
}

/// A member reached through Git: rsync writes its objects under `repository.path`, the agent on
/// the member applies them and reports their state to `repository.statusPath`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GitOps {
    /// What applies from the repository on the member: `flux` (a Kustomization on the path),
    /// or `agent` (the operator binary in agent mode). Either way the status agent reports back.
    #[serde(default)]
    pub tool: GitOpsTool,
    pub repository: GitRepository,
    /// A Secret (in the operator's namespace) with `username` and `password`, or a `token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<GitCredentials>,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum GitOpsTool {
    #[default]
    Flux,
    Agent,
}

/// Where a GitOps member's objects live.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GitRepository {
    /// `https://...`, or `http://` on the loopback address.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = kube::core::Rule::new(r"self.startsWith('https://') || self.matches('^http://(127\\.0\\.0\\.1|localhost|\\[::1\\])(:[0-9]+)?(/.*)?$')").message("the repository URL must be https://, or http:// on the loopback address"))]
    #[x_kube(validation = kube::core::Rule::new(r"!self.matches('^[A-Za-z+]+://[^/]*@')").message("credentials go in the credentials Secret, never in the repository URL"))]
    pub url: String,
    #[serde(default = "default_branch")]
    #[schemars(length(min = 1, max = 255))]
    pub branch: String,
    /// The cluster's folder in the repository: `<path>/<project>/<dig>/<app>/...`.
    #[x_kube(validation = kube::core::Rule::new(r"self.matches('^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$') && !self.split('/').exists(s, s == '..' || s == '.')").message("path is a relative folder: segments of letters, digits, '.', '_' and '-', no '..'"))]
    #[schemars(length(min = 1, max = 512))]
    pub path: String,
    /// Where the status agent reports (`<statusPath>/status.yaml`); `.emco-status/<path>` when
    /// unset, outside `path` so that the applying tool never applies it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new(r"self.matches('^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$') && !self.split('/').exists(s, s == '..' || s == '.')").message("statusPath is a relative folder without '..'"))]
    #[schemars(length(min = 1, max = 512))]
    pub status_path: Option<String>,
}

impl GitRepository {
    /// The status agent's report file.
    pub fn status_file(&self) -> String {
        match &self.status_path {
            Some(p) => format!("{p}/status.yaml"),
            None => format!(".emco-status/{}/status.yaml", self.path),
        }
    }
}

fn default_branch() -> String {
    "main".into()
}

/// The Secret holding a GitOps member's repository credentials.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GitCredentials {
    pub secret_ref: SecretRef,
}

/// A Secret by namespace and name.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    pub namespace: String,
    pub name: String,
}

impl ClusterSpec {
    /// The kubeconfig Secret's key, for a member reached with a kubeconfig.
    pub fn kubeconfig_ref(&self) -> Option<&SecretKeyRef> {
        self.kubeconfig.as_ref().map(|k| &k.secret_ref)
    }

    /// Whether the hub reaches the member through Git.
    pub fn is_git(&self) -> bool {
        self.git_ops.is_some()
    }
}

/// What the cluster controller last saw of the member.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// How the hub reaches the member: `Kubeconfig` or `GitOps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
    /// `Reachable` (the API server answered) and `Ready` (reachable with at least one Ready node).
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The member's Kubernetes version, e.g. `v1.35.4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_count: Option<u32>,
    /// Node inventory, used by hardware-aware placement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeInventory>,
    /// Every API group/version the member serves (`v1`, `apps/v1`, ...): charts'
    /// `.Capabilities.APIVersions`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub api_versions: Vec<String>,
    /// The namespaced resources (subresources included) the member serves, by API group (`""`:
    /// core): what a Standard logical cloud's `*` expands to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub namespaced_resources: BTreeMap<String, Vec<String>>,
}

/// One node of a member cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeInventory {
    pub name: String,
    #[serde(default)]
    pub ready: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Allocatable resources as quantities (`cpu`, `memory`, `pods`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allocatable: BTreeMap<String, String>,
}
