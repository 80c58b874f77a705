//! The controller set: waits for leadership, starts the shared reflectors (Clusters, the
//! operator's Secrets), gives each controller the context it needs, and runs them all until a
//! signal arrives or the Lease is lost. Nothing imports this module but the binary.

use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use crate::api::clm::Cluster;
use crate::members::Members;
use crate::reconcile::MANAGER;
use crate::rsync::{bundle::BundleCache, drift::Applied, monitor::Monitor, shard::Shards};
use crate::{clm, dcm, orchestrator, render, rsync};

/// Runs every controller until a signal arrives or the leader Lease is lost. One replica waits
/// for leadership first. With `EMCO_RSYNC_SHARDED=true`, every replica runs rsync and clm for its
/// shard of the clusters at once, and only the leader runs the hub-level controllers (projects,
/// dcm, the orchestrator).
pub async fn run(hub: Client, operator_namespace: String) -> anyhow::Result<()> {
    let me = crate::leader::identity();
    let ns = operator_namespace;
    if std::env::var("EMCO_RSYNC_SHARDED").as_deref() != Ok("true") {
        crate::leader::acquire(&hub, &ns, &me).await;
        return tokio::select! {
            result = controllers(hub.clone(), ns.clone(), Arc::new(Shards::single()), None) => {
                crate::leader::release(&hub, &ns, &me).await;
                result
            }
            lost = crate::leader::hold(&hub, &ns, &me) => Err(lost.into()),
        };
    }
    let shards = Arc::new(Shards::sharded(&me));
    tracing::info!(identity = %me, "sharded rsync: this replica works on its share of the member clusters");
    let result = controllers(hub.clone(), ns.clone(), shards.clone(), Some(me.clone())).await;
    shards.leave(hub.clone(), &ns).await;
    crate::leader::release(&hub, &ns, &me).await;
    result
}

/// Starts the shared reflectors, then every controller, until a signal arrives. With `leader`
/// (sharded), the hub-level controllers wait for that identity to hold the leader Lease.
async fn controllers(
    hub: Client,
    operator_namespace: String,
    shards: Arc<Shards>,
    leader: Option<String>,
) -> anyhow::Result<()> {
    crate::health::not_ready("hub caches not synced");
    let (secrets, secrets_writer) = reflector::store::<Secret>();
    let secrets_api = Api::<Secret>::namespaced(hub.clone(), &operator_namespace);
    let secret_events =
        watcher(secrets_api, watcher::Config::default()).default_backoff().reflect(secrets_writer).touched_objects();
    let (clusters, clusters_writer) = reflector::store::<Cluster>();
    let cluster_events = watcher(Api::<Cluster>::all(hub.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(clusters_writer)
        .touched_objects();
    let applied = Arc::new(Applied::default());
    let (monitor, wakeups) = Monitor::new(applied.clone());
    let (monitor, bundles) = (Arc::new(monitor), Arc::new(BundleCache::default()));
    let members = Members::new(operator_namespace.clone(), secrets.clone());
    let recorder = Recorder::new(hub.clone(), Reporter { controller: MANAGER.into(), instance: None });
    let fence = Arc::new(render::fence::Fence::from_env().map_err(anyhow::Error::msg)?);
    let git = Arc::new(crate::gitops::Clones::from_env());
    let clm = Arc::new(clm::Context {
        git: git.clone(),
        hub: hub.clone(),
        members: members.clone(),
        clusters: clusters.clone(),
        monitor: monitor.clone(),
        applied: applied.clone(),
        shards: shards.clone(),
        recorder: recorder.clone(),
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
    let projects = Arc::new(orchestrator::project::Context {
        hub: hub.clone(),
        operator_namespace: operator_namespace.clone(),
        backoff: Default::default(),
    });
    let orchestrator = Arc::new(orchestrator::Context {
        hub: hub.clone(),
        clusters: clusters.clone(),
        http: render::repository::client(fence.clone())?,
        fence,
        repository_charts: Default::default(),
        recorder: recorder.clone(),
        bundles: bundles.clone(),
        backoff: Default::default(),
        recorded: Default::default(),
    });
    let ncm = Arc::new(crate::ncm::Context {
        hub: hub.clone(),
        operator_namespace: operator_namespace.clone(),
        backoff: Default::default(),
    });
    let rsync = Arc::new(rsync::Context {
        hub: hub.clone(),
        clusters: clusters.clone(),
        members,
        monitor,
        applied,
        bundles,
        recorder,
        backoff: Default::default(),
        shards: shards.clone(),
        repairs: Default::default(),
        git,
    });
    // The reflectors are driven by the cluster controller, which also reacts to their changes.
    let drive = clm::run(clm, cluster_events.boxed(), secret_events.boxed());
    use crate::health::watched;
    let hub_level = async {
        futures::join!(
            watched("projects", orchestrator::project::run(projects)),
            watched("dcm", dcm::run(dcm)),
            watched("orchestrator", orchestrator::run(orchestrator)),
            watched("inputs", crate::inputs::run(hub.clone())),
            watched("ncm", crate::ncm::run(ncm)),
        );
    };
    let hub_level = async {
        let Some(me) = &leader else {
            hub_level.await;
            return Ok(());
        };
        crate::leader::acquire(&hub, &operator_namespace, me).await;
        tokio::select! {
            () = hub_level => Ok(()),
            lost = crate::leader::hold(&hub, &operator_namespace, me) => Err(lost),
        }
    };
    tokio::select! {
        result = async {
            secrets.wait_until_ready().await.ok();
            clusters.wait_until_ready().await.ok();
            tracing::info!("hub caches ready, starting controllers");
            crate::health::ready();
            // Losing the leader Lease ends everything at once; a signal ends each by itself.
            let rsync = watched("rsync", rsync::run(rsync, wakeups));
            futures::future::try_join(hub_level, rsync.map(Ok)).await.map(|_| ())
        } => result?,
        () = watched("clm", drive) => {},
        () = shards.run(hub.clone(), operator_namespace.clone(), clusters.clone()) => {},
    }
    Ok(())
}
