//! The hub's resource model (`shared contract: docs/api.md`): one module per API group, plus the
//! condition helpers every status uses. Types here are data only; controllers live elsewhere.

pub mod clm;
pub mod condition;
pub mod dcm;
pub mod orchestrator;
pub mod rsync;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Labels and annotations the operator puts on what it creates.
pub mod labels {
    /// Every object rsync applies to a member carries these; prune and status select on them.
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    pub const MANAGER: &str = "emco-operator";
    pub const PROJECT: &str = "emco.io/project";
    pub const DIG: &str = "emco.io/deployment-intent-group";
    pub const APP: &str = "emco.io/app";
    pub const APP_CONTEXT: &str = "emco.io/app-context";
    pub const REVISION: &str = "emco.io/revision";
}

/// Every CRD this operator serves, in the order `crdgen` prints them.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        clm::ClusterProvider::crd(),
        clm::Cluster::crd(),
        orchestrator::Project::crd(),
        orchestrator::CompositeApp::crd(),
        orchestrator::CompositeProfile::crd(),
        orchestrator::DeploymentIntentGroup::crd(),
        orchestrator::GenericPlacementIntent::crd(),
        dcm::LogicalCloud::crd(),
        rsync::AppContext::crd(),
    ]
}

/// `crds()` as one YAML stream, each document preceded by `---`.
pub fn crds_yaml() -> String {
    crds().iter().map(|crd| format!("---\n{}", serde_saphyr::to_string(crd).expect("CRDs serialize"))).collect()
}
