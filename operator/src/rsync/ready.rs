//! Readiness (pure): whether an object read back from a member is ready, by kind, the way
//! `kubectl rollout status` and Helm's `--wait` judge it. Kinds without a notion of readiness are
//! ready once present.

use serde_json::Value;

/// Whether `obj` (as read from the member) is ready.
pub fn is_ready(obj: &Value) -> bool {
    let status = &obj["status"];
    let spec_replicas = obj["spec"]["replicas"].as_i64().unwrap_or(1);
    let count = |field: &str| status[field].as_i64().unwrap_or(0);
    let observed =
        status["observedGeneration"].as_i64().unwrap_or(0) >= obj["metadata"]["generation"].as_i64().unwrap_or(0);
    match obj["kind"].as_str().unwrap_or_default() {
        // As `kubectl rollout status`: every replica updated and available, no old one left.
        "Deployment" => {
            let updated = count("updatedReplicas");
            observed
                && updated >= spec_replicas
                && count("replicas") <= updated
                && count("availableReplicas") >= updated.max(spec_replicas)
        }
        "StatefulSet" => {
            observed && count("readyReplicas") >= spec_replicas && count("updatedReplicas") >= spec_replicas
        }
        "ReplicaSet" | "ReplicationController" => observed && count("readyReplicas") >= spec_replicas,
        "DaemonSet" => {
            observed
                && count("numberReady") >= count("desiredNumberScheduled")
                && count("updatedNumberScheduled") >= count("desiredNumberScheduled")
        }
        "Job" => count("succeeded") >= 1 || condition(status, "Complete"),
        "Pod" => condition(status, "Ready") || status["phase"] == "Succeeded",
        "PersistentVolumeClaim" => status["phase"] == "Bound",
        "CustomResourceDefinition" => condition(status, "Established"),
        _ => true,
    }
}

/// Whether readiness of `kind` depends on its status (otherwise it is ready once present, and any
/// copy of it, however old, says as much).
pub fn judged_by_status(kind: &str) -> bool {
    matches!(
        kind,
        "Deployment"
            | "StatefulSet"
            | "ReplicaSet"
            | "ReplicationController"
            | "DaemonSet"
            | "Job"
            | "Pod"
            | "PersistentVolumeClaim"
            | "CustomResourceDefinition"
    )
}

/// What the member says keeps `obj` from being ready, when it says: a workload whose controller
/// could not make its pods (`ReplicaFailure`, e.g. a quota exceeded).
pub fn why_not(obj: &Value) -> Option<String> {
    let conditions = obj["status"]["conditions"].as_array()?;
    let failure = conditions.iter().find(|c| c["type"] == "ReplicaFailure" && c["status"] == "True")?;
    Some(format!("ReplicaFailure: {}", failure["message"].as_str().unwrap_or_default()))
}

fn condition(status: &Value, type_: &str) -> bool {
    status["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == type_ && c["status"] == "True")
}

#[cfg(test)]
mod tests {
    use super::is_ready;
    use serde_json::json;

    #[test]
    fn deployment_ready_only_when_rolled_out_and_available() {
        let mut d = json!({"kind": "Deployment", "metadata": {"generation": 2}, "spec": {"replicas": 3},
            "status": {"observedGeneration": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        assert!(!is_ready(&d));
        d["status"]["availableReplicas"] = json!(3);
        assert!(is_ready(&d));
        d["metadata"]["generation"] = json!(3);
        assert!(!is_ready(&d), "a new generation not yet observed is not ready");
        d["metadata"]["generation"] = json!(2);
        d["spec"]["replicas"] = json!(1);
        d["status"] = json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1, "availableReplicas": 1});
        assert!(!is_ready(&d), "an old replica still serves while the new one is not available");
    }

    #[test]
    fn other_kinds() {
        assert!(is_ready(&json!({"kind": "ConfigMap"})));
        assert!(!is_ready(&json!({"kind": "Job", "status": {}})));
        assert!(is_ready(&json!({"kind": "Pod", "status": {"conditions": [{"type": "Ready", "status": "True"}]}})));
        assert!(!is_ready(
            &json!({"kind": "StatefulSet", "spec": {"replicas": 2}, "status": {"readyReplicas": 1, "updatedReplicas": 2}})
        ));
    }
}
