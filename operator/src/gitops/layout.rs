//! The repository layout (pure): which files hold a DIG's objects for one cluster, what the
//! member's agent reports, and how rsync reads that report into per-app counts.
//!
//! ```text
//! <path>/<project>/<dig>/namespace.yaml            the default namespace (never pruned)
//! <path>/<project>/<dig>/<app>/<kind>.<namespace>.<name>.yaml
//! <statusPath>/status.yaml                         written by the agent on the member
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Kinds that live outside namespaces (everything else gets the DIG's namespace when it has none).
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "PersistentVolume",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "StorageClass",
    "PriorityClass",
    "IngressClass",
    "RuntimeClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "APIService",
    "CSIDriver",
    "CSINode",
    "VolumeAttachment",
    "FlowSchema",
    "PriorityLevelConfiguration",
];

/// On the Namespace file: Flux never prunes it (it may hold others' objects).
const FLUX_PRUNE: &str = "kustomize.toolkit.fluxcd.io/prune";

/// The folder of one DIG on one cluster.
pub fn dig_folder(path: &str, project: &str, dig: &str) -> String {
    format!("{path}/{project}/{dig}")
}

/// `obj` as written: in `namespace` unless cluster-scoped or already placed.
pub fn placed(obj: &Value, namespace: &str) -> Value {
    let mut obj = obj.clone();
    let kind = obj["kind"].as_str().unwrap_or_default();
    if !CLUSTER_SCOPED.contains(&kind) && obj["metadata"]["namespace"].as_str().is_none_or(str::is_empty) {
        obj["metadata"]["namespace"] = json!(namespace);
    }
    obj
}

/// The identity of a written object, the same on the hub and on the member:
/// `<group>/<kind>/<namespace>/<name>` (rsync's identity, with the namespace as written).
pub fn id(obj: &Value) -> String {
    crate::rsync::member::identity(obj, "")
}

/// The files of a DIG's folder (paths relative to it): each app's objects, as `placed`, one per
/// file; and the default namespace when rsync makes it.
pub fn files(apps: &[(&str, Vec<Value>)], namespace: Option<&str>) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    if let Some(ns) = namespace {
        let doc = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "annotations": {FLUX_PRUNE: "disabled"}}});
        files.insert("namespace.yaml".to_string(), to_yaml(&doc));
    }
    for (app, objects) in apps {
        for obj in objects {
            let name = format!(
                "{app}/{}.{}.{}.yaml",
                obj["kind"].as_str().unwrap_or_default().to_lowercase(),
                obj["metadata"]["namespace"].as_str().unwrap_or("_"),
                obj["metadata"]["name"].as_str().unwrap_or_default()
            );
            files.insert(name, to_yaml(obj));
        }
    }
    files
}

fn to_yaml(v: &Value) -> Vec<u8> {
    serde_saphyr::to_string(v).unwrap_or_default().into_bytes()
}

/// What the agent on the member saw of the objects under the cluster's path.
#[derive(Serialize, Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    #[serde(default)]
    pub objects: Vec<Observed>,
}

/// One object on the member.
#[derive(Serialize, Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Observed {
    /// [`id`] of the object.
    pub id: String,
    #[serde(default)]
    pub api_version: String,
    /// Its `emco.io/content-digest` on the member: which revision's content it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default)]
    pub ready: bool,
    /// Why it is not ready (or not there yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Why the agent could not apply it: the unit fails with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Report {
    pub fn parse(bytes: &[u8]) -> Option<Report> {
        serde_saphyr::from_str(std::str::from_utf8(bytes).ok()?).ok()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_saphyr::to_string(self).unwrap_or_default().into_bytes()
    }

    fn find(&self, id: &str) -> Option<&Observed> {
        self.objects.iter().find(|o| o.id == id)
    }
}

/// How one app's objects fare on the member, from the report.
#[derive(Debug, Default, PartialEq)]
pub struct Judged {
    /// On the member with this revision's content.
    pub present: u32,
    pub ready: u32,
    /// The first few that are not (yet) ready, and why.
    pub not_ready: Vec<String>,
    /// Objects the agent could not apply.
    pub failed: Vec<String>,
    /// Objects of this app still on the member (under terminate).
    pub remaining: u32,
}

