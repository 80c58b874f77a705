//! dcm: the logical cloud controller. An Admin logical cloud (EMCO level 0) is the set of member
//! clusters it names, reached with the cluster admin's credentials: it is Instantiated once every
//! named Cluster is registered. Standard and Privileged clouds come with the dcm issue.

use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use crate::api::clm::Cluster;
use crate::api::condition;
use crate::api::dcm::{
    LogicalCloud, LogicalCloudClusterStatus, LogicalCloudDesiredState, LogicalCloudStatus, LogicalCloudType,
};
use crate::reconcile::{Backoff, write_status};

/// What the logical cloud controller needs.
pub struct Context {
    pub hub: kube::Client,
    pub clusters: kube::runtime::reflector::Store<crate::api::clm::Cluster>,
    pub backoff: Backoff,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("hub API: {0}")]
    Hub(#[from] kube::Error),
}

pub async fn run(ctx: Arc<Context>) {
    let clouds = Api::<LogicalCloud>::all(ctx.hub.clone());
    let controller = Controller::new(clouds, watcher::Config::default());
    let store = controller.store();
    controller
        .watches(Api::<Cluster>::all(ctx.hub.clone()), watcher::Config::default(), move |cluster: Cluster| {
            let name = cluster.name_any();
            store
                .state()
                .into_iter()
                .filter(|lc| lc.spec.clusters.iter().any(|c| c.cluster == name))
                .map(|lc| ObjectRef::from_obj(lc.as_ref()))
                .collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

async fn reconcile(lc: Arc<LogicalCloud>, ctx: Arc<Context>) -> Result<Action, Error> {
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
                None => "ClusterNotFound",
                Some(c) if r.cluster_provider.as_ref().is_some_and(|p| p != &c.spec.provider) => "ProviderMismatch",
                Some(_) => "Ready",
            };
            LogicalCloudClusterStatus { cluster: r.cluster.clone(), state: state.into(), kubeconfig_secret: None }
        })
        .collect();
    status.cluster_count = Some(status.clusters.len() as u32);
    let bad: Vec<_> =
        status.clusters.iter().filter(|c| c.state != "Ready").map(|c| format!("{} {}", c.cluster, c.state)).collect();
    let (state, ok, reason, message) = if lc.spec.state == LogicalCloudDesiredState::Terminated {
        ("Terminated", false, "Terminated", "the logical cloud is terminated".to_string())
    } else if lc.spec.type_ != LogicalCloudType::Admin {
        (
            "InstantiateFailed",
            false,
            "TypeNotSupported",
            format!("{:?} logical clouds are not supported yet; use Admin", lc.spec.type_),
        )
    } else if !bad.is_empty() {
        ("InstantiateFailed", false, "ClusterNotReady", format!("clusters not usable: {}", bad.join(", ")))
    } else {
        ("Instantiated", true, "Instantiated", format!("{} clusters", status.clusters.len()))
    };
    status.state = Some(state.into());
    condition::set(&mut status.conditions, condition::new("Ready", ok, reason, message, generation));
    status
}

fn error_policy(lc: Arc<LogicalCloud>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(logical_cloud = %lc.name_any(), %error, "logical cloud reconcile failed");
    Action::requeue(ctx.backoff.retry_after(&format!("lc/{}", lc.name_any())))
}
