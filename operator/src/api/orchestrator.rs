//! `orchestrator.emco.io`: projects, composite applications, profiles, placement intents and the
//! deployment intent group (DIG) whose spec carries every EMCO lifecycle operation.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Helm values: always a map at the top.
pub type Values = BTreeMap<String, Value>;

/// Schema of a values map: any nested content is kept as written.
fn values_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

// ---------------------------------------------------------------- Project

/// A tenant (EMCO project). It owns one hub namespace where its composite apps, profiles, intents,
/// logical clouds and deployment intent groups live.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "orchestrator.emco.io",
    version = "v1alpha1",
    kind = "Project",
    category = "emco",
    shortname = "emcoproject",
    status = "ProjectStatus",
    validation = kube::core::Rule::new("size(self.metadata.name) <= 63").message("a project name has at most 63 characters (it becomes a label value)"),
    printcolumn(name = "Namespace", type_ = "string", json_path = ".status.namespace"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ProjectSpec {
    /// The hub namespace of this project; defaults to the project's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub namespace: Option<String>,
    /// Subjects bound to the `admin` role in the project's namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admins: Vec<Subject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// An RBAC subject.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    /// `User`, `Group` or `ServiceAccount`.
    #[schemars(regex(pattern = r"^(User|Group|ServiceAccount)$"))]
    pub kind: String,
    pub name: String,
    /// Namespace of a ServiceAccount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProjectStatus {
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The namespace the project owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl Project {
    /// The hub namespace this project owns.
    pub fn namespace_name(&self) -> String {
        self.spec.namespace.clone().unwrap_or_else(|| kube::ResourceExt::name_any(self))
    }
}

// ---------------------------------------------------------------- CompositeApp

/// A composite application (EMCO composite-app/version): a set of apps, each a Helm-layout chart.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "orchestrator.emco.io",
    version = "v1alpha1",
    kind = "CompositeApp",
    namespaced,
    category = "emco",
    shortname = "ca",
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.version"),
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
pub struct CompositeAppSpec {
    /// EMCO composite app version, e.g. `v1`.
    #[serde(default = "default_version")]
    pub version: String,
    /// The apps, each with its chart. Names are unique.
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    #[schemars(length(min = 1, max = 200))]
    pub apps: Vec<App>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn default_version() -> String {
    "v1".into()
}

/// One app of a composite app.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct App {
    /// App name, used by profiles, intents and the labels on applied objects.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    pub chart: ChartSource,
    /// Apps that must reach an operational status before this one is applied (EMCO app dependency).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Dependency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Where an app's chart comes from: exactly one source.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.configMap) != has(self.repository)").message("chart needs exactly one of configMap or repository"))]
pub struct ChartSource {
    /// A packaged chart (`.tgz`) in a ConfigMap's `binaryData` in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapKey>,
    /// A chart in a Helm HTTP repository (one serving `index.yaml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<RepositoryChart>,
}

/// A key of a ConfigMap in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKey {
    pub name: String,
    /// Defaults to `chart.tgz` for charts and `values.yaml` for values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A chart in a Helm HTTP repository.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryChart {
    /// Base URL of the repository; `index.yaml` is read from under it.
    #[schemars(length(max = 2048), regex(pattern = r"^https?://"))]
    pub url: String,
    pub chart: String,
    /// Exact chart version; the newest in the index when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// EMCO app dependency: wait for `app` to reach `opStatus`, then `waitSeconds` more.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    pub app: String,
    #[serde(default)]
    pub op_status: OpStatus,
    /// At most a day.
    #[serde(default)]
    #[schemars(range(max = 86400))]
    pub wait_seconds: u32,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum OpStatus {
    #[default]
    Ready,
    Deployed,
}

// ---------------------------------------------------------------- CompositeProfile

/// Per-app values for a composite app (EMCO composite-profile and its profiles).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "orchestrator.emco.io",
    version = "v1alpha1",
    kind = "CompositeProfile",
    namespaced,
    category = "emco",
    shortname = "cprof",
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
pub struct CompositeProfileSpec {
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["app"]))]
    pub profiles: Vec<Profile>,
}

