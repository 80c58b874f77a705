//! Kind order (pure): the order rsync applies resources in on a member, after Helm's install order
//! (CRDs and Namespaces first, workloads after what they mount); deletion runs it backwards.

/// Install order by kind; unknown kinds (custom resources) go last.
const INSTALL_ORDER: &[&str] = &[
    "CustomResourceDefinition",
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

/// The position of `kind` in the install order.
pub fn rank(kind: &str) -> usize {
    INSTALL_ORDER.iter().position(|k| *k == kind).unwrap_or(INSTALL_ORDER.len())
}

/// Sorts resources (JSON objects with `kind`) into install order, keeping the chart's order within a kind.
pub fn install_order(resources: &mut [&serde_json::Value]) {
    resources.sort_by_key(|r| rank(r["kind"].as_str().unwrap_or_default()));
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn crds_and_namespaces_first_custom_resources_last_chart_order_kept() {
        let rs = [
            json!({"kind": "Deployment", "n": 1}),
            json!({"kind": "Widget"}),
            json!({"kind": "ConfigMap"}),
            json!({"kind": "Namespace"}),
            json!({"kind": "Deployment", "n": 2}),
            json!({"kind": "CustomResourceDefinition"}),
        ];
        let mut refs: Vec<_> = rs.iter().collect();
        super::install_order(&mut refs);
        let kinds: Vec<_> = refs.iter().map(|r| r["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["CustomResourceDefinition", "Namespace", "ConfigMap", "Deployment", "Deployment", "Widget"]);
        assert_eq!(refs[3]["n"], 1);
    }
}
