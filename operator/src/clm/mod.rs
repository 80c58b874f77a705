//! clm: the cluster controller. Probes each registered member with the kubeconfig its Cluster
//! names and records reachability, Kubernetes version and node inventory in the Cluster's status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::{Node, Secret};
use kube::api::ListParams;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};

use crate::api::clm::{Cluster, ClusterStatus, NodeInventory};
use crate::api::condition;
use crate::api::condition::ConditionType;
use crate::api::rsync::AppContext;
use crate::finalizer;
use crate::reconcile::{Backoff, write_status};
use crate::rsync;

/// How often a healthy member is probed again.
/// How often a Cluster is probed (4 requests; a change of its kubeconfig Secret or of the Cluster
/// probes at once).
const PROBE_INTERVAL: Duration = Duration::from_secs(60);
/// A Cluster stays while AppContexts still have work on it (terminate needs its kubeconfig).
const FINALIZER: &str = "clm.emco.io/in-use";

/// What the cluster controller needs: member clients, and rsync's per-member state to drop when a
/// Cluster goes.
pub struct Context {
    pub hub: Client,
    pub members: crate::members::Members,
    pub clusters: kube::runtime::reflector::Store<Cluster>,
    pub monitor: Arc<rsync::monitor::Monitor>,
    pub applied: Arc<rsync::drift::Applied>,
    /// Sharded: only this replica's clusters are probed (and retired) here.
    pub shards: Arc<rsync::shard::Shards>,
    pub recorder: kube::runtime::events::Recorder,
    pub backoff: Backoff,
    /// Local clones of the GitOps members' repositories (for their probes).
    pub git: Arc<crate::gitops::Clones>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing Cluster status: {0}")]
    Hub(#[from] kube::Error),
}

/// Runs the cluster controller on the shared Cluster and Secret reflector streams.
pub async fn run(
    ctx: Arc<Context>,
    clusters: BoxStream<'static, Result<Cluster, kube::runtime::watcher::Error>>,
    secrets: BoxStream<'static, Result<Secret, kube::runtime::watcher::Error>>,
) {
    let store = ctx.clusters.clone();
    let by_secret = store.clone();
    let moved = ctx.shards.changes();
    Controller::for_stream(clusters, store)
        .watches_stream(secrets, move |secret: Secret| {
            // Re-probe the clusters whose kubeconfig (or Git credentials) this Secret holds.
            let (ns, name) = (secret.namespace().unwrap_or_default(), secret.name_any());
            let names = move |c: &Cluster| {
                let kubeconfig = c.spec.kubeconfig_ref().map(|r| (r.namespace.clone(), r.name.clone()));
                let git = c.spec.git_ops.as_ref().and_then(|g| g.credentials.as_ref());
                let git = git.map(|g| (g.secret_ref.namespace.clone(), g.secret_ref.name.clone()));
                [kubeconfig, git].into_iter().flatten().any(|r| r == (ns.clone(), name.clone()))
            };
            by_secret
                .state()
                .into_iter()
                .filter(|c| names(c))
                .map(|c| ObjectRef::from_obj(c.as_ref()))
                .collect::<Vec<_>>()
        })
        .reconcile_all_on(moved)
        .shutdown_on_signal()
        .run(|o, c| crate::metrics::reconciled("clm", reconcile(o, c)), error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

async fn reconcile(cluster: Arc<Cluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let api = Api::<Cluster>::all(ctx.hub.clone());
    if !ctx.shards.owns(&cluster.name_any()) {
        crate::metrics::cluster(&cluster.name_any(), None);
        return Ok(Action::requeue(PROBE_INTERVAL)); // another shard's
    }
    if cluster.metadata.deletion_timestamp.is_some() {
        crate::metrics::cluster(&cluster.name_any(), None);
        return retire(&api, &cluster, &ctx).await;
    }
    finalizer::add(&api, cluster.as_ref(), FINALIZER).await?;
    let mut status = cluster.status.clone().unwrap_or_default();
    status.observed_generation = cluster.metadata.generation;
    // Not before the kubeconfig Secrets are known: a restart must not flap every Cluster.
    if !ctx.members.synced() {
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let connectivity = match cluster.spec.is_git() {
        true => probe_git(&ctx, &cluster, &mut status).await,
        false => probe_kube(&ctx, &cluster, &mut status).await,
    };
    crate::metrics::cluster(&cluster.name_any(), Some(connectivity));
    write_status(&Api::all(ctx.hub.clone()), cluster.as_ref(), cluster.status.as_ref(), &status).await?;
    announce_reachability(&ctx, &cluster, &status).await;
    Ok(Action::requeue(PROBE_INTERVAL))
}

/// Probes a member reached with its kubeconfig; its connectivity.
async fn probe_kube(ctx: &Context, cluster: &Cluster, status: &mut ClusterStatus) -> &'static str {
    let generation = cluster.metadata.generation;
    status.access = Some("Kubeconfig".into());
    match ctx.members.client(cluster).await {
        Err(e) => {
            set_unreachable(status, e.reason(), &e.to_string(), generation);
            status.kubernetes_version = None;
            "Unknown"
        }
        Ok(client) => match probe(&client, status).await {
            Ok(probed) => {
                record_probe(status, probed, generation);
                "Available"
            }
            Err(e) => {
                set_unreachable(status, "Unreachable", &format!("probing the member failed: {e}"), generation);
                "Retrying"
            }
        },
    }
}

/// Probes a member reached through Git: its credentials, and whether the repository would take
/// a push from them. The member itself is known only from its agent's reports.
async fn probe_git(ctx: &Context, cluster: &Cluster, status: &mut ClusterStatus) -> &'static str {
    let generation = cluster.metadata.generation;
    status.access = Some("GitOps".into());
    (status.kubernetes_version, status.node_count) = (None, None);
    let remote = match ctx.members.git_credentials(cluster) {
        Ok(credentials) => crate::gitops::remote(cluster, credentials),
        Err(e) => {
            set_unreachable(status, e.reason(), &e.to_string(), generation);
            return "Unknown";
        }
    };
    let Some(remote) = remote else { return "Unknown" };
    match ctx.git.probe(&remote).await {
        Ok(()) => {
            let message = format!("reached through Git: {} branch {}", remote.url, remote.branch);
            condition::set(
                &mut status.conditions,
                condition::new(ConditionType::Reachable, true, "Reachable", &message, generation),
            );
            condition::set(
                &mut status.conditions,
                condition::new(ConditionType::Ready, true, "Ready", &message, generation),
            );
            "Available"
        }
        Err(e) => {
            set_unreachable(status, e.reason(), &e.to_string(), generation);
            if e.transient() { "Retrying" } else { "Unknown" }
        }
    }
}

/// An Event when the member becomes reachable or unreachable (not on every probe).
async fn announce_reachability(ctx: &Context, cluster: &Cluster, status: &ClusterStatus) {
    use kube::runtime::events::EventType;
    let before = cluster.status.as_ref().and_then(|s| condition::get(&s.conditions, ConditionType::Reachable));
    let Some(now) = condition::get(&status.conditions, ConditionType::Reachable) else { return };
    if before.is_some_and(|b| b.status == now.status) {
        return;
    }
    let (type_, reason) = match now.status.as_str() {
        "True" => (EventType::Normal, "Reachable"),
        _ => (EventType::Warning, "Unreachable"),
    };
    let about = kube::Resource::object_ref(cluster, &());
    crate::reconcile::publish(&ctx.recorder, &about, type_, reason, "Probe", now.message.clone()).await;
}

/// What one probe of a member found.
struct Probed {
    version: String,
    nodes: Vec<NodeInventory>,
    /// Every group/version the member serves, sorted.
    api_versions: Vec<String>,
    /// Namespaced resources by group.
    namespaced_resources: BTreeMap<String, Vec<String>>,
}

/// Asks the member its version, nodes and what it serves. The resources of each group are asked
/// again only when the served group versions changed since `before`.
async fn probe(client: &Client, before: &ClusterStatus) -> kube::Result<Probed> {
    let version = client.apiserver_version().await?.git_version;
    let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await?;
    let mut api_versions = client.list_core_api_versions().await?.versions;
    let groups = client.list_api_groups().await?.groups;
    api_versions.extend(groups.iter().flat_map(|g| g.versions.iter().map(|v| v.group_version.clone())));
    api_versions.sort();
    api_versions.dedup();
    let namespaced_resources = if before.api_versions == api_versions && !before.namespaced_resources.is_empty() {
        before.namespaced_resources.clone()
    } else {
        let mut by_group = BTreeMap::from([(String::new(), namespaced(client.list_core_api_resources("v1").await?))]);
        for g in &groups {
            let Some(gv) = g.preferred_version.as_ref().or(g.versions.first()) else { continue };
            // A group whose server does not answer (an aggregated API down) is left out, not fatal.
            if let Ok(list) = client.list_api_group_resources(&gv.group_version).await {
                by_group.insert(g.name.clone(), namespaced(list));
            }
        }
        by_group
    };
    Ok(Probed { version, nodes: nodes.items.iter().map(inventory).collect(), api_versions, namespaced_resources })
}

/// The names of the namespaced resources of one discovery answer, sorted.
fn namespaced(list: k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList) -> Vec<String> {
    let mut names: Vec<String> = list.resources.into_iter().filter(|r| r.namespaced).map(|r| r.name).collect();
    names.sort();
    names
}

fn inventory(node: &Node) -> NodeInventory {
    let status = node.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    NodeInventory {
        name: node.name_any(),
        ready,
        labels: node.labels().clone(),
        allocatable: status
            .and_then(|s| s.allocatable.as_ref())
            .map(|a| a.iter().map(|(k, q)| (k.clone(), q.0.clone())).collect())
            .unwrap_or_default(),
    }
}

fn record_probe(status: &mut ClusterStatus, probed: Probed, generation: Option<i64>) {
    let Probed { version, nodes, api_versions, namespaced_resources } = probed;
    let ready_nodes = nodes.iter().filter(|n| n.ready).count();
    condition::set(
        &mut status.conditions,
        condition::new(ConditionType::Reachable, true, "Reachable", "the API server answered", generation),
    );
    let (ok, reason, message) = match ready_nodes {
        0 => (false, "NoReadyNodes", format!("{} nodes, none Ready", nodes.len())),
        n => (true, "Ready", format!("{n} of {} nodes Ready", nodes.len())),
    };
    condition::set(&mut status.conditions, condition::new(ConditionType::Ready, ok, reason, message, generation));
    status.kubernetes_version = Some(version);
    status.node_count = Some(nodes.len() as u32);
    status.nodes = nodes;
    status.api_versions = api_versions;
    status.namespaced_resources = namespaced_resources;
}

fn set_unreachable(status: &mut ClusterStatus, reason: &str, message: &str, generation: Option<i64>) {
    condition::set(
        &mut status.conditions,
        condition::new(ConditionType::Reachable, false, reason, message, generation),
    );
    condition::set(&mut status.conditions, condition::new(ConditionType::Ready, false, reason, message, generation));
}

/// A deleted Cluster goes once no AppContext has work left on it; then its client, watches and
/// records are dropped.
async fn retire(api: &Api<Cluster>, cluster: &Cluster, ctx: &Context) -> Result<Action, Error> {
    let name = cluster.name_any();
    let users: Vec<String> = Api::<AppContext>::all(ctx.hub.clone())
        .list(&ListParams::default())
        .await?
        .into_iter()
        .filter(|a| finalizer::has(a, rsync::FINALIZER))
        .filter(|a| a.spec.apps.iter().flat_map(|app| &app.clusters).any(|c| c.cluster == name))
        .map(|a| format!("{}/{}", a.namespace().unwrap_or_default(), a.name_any()))
        .collect();
    if !users.is_empty() {
        let mut status = cluster.status.clone().unwrap_or_default();
        let message = format!("deleting: waiting until AppContexts are done with it: {}", users.join(", "));
        condition::set(
            &mut status.conditions,
            condition::new(ConditionType::Ready, false, "InUse", message, cluster.metadata.generation),
        );
        write_status(api, cluster, cluster.status.as_ref(), &status).await?;
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    ctx.members.forget(&name);
    ctx.monitor.forget_cluster(&name);
    ctx.applied.forget_cluster(&name);
    finalizer::remove(api, cluster, FINALIZER).await?;
    Ok(Action::await_change())
}

fn error_policy(cluster: Arc<Cluster>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(cluster = %cluster.name_any(), %error, "cluster reconcile failed");
    Action::requeue(ctx.backoff.retry_after(&format!("cluster/{}", cluster.name_any())))
}
