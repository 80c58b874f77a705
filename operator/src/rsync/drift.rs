//! Drift: whether an object on a member still holds, in the fields rsync applied, what rsync
//! applied. Only the fields of the bundle's object count; the member's defaults and other
//! managers' fields do not. What rsync applied and saw is remembered per member and object, so
//! that values the API server normalizes (quantities, say) are not taken for drift.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;

/// What rsync last saw of each object it applied: the projection's digest and the resourceVersion.
#[derive(Default)]
pub struct Applied {
    seen: Mutex<HashMap<(String, String), Seen>>,
}

#[derive(Clone)]
struct Seen {
    digest: String,
    resource_version: Option<u64>,
}

impl Applied {
    /// Remembers `live` (the member's answer to applying `desired`) as in sync.
    pub fn record(&self, cluster: &str, key: &str, desired: &Value, live: &Value) {
        let seen = Seen { digest: digest(&project(desired, live)), resource_version: resource_version(live) };
        self.seen.lock().unwrap().insert((cluster.to_string(), key.to_string()), seen);
    }

    /// Forgets an object rsync deleted.
    pub fn forget(&self, cluster: &str, key: &str) {
        self.seen.lock().unwrap().remove(&(cluster.to_string(), key.to_string()));
    }

    /// Forgets everything of `cluster` (it was deleted).
    pub fn forget_cluster(&self, cluster: &str) {
        self.seen.lock().unwrap().retain(|(c, _), _| c != cluster);
    }

    /// Whether `live` differs from `desired` in a field rsync applied. Without a record (after a
    /// restart) the fields are compared as they are; a copy older than the one recorded (a watch
    /// cache lagging behind) is not drift: the newer one is on its way.
    pub fn drifted(&self, cluster: &str, key: &str, desired: &Value, live: &Value) -> bool {
        let projected = project(desired, live);
        let id = (cluster.to_string(), key.to_string());
        let mut seen = self.seen.lock().unwrap();
        let version = resource_version(live);
        let now = Seen { digest: digest(&projected), resource_version: version };
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

/// `live` cut down to the fields `desired` has: maps key by key, lists of equal length item by
/// item; anything else (a scalar, a list of another length) as it is in `live`.
pub fn project(desired: &Value, live: &Value) -> Value {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => {
            Value::Object(d.iter().map(|(k, v)| (k.clone(), project(v, l.get(k).unwrap_or(&Value::Null)))).collect())
        }
        (Value::Array(d), Value::Array(l)) if d.len() == l.len() => {
            Value::Array(d.iter().zip(l).map(|(d, l)| project(d, l)).collect())
        }
        (_, l) => l.clone(),
    }
}

fn digest(v: &Value) -> String {
    crate::hex::digest(v.to_string().as_bytes(), 16)
}

fn resource_version(live: &Value) -> Option<u64> {
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
    fn a_lagging_cache_copy_is_not_drift() {
        let applied = Applied::default();
        applied.record("m", "c", &desired(), &cm(json!({"k": "v"}), "20"));
        assert!(!applied.drifted("m", "c", &desired(), &cm(json!({"k": "old"}), "19")));
        assert!(applied.drifted("m", "c", &desired(), &cm(json!({"k": "edited"}), "21")));
    }
}
