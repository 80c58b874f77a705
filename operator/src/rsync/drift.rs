//! Drift: whether an object on a member still holds, in the fields rsync applied, what rsync
//! applied. Only the fields of the bundle's object count; the member's defaults and other
//! managers' fields do not. What rsync applied and saw is remembered per member and object, so
//! that values the API server normalizes (quantities, say) are not taken for drift.
//!
//! Fields another field manager took over on the member are theirs, and neither drift nor any
//! apply fights for them ([`others_paths`]): what it owns through a server-side apply or a
//! subresource (an HPA scales through `scale`), and any `replicas` (autoscalers). Other edits of
//! fields rsync applied (a `kubectl edit`) are drift, and are put back. An object annotated
//! `emco.io/drift: ignore` is never repaired.
//!
//! Objects are compared [`compact`]ed: long strings and oversized fields stand as digests, so that
//! the member watches can keep objects that small (a member user's big objects cost the operator
//! next to nothing) and drift still sees every change.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;

/// What rsync last saw of each object it applied: the projection's digest and the resourceVersion;
/// and the bundle each unit (a DIG's app on a cluster) last had in full.
#[derive(Default)]
pub struct Applied {
    seen: Mutex<HashMap<(String, String), Seen>>,
    /// By (cluster, unit): the digest of the bundle last applied there in full.
    delivered: Mutex<HashMap<(String, String), String>>,
}

#[derive(Clone)]
struct Seen {
    digest: String,
    resource_version: Option<u64>,
    /// Digest of the object rsync last applied (none when only seen, after a restart).
    applied: Option<String>,
}

impl Applied {
    /// Remembers `live` (the member's answer to applying `desired`) as in sync.
    pub fn record(&self, cluster: &str, key: &str, desired: &Value, live: &Value) {
        let (desired, live) = (compacted(desired), compacted_live(live));
        let seen = Seen {
            digest: digest(&project(&desired, &live)),
            resource_version: resource_version(&live),
            applied: Some(digest(&desired)),
        };
        self.seen.lock().unwrap().insert((cluster.to_string(), key.to_string()), seen);
    }

    /// Whether rsync has seen `resource_version` of object `key` on `cluster` (the answer to its
    /// write, or a pass's look).
    pub fn knows(&self, cluster: &str, key: &str, resource_version: &str) -> bool {
        let Ok(version) = resource_version.parse::<u64>() else { return false };
        let seen = self.seen.lock().unwrap();
        seen.get(&(cluster.to_string(), key.to_string())).is_some_and(|s| s.resource_version == Some(version))
    }

    /// Forgets an object rsync deleted.
    pub fn forget(&self, cluster: &str, key: &str) {
        self.seen.lock().unwrap().remove(&(cluster.to_string(), key.to_string()));
    }

    /// Forgets everything of `cluster` (it was deleted).
    pub fn forget_cluster(&self, cluster: &str) {
        self.seen.lock().unwrap().retain(|(c, _), _| c != cluster);
        self.delivered.lock().unwrap().retain(|(c, _), _| c != cluster);
    }

    /// Records that `unit` on `cluster` holds bundle `digest` in full (`None`: it holds nothing
    /// known any more).
    pub fn deliver(&self, cluster: &str, unit: &str, digest: Option<&str>) {
        let key = (cluster.to_string(), unit.to_string());
        let mut delivered = self.delivered.lock().unwrap();
        match digest {
            Some(d) => delivered.insert(key, d.to_string()),
            None => delivered.remove(&key),
        };
    }

    /// Whether `unit` on `cluster` was last given bundle `digest` in full (known since this
    /// replica started).
    pub fn delivered(&self, cluster: &str, unit: &str, digest: &str) -> bool {
        let key = (cluster.to_string(), unit.to_string());
        self.delivered.lock().unwrap().get(&key).is_some_and(|d| d == digest)
    }

    /// Whether `unit` on `cluster` was given some bundle in full (known since this replica
    /// started).
    pub fn delivered_before(&self, cluster: &str, unit: &str) -> bool {
        self.delivered.lock().unwrap().contains_key(&(cluster.to_string(), unit.to_string()))
    }