/// Reads `report` for `objects` (as written, each with the digest it was written with).
pub fn judge(objects: &[(Value, String)], report: Option<&Report>) -> Judged {
    let mut out = Judged::default();
    for (obj, digest) in objects {
        let describe =
            format!("{}/{}", obj["kind"].as_str().unwrap_or("?"), obj["metadata"]["name"].as_str().unwrap_or("?"));
        let Some(seen) = report.and_then(|r| r.find(&id(obj))) else {
            if out.not_ready.len() < 10 {
                out.not_ready.push(format!("{describe} (not reported by the cluster's agent yet)"));
            }
            continue;
        };
        out.remaining += 1;
        if let Some(e) = &seen.error {
            if out.failed.len() < 10 {
                out.failed.push(format!("{describe}: {e}"));
            }
            continue;
        }
        if seen.digest.as_deref() != Some(digest.as_str()) {
            let why = if seen.digest.is_some() { "previous content on the member" } else { "not on the member yet" };
            if out.not_ready.len() < 10 {
                out.not_ready.push(format!("{describe} ({why})"));
            }
            continue;
        }
        out.present += 1;
        if seen.ready {
            out.ready += 1;
        } else if out.not_ready.len() < 10 {
            let why = seen.message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default();
            out.not_ready.push(format!("{describe}{why}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}})
    }

    #[test]
    fn objects_take_the_namespace_unless_cluster_scoped() {
        assert_eq!(placed(&cm("a"), "smtc")["metadata"]["namespace"], "smtc");
        let cr =
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"}});
        assert!(placed(&cr, "smtc")["metadata"].get("namespace").is_none());
        assert_eq!(id(&placed(&cr, "smtc")), "rbac.authorization.k8s.io/ClusterRole//r");
    }

    #[test]
    fn one_file_per_object_under_its_app() {
        let files = files(&[("edge", vec![placed(&cm("a"), "ns")])], Some("ns"));
        assert_eq!(files.keys().collect::<Vec<_>>(), ["edge/configmap.ns.a.yaml", "namespace.yaml"]);
        let text = String::from_utf8(files["namespace.yaml"].clone()).unwrap();
        assert!(text.contains("kustomize.toolkit.fluxcd.io/prune: disabled"), "{text}");
    }

    #[test]
    fn ready_only_with_this_revisions_content() {
        let a = placed(&cm("a"), "ns");
        let b = placed(&cm("b"), "ns");
        let objects = vec![(a.clone(), "d1".to_string()), (b.clone(), "d2".to_string())];
        assert_eq!(judge(&objects, None).present, 0);
        let seen = |o: &Value, d: &str| Observed {
            id: id(o),
            api_version: "v1".into(),
            digest: Some(d.into()),
            ready: true,
            message: None,
            error: None,
        };
        let report = Report { objects: vec![seen(&a, "d1"), seen(&b, "old")] };
        let judged = judge(&objects, Some(&report));
        assert_eq!((judged.present, judged.ready, judged.remaining), (1, 1, 2));
        assert!(judged.not_ready[0].contains("previous content"), "{:?}", judged.not_ready);
        let back = Report::parse(&report.to_bytes()).unwrap();
        assert_eq!(back, report);
        let refused = Observed { error: Some("apply failed: quota".into()), digest: None, ..seen(&b, "") };
        let report = Report { objects: vec![seen(&a, "d1"), refused] };
        let judged = judge(&objects, Some(&report));
        assert_eq!(judged.failed, ["ConfigMap/b: apply failed: quota"]);
        let absent = Observed { digest: None, ..seen(&b, "") };
        let judged = judge(&objects, Some(&Report { objects: vec![absent] }));
        assert!(judged.failed.is_empty() && judged.not_ready.iter().any(|n| n.contains("not on the member yet")));
    }
}
