//! The hub's resource model (`shared contract: docs/api.md`): one module per API group, plus the
//! condition helpers every status uses. Types here are data only; controllers live elsewhere.

pub mod clm;
pub mod condition;
pub mod controller;
pub mod dcm;
pub mod dtc;
pub mod gac;
pub mod hpa;
pub mod ncm;
pub mod orchestrator;
pub mod ovnaction;
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

    /// Puts the owner labels that rsync, prune and status select on on `resource`: its project
    /// (the AppContext's namespace), DIG (the owner's label) and, when given, app.
    pub fn own(resource: &mut serde_json::Value, project: &str, dig: &str, app: Option<&str>) {
        let l = &mut resource["metadata"]["labels"];
        if !l.is_object() {
            *l = serde_json::json!({});
        }
        l[MANAGED_BY] = MANAGER.into();
        l[PROJECT] = project.into();
        l[DIG] = dig.into();
        if let Some(app) = app {
            l[APP] = app.into();
        }
    }
}

/// Every CRD this operator serves, in the order `crdgen` prints them.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        clm::ClusterProvider::crd(),
        clm::Cluster::crd(),
        orchestrator::Project::crd(),
        orchestrator::CompositeApp::crd(),
        orchestrator::CompositeProfile::crd(),
        orchestrator::DeploymentIntentGroup::crd(),
        orchestrator::GenericPlacementIntent::crd(),
        dcm::LogicalCloud::crd(),
        dcm::ClusterGrant::crd(),
        gac::GenericActionIntent::crd(),
        hpa::HpaIntent::crd(),
        controller::Controller::crd(),
        ovnaction::NetworkIntent::crd(),
        dtc::TrafficIntent::crd(),
        ncm::ProviderNetwork::crd(),
        ncm::VirtualNetwork::crd(),
        rsync::AppContext::crd(),
    ];
    crds.iter_mut().for_each(optional_spec);
    crds
}

/// The contract lets `spec` be left out where every field in it is optional: for such a kind the
/// schema defaults `spec` to `{}` instead of requiring it. Derived from the schema, so a kind whose
/// spec gains a required field becomes strict again by itself.
fn optional_spec(crd: &mut CustomResourceDefinition) {
    for version in &mut crd.spec.versions {
        let Some(root) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) else { continue };
        let spec_all_optional = root
            .properties
            .as_ref()
            .and_then(|p| p.get("spec"))
            .is_some_and(|spec| spec.required.as_ref().is_none_or(Vec::is_empty));
        if !spec_all_optional {
            continue;
        }
        if let Some(required) = root.required.as_mut() {
            required.retain(|r| r != "spec");
        }
        root.required = root.required.take().filter(|r| !r.is_empty());
        if let Some(spec) = root.properties.as_mut().and_then(|p| p.get_mut("spec")) {
            spec.default =
                Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSON(serde_json::json!({})));
        }
    }
}

/// `crds()` as one YAML stream, each document preceded by `---`.
pub fn crds_yaml() -> String {
    crds().iter().map(|crd| format!("---\n{}", serde_saphyr::to_string(crd).expect("CRDs serialize"))).collect()
}
