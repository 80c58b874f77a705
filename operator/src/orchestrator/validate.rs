//! Stage 2, validate (pure): the inputs agree with each other. Every intent, profile and override
//! names an app of the composite app, every app has a placement, and app dependencies form no cycle.

use std::collections::BTreeSet;

use super::intents::Intent;
use super::resolve::Inputs;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ValidateError {
    #[error("{place} names app {app}, which composite app {composite_app} does not have")]
    UnknownApp { place: String, app: String, composite_app: String },
    #[error("app {app} has no placement in {intent}")]
    AppNotPlaced { app: String, intent: String },
    #[error("app dependencies form a cycle through {app}")]
    DependencyCycle { app: String },
}

impl ValidateError {
    pub fn reason(&self) -> &'static str {
        match self {
            ValidateError::UnknownApp { .. } => "UnknownApp",
            ValidateError::AppNotPlaced { .. } => "AppNotPlaced",
            ValidateError::DependencyCycle { .. } => "DependencyCycle",
        }
    }
}

/// Checks that `inputs` are consistent.
pub fn validate(inputs: &Inputs) -> Result<(), ValidateError> {
    let ca = &inputs.composite_app;
    let apps: BTreeSet<&str> = ca.spec.apps.iter().map(|a| a.name.as_str()).collect();
    let ca_name = kube::ResourceExt::name_any(ca);
    let placement = kube::ResourceExt::name_any(&inputs.placement);
    let known = |place: String, app: &str| {
        if apps.contains(app) {
            Ok(())
        } else {
            Err(ValidateError::UnknownApp { place, app: app.into(), composite_app: ca_name.clone() })
        }
    };
    for intent in &inputs.placement.spec.app_intents {
        known(format!("placement intent {placement}"), &intent.app)?;
    }
    for p in inputs.profile.iter().flat_map(|p| &p.spec.profiles) {
        known("the composite profile".into(), &p.app)?;
    }
    for o in &inputs.dig.spec.override_values {
        known("overrideValues".into(), &o.app)?;
    }
    for intent in &inputs.intents {
        match intent {
            Intent::Gac { name, intent, .. } => {
                for r in &intent.spec.resources {
                    known(format!("generic action intent {name}"), &r.app)?;
                }
            }
            Intent::Hpa { name, intent } => known(format!("hpa intent {name}"), &intent.spec.app)?,
            Intent::Ovn { name, intent, .. } => {
                for w in &intent.spec.workload_intents {
                    known(format!("network intent {name}"), &w.app)?;
                }
            }
            Intent::Dtc { name, intent } => {
                for inbound in &intent.spec.inbound {
                    known(format!("traffic intent {name}, inbound {}", inbound.name), &inbound.app)?;
                    for client in &inbound.clients {
                        known(format!("traffic intent {name}, inbound {}, client", inbound.name), &client.app)?;
                    }
                }
            }
            Intent::External { .. } => {}
        }
    }
    for app in &ca.spec.apps {
        for d in &app.depends_on {
            known(format!("the dependencies of app {}", app.name), &d.app)?;
        }
        if !inputs.placement.spec.app_intents.iter().any(|i| i.app == app.name) {
            return Err(ValidateError::AppNotPlaced { app: app.name.clone(), intent: placement.clone() });
        }
    }
    let deps: Vec<(&str, Vec<&str>)> =
        ca.spec.apps.iter().map(|a| (a.name.as_str(), a.depends_on.iter().map(|d| d.app.as_str()).collect())).collect();
    acyclic(&deps)
}

/// Fails on the first app found on (or behind) a dependency cycle.
fn acyclic(deps: &[(&str, Vec<&str>)]) -> Result<(), ValidateError> {
    crate::graph::order(deps).map(|_| ()).map_err(|app| ValidateError::DependencyCycle { app: app.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents_profiles_and_overrides_must_name_apps_that_exist() {
        let ok = crate::orchestrator::plan::tests::inputs();
        assert_eq!(validate(&ok), Ok(()));
        let mut unknown = ok.clone();
        unknown.placement.spec.app_intents[0].app = "nosuch".into();
        assert_eq!(validate(&unknown).unwrap_err().reason(), "UnknownApp");
        let mut override_unknown = ok.clone();
        override_unknown.dig.spec.override_values[0].app = "nosuch".into();
        assert!(validate(&override_unknown).unwrap_err().to_string().contains("overrideValues names app nosuch"));
        let mut unplaced = ok;
        unplaced.composite_app.spec.apps.push(unplaced.composite_app.spec.apps[0].clone());
        unplaced.composite_app.spec.apps[1].name = "db".into();
        assert_eq!(validate(&unplaced).unwrap_err().reason(), "AppNotPlaced");
    }

    #[test]
    fn finds_a_cycle_and_accepts_a_chain() {
        let chain = [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec![])];
        assert_eq!(acyclic(&chain), Ok(()));
        let cycle = [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"])];
        assert!(matches!(acyclic(&cycle), Err(ValidateError::DependencyCycle { .. })));
    }
}
