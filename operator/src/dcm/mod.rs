//! dcm: the logical cloud controller. An Admin logical cloud (EMCO level 0) is the set of member
//! clusters it names, reached with the cluster admin's credentials: it is Instantiated once every
//! named Cluster is registered. Standard and Privileged clouds come with the dcm issue.

use std::sync::Arc;

use futures::StreamExt;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use crate::api::clm::Cluster;
use crate::api::condition;
use crate::api::condition::ConditionType;
use crate::api::dcm::{
    LogicalCloud, LogicalCloudClusterStatus, LogicalCloudDesiredState, LogicalCloudStatus, LogicalCloudType,
};
use crate::api::dcm::{LogicalCloudClusterState as ClusterState, LogicalCloudState as State};
use crate::reconcile::{Backoff, write_status};

/// What the logical cloud controller needs.
pub struct Context {
    pub hub: kube::Client,
    pub clusters: kube::runtime::reflector::Store<crate::api::clm::Cluster>,
    pub backoff: Backoff,
}

type Error = crate::reconcile::HubError;

pub async fn run(ctx: Arc<Context>) {
    // Unreadable objects are reported and skipped, never a stalled watch (`reconcile::readable`).
    let clouds = Api::<DeserializeGuard<LogicalCloud>>::all(ctx.hub.clone());
    let controller = Controller::new(clouds, watcher::Config::default());
    let store = controller.store();
    controller
        .watches(Api::<Cluster>::all(ctx.hub.clone()), watcher::Config::default(), move |cluster: Cluster| {
            let name = cluster.name_any();
            store
                .state()
                .into_iter()
                .filter(|lc| lc.0.as_ref().is_ok_and(|lc| lc.spec.clusters.iter().any(|c| c.cluster == name)))
                .map(|lc| ObjectRef::from_obj(lc.as_ref()))
                .collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

async fn reconcile(guard: Arc<DeserializeGuard<LogicalCloud>>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(lc) = crate::reconcile::readable(&guard, None).await else { return Ok(Action::await_change()) };
    let status = desired_status(&lc, &ctx);
    write_status(
        &Api::namespaced(ctx.hub.clone(), &lc.namespace().unwrap_or_default()),
        lc.as_ref(),
        lc.status.as_ref(),
        &status,
    )
    .await?;
    Ok(Action::await_change())
}

/// The status an Admin logical cloud should show, given the registered clusters.
fn desired_status(lc: &LogicalCloud, ctx: &Context) -> LogicalCloudStatus {
    let mut status = lc.status.clone().unwrap_or_default();
    let generation = lc.metadata.generation;
    status.observed_generation = generation;
    status.clusters = lc
        .spec
        .clusters
        .iter()
        .map(|r| {
            let found = ctx.clusters.get(&ObjectRef::new(&r.cluster));
            let state = match found {
                None => ClusterState::ClusterNotFound,
                Some(c) if r.cluster_provider.as_ref().is_some_and(|p| p != &c.spec.provider) => {
                    ClusterState::ProviderMismatch
                }
                Some(_) => ClusterState::Ready,
            };
            LogicalCloudClusterStatus { cluster: r.cluster.clone(), state, kubeconfig_secret: None }
        })
        .collect();
    status.cluster_count = Some(status.clusters.len() as u32);
    let bad: Vec<_> = status
        .clusters
        .iter()
        .filter(|c| c.state != ClusterState::Ready)
        .map(|c| format!("{} {:?}", c.cluster, c.state))
        .collect();
    let (state, ok, reason, message) = if lc.spec.state == LogicalCloudDesiredState::Terminated {
        (State::Terminated, false, "Terminated", "the logical cloud is terminated".to_string())
    } else if lc.spec.type_ != LogicalCloudType::Admin {
        (
            State::InstantiateFailed,
            false,
            "TypeNotSupported",
            format!("{:?} logical clouds are not supported yet; use Admin", lc.spec.type_),
        )
    } else if !bad.is_empty() {
        (State::InstantiateFailed, false, "ClusterNotReady", format!("clusters not usable: {}", bad.join(", ")))
    } else {
        (State::Instantiated, true, "Instantiated", format!("{} clusters", status.clusters.len()))
    };
    status.state = Some(state);
    condition::set(&mut status.conditions, condition::new(ConditionType::Ready, ok, reason, message, generation));
    status
}

fn error_policy(lc: Arc<DeserializeGuard<LogicalCloud>>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(logical_cloud = %lc.name_any(), %error, "logical cloud reconcile failed");
    Action::requeue(ctx.backoff.retry_after(&format!("lc/{}", lc.name_any())))
}