/// Values for one app: the inline map first, then each `valuesFrom` in order (later wins).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub app: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "values_schema")]
    pub values: Option<Values>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values_from: Vec<ValuesSource>,
}

/// A values file held elsewhere.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ValuesSource {
    /// A YAML values file in a ConfigMap of the same namespace (key defaults to `values.yaml`).
    pub config_map: ConfigMapKey,
}

// ---------------------------------------------------------------- GenericPlacementIntent

/// Where each app of a composite app goes (EMCO generic placement intent and its app intents).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "orchestrator.emco.io",
    version = "v1alpha1",
    kind = "GenericPlacementIntent",
    namespaced,
    category = "emco",
    shortname = "gpi",
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
pub struct GenericPlacementIntentSpec {
    #[schemars(length(max = 100))]
    pub app_intents: Vec<AppIntent>,
}

/// Placement of one app: every `allOf` entry gets its copy; `anyOf` picks exactly one cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("(has(self.allOf) ? size(self.allOf) : 0) + (has(self.anyOf) ? size(self.anyOf) : 0) > 0").message("an app intent needs allOf or anyOf"))]
pub struct AppIntent {
    #[schemars(length(max = 63))]
    pub app: String,
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub all_of: Vec<AllOfEntry>,
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub any_of: Vec<ClusterMatch>,
}

/// An `allOf` entry: one way of matching clusters, or a nested `anyOf` (one cluster of the list).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("[has(self.cluster), has(self.clusterLabel), has(self.clusterSelector), has(self.anyOf) && size(self.anyOf) > 0].filter(x, x).size() == 1").message("an allOf entry names exactly one of cluster, clusterLabel, clusterSelector or anyOf"))]
pub struct AllOfEntry {
    #[serde(flatten)]
    pub matcher: ClusterMatchFields,
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub any_of: Vec<ClusterMatch>,
}

/// One way of matching clusters: exactly one of `cluster`, `clusterLabel`, `clusterSelector`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("[has(self.cluster), has(self.clusterLabel), has(self.clusterSelector)].filter(x, x).size() == 1").message("a cluster match names exactly one of cluster, clusterLabel or clusterSelector"))]
pub struct ClusterMatch {
    #[serde(flatten)]
    pub matcher: ClusterMatchFields,
}

/// The fields shared by every cluster match.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMatchFields {
    /// Only clusters of this provider match, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub cluster_provider: Option<String>,
    /// A cluster by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub cluster: Option<String>,
    /// Clusters carrying this label key (EMCO cluster label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 317))]
    pub cluster_label: Option<String>,
    /// Clusters whose labels match this selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_selector: Option<LabelSelector>,
}

// ---------------------------------------------------------------- DeploymentIntentGroup

/// The unit of deployment (EMCO deployment intent group): a composite app with a profile, a
/// logical cloud and intents, plus its lifecycle as declarative fields.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "orchestrator.emco.io",
    version = "v1alpha1",
    kind = "DeploymentIntentGroup",
    namespaced,
    category = "emco",
    shortname = "dig",
    status = "DeploymentIntentGroupStatus",
    validation = kube::core::Rule::new("size(self.metadata.name) <= 63").message("a deployment intent group name has at most 63 characters (it becomes a label value)"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Revision", type_ = "integer", json_path = ".status.revision"),
    printcolumn(name = "Deployed", type_ = "string", json_path = ".status.deployed"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.ready"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Rollout", type_ = "string", json_path = ".status.rollout.progress", priority = "1"),
    printcolumn(name = "Message", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].message", priority = "1"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentIntentGroupSpec {
    /// The CompositeApp to deploy (same namespace).
    pub composite_app: String,
    /// The CompositeProfile with per-app values (same namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composite_profile: Option<String>,
    /// The LogicalCloud whose clusters are the placement candidates.
    pub logical_cloud: String,
    /// Helm release name (EMCO's DIG version); defaults to the DIG's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// Values that win over the chart's and the profile's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub override_values: Vec<OverrideValues>,
    /// Intents by controller name, as in EMCO: `genericPlacementIntent: <name>` is required.
    #[x_kube(validation = kube::core::Rule::new("has(self.genericPlacementIntent)").message("intents must name a genericPlacementIntent"))]
    pub intents: BTreeMap<String, String>,
    /// EMCO approve: nothing is deployed until this is true.
    #[serde(default)]
    pub approved: bool,
    /// Desired lifecycle state: `Instantiated` deploys, `Terminated` removes everything.
    #[serde(default)]
    pub state: DesiredState,
    /// EMCO stop: abort retries of the running operation.
    #[serde(default)]
    pub stop: bool,
    /// EMCO rollback: go back to the inputs of an earlier revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2147483647))]
    pub rollback_to: Option<u32>,
    /// How a revision spreads over the clusters: a few at a time, group after group, each
    /// waiting for the ones before to be Ready. Absent: every cluster at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
}