    /// Whether `live` is older than what the member answered rsync's last apply (a watch cache
    /// lagging behind): its status says nothing of the object as applied.
    pub fn behind(&self, cluster: &str, key: &str, live: &Value) -> bool {
        let seen = self.seen.lock().unwrap();
        let recorded = seen.get(&(cluster.to_string(), key.to_string())).and_then(|s| s.resource_version);
        matches!((resource_version(live), recorded), (Some(v), Some(r)) if v < r)
    }

    /// Whether `live` differs from `desired` in a field rsync applied. Without a record (after a
    /// restart) the fields are compared as they are; a copy older than the one recorded (a watch
    /// cache lagging behind) is not drift: the newer one is on its way.
    pub fn drifted(&self, cluster: &str, key: &str, desired: &Value, live: &Value) -> bool {
        let desired = without_others(desired, live);
        self.judge(cluster, key, &compacted(&desired), &compacted_live(live))
    }

    /// Whether applying `desired` again would change nothing: rsync applied this very object
    /// to the member before (same content, so no field to add or remove) and `live` still holds
    /// it. After a restart nothing is known, so everything is applied once.
    pub fn unchanged(&self, cluster: &str, key: &str, desired: &Value, live: &Value) -> bool {
        let desired = compacted(&without_others(desired, live));
        let same = {
            let seen = self.seen.lock().unwrap();
            let last = seen.get(&(cluster.to_string(), key.to_string())).and_then(|s| s.applied.clone());
            last.is_some_and(|d| d == digest(&desired))
        };
        same && !self.judge(cluster, key, &desired, &compacted_live(live))
    }

    /// [`Self::drifted`] on compacted objects.
    fn judge(&self, cluster: &str, key: &str, desired: &Value, live: &Value) -> bool {
        let projected = project(desired, live);
        let id = (cluster.to_string(), key.to_string());
        let mut seen = self.seen.lock().unwrap();
        let version = resource_version(live);
        let applied = seen.get(&id).and_then(|s| s.applied.clone());
        let now = Seen { digest: digest(&projected), resource_version: version, applied };
        let drifted = match seen.get(&id) {
            None => projected != *desired,
            Some(before) if before.digest == now.digest => false,
            Some(before) => !matches!((version, before.resource_version), (Some(v), Some(b)) if v <= b),
        };
        if !drifted && seen.get(&id).is_none_or(|b| b.digest == now.digest || now.resource_version > b.resource_version)
        {
            seen.insert(id, now);
        }
        drifted
    }
}

/// Opting an object out of drift repair: this annotation, set to `ignore`.
pub const OPT_OUT: &str = "emco.io/drift";

/// Whether `desired` opted out of drift repair.
pub fn ignored(desired: &Value) -> bool {
    desired["metadata"]["annotations"][OPT_OUT] == "ignore"
}

/// The fields other managers took over in `live` (from its `managedFields`), as paths of map
/// keys: all they own through a server-side apply or a subresource other than status, and any
/// `replicas` they own otherwise. Inside a list only map keys count, never an item.
pub fn others_paths(live: &Value) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for entry in live["metadata"]["managedFields"].as_array().into_iter().flatten() {
        let ours = entry["manager"].as_str().is_some_and(|m| m.starts_with(super::member::FIELD_MANAGER));
        let subresource = entry["subresource"].as_str().unwrap_or_default();
        if ours || subresource == "status" {
            continue;
        }
        let mut owned = Vec::new();
        collect(&entry["fieldsV1"], &mut Vec::new(), &mut owned);
        let whole = entry["operation"] == "Apply" || !subresource.is_empty();
        out.extend(owned.into_iter().filter(|p| whole || p.last().is_some_and(|l| l == "replicas")));
    }
    out
}

