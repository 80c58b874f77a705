//! Cluster grants: whether a project may use a cluster with a given type of logical cloud. A hub
//! is closed: only grants count, so a project that no grant names (or whose last grant was taken
//! back) uses nothing. A single-tenant hub says otherwise once, with a grant for project `*`.

use kube::ResourceExt;
use kube::core::SelectorExt;

use crate::api::clm::Cluster;
use crate::api::dcm::{ClusterGrant, LogicalCloudType, PodSecurityLevel};

/// What a logical cloud asks of one cluster.
pub struct Ask<'a> {
    pub project: &'a str,
    pub type_: LogicalCloudType,
    /// Standard/Privileged: the Pod Security level of its namespace.
    pub pod_security: Option<PodSecurityLevel>,
}

/// Whether some grant gives `ask` on `cluster`.
pub fn allows(grants: &[ClusterGrant], ask: &Ask, cluster: &Cluster) -> bool {
    grants.iter().any(|g| {
        g.spec.projects.iter().any(|p| p == ask.project || p == "*")
            && g.spec.logical_cloud_types.contains(&ask.type_)
            && ask.pod_security.is_none_or(|level| level <= g.spec.max_pod_security)
            && covers(g, cluster)
    })
}

/// What a platform admin applies to give `ask` on `cluster`: for the refusal message.
pub fn missing(ask: &Ask, cluster: &str) -> String {
    let (p, t) = (ask.project, ask.type_);
    let raised = ask.pod_security.filter(|l| *l > PodSecurityLevel::Baseline).map(PodSecurityLevel::as_str);
    let (with, level) = match raised {
        Some(l) => (format!(" with Pod Security {l}"), format!(", maxPodSecurity: {l}")),
        None => Default::default(),
    };
    format!(
        "no ClusterGrant gives project {p} cluster {cluster} for {t:?} logical clouds{with}; a platform admin \
         can add one: {{apiVersion: dcm.emco.io/v1alpha1, kind: ClusterGrant, metadata: {{name: {p}-{cluster}}}, \
         spec: {{projects: [{p}], clusters: [{cluster}], logicalCloudTypes: [{t:?}]{level}}}}}"
    )
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

    fn ask(project: &str, type_: LogicalCloudType) -> Ask<'_> {
        Ask { project, type_, pod_security: None }
    }

    #[test]
    fn only_granted_clusters_and_types() {
        let grants = [
            grant("{projects: [a], clusters: [edge01]}"),
            grant(
                "{projects: [a], clusterSelector: {matchLabels: {tier: cloud}}, logicalCloudTypes: [Standard, Privileged]}",
            ),
        ];
        let (edge01, edge02, cloud) = (cluster("edge01", "{}"), cluster("edge02", "{}"), cluster("c", "{tier: cloud}"));
        assert!(allows(&grants, &ask("a", LogicalCloudType::Standard), &edge01));
        assert!(!allows(&grants, &ask("a", LogicalCloudType::Privileged), &edge01));
        assert!(!allows(&grants, &ask("a", LogicalCloudType::Admin), &edge01));
        assert!(!allows(&grants, &ask("a", LogicalCloudType::Standard), &edge02));
        assert!(allows(&grants, &ask("a", LogicalCloudType::Privileged), &cloud));
        // A project no grant names uses nothing, and nothing is open without grants.
        assert!(!allows(&grants, &ask("b", LogicalCloudType::Standard), &edge02));
        assert!(!allows(&[], &ask("a", LogicalCloudType::Admin), &edge01));
    }

    #[test]
    fn a_grant_for_every_project_opens_a_single_tenant_hub() {
        let grants = [grant("{projects: ['*'], logicalCloudTypes: [Admin, Standard]}")];
        assert!(allows(&grants, &ask("any", LogicalCloudType::Admin), &cluster("edge01", "{}")));
        assert!(!allows(&grants, &ask("any", LogicalCloudType::Privileged), &cluster("edge01", "{}")));
    }

    #[test]
    fn pod_security_above_the_grant_is_not_granted() {
        let grants = [grant("{projects: [a]}")];
        let edge01 = cluster("edge01", "{}");
        let at = |level| Ask { project: "a", type_: LogicalCloudType::Standard, pod_security: Some(level) };
        assert!(allows(&grants, &at(PodSecurityLevel::Restricted), &edge01));
        assert!(allows(&grants, &at(PodSecurityLevel::Baseline), &edge01));
        assert!(!allows(&grants, &at(PodSecurityLevel::Privileged), &edge01));
        let raised = [grant("{projects: [a], maxPodSecurity: privileged}")];
        assert!(allows(&raised, &at(PodSecurityLevel::Privileged), &edge01));
        assert!(missing(&at(PodSecurityLevel::Privileged), "edge01").contains("maxPodSecurity: privileged"));
    }

    #[test]
    fn a_grant_of_another_provider_covers_nothing() {
        let grants = [grant("{projects: [a], clusterProvider: other, logicalCloudTypes: [Admin]}")];
        assert!(!allows(&grants, &ask("a", LogicalCloudType::Admin), &cluster("edge01", "{}")));
    }
}
