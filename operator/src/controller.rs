//! Shared by every reconciler: the context (hub client, member clients, cluster inventory), per-object
//! exponential retry, and `run`, which starts the reflectors and all controllers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use crate::api::clm::Cluster;
use crate::members::Members;

/// Field manager for everything the operator writes with server-side apply.
pub const MANAGER: &str = "emco-operator";

/// What every reconciler gets.
pub struct Context {
    pub hub: Client,
    /// Where the operator runs: its kubeconfig Secrets and Lease; no Project may claim it.
    pub operator_namespace: String,
    pub members: Members,
    /// Every registered Cluster, kept current by a reflector.
    pub clusters: Store<Cluster>,
    /// For Helm HTTP repositories.
    pub http: reqwest::Client,
    /// Charts read from Helm repositories in the last minute.
    pub repository_charts: RecentCharts,
    /// Hosts charts may be fetched from (`EMCO_REPOSITORY_HOSTS`); empty: any.
    pub repository_hosts: Vec<String>,
    pub recorder: Recorder,
    /// Bundles rsync has read (they never change).
    pub bundles: crate::rsync::bundle::BundleCache,
    /// Watches on the members, for status.
    pub monitor: crate::rsync::monitor::Monitor,
    /// What rsync applied to the members, for drift.
    pub applied: crate::rsync::drift::Applied,
    retries: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// The delay before retrying `key` after a transient failure: 1 s, doubling up to 2 min.
    pub fn retry_after(&self, key: &str) -> Duration {
        self.backoff(key, Duration::from_secs(1), Duration::from_secs(120))
    }

    /// The delay before looking at `key` again while it makes progress: `base`, doubling to `max`.
    pub fn backoff(&self, key: &str, base: Duration, max: Duration) -> Duration {
        let mut retries = self.retries.lock().unwrap();
        let n = retries.entry(key.to_string()).or_insert(0);
        *n = (*n + 1).min(10);
        (base * (1 << (*n - 1))).min(max)
    }

    /// Forgets the failures of `key` after a success.
    pub fn succeeded(&self, key: &str) {
        self.retries.lock().unwrap().remove(key);
    }
}

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

/// Charts fetched from Helm repositories, kept for a minute: every DIG reconcile resolves its
/// inputs, and a repository need not be asked each time.
#[derive(Default)]
pub struct RecentCharts {
    charts: Mutex<HashMap<ChartKey, (std::time::Instant, Vec<u8>)>>,
}

/// A chart in a repository: URL, chart name, version asked for.
pub type ChartKey = (String, String, Option<String>);

impl RecentCharts {
    const TTL: Duration = Duration::from_secs(60);
    /// Bytes of charts kept at most; the oldest go first.
    pub const BUDGET: usize = 32 * 1024 * 1024;

    pub fn get(&self, key: &ChartKey) -> Option<Vec<u8>> {
        let charts = self.charts.lock().unwrap();
        charts.get(key).filter(|(at, _)| at.elapsed() < Self::TTL).map(|(_, tgz)| tgz.clone())
    }

    pub fn put(&self, key: ChartKey, tgz: Vec<u8>) {
        let mut charts = self.charts.lock().unwrap();
        charts.retain(|_, (at, _)| at.elapsed() < Self::TTL);
        while charts.values().map(|(_, c)| c.len()).sum::<usize>() + tgz.len() > Self::BUDGET {
            let Some(oldest) = charts.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| k.clone()) else { break };
            charts.remove(&oldest);
        }
        if tgz.len() <= Self::BUDGET {
            charts.insert(key, (std::time::Instant::now(), tgz));
        }
    }
}

/// Starts the reflectors the context needs, then every controller, until a signal arrives.
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
    let (monitor, wakeups) = crate::rsync::monitor::Monitor::new();
    let repository_hosts: Vec<String> = std::env::var("EMCO_REPOSITORY_HOSTS")
        .unwrap_or_default()
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    let ctx = Arc::new(Context {
        monitor,
        members: Members::new(operator_namespace.clone(), secrets.clone()),
        operator_namespace,
        clusters: clusters.clone(),
        http: crate::render::repository::client(repository_hosts.clone())?,
        repository_hosts,
        recorder: Recorder::new(hub.clone(), Reporter { controller: MANAGER.into(), instance: None }),
        hub,
        bundles: Default::default(),
        applied: Default::default(),
        repository_charts: Default::default(),
        retries: Default::default(),
    });
    // The reflectors are driven by the cluster controller, which also reacts to their changes.
    let drive = crate::clm::run(ctx.clone(), cluster_events.boxed(), secret_events.boxed());
    tokio::select! {
        _ = async {
            secrets.wait_until_ready().await.ok();
            clusters.wait_until_ready().await.ok();
            tracing::info!("hub caches ready, starting controllers");
            futures::join!(
                crate::orchestrator::project::run(ctx.clone()),
                crate::dcm::run(ctx.clone()),
                crate::orchestrator::run(ctx.clone()),
                crate::rsync::run(ctx.clone(), wakeups),
            );
        } => {},
        _ = drive => {},
    }
    Ok(())
}

/// Writes `status` on `obj` (through `api`) with server-side apply, unless it already has exactly
/// that status.
pub async fn write_status<K, S>(api: &Api<K>, obj: &K, current: Option<&S>, status: &S) -> kube::Result<()>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: serde::Serialize + PartialEq,
{
    if current == Some(status) {
        return Ok(());
    }
    let patch = serde_json::json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status});
    let name = obj.meta().name.clone().unwrap_or_default();
    api.patch_status(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(patch)).await?;
    Ok(())
}
