//! The controller set: waits for leadership, starts the shared reflectors (Clusters, the
//! operator's Secrets), gives each controller the context it needs, and runs them all until a
//! signal arrives or the Lease is lost. Nothing imports this module but the binary.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use crate::api::clm::Cluster;
use crate::members::Members;
use crate::reconcile::MANAGER;
use crate::rsync::{bundle::BundleCache, drift::Applied, monitor::Monitor};
use crate::{clm, dcm, orchestrator, render, rsync};

/// Waits for leadership, then runs every controller until a signal arrives or the Lease is lost.
pub async fn run(hub: Client, operator_namespace: String) -> anyhow::Result<()> {
    let me = crate::leader::identity();
    crate::leader::acquire(&hub, &operator_namespace, &me).await;
    tokio::select! {
        result = controllers(hub.clone(), operator_namespace.clone()) => {
            crate::leader::release(&hub, &operator_namespace, &me).await;
            result
        }
        lost = crate::leader::hold(&hub, &operator_namespace, &me) => Err(lost.into()),
    }
}

/// Starts the shared reflectors, then every controller, until a signal arrives.
async fn controllers(hub: Client, operator_namespace: String) -> anyhow::Result<()> {
    let (secrets, secrets_writer) = reflector::store::<Secret>();
    let secrets_api = Api::<Secret>::namespaced(hub.clone(), &operator_namespace);
    let secret_events =
        watcher(secrets_api, watcher::Config::default()).default_backoff().reflect(secrets_writer).touched_objects();
    let (clusters, clusters_writer) = reflector::store::<Cluster>();
    let cluster_events = watcher(Api::<Cluster>::all(hub.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(clusters_writer)
        .touched_objects();
    let (monitor, wakeups) = Monitor::new();
    let (monitor, applied, bundles) =
        (Arc::new(monitor), Arc::new(Applied::default()), Arc::new(BundleCache::default()));
    let members = Members::new(operator_namespace.clone(), secrets.clone());
    let recorder = Recorder::new(hub.clone(), Reporter { controller: MANAGER.into(), instance: None });
    let fence = Arc::new(render::fence::Fence::from_env().map_err(anyhow::Error::msg)?);
    let clm = Arc::new(clm::Context {
        hub: hub.clone(),
        members: members.clone(),
        clusters: clusters.clone(),
        monitor: monitor.clone(),
        applied: applied.clone(),
        backoff: Default::default(),
    });
    let dcm = Arc::new(dcm::Context {
        hub: hub.clone(),
        clusters: clusters.clone(),
        members: members.clone(),
        lifetime: dcm::user::Lifetime::from_env(),
        recorder: recorder.clone(),
        backoff: Default::default(),
    });
    let projects =
        Arc::new(orchestrator::project::Context { hub: hub.clone(), operator_namespace, backoff: Default::default() });
    let orchestrator = Arc::new(orchestrator::Context {
        hub: hub.clone(),
        clusters: clusters.clone(),
        http: render::repository::client(fence.clone())?,
        fence,
        repository_charts: Default::default(),
        recorder: recorder.clone(),
        bundles: bundles.clone(),
        backoff: Default::default(),
    });
    let rsync = Arc::new(rsync::Context {
        hub,
        clusters: clusters.clone(),
        members,
        monitor,
        applied,
        bundles,
        recorder,
        backoff: Default::default(),
    });
    // The reflectors are driven by the cluster controller, which also reacts to their changes.
    let drive = clm::run(clm, cluster_events.boxed(), secret_events.boxed());
    tokio::select! {
        _ = async {
            secrets.wait_until_ready().await.ok();
            clusters.wait_until_ready().await.ok();
            tracing::info!("hub caches ready, starting controllers");
            futures::join!(
                orchestrator::project::run(projects),
                dcm::run(dcm),
                orchestrator::run(orchestrator),
                rsync::run(rsync, wakeups),
            );
        } => {},
        _ = drive => {},
    }
    Ok(())
}