/// Progressive rollout of each revision (instantiate, update, rollback; not terminate). Clusters
/// not reached yet keep what the previous revision applied. A lifecycle field: changing it never
/// makes a revision, it steers the rollout under way.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// At most this many clusters take the revision at once (until each is Ready for
    /// `minReadySeconds`). Unset: no limit but `maxUnavailable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_concurrent_clusters: Option<u32>,
    /// At most this many clusters, or this percentage of them (`"25%"`, at least one), not Ready
    /// on the revision at once. With `maxConcurrentClusters`, the smaller wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,
    /// Clusters in order: a cluster is in the first group whose selector matches it, clusters in
    /// none come last; a group starts once every cluster of the groups before it is done. Within a
    /// group, clusters go in name order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub groups: Vec<RolloutGroup>,
    /// How long a cluster must stay Ready before the rollout counts it done and goes on.
    #[serde(default)]
    #[schemars(range(max = 86400))]
    pub min_ready_seconds: u32,
    /// A cluster not Ready this long after it got the revision has failed (so has one that
    /// refuses a resource or fails a hook). Default 600.
    #[serde(default = "default_progress_deadline")]
    #[schemars(range(min = 1, max = 86400))]
    pub progress_deadline_seconds: u32,
    /// What a failed cluster does to the rollout: `Pause` (default; no further cluster gets the
    /// revision until it recovers, is rolled back, or this is set to `Continue`) or `Continue`.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Holds the rollout where it is: no further cluster gets the revision until false again.
    #[serde(default)]
    pub paused: bool,
}

fn default_progress_deadline() -> u32 {
    600
}

/// A group of clusters of a rollout.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutGroup {
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Clusters whose labels match (an empty selector matches every cluster).
    #[serde(default)]
    pub cluster_selector: LabelSelector,
}

/// What a failed cluster does to a rollout.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnFailure {
    #[default]
    Pause,
    Continue,
}

/// Per-app values of a DIG.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OverrideValues {
    pub app: String,
    #[serde(default)]
    #[schemars(schema_with = "values_schema")]
    pub values: Values,
}

/// What the user wants of a DIG.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DesiredState {
    #[default]
    Instantiated,
    Terminated,
}

/// EMCO DIG states.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DigState {
    #[default]
    Created,
    Approved,
    Instantiating,
    Instantiated,
    InstantiateFailed,
    InstantiateStopped,
    Updating,
    Updated,
    UpdateFailed,
    Terminating,
    Terminated,
    TerminateFailed,
    TerminateStopped,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentIntentGroupStatus {
    #[serde(default)]
    pub state: DigState,
    /// The current revision; each instantiate or update makes a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u32>,
    /// The AppContext of the current revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_context: Option<String>,
    /// The controllers that made the current revision, in the order they ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controllers: Vec<String>,
    /// Resources applied / total, e.g. `24/24`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed: Option<String>,
    /// Resources ready / total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// `Approved`, `Placed`, `Deployed`, `Ready`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Revisions made so far, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Revision>,
    /// How far the current revision's rollout got (with `spec.rollout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<crate::api::rsync::RolloutStatus>,
}

/// One revision of a DIG.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    pub revision: u32,
    pub app_context: String,
    /// The DIG generation it was made from.
    pub generation: i64,
    pub time: Time,
}
