//! Cluster grants: whether a project may use a cluster with a given type of logical cloud.
//! A project that no ClusterGrant names is open (may use every cluster with any type) only when
//! the operator runs with open projects (a single-tenant hub); otherwise only grants count.

use kube::ResourceExt;
use kube::core::SelectorExt;

use crate::api::clm::Cluster;
use crate::api::dcm::{ClusterGrant, LogicalCloudType};

/// Whether `project` may use `cluster` for a logical cloud of type `type_`.
pub fn allows(
    grants: &[ClusterGrant],
    open_projects: bool,
    project: &str,
    cluster: &Cluster,
    type_: LogicalCloudType,
) -> bool {
    let named: Vec<&ClusterGrant> = grants.iter().filter(|g| g.spec.projects.iter().any(|p| p == project)).collect();
    if named.is_empty() {
        return open_projects;
    }
    named.iter().any(|g| g.spec.logical_cloud_types.contains(&type_) && covers(g, cluster))
}

/// Whether `grant` covers `cluster`: its provider, then its names or selector (neither: all).
fn covers(grant: &ClusterGrant, cluster: &Cluster) -> bool {
    let spec = &grant.spec;
    if spec.cluster_provider.as_ref().is_some_and(|p| *p != cluster.spec.provider) {
        return false;
    }
    let by_name = spec.clusters.iter().any(|c| *c == cluster.name_any());
    let by_labels = spec
        .cluster_selector
        .as_ref()
        .is_some_and(|s| kube::core::Selector::try_from(s.clone()).is_ok_and(|s| s.matches(cluster.labels())));
    by_name || by_labels || (spec.clusters.is_empty() && spec.cluster_selector.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(yaml: &str) -> ClusterGrant {
        serde_saphyr::from_str(&format!(
            "{{apiVersion: dcm.emco.io/v1alpha1, kind: ClusterGrant, metadata: {{name: g}}, spec: {yaml}}}"
        ))
        .unwrap()
    }

    fn cluster(name: &str, labels: &str) -> Cluster {
        serde_saphyr::from_str(&format!(
            "{{apiVersion: clm.emco.io/v1alpha1, kind: Cluster, metadata: {{name: {name}, labels: {labels}}},
              spec: {{provider: p, kubeconfig: {{secretRef: {{name: k, namespace: n}}}}}}}}"
        ))
        .unwrap()
    }

    #[test]
    fn only_granted_clusters_and_types_once_a_project_is_named() {
        let grants = [
            grant("{projects: [a], clusters: [edge01]}"),
            grant(
                "{projects: [a], clusterSelector: {matchLabels: {tier: cloud}}, logicalCloudTypes: [Standard, Privileged]}",
            ),
        ];
        let (edge01, edge02, cloud) = (cluster("edge01", "{}"), cluster("edge02", "{}"), cluster("c", "{tier: cloud}"));
        assert!(allows(&grants, true, "a", &edge01, LogicalCloudType::Standard));
        assert!(!allows(&grants, true, "a", &edge01, LogicalCloudType::Privileged));
        assert!(!allows(&grants, true, "a", &edge01, LogicalCloudType::Admin));
        assert!(!allows(&grants, true, "a", &edge02, LogicalCloudType::Standard));
        assert!(allows(&grants, true, "a", &cloud, LogicalCloudType::Privileged));
        // A project no grant names: open or closed as the operator is set.
        assert!(allows(&grants, true, "b", &edge02, LogicalCloudType::Admin));
        assert!(!allows(&grants, false, "b", &edge02, LogicalCloudType::Standard));
    }

    #[test]
    fn a_grant_of_another_provider_covers_nothing() {
        let grants = [grant("{projects: [a], clusterProvider: other, logicalCloudTypes: [Admin]}")];
        assert!(!allows(&grants, false, "a", &cluster("edge01", "{}"), LogicalCloudType::Admin));
    }
}