fn collect(node: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let Some(map) = node.as_object() else { return };
    let fields: Vec<(&String, &Value)> = map.iter().filter(|(k, _)| k.as_str() != ".").collect();
    if fields.is_empty() && !path.is_empty() {
        out.push(path.clone());
    }
    for (k, v) in fields {
        // `k:`, `v:` and `i:` keys are list items: the list stays ours.
        let Some(name) = k.strip_prefix("f:") else { continue };
        path.push(name.to_string());
        collect(v, path, out);
        path.pop();
    }
}

/// `desired` without the fields other managers own in `live`.
pub fn without_others(desired: &Value, live: &Value) -> Value {
    let mut out = desired.clone();
    for path in others_paths(live) {
        remove(&mut out, &path);
    }
    out
}

fn remove(v: &mut Value, path: &[String]) {
    match path {
        [] => {}
        [last] => {
            if let Some(map) = v.as_object_mut() {
                map.remove(last);
            }
        }
        [first, rest @ ..] => {
            if let Some(next) = v.get_mut(first.as_str()) {
                remove(next, rest);
            }
        }
    }
}

/// `live` cut down to the fields `desired` has: maps key by key, lists of equal length item by
/// item; anything else (a scalar, a list of another length) as it is in `live`. An empty map or
/// list that `live` lacks is as `desired` has it (the API server does not keep them).
pub fn project(desired: &Value, live: &Value) -> Value {
    match (desired, live) {
        (Value::Object(d), Value::Null) if d.is_empty() => desired.clone(),
        (Value::Array(d), Value::Null) if d.is_empty() => desired.clone(),
        (Value::Object(d), Value::Object(l)) => {
            Value::Object(d.iter().map(|(k, v)| (k.clone(), project(v, l.get(k).unwrap_or(&Value::Null)))).collect())
        }
        (Value::Array(d), Value::Array(l)) if d.len() == l.len() => {
            Value::Array(d.iter().zip(l).map(|(d, l)| project(d, l)).collect())
        }
        (_, l) => l.clone(),
    }
}

/// Longest string a compacted object keeps as it is (`status`: [`STATUS_STRING`]); a longer one
/// becomes `sha256:<digest>` of itself.
const STRING: usize = 256;
const STATUS_STRING: usize = 4096;
/// Values (leaves) one top-level field keeps at most; past that the field is one digest.
const LEAVES: usize = 4096;

/// `v` compacted: see [`compact`].
pub fn compacted(v: &Value) -> Value {
    let mut v = v.clone();
    compact(&mut v);
    v
}

/// A member's copy of an object, compacted, without its managed fields: drift compares only the
/// fields the bundle's object has, and a server-side apply refuses objects that name managed
/// fields, so they never count; not copying them halves the work per object.
fn compacted_live(live: &Value) -> Value {
    let Some(fields) = live.as_object() else { return compacted(live) };
    let copy = |(name, field): (&String, &Value)| {
        let field = match field.as_object() {
            Some(meta) if name == "metadata" => Value::Object(
                meta.iter().filter(|(k, _)| *k != "managedFields").map(|(k, v)| (k.clone(), v.clone())).collect(),
            ),
            _ => field.clone(),
        };
        (name.clone(), field)
    };
    let mut v = Value::Object(fields.iter().map(copy).collect());
    compact(&mut v);
    v
}

/// Cuts an object (as JSON, or the fields of a watched object) down to what drift and readiness
/// need, in bounded memory: long strings as digests, oversized fields as one digest, annotations'
/// long values as digests; names, labels and the rest of the metadata as they are. Compacting
/// twice changes nothing.
pub fn compact(v: &mut Value) {
    let Some(fields) = v.as_object_mut() else { return };
    for (name, field) in fields.iter_mut() {
        if name == "metadata" {
            if let Some(annotations) = field.get_mut("annotations").and_then(Value::as_object_mut) {
                annotations.values_mut().for_each(|a| shorten(a, STRING));
            }
            continue;
        }
        if leaves(field) > LEAVES {
            *field = serde_json::json!({"sha256": digest(field)});
            continue;
        }
        shorten(field, if name == "status" { STATUS_STRING } else { STRING });
    }
}

