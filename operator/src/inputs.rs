//! Acceptance of the input kinds: the definitions the orchestrator reads when a DIG names them
//! (CompositeApp, CompositeProfile, GenericPlacementIntent, GenericActionIntent, HpaIntent,
//! NetworkIntent, TrafficIntent, Controller, ClusterProvider, ClusterGrant). Each gets `status.observedGeneration` and a `Ready`
//! condition saying whether its spec holds together by itself, so `kubectl wait
//! --for=condition=Ready`, Flux and Argo CD health checks work on every kind. [`check`] is pure.

use std::sync::Arc;

use futures::StreamExt;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use crate::api::condition::{self, ConditionType, InputStatus};
use crate::api::orchestrator::CompositeApp;
use crate::api::{clm, controller, dcm, dtc, gac, hpa, orchestrator, ovnaction};
use crate::reconcile::{HubError, write_status};

/// An input kind: where its status is, and what makes its spec unusable.
pub trait Input:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static
{
    fn input_status(&self) -> Option<&InputStatus>;
    /// The API of this object: namespaced or cluster-wide, as the kind is.
    fn api(hub: Client, obj: &Self) -> Api<Self>;
    /// Why the spec cannot be used, as (reason, message); `None`: accepted.
    fn refusal(&self) -> Option<(&'static str, String)> {
        None
    }
}

macro_rules! input {
    ($api:ident: $($kind:ty),*) => {$(
        impl Input for $kind {
            fn input_status(&self) -> Option<&InputStatus> {
                self.status.as_ref()
            }
            fn api(hub: Client, obj: &Self) -> Api<Self> {
                input!(@$api hub, obj)
            }
        }
    )*};
    (@namespaced $hub:ident, $obj:ident) => { Api::namespaced($hub, $obj.meta().namespace.as_deref().unwrap_or_default()) };
    (@all $hub:ident, $obj:ident) => {{ let _ = $obj; Api::all($hub) }};
}

input!(
    namespaced: orchestrator::CompositeProfile,
    orchestrator::GenericPlacementIntent,
    gac::GenericActionIntent,
    hpa::HpaIntent,
    ovnaction::NetworkIntent,
    dtc::TrafficIntent
);
input!(all: controller::Controller, clm::ClusterProvider, dcm::ClusterGrant);

impl Input for CompositeApp {
    fn input_status(&self) -> Option<&InputStatus> {
        self.status.as_ref()
    }

    fn api(hub: Client, obj: &Self) -> Api<Self> {
        Api::namespaced(hub, obj.meta().namespace.as_deref().unwrap_or_default())
    }

    /// Dependencies name apps of the composite app and form no cycle.
    fn refusal(&self) -> Option<(&'static str, String)> {
        let apps = &self.spec.apps;
        for app in apps {
            if let Some(d) = app.depends_on.iter().find(|d| !apps.iter().any(|a| a.name == d.app)) {
                return Some((
                    "UnknownApp",
                    format!("app {} depends on app {}, which is not in the composite app", app.name, d.app),
                ));
            }
        }
        let deps: Vec<(&str, Vec<&str>)> =
            apps.iter().map(|a| (a.name.as_str(), a.depends_on.iter().map(|d| d.app.as_str()).collect())).collect();
        let cycle = crate::graph::order(&deps).err()?;
        Some(("DependencyCycle", format!("app dependencies form a cycle through {cycle}")))
    }
}

/// The status `obj` should have (pure).
pub fn check<K: Input>(obj: &K) -> InputStatus {
    let generation = obj.meta().generation;
    let mut status = obj.input_status().cloned().unwrap_or_default();
    status.observed_generation = generation;
    let ready = match obj.refusal() {
        Some((reason, message)) => condition::new(ConditionType::Ready, false, reason, message, generation),
        None => {
            let message = format!("{} accepted; a DeploymentIntentGroup that names it uses it", K::kind(&()));
            condition::new(ConditionType::Ready, true, "Accepted", message, generation)
        }
    };
    condition::set(&mut status.conditions, ready);
    status
}

/// Runs one acceptance controller per input kind until a signal arrives.
pub async fn run(hub: Client) {
    futures::join!(
        accept::<CompositeApp>(hub.clone()),
        accept::<orchestrator::CompositeProfile>(hub.clone()),
        accept::<orchestrator::GenericPlacementIntent>(hub.clone()),
        accept::<gac::GenericActionIntent>(hub.clone()),
        accept::<hpa::HpaIntent>(hub.clone()),
        accept::<ovnaction::NetworkIntent>(hub.clone()),
        accept::<dtc::TrafficIntent>(hub.clone()),
        accept::<controller::Controller>(hub.clone()),
        accept::<clm::ClusterProvider>(hub.clone()),
        accept::<dcm::ClusterGrant>(hub),
    );
}

async fn accept<K: Input>(hub: Client) {
    let api = Api::<DeserializeGuard<K>>::all(hub.clone());
    Controller::new(api, watcher::Config::default())
        .with_config(kube::runtime::controller::Config::default().concurrency(2))
        .shutdown_on_signal()
        .run(|o, c| crate::metrics::reconciled("inputs", reconcile(o, c)), error_policy, Arc::new(hub))
        .for_each(|_| async {})
        .await;
}

async fn reconcile<K: Input>(guard: Arc<DeserializeGuard<K>>, hub: Arc<Client>) -> Result<Action, HubError> {
    let Some(obj) = crate::reconcile::readable(&guard, None).await else { return Ok(Action::await_change()) };
    let api = K::api(hub.as_ref().clone(), &obj);
    write_status(&api, obj.as_ref(), obj.input_status(), &check(obj.as_ref())).await?;
    Ok(Action::await_change())
}

fn error_policy<K: Input>(_: Arc<DeserializeGuard<K>>, error: &HubError, _: Arc<Client>) -> Action {
    tracing::warn!(kind = %K::kind(&()), %error, "writing the status of an input failed");
    Action::requeue(std::time::Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn composite_app(apps: serde_json::Value) -> CompositeApp {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "CompositeApp",
            "metadata": {"name": "ca", "namespace": "p", "generation": 3}, "spec": {"apps": apps}}))
        .unwrap()
    }

    #[test]
    fn a_composite_app_is_accepted_unless_its_dependencies_are_wrong() {
        let chart = serde_json::json!({"configMap": {"name": "c", "key": "chart.tgz"}});
        let good = composite_app(serde_json::json!([{"name": "a", "chart": chart},
            {"name": "b", "chart": chart, "dependsOn": [{"app": "a"}]}]));
        let status = check(&good);
        assert_eq!(status.observed_generation, Some(3));
        assert!(condition::is_true(&status.conditions, ConditionType::Ready));
        let cycle = composite_app(serde_json::json!([{"name": "a", "chart": chart, "dependsOn": [{"app": "b"}]},
            {"name": "b", "chart": chart, "dependsOn": [{"app": "a"}]}]));
        let ready = condition::get(&check(&cycle).conditions, ConditionType::Ready).cloned().unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "DependencyCycle"));
        let unknown = composite_app(serde_json::json!([{"name": "a", "chart": chart, "dependsOn": [{"app": "x"}]}]));
        assert_eq!(condition::get(&check(&unknown).conditions, ConditionType::Ready).unwrap().reason, "UnknownApp");
    }
}
