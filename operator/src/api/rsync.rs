//! `rsync.emco.io`: the AppContext, one per DIG revision: what goes to which member cluster, and
//! how far it got. Rendered manifests live in bundle Secrets, never in this object.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::orchestrator::OpStatus;

/// A plan for rsync and its progress (EMCO's AppContext, kept in the hub API instead of etcd).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "rsync.emco.io",
    version = "v1alpha1",
    kind = "AppContext",
    namespaced,
    category = "emco",
    shortname = "actx",
    status = "AppContextStatus",
    printcolumn(name = "Owner", type_ = "string", json_path = ".spec.owner.name"),
    printcolumn(name = "Revision", type_ = "integer", json_path = ".spec.revision"),
    printcolumn(name = "Operation", type_ = "string", json_path = ".spec.operation"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Deployed", type_ = "string", json_path = ".status.deployed"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.ready"),
    printcolumn(name = "Superseded-By", type_ = "string", json_path = ".spec.supersededBy"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct AppContextSpec {
    pub owner: Owner,
    pub revision: u32,
    pub operation: Operation,
    /// EMCO stop: give up retrying.
    #[serde(default)]
    pub stop: bool,
    /// The AppContext this one replaces (an update): what it applied and this one does not is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
    /// Set on a revision once a newer one replaces it: rsync leaves it alone from then on (the newer
    /// revision prunes what only this one applied), unless it is told to terminate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
    /// Namespace on the members for namespaced resources that name none; created when missing
    /// (except with `logicalCloud`: the logical cloud made it).
    pub namespace: String,
    /// A Standard or Privileged logical cloud whose user applies and deletes the resources on each
    /// member (its RBAC and quota apply); absent: the cluster's own (admin) credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logical_cloud: Option<String>,
    pub apps: Vec<ContextApp>,
    /// The DIG's `rollout`, kept current by the orchestrator: which clusters may take this
    /// revision now. Absent: all at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<super::orchestrator::Rollout>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    pub kind: String,
    pub name: String,
}

impl Owner {
    /// The value of the `emco.io/deployment-intent-group` label on what this owner's contexts
    /// apply: the DIG's name, or `lc_<name>` for a logical cloud (`_` is never in a DIG's name).
    pub fn label(&self) -> String {
        match self.kind.as_str() {
            "LogicalCloud" if self.name.len() <= 60 => format!("lc_{}", self.name),
            "LogicalCloud" => format!("lc_{}", crate::hex::digest(self.name.as_bytes(), 16)),
            "VirtualNetwork" if self.name.len() <= 58 => format!("vnet_{}", self.name),
            "ProviderNetwork" if self.name.len() <= 58 => format!("pnet_{}", self.name),
            "VirtualNetwork" => format!("vnet_{}", crate::hex::digest(self.name.as_bytes(), 16)),
            "ProviderNetwork" => format!("pnet_{}", crate::hex::digest(self.name.as_bytes(), 16)),
            _ => self.name.clone(),
        }
    }
}

/// EMCO rsync events.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Instantiate,
    Update,
    Terminate,
}

/// One app and the clusters it goes to.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContextApp {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<ContextDependency>,
    pub clusters: Vec<ContextCluster>,
    /// The app's rendered resources, each bundle naming the clusters it goes to (clusters that get
    /// identical resources share one): the bundle is written once per app, not once per cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bundles: Vec<BundleRef>,
    /// What the app applies (over all its clusters), for people and `kubectl emco status`: the
    /// first 100 resources; the bundles hold them all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub resources: Vec<ResourceRef>,
    /// How many resources are not listed in `resources`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unlisted: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// At most this many resources are listed per app in an AppContext.
pub const MAX_LISTED: usize = 100;

/// A resource by identity.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRef {
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl ResourceRef {
    /// The identity of a rendered resource.
    pub fn of(obj: &serde_json::Value) -> ResourceRef {
        let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        ResourceRef {
            api_version: s(&obj["apiVersion"]),
            kind: s(&obj["kind"]),
            namespace: obj["metadata"]["namespace"].as_str().map(String::from),
            name: s(&obj["metadata"]["name"]),
        }
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContextDependency {
    pub app: String,
    pub op_status: OpStatus,
    #[serde(default)]
    #[schemars(range(max = 86400))]
    pub wait_seconds: u32,
}

/// Each cluster of an app with the bundle it gets.
pub type Placements<'a> = Vec<(&'a str, Option<&'a BundleRef>)>;

impl ContextApp {
    /// Each cluster of the app with the bundle it gets (none: the context names none for it).
    pub fn placements(&self) -> Placements<'_> {
        let by_cluster: HashMap<&str, &BundleRef> =
            self.bundles.iter().flat_map(|b| b.clusters.iter().map(move |c| (c.as_str(), b))).collect();
        let of = |c: &str| by_cluster.get(c).copied();
        self.clusters.iter().map(|c| (c.cluster.as_str(), c.bundle.as_ref().or_else(|| of(&c.cluster)))).collect()
    }
}

/// One cluster an app goes to.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContextCluster {
    pub cluster: String,
    /// The cluster's bundle, as contexts written before the app's `bundles` named their clusters
    /// have it (read, no longer written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<BundleRef>,
}

