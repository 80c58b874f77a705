//! `gac.emco.io`: the generic action controller's intent (EMCO generic-k8s-intents): new objects
//! for an app, and customizations (patches, file data) of new or chart objects, per cluster.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Any JSON content, kept as written.
fn any_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"x-kubernetes-preserve-unknown-fields": true})
}

/// Objects added to and changed in an app's resources (EMCO generic action intent).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "gac.emco.io",
    version = "v1alpha1",
    kind = "GenericActionIntent",
    namespaced,
    category = "emco",
    shortname = "gai",
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
pub struct GenericActionIntentSpec {
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub resources: Vec<GacResource>,
}

/// One object: new (from `template`) or one the app's chart renders (`gvk` names it).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GacResource {
    pub name: String,
    /// The app whose clusters get or have the object.
    pub app: String,
    /// A new object made from `template`; otherwise the chart's object named by `gvk`.
    #[serde(default)]
    pub new_object: bool,
    pub gvk: ResourceGvk,
    /// The new object (apiVersion, kind and metadata.name default to `gvk`'s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_schema")]
    pub template: Option<Value>,
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub customizations: Vec<Customization>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResourceGvk {
    pub api_version: String,
    pub kind: String,
    pub name: String,
}

/// A change to the object on the clusters `clusterInfo` selects (all when absent).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Customization {
    pub name: String,
    #[serde(default)]
    pub cluster_specific: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_info: Option<ClusterInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<PatchType>,
    /// JSON patch (a list of operations), or the merge / strategic merge patch (an object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_schema")]
    pub patch: Option<Value>,
    /// Data keys of a ConfigMap or Secret.
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub files: Vec<FileData>,
}

/// Which clusters a customization is for: by name or by label, allowed or denied.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    pub scope: Scope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_label: Option<String>,
    #[serde(default)]
    pub mode: Mode,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Scope {
    #[default]
    Name,
    Label,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    #[default]
    Allow,
    Deny,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum PatchType {
    /// RFC 6902.
    Json,
    /// RFC 7386.
    Merge,
    /// Kubernetes strategic merge: lists of objects merged by their key (`name`, `containerPort`).
    Strategic,
}

/// One data key: inline content, or a key of a ConfigMap or Secret in the project's namespace
/// (`key` defaults to `keyName`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("(has(self.content) ? 1 : 0) + (has(self.configMapRef) ? 1 : 0) + (has(self.secretRef) ? 1 : 0) == 1").message("a file names exactly one of content, configMapRef or secretRef"))]
pub struct FileData {
    pub key_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<super::orchestrator::ConfigMapKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<super::orchestrator::ConfigMapKey>,
}

impl FileData {
    /// Where the data comes from when it is not inline: (a Secret?, name, key).
    pub fn source(&self) -> Option<FileRef> {
        let from = |secret: bool, r: &super::orchestrator::ConfigMapKey| FileRef {
            secret,
            name: r.name.clone(),
            key: r.key.clone().unwrap_or_else(|| self.key_name.clone()),
        };
        match (&self.config_map_ref, &self.secret_ref) {
            (Some(r), _) => Some(from(false, r)),
            (None, Some(r)) => Some(from(true, r)),
            (None, None) => None,
        }
    }
}

/// A key of a ConfigMap (or Secret) in the project's namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileRef {
    pub secret: bool,
    pub name: String,
    pub key: String,
}
