//! Order (pure). Kind order: the order rsync applies resources in on a member, after Helm's
//! install order (CRDs and Namespaces first, workloads after what they mount); deletion runs it
//! backwards. By cluster: the order a pass sends its units (apps on clusters) in.

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

/// Clusters whose units a pass sends side by side (see [`by_cluster`]).
const SIDE_BY_SIDE: usize = 2;

/// `units` cluster by cluster, [`SIDE_BY_SIDE`] clusters at a time: the units of two clusters
/// take turns, then the next two; lower tiers first, clusters in the order they first appear,
/// units in theirs. With the same number of units in flight, a member's API server serves a
/// burst of its own requests for about half the CPU of the same requests spread thin over every
/// member (measured on API servers sharing cores: 1.2x the direct baseline's time against 1.8x);
/// two members at once keep two cores busy where one member's server uses one.
pub fn by_cluster<T>(units: Vec<T>, tier_and_cluster: impl Fn(&T) -> (u8, &str)) -> Vec<T> {
    let mut index: std::collections::HashMap<(u8, String), usize> = Default::default();
    let mut groups: Vec<(u8, Vec<T>)> = Vec::new();
    for u in units {
        let (tier, cluster) = tier_and_cluster(&u);
        let next = index.len();
        let at = *index.entry((tier, cluster.to_string())).or_insert(next);
        if at == groups.len() {
            groups.push((tier, Vec::new()));
        }
        groups[at].1.push(u);
    }
    groups.sort_by_key(|(tier, _)| *tier);
    let mut groups = groups.into_iter().peekable();
    let mut ordered = Vec::new();
    while let Some((tier, first)) = groups.next() {
        let mut side = vec![first.into_iter()];
        while side.len() < SIDE_BY_SIDE
            && let Some((_, next)) = groups.next_if(|(t, _)| *t == tier)
        {
            side.push(next.into_iter());
        }
        // The clusters' units take turns until each is out of units.
        loop {
            let before = ordered.len();
            ordered.extend(side.iter_mut().filter_map(Iterator::next));
            if ordered.len() == before {
                break;
            }
        }
    }
    ordered
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn two_clusters_at_a_time_in_order_of_appearance_lower_tiers_first() {
        let units = vec![("b", 1, 0), ("a", 1, 0), ("b", 2, 0), ("c", 1, 0), ("a", 2, 0), ("b", 3, 0), ("d", 1, 0)];
        let ordered = super::by_cluster(units, |u| (u.2, u.0));
        assert_eq!(
            ordered,
            [("b", 1, 0), ("a", 1, 0), ("b", 2, 0), ("a", 2, 0), ("b", 3, 0), ("c", 1, 0), ("d", 1, 0)]
        );

        let units = vec![("a", 1, 1), ("a", 2, 0), ("b", 1, 1), ("b", 2, 0), ("c", 1, 2), ("c", 2, 0)];
        let ordered = super::by_cluster(units, |u| (u.2, u.0));
        assert_eq!(ordered, [("a", 2, 0), ("b", 2, 0), ("c", 2, 0), ("a", 1, 1), ("b", 1, 1), ("c", 1, 2)]);
    }

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