/// Rendered resources, stored gzipped in `parts` hub Secrets named `<name>-<i>` (each under 1 MiB),
/// content-addressed: clusters that get identical resources share one bundle.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BundleRef {
    pub name: String,
    pub parts: u32,
    /// How many resources the bundle holds.
    pub resources: u32,
    /// SHA-256 (hex) of the parts joined: rsync applies nothing from parts that do not match (a
    /// project admin can write Secrets in the namespace, not AppContexts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The clusters that get it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<String>,
}

/// rsync's state machine (seed 003): Created, Instantiating, Instantiated, InstantiateFailed,
/// Updating, Updated, UpdateFailed, Terminating, Terminated, TerminateFailed.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ContextState {
    #[default]
    Created,
    Instantiating,
    Instantiated,
    InstantiateFailed,
    Updating,
    Updated,
    UpdateFailed,
    Terminating,
    Terminated,
    TerminateFailed,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppContextStatus {
    #[serde(default)]
    pub state: ContextState,
    /// Applied / total, e.g. `24/24`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed: Option<String>,
    /// Ready / total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apps: Vec<AppStatus>,
    /// EMCO deployedCounts: `Applied`, `Pending`, `Failed`, `Deleted`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deployed_counts: BTreeMap<String, u32>,
    /// EMCO readyCounts: `Ready`, `NotReady`, `NotPresent`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ready_counts: BTreeMap<String, u32>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Sharded rsync: the clusters where what the replaced revisions applied and this one does not
    /// is deleted already (each shard prunes its own; `Pruned` is set once all are).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pruned_on: Vec<String>,
    /// With `spec.rollout`: which clusters took this revision and how they fare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
}

/// How far a revision's rollout got.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// Clusters done (Ready for `minReadySeconds`) / all clusters of the revision, e.g. `1/3`.
    pub progress: String,
    /// The clusters that took this revision, in the order they took it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<RolloutCluster>,
    /// The clusters that have not taken it yet: they keep what the previous revision applied.
    /// In the order they will take it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting: Vec<String>,
    /// No further cluster takes the revision: a cluster failed (with `onFailure: Pause`) or
    /// `paused` is set. `message` says which.
    #[serde(default)]
    pub paused: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One cluster that took a revision.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutCluster {
    pub cluster: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `Progressing`, `Done` (Ready for `minReadySeconds`) or `Failed`.
    #[schemars(with = "String")]
    pub phase: RolloutPhase,
    /// When it took the revision.
    pub started: Time,
    /// Since when it is Ready on the revision (while `Progressing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_since: Option<Time>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Where one cluster is in a rollout.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RolloutPhase {
    Progressing,
    Done,
    Failed,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppStatus {
    pub name: String,
    pub clusters: Vec<ClusterStatus>,
    /// Since when every resource of the app is applied on every cluster (dependents' `Deployed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_since: Option<Time>,
    /// Since when every resource of the app is ready on every cluster (dependents' `Ready`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_since: Option<Time>,
}

/// EMCO cluster connectivity, as rsync last found it.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Connectivity {
    /// The member answered.
    Available,
    /// The member did not answer; rsync retries.
    Retrying,
    /// Not tried yet (waiting for a dependency, or no client).
    #[default]
    Unknown,
}

/// Progress of one app on one cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    pub cluster: String,
    /// `Available`, `Retrying` or `Unknown` (EMCO cluster connectivity).
    #[schemars(with = "String")]
    pub connectivity: Connectivity,
    pub resources: u32,
    pub deployed: u32,
    pub ready: u32,
    /// The first few failures, `Kind/name: message`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
    /// The first few resources not ready yet, `Kind/name` (`(absent)` when not on the member).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ready: Vec<String>,
    /// The AppContext generation this entry was found at (sharded rsync merges entries of other
    /// shards only when they are current).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Objects put back after someone changed, on the member, a field rsync applied (one Event
    /// each), over this revision's life.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub drift_repaired: u32,
    /// The Helm hook phases that ran on this cluster for this context (`pre-install`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cluster_gets_the_bundle_naming_it_or_the_one_it_carries() {
        let app: ContextApp = serde_json::from_value(serde_json::json!({
            "name": "a",
            "clusters": [{"cluster": "x"}, {"cluster": "y"}, {"cluster": "z"},
                         {"cluster": "old", "bundle": {"name": "b0", "parts": 1, "resources": 3}}],
            "bundles": [{"name": "b1", "parts": 1, "resources": 2, "clusters": ["x", "y"]}]
        }))
        .unwrap();
        let named: Vec<(&str, Option<&str>)> =
            app.placements().into_iter().map(|(c, b)| (c, b.map(|b| b.name.as_str()))).collect();
        assert_eq!(named, [("x", Some("b1")), ("y", Some("b1")), ("z", None), ("old", Some("b0"))]);
    }
}