/// Annotation values of a watched object, compacted as [`compact`] does.
pub fn compact_annotations(annotations: &mut std::collections::BTreeMap<String, String>) {
    annotations.values_mut().for_each(|a| shorten_text(a, STRING));
}

fn shorten_text(s: &mut String, limit: usize) {
    if s.len() > limit {
        *s = format!("sha256:{}", crate::hex::digest(s.as_bytes(), 32));
    }
}

fn shorten(v: &mut Value, limit: usize) {
    match v {
        Value::String(s) => shorten_text(s, limit),
        Value::Array(items) => items.iter_mut().for_each(|i| shorten(i, limit)),
        Value::Object(map) => map.values_mut().for_each(|i| shorten(i, limit)),
        _ => {}
    }
}

fn leaves(v: &Value) -> usize {
    match v {
        Value::Array(items) => items.iter().map(leaves).sum(),
        Value::Object(map) => map.values().map(leaves).sum(),
        _ => 1,
    }
}

fn digest(v: &Value) -> String {
    crate::hex::digest(v.to_string().as_bytes(), 16)
}

/// An object's `resourceVersion`, as a number.
pub(crate) fn resource_version(live: &Value) -> Option<u64> {
    live["metadata"]["resourceVersion"].as_str()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cm(data: Value, rv: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "resourceVersion": rv,
               "labels": {"a": "1", "extra": "x"}, "uid": "u"}, "data": data})
    }

    #[test]
    fn fields_another_manager_owns_are_theirs() {
        let desired = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c", "image": "i:1"}]}}}});
        let live = |replicas: u32, image: &str, rv: &str| {
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "resourceVersion": rv, "managedFields": [
                {"manager": "emco-rsync/p/d", "operation": "Apply", "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:image": {}}}}}}}},
                {"manager": "hpa-like", "operation": "Update", "subresource": "scale", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
                {"manager": "kubectl-edit", "operation": "Update", "fieldsV1": {"f:metadata": {"f:labels": {"f:x": {}}}}},
                {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status", "fieldsV1": {"f:status": {"f:replicas": {}}}}]},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "c", "image": image}]}}}})
        };
        assert_eq!(others_paths(&live(3, "i:1", "1")), [vec!["spec".to_string(), "replicas".to_string()]]);
        let applied = Applied::default();
        assert!(!applied.drifted("m", "d", &desired, &live(3, "i:1", "2")), "replicas scaled by another manager");
        assert!(applied.drifted("m", "d", &desired, &live(3, "i:2", "3")), "the image rsync applied");
        assert_eq!(without_others(&desired, &live(3, "i:1", "4"))["spec"].get("replicas"), None);
    }

    fn desired() -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "1"}},
               "data": {"k": "v"}})
    }

    #[test]
    fn fields_others_add_are_not_drift_but_a_changed_value_is() {
        let applied = Applied::default();
        assert!(!applied.drifted("m", "c", &desired(), &cm(json!({"k": "v", "other": "x"}), "5")));
        assert!(applied.drifted("m", "c", &desired(), &cm(json!({"k": "edited"}), "6")));
        assert!(applied.drifted("m", "c", &desired(), &cm(json!({}), "7")), "a removed field is drift");
    }

    #[test]
    fn an_empty_map_the_server_dropped_is_not_drift_after_a_restart() {
        let applied = Applied::default();
        let desired = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}});
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "resourceVersion": "5"}});
        assert!(!applied.drifted("m", "c", &desired, &live));
    }

    #[test]
    fn a_normalized_value_recorded_at_apply_is_not_drift() {
        let applied = Applied::default();
        let d = json!({"spec": {"cpu": "0.5", "list": [{"name": "a"}]}});
        let answer =
            json!({"metadata": {"resourceVersion": "10"}, "spec": {"cpu": "500m", "list": [{"name": "a", "x": 1}]}});
        applied.record("m", "k", &d, &answer);
        let later = json!({"metadata": {"resourceVersion": "12"}, "spec": {"cpu": "500m", "list": [{"name": "a", "x": 2}]}, "status": {"r": 1}});
        assert!(!applied.drifted("m", "k", &d, &later));
        let edited = json!({"metadata": {"resourceVersion": "13"}, "spec": {"cpu": "2", "list": [{"name": "a"}]}});
        assert!(applied.drifted("m", "k", &d, &edited));
    }

    #[test]
    fn compacted_objects_are_small_and_still_show_every_change() {
        let big = "x".repeat(900 * 1024);
        let mut live = cm(json!({"k": big, "small": "v"}), "5");
        compact(&mut live);
        assert!(live.to_string().len() < 1024, "{}", live.to_string().len());
        assert_eq!(compacted(&live), live, "compacting twice changes nothing");
        let many: serde_json::Map<String, Value> = (0..5000).map(|i| (format!("k{i}"), json!("v"))).collect();
        let mut wide = cm(Value::Object(many), "5");
        compact(&mut wide);
        assert!(wide.to_string().len() < 1024);
        // Drift compares the compacted forms: an unchanged big value is in sync, a changed one drifts.
        let applied = Applied::default();
        let desired = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "y".repeat(1000)}});
        let mut same = cm(json!({"k": "y".repeat(1000)}), "6");
        compact(&mut same);
        assert!(!applied.drifted("m", "c", &desired, &same));
        let mut changed = cm(json!({"k": "z".repeat(1000)}), "7");
        compact(&mut changed);
        assert!(applied.drifted("m", "c", &desired, &changed));
    }

    #[test]
    fn only_an_object_applied_as_it_is_and_still_held_is_unchanged() {
        let applied = Applied::default();
        let live = cm(json!({"k": "v"}), "5");
        assert!(!applied.unchanged("m", "c", &desired(), &live), "never applied by this process");
        applied.record("m", "c", &desired(), &live);
        assert!(applied.unchanged("m", "c", &desired(), &cm(json!({"k": "v"}), "5")));
        let mut fewer = desired();
        fewer["data"] = json!({});
        assert!(!applied.unchanged("m", "c", &fewer, &live), "a field dropped by the revision must be applied");
        assert!(!applied.unchanged("m", "c", &desired(), &cm(json!({"k": "edited"}), "6")), "drift");
    }

    #[test]
    fn managed_fields_never_count_for_drift() {
        let applied = Applied::default();
        let mut answer = cm(json!({"k": "v"}), "5");
        answer["metadata"]["managedFields"] =
            json!([{"manager": "emco-rsync-p-d", "fieldsV1": {"f:data": {"f:k": {}}}}]);
        applied.record("m", "c", &desired(), &answer);
        // The watch's copy of the same version keeps no managed fields of ours: in sync.
        assert!(!applied.drifted("m", "c", &desired(), &cm(json!({"k": "v"}), "5")));
        assert!(applied.unchanged("m", "c", &desired(), &cm(json!({"k": "v"}), "5")));
        let mut edited = cm(json!({"k": "edited"}), "6");
        edited["metadata"]["managedFields"] = answer["metadata"]["managedFields"].clone();
        assert!(applied.drifted("m", "c", &desired(), &edited), "an edit still drifts");
    }

    #[test]
    fn a_lagging_cache_copy_is_not_drift() {
        let applied = Applied::default();
        applied.record("m", "c", &desired(), &cm(json!({"k": "v"}), "20"));
        assert!(!applied.drifted("m", "c", &desired(), &cm(json!({"k": "old"}), "19")));
        assert!(applied.drifted("m", "c", &desired(), &cm(json!({"k": "edited"}), "21")));
    }

    #[test]
    fn the_version_a_write_answered_is_known_and_no_other() {
        let applied = Applied::default();
        assert!(!applied.knows("m", "c", "20"), "nothing written yet");
        applied.record("m", "c", &cm(json!({"k": "v"}), "20"), &cm(json!({"k": "v"}), "20"));
        assert!(applied.knows("m", "c", "20"));
        assert!(!applied.knows("m", "c", "21"), "a later change is news");
        assert!(!applied.knows("other", "c", "20"));
        assert!(!applied.knows("m", "c", ""));
    }
}
