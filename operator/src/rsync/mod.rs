//! rsync: the resource synchronizer. Works only from AppContexts: applies each app's bundle to its
//! member clusters (apps after their dependencies, resources in kind order), reads back readiness,
//! prunes what an update dropped, deletes everything on terminate, and writes one coalesced status.

pub mod announce;
pub mod bundle;
pub mod drift;
mod git;
pub mod hook;
pub mod machine;
pub mod member;
pub mod monitor;
pub mod order;
pub mod ready;
pub mod rollout;
pub mod shard;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use crate::api::clm::Cluster;
use crate::api::condition::ConditionType;
use crate::api::orchestrator::OpStatus;
use crate::api::rsync::{
    AppContext, AppContextStatus, AppStatus, BundleRef, ClusterStatus, Connectivity, ContextState, Operation,
};
use crate::api::{condition, labels};
use crate::finalizer;
use crate::reconcile::{Backoff, write_status};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use machine::Pass;
use member::{Member, Outcome};

/// (app, cluster) pairs worked on at once within one AppContext.
const CONCURRENCY: usize = 16;
/// The same for the pairs whose bundle changed, when each was delivered in full before (an
/// update): each writes only the objects whose content changed.
const UPDATE_CONCURRENCY: usize = 64;
/// Bundles read from the hub at once at the start of a pass.
const BUNDLE_READS: usize = 8;
/// On AppContexts and their bundle Secrets: nothing goes before what it applied is deleted.
pub const FINALIZER: &str = "rsync.emco.io/terminate";

/// What rsync needs: the hub, the members (clients, watches, what was applied) and the bundles.
pub struct Context {
    pub hub: kube::Client,
    /// Every registered Cluster, kept current by a reflector.
    pub clusters: kube::runtime::reflector::Store<Cluster>,
    pub members: crate::members::Members,
    /// Watches on the members, for status and drift.
    pub monitor: Arc<monitor::Monitor>,
    /// What rsync applied to the members, for drift.
    pub applied: Arc<drift::Applied>,
    /// Bundles read (they never change).
    pub bundles: Arc<bundle::BundleCache>,
    pub recorder: kube::runtime::events::Recorder,
    pub backoff: Backoff,
    /// Which clusters this replica works on.
    pub shards: Arc<shard::Shards>,
    /// Drift repairs per AppContext, app and cluster since this replica started; the status
    /// count is the larger of this and what status had (a cached status may lag a pass behind).
    pub repairs: std::sync::Mutex<BTreeMap<(String, String, String), u32>>,
    /// Local clones of the GitOps members' repositories.
    pub git: Arc<crate::gitops::Clones>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bundle(#[from] bundle::BundleError),
    #[error("hub API: {0}")]
    Hub(#[from] kube::Error),
}

pub async fn run(ctx: Arc<Context>, wakeups: tokio::sync::mpsc::UnboundedReceiver<monitor::Wakeup>) {
    let api = Api::<AppContext>::all(ctx.hub.clone());
    let (reader, writer) = reflector::store();
    // Only spec changes wake rsync: its own status writes do not.
    let contexts = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(spec_or_deletion, Default::default());
    let (by_cluster, by_dig, successors) = (reader.clone(), reader.clone(), reader.clone());
    // A change seen on a member wakes the live AppContexts of the DIG it belongs to.
    let woken = tokio_stream::wrappers::UnboundedReceiverStream::new(wakeups).flat_map(move |(project, dig)| {
        let refs: Vec<ObjectRef<AppContext>> = by_dig
            .state()
            .into_iter()
            .filter(|a| a.namespace().as_deref() == Some(project.as_str()) && a.spec.owner.label() == dig)
            .filter(|a| a.status.as_ref().is_none_or(|s| s.state != ContextState::Terminated))
            .filter(|a| !inert(a))
            .map(|a| ObjectRef::from_obj(a.as_ref()))
            .collect();
        stream::iter(refs)
    });
    Controller::for_stream(contexts, reader)
        // A member coming back (or its kubeconfig mended) retries at once, not at the next backoff.
        .watches(Api::<Cluster>::all(ctx.hub.clone()), watcher::Config::default(), move |cluster: Cluster| {
            let name = cluster.name_any();
            by_cluster
                .state()
                .into_iter()
                .filter(|a| a.spec.apps.iter().flat_map(|app| &app.clusters).any(|c| c.cluster == name))
                .filter(|a| !inert(a))
                .map(|a| ObjectRef::from_obj(a.as_ref()))
                .collect::<Vec<_>>()
        })
        .reconcile_on(woken)
        // Clusters moved between shards: every context looks again at what is now its to do.
        .reconcile_all_on(forget_moved(ctx.clone()))
        .shutdown_on_signal()
        .run(
            move |o, c| crate::metrics::reconciled("rsync", reconcile(with_successor(o, &successors), c)),
            error_policy,
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

/// `actx` as superseded once a newer revision that replaces it exists, before the orchestrator
/// says so: it marks the old context after making the new one, off the update's path.
fn with_successor(actx: Arc<AppContext>, contexts: &reflector::Store<AppContext>) -> Arc<AppContext> {
    if actx.spec.superseded_by.is_some() {
        return actx;
    }
    let (ns, name) = (actx.namespace(), actx.name_any());
    let Some(by) = contexts.find(|c| c.namespace() == ns && c.spec.replaces.as_ref() == Some(&name)) else {
        return actx;
    };
    let mut seen = (*actx).clone();
    seen.spec.superseded_by = Some(by.name_any());
    Arc::new(seen)
}

/// Fires when the shards change, after dropping the watches and records of the clusters that
/// moved to another shard.
fn forget_moved(ctx: Arc<Context>) -> impl futures::Stream<Item = ()> + Send + 'static {
    ctx.shards.changes().map(move |()| {
        for cluster in ctx.clusters.state().iter().map(|c| c.name_any()).filter(|c| !ctx.shards.owns(c)) {
            ctx.monitor.forget_cluster(&cluster);
            ctx.applied.forget_cluster(&cluster);
        }
    })
}

/// Changes rsync acts on: the spec (generation) and the start of deletion.
fn spec_or_deletion(actx: &AppContext) -> Option<u64> {
    let deleting = actx.metadata.deletion_timestamp.is_some();
    predicates::generation(actx).map(|g| g.wrapping_mul(2) + u64::from(deleting))
}

/// One app on one cluster, with its resources.
#[derive(Clone)]
struct Unit {
    app: String,
    cluster: String,
    /// The app's resources there, its Helm hooks left out.
    resources: Arc<Vec<Value>>,
    hooks: Arc<Vec<Value>>,
    /// The bundle's digest.
    digest: Option<String>,
}

/// `<project>/<DIG>/<app>` of a unit: the same in every revision of its DIG.
fn unit_key(actx: &AppContext, u: &Unit) -> String {
    app_key(actx, &u.app)
}

fn app_key(actx: &AppContext, app: &str) -> String {
    format!("{}/{}/{app}", actx.namespace().unwrap_or_default(), actx.spec.owner.label())
}

/// `<namespace>/<name>` of a context: its key in rsync's records and metrics, and the hook run.
fn id(actx: &AppContext) -> String {
    format!("{}/{}", actx.namespace().unwrap_or_default(), actx.name_any())
}

/// A revision a newer one replaced: rsync does nothing for it (see [`machine::next`]).
fn inert(actx: &AppContext) -> bool {
    matches!(machine::next(actx), Pass::Inert { .. })
}

/// One pass: [`machine::next`] decides, this carries it out.
async fn reconcile(actx: Arc<AppContext>, ctx: Arc<Context>) -> Result<Action, Error> {
    let pass = machine::next(&actx);
    match pass {
        Pass::Inert { release: true } | Pass::Stop { release: true } => {
            release(&ctx, &actx).await?;
            return Ok(Action::await_change());
        }
        Pass::Inert { .. } | Pass::Done => {
            crate::metrics::resources(&id(&actx), None);
            return Ok(Action::await_change());
        }
        Pass::Stop { .. } => return stopped(&ctx, &actx).await,
        Pass::Refuse => return refused(&ctx, &actx).await,
        Pass::Terminate | Pass::Deploy { .. } => {}
    }
    let ns = actx.namespace().unwrap_or_default();
    let started = std::time::Instant::now();
    let Here { units, elsewhere, unbundled } = units_here(&ctx, &actx).await?;
    tracing::debug!(appcontext = %actx.name_any(), units = units.len(), elapsed = ?started.elapsed(), "pass started");
    // Nothing of it on this shard's clusters, unless what it replaced was (to prune).
    if units.is_empty() && unbundled.is_empty() && !elsewhere.is_empty() && pass != (Pass::Deploy { prune: true }) {
        return Ok(Action::requeue(Duration::from_secs(60)));
    }
    let previous = actx.status.clone().unwrap_or_default();
    let operation = if pass == Pass::Terminate { Operation::Terminate } else { actx.spec.operation };
    let mut others = shard_entries(&previous, &elsewhere, actx.metadata.generation, operation);
    // A pair without a bundle fails on its own; on terminate it has nothing known to delete.
    if pass != Pass::Terminate {
        others.extend(unbundled.into_iter().map(|pair| unbundled_status(pair, actx.metadata.generation)));
    }
    let mut wake = None;
    let mut status = match (pass, &actx.spec.rollout) {
        (Pass::Terminate, _) => terminate(&ctx, &actx, &units, others).await,
        (_, None) => deploy(&ctx, &actx, &units, &previous, others, BTreeMap::new()).await,
        (_, Some(plan)) => {
            let (status, next) = roll_out(&ctx, &actx, plan, &units, &previous, others).await;
            wake = next;
            status
        }
    };
    if pass == (Pass::Deploy { prune: true }) && status.state == ContextState::Updated {
        prune(&ctx, &actx, &units, &mut status).await?;
    } else if actx.spec.operation == Operation::Update && pass != Pass::Terminate {
        carry_pruned(&previous, &mut status);
    }
    status.observed_generation = actx.metadata.generation;
    condition::keep_times(&previous.conditions, &mut status.conditions);
    if ctx.shards.is_sharded() {
        status = write_shared(&ctx, &actx, operation, &elsewhere, status).await?;
    } else if actx.metadata.deletion_timestamp.is_none() {
        write_status(&Api::namespaced(ctx.hub.clone(), &ns), actx.as_ref(), Some(&previous), &status).await?;
    }
    tracing::debug!(appcontext = %actx.name_any(), elapsed = ?started.elapsed(), state = ?status.state, "pass done");
    let notes = announce::notes(&previous, &status, actx.spec.revision, pass == Pass::Terminate);
    announce::publish(&ctx.recorder, &actx, notes).await;
    if status.state == ContextState::Terminated {
        // Done with what it applied: the context and its bundles may go whenever their owner goes.
        release(&ctx, &actx).await?;
    }
    let action = next_look(&ctx, &actx, &status, started.elapsed());
    Ok(match wake {
        Some(at) if at < Duration::from_secs(5) => Action::requeue(at),
        _ => action,
    })
}

/// A deploy pass under `spec.rollout`: only the clusters whose turn has come get the revision;
/// the others are held back (they keep what the previous revision applied). The status, and
/// when the rollout wants to look again.
async fn roll_out(
    ctx: &Context,
    actx: &AppContext,
    plan: &crate::api::orchestrator::Rollout,
    units: &[Unit],
    previous: &AppContextStatus,
    others: BTreeMap<(String, String), ClusterStatus>,
) -> (AppContextStatus, Option<Duration>) {
    let now = k8s_openapi::jiff::Timestamp::now();
    let labels = actx
        .spec
        .apps
        .iter()
        .flat_map(|a| &a.clusters)
        .map(|c| {
            let found = ctx.clusters.get(&ObjectRef::new(&c.cluster));
            (c.cluster.clone(), found.map(|f| f.labels().clone()).unwrap_or_default())
        })
        .collect();
    let order = rollout::order(plan, &labels);
    let applied: BTreeSet<String> = previous
        .apps
        .iter()
        .flat_map(|a| &a.clusters)
        .filter(|c| c.deployed > 0 && previous.rollout.is_none())
        .map(|c| c.cluster.clone())
        .collect();
    let mut progress = rollout::admit(plan, &order, previous.rollout.as_ref(), &applied, now);
    let taken: BTreeSet<&str> = progress.clusters.iter().map(|c| c.cluster.as_str()).collect();
    let (go, wait): (Vec<Unit>, Vec<Unit>) = units.iter().cloned().partition(|u| taken.contains(u.cluster.as_str()));
    let held = wait.iter().map(|u| (key(u), held_back(u, actx.metadata.generation))).collect();
    let mut status = deploy(ctx, actx, &go, previous, others, held).await;
    let health = rollout_health(&status, &taken);
    let wake = rollout::observe(plan, &order, &mut progress, &health, now);
    if let Some(message) = progress.message.clone().filter(|_| progress.paused) {
        let generation = actx.metadata.generation;
        for type_ in [ConditionType::Deployed, ConditionType::Ready] {
            condition::set(&mut status.conditions, condition::new(type_, false, "RolloutPaused", &message, generation));
        }
    }
    status.rollout = Some(progress);
    (status, wake)
}

/// A unit whose cluster has not taken the revision yet.
fn held_back(u: &Unit, generation: Option<i64>) -> ClusterStatus {
    ClusterStatus { not_ready: vec![HELD_BACK.into()], ..waiting(u, generation) }
}

/// `notReady` of a unit held back by the rollout.
const HELD_BACK: &str = "(rollout) waiting for its turn";

/// How each cluster that took the revision fares, over its apps.
fn rollout_health(status: &AppContextStatus, taken: &BTreeSet<&str>) -> BTreeMap<String, rollout::Health> {
    let mut health = BTreeMap::new();
    for c in status.apps.iter().flat_map(|a| &a.clusters).filter(|c| taken.contains(c.cluster.as_str())) {
        let this = match (c.failed.first(), c.connectivity) {
            (Some(f), Connectivity::Available) => rollout::Health::Failing(f.clone()),
            _ if c.ready == c.resources && c.failed.is_empty() => rollout::Health::Ready,
            _ => rollout::Health::Progressing,
        };
        // The worst of its apps: Failing over Progressing over Ready.
        let entry = health.entry(c.cluster.clone()).or_insert(rollout::Health::Ready);
        if this.rank() > entry.rank() {
            *entry = this;
        }
    }
    health
}

/// What a pass works from.
struct Here {
    /// This shard's units, with their bundles.
    units: Vec<Unit>,
    /// The other shards' (app, cluster) pairs, with their resource counts.
    elsewhere: BTreeMap<(String, String), u32>,
    /// This shard's pairs the context names no bundle for.
    unbundled: Vec<(String, String)>,
}

/// The status of a pair the context names no bundle for: failed, nothing applied.
fn unbundled_status((app, cluster): (String, String), generation: Option<i64>) -> ((String, String), ClusterStatus) {
    let status = ClusterStatus {
        cluster: cluster.clone(),
        failed: vec![format!("the AppContext names no bundle for app {app} on cluster {cluster}")],
        observed_generation: generation,
        ..Default::default()
    };
    ((app, cluster), status)
}

/// This shard's units with their bundles (read side by side), the other shards' pairs, and the
/// pairs without a bundle.
async fn units_here(ctx: &Context, actx: &AppContext) -> Result<Here, Error> {
    let ns = actx.namespace().unwrap_or_default();
    let placed: Vec<(&crate::api::rsync::ContextApp, crate::api::rsync::Placements)> =
        actx.spec.apps.iter().map(|a| (a, a.placements())).collect();
    let mut needed: BTreeMap<&str, &BundleRef> = BTreeMap::new();
    for (cluster, bundle) in placed.iter().flat_map(|(_, clusters)| clusters) {
        if let Some(bundle) = bundle.filter(|_| ctx.shards.owns(cluster)) {
            needed.insert(bundle.name.as_str(), bundle);
        }
    }
    // Each bundle this shard needs, read side by side (most are in the cache already).
    let reads: Vec<BoxFuture<Result<_, Error>>> = needed
        .into_values()
        .map(|b| async { Ok((b.name.as_str(), ctx.bundles.load(&ctx.hub, &ns, b).await?)) }.boxed())
        .collect();
    let loaded: BTreeMap<&str, bundle::Resources> =
        stream::iter(reads).buffer_unordered(BUNDLE_READS).try_collect().await?;
    let (mut units, mut elsewhere, mut unbundled) = (Vec::new(), BTreeMap::new(), Vec::new());
    for (app, clusters) in placed {
        for (cluster, bundle) in clusters {
            let pair = (app.name.clone(), cluster.to_string());
            let bundle = match (ctx.shards.owns(cluster), bundle) {
                (false, bundle) => {
                    elsewhere.insert(pair, bundle.map_or(0, |b| b.resources));
                    continue;
                }
                (true, None) => {
                    unbundled.push(pair);
                    continue;
                }
                (true, Some(bundle)) => bundle,
            };
            let resources = loaded[bundle.name.as_str()].clone();
            let (resources, hooks) = match resources.iter().any(hook::is_hook) {
                false => (resources, Arc::default()),
                true => {
                    let (kept, hooks) = hook::split(&resources);
                    (Arc::new(kept), Arc::new(hooks))
                }
            };
            let ((app, cluster), digest) = (pair, bundle.digest.clone());
            units.push(Unit { app, cluster, resources, hooks, digest });
        }
    }
    Ok(Here { units, elsewhere, unbundled })
}

/// The entries of other shards' units as `status` has them, when found at `generation`; else
/// not done yet (nothing applied, or nothing deleted).
fn shard_entries(
    status: &AppContextStatus,
    elsewhere: &BTreeMap<(String, String), u32>,
    generation: Option<i64>,
    operation: Operation,
) -> BTreeMap<(String, String), ClusterStatus> {
    let found = |(app, cluster): &(String, String)| {
        let entry = status.apps.iter().find(|a| a.name == *app)?.clusters.iter().find(|c| c.cluster == *cluster)?;
        (entry.observed_generation == generation).then(|| entry.clone())
    };
    elsewhere
        .iter()
        .map(|(key, &resources)| {
            let entry = found(key).unwrap_or_else(|| ClusterStatus {
                cluster: key.1.clone(),
                resources,
                deployed: if operation == Operation::Terminate { resources } else { 0 },
                ..Default::default()
            });
            (key.clone(), entry)
        })
        .collect()
}

/// Sharded: writes `mine` (this shard's units) merged into the context's current status, which
/// other shards write too, summarized again; a write that raced another is done again. The
/// status written.
async fn write_shared(
    ctx: &Context,
    actx: &AppContext,
    operation: Operation,
    elsewhere: &BTreeMap<(String, String), u32>,
    mine: AppContextStatus,
) -> Result<AppContextStatus, Error> {
    let api = Api::<AppContext>::namespaced(ctx.hub.clone(), &actx.namespace().unwrap_or_default());
    let name = actx.name_any();
    loop {
        let Some(fresh) = api.get_opt(&name).await? else { return Ok(mine) };
        let status = merge_shards(actx, operation, &mine, &fresh.status.clone().unwrap_or_default(), elsewhere);
        if fresh.status.as_ref() == Some(&status) {
            return Ok(status);
        }
        match crate::reconcile::apply_status(&api, &name, fresh.resource_version(), &status).await {
            Ok(_) => return Ok(status),
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(status),
            Err(e) => return Err(e.into()),
        }
    }
}

/// This shard's entries of `mine` with the other shards' of `fresh`, summarized again (pure).
fn merge_shards(
    actx: &AppContext,
    operation: Operation,
    mine: &AppContextStatus,
    fresh: &AppContextStatus,
    elsewhere: &BTreeMap<(String, String), u32>,
) -> AppContextStatus {
    let mut results: BTreeMap<(String, String), ClusterStatus> = mine
        .apps
        .iter()
        .flat_map(|a| a.clusters.iter().map(move |c| ((a.name.clone(), c.cluster.clone()), c.clone())))
        .filter(|(key, _)| !elsewhere.contains_key(key))
        .collect();
    results.extend(shard_entries(fresh, elsewhere, actx.metadata.generation, operation));
    let mut status = summarize(actx, operation, results);
    for app in &mut status.apps {
        let before = mine.apps.iter().find(|a| a.name == app.name);
        app.deployed_since = before.and_then(|a| a.deployed_since.clone());
        app.ready_since = before.and_then(|a| a.ready_since.clone());
    }
    let pruned = condition::get(&mine.conditions, ConditionType::Pruned)
        .or_else(|| condition::get(&fresh.conditions, ConditionType::Pruned).filter(|c| c.status == "True"));
    if let Some(pruned) = pruned {
        if pruned.status != "True" && status.state == ContextState::Updated {
            status.state = ContextState::Updating;
        }
        condition::set(&mut status.conditions, pruned.clone());
    }
    status.pruned_on =
        mine.pruned_on.iter().chain(&fresh.pruned_on).cloned().collect::<BTreeSet<_>>().into_iter().collect();
    status.observed_generation = mine.observed_generation;
    status.rollout = mine.rollout.clone();
    status
}

/// Keeps the `Pruned` condition of an update that pruned already.
fn carry_pruned(previous: &AppContextStatus, status: &mut AppContextStatus) {
    if let Some(pruned) = condition::get(&previous.conditions, ConditionType::Pruned) {
        condition::set(&mut status.conditions, pruned.clone());
    }
}

/// The event is not valid in the context's state (EMCO skips it): say so, touch nothing.
async fn refused(ctx: &Context, actx: &AppContext) -> Result<Action, Error> {
    let state = actx.status.as_ref().map(|s| s.state).unwrap_or_default();
    let message = format!("{:?} is not valid from state {state:?}", actx.spec.operation);
    let about = announce::owner(actx);
    crate::reconcile::publish(&ctx.recorder, &about, EventType::Warning, "Refused", "Rsync", message.clone()).await;
    let cond = condition::new(ConditionType::Deployed, false, "InvalidTransition", message, actx.metadata.generation);
    report(ctx, actx, cond).await
}

/// EMCO stop: rsync gives up the running operation and leaves the members as they are.
async fn stopped(ctx: &Context, actx: &AppContext) -> Result<Action, Error> {
    let deployed = actx.status.as_ref().and_then(|s| s.deployed.clone()).unwrap_or_default();
    let message = format!("stop is set: {:?} abandoned at {deployed}", actx.spec.operation);
    report(ctx, actx, condition::new(ConditionType::Stopped, true, "Stopped", message, actx.metadata.generation)).await
}

/// Sets `cond` on the context's status, touching nothing on the members, and waits for a change.
async fn report(
    ctx: &Context,
    actx: &AppContext,
    cond: k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition,
) -> Result<Action, Error> {
    let previous = actx.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    condition::set(&mut status.conditions, cond);
    let ns = actx.namespace().unwrap_or_default();
    write_status(&Api::namespaced(ctx.hub.clone(), &ns), actx, Some(&previous), &status).await?;
    Ok(Action::await_change())
}

/// Applies every app whose dependencies are met, then reads readiness back. Apps go level by
/// level of the dependency graph: all apps of a level (every app, without dependencies) are synced
/// at once, an app only after the apps it depends on were.
async fn deploy(
    ctx: &Context,
    actx: &AppContext,
    units: &[Unit],
    previous: &AppContextStatus,
    mut results: BTreeMap<(String, String), ClusterStatus>,
    held: BTreeMap<(String, String), ClusterStatus>,
) -> AppContextStatus {
    let mut since: BTreeMap<(String, OpStatus), Time> = BTreeMap::new();
    let now = k8s_openapi::jiff::Timestamp::now();
    let listing = member::Listing::default();
    let current = |m: &str, client_key: &str| watched_here(ctx, m, client_key);
    // GitOps members take the whole revision in one commit; their tool orders what it applies.
    let (through_git, units): (Vec<&Unit>, Vec<&Unit>) = units.iter().partition(|u| git::is_git(ctx, &u.cluster));
    results.extend(git::sync(ctx, actx, &through_git, false).await);
    let mut left = machine::dependency_order(&actx.spec.apps);
    while !left.is_empty() {
        // The apps whose dependencies were all synced already (a cycle that slipped through: the next).
        let synced = |d: &str| !left.iter().any(|a| a.name == d);
        let level: Vec<_> = left.iter().copied().filter(|a| a.depends_on.iter().all(|d| synced(&d.app))).collect();
        let level = if level.is_empty() { vec![left[0]] } else { level };
        left.retain(|a| !level.iter().any(|l| l.name == a.name));
        let mut ready = Vec::new();
        for app in &level {
            let app_units = units.iter().copied().filter(|u| u.app == app.name);
            if machine::waiting_for(app, &since, now).is_empty() {
                ready.extend(app_units);
            } else {
                results.extend(app_units.map(|u| (key(u), waiting(u, actx.metadata.generation))));
            }
        }
        // Units whose bundle the cluster holds already go after those it does not (an update
        // reaches what it changes first), clusters that did not answer last time last of all
        // (their timeouts hold up no other).
        let holds =
            |u: &Unit| u.digest.as_ref().is_some_and(|d| ctx.applied.delivered(&u.cluster, &unit_key(actx, u), d));
        let tier = |u: &&Unit| 2 * u8::from(previous_of(previous, u).is_some_and(unreachable)) + u8::from(holds(u));
        let tiered: Vec<(u8, &Unit)> = ready.into_iter().map(|u| (tier(&u), u)).collect();
        let tiered = order::by_cluster(tiered, |(t, u)| (*t, u.cluster.as_str()));
        let first = tiered.iter().take_while(|(t, _)| *t == 0).count();
        let ready: Vec<&Unit> = tiered.into_iter().map(|(_, u)| u).collect();
        listing.expect(ready.iter().map(|u| u.cluster.as_str()));
        // The units to write go first and alone: the many an update leaves as they are (no
        // write) would take the cores the members need for the changes. When each of them was
        // delivered in full before (an update), it writes only what changed: more go at once.
        let (changed, rest) = ready.split_at(first);
        let first: Vec<bool> =
            changed.iter().map(|u| !ctx.applied.delivered_before(&u.cluster, &unit_key(actx, u))).collect();
        let at_once = if first.contains(&true) { CONCURRENCY } else { UPDATE_CONCURRENCY };
        // A member given many objects for the first time sends none of them back meanwhile.
        let objects =
            changed.iter().zip(&first).map(|(u, f)| (u.cluster.as_str(), if *f { u.resources.len() } else { 0 }));
        listing.pause_watches(&ctx.monitor, objects);
        results.extend(sync_units(ctx, actx, changed, previous, &listing, at_once).await);
        results.extend(sync_units(ctx, actx, rest, previous, &listing, CONCURRENCY).await);
        for u in ready {
            let full = results.get(&key(u)).is_some_and(|s| s.deployed == s.resources && s.failed.is_empty());
            ctx.applied.deliver(&u.cluster, &unit_key(actx, u), u.digest.as_deref().filter(|_| full));
        }
        for app in &level {
            for op in [OpStatus::Deployed, OpStatus::Ready] {
                if dependency_met(&results, &app.name, op) {
                    let before = previous.apps.iter().find(|a| a.name == app.name).and_then(|a| match op {
                        OpStatus::Deployed => a.deployed_since.clone(),
                        OpStatus::Ready => a.ready_since.clone(),
                    });
                    since.insert((app.name.clone(), op), before.unwrap_or(Time(now)));
                }
            }
        }
    }
    listing.start_watches(&ctx.monitor, None, current);
    results.extend(held);
    let mut status = summarize(actx, actx.spec.operation, results);
    for app in &mut status.apps {
        app.deployed_since = since.get(&(app.name.clone(), OpStatus::Deployed)).cloned();
        app.ready_since = since.get(&(app.name.clone(), OpStatus::Ready)).cloned();
    }
    status
}

/// [`sync_unit`] on each of `units`, `at_once` at a time; each cluster's watches start once its
/// units are done.
async fn sync_units(
    ctx: &Context,
    actx: &AppContext,
    units: &[&Unit],
    previous: &AppContextStatus,
    listing: &member::Listing,
    at_once: usize,
) -> Vec<((String, String), ClusterStatus)> {
    let current = |m: &str, client_key: &str| watched_here(ctx, m, client_key);
    let work = units.iter().map(|u| {
        async move {
            let done = sync_unit(ctx, actx, u, previous_of(previous, u), listing).await;
            listing.unit_done(&u.cluster, &ctx.monitor, current);
            done
        }
        .boxed()
    });
    bounded_by(work.collect(), at_once).await
}

/// Whether member `m`'s watches, started with client `client_key`, are still this replica's.
fn watched_here(ctx: &Context, m: &str, client_key: &str) -> bool {
    ctx.shards.owns(m) && ctx.members.client_key(m) == client_key
}

/// A unit waiting for a dependency: nothing done yet.
fn waiting(u: &Unit, generation: Option<i64>) -> ClusterStatus {
    ClusterStatus {
        cluster: u.cluster.clone(),
        connectivity: Connectivity::Unknown,
        resources: u.resources.len() as u32,
        observed_generation: generation,
        ..Default::default()
    }
}

/// Applies one unit unless it was fully applied before, then observes it.
#[tracing::instrument(skip_all, fields(appcontext = %actx.name_any(), app = %unit.app, cluster = %unit.cluster))]
async fn sync_unit(
    ctx: &Context,
    actx: &AppContext,
    unit: &Unit,
    before: Option<&ClusterStatus>,
    listing: &member::Listing,
) -> ((String, String), ClusterStatus) {
    let total = unit.resources.len() as u32;
    let mut status = ClusterStatus {
        cluster: unit.cluster.clone(),
        connectivity: Connectivity::Unknown,
        resources: total,
        observed_generation: actx.metadata.generation,
        ..Default::default()
    };
    let member = match connect(ctx, actx, &unit.cluster, Work::Apply, listing).await {
        Ok(m) => m,
        Err(message) => {
            status.failed = vec![message];
            return (key(unit), status);
        }
    };
    let applied_before = before.is_some_and(|b| b.deployed == total && b.failed.is_empty());
    let (pre, post) = match actx.spec.operation {
        Operation::Update => (hook::Phase::PreUpgrade, hook::Phase::PostUpgrade),
        _ => (hook::Phase::PreInstall, hook::Phase::PostInstall),
    };
    status.hooks = before.map(|b| b.hooks.clone()).unwrap_or_default();
    if !applied_before && !hooks_ran(ctx, actx, unit, &member, pre, &mut status).await {
        return (key(unit), status);
    }
    let mut outcome = if applied_before {
        Outcome { reachable: true, ..Default::default() }
    } else {
        let started = std::time::Instant::now();
        let applied = member.apply(&unit.resources).await;
        let (objects, elapsed) = (applied.present, started.elapsed());
        tracing::debug!(appcontext = %actx.name_any(), app = %unit.app, cluster = %unit.cluster, objects, ?elapsed, "applied");
        applied
    };
    if outcome.reachable {
        let mut seen = member.observe(&unit.resources, &outcome.written).await;
        let repaired = if seen.drifted.is_empty() { 0 } else { repair(ctx, actx, &member, &mut seen).await };
        let unit_id = (id(actx), unit.app.clone(), unit.cluster.clone());
        status.drift_repaired = {
            let mut repairs = ctx.repairs.lock().unwrap_or_else(|e| e.into_inner());
            let count = repairs.entry(unit_id).or_insert(0);
            *count = (*count).max(before.map_or(0, |b| b.drift_repaired)) + repaired;
            *count
        };
        outcome.failed.extend(seen.failed);
        outcome = Outcome { failed: outcome.failed, ..seen };
    }
    status.connectivity = if outcome.reachable { Connectivity::Available } else { Connectivity::Retrying };
    status.deployed = outcome.present;
    status.ready = outcome.ready;
    status.failed = outcome.failed;
    status.not_ready = outcome.not_ready;
    if status.deployed == total && status.failed.is_empty() {
        hooks_ran(ctx, actx, unit, &member, post, &mut status).await;
    }
    (key(unit), status)
}

/// Runs `unit`'s hooks of `phase` unless they ran for this context already; whether they are
/// done. Waiting is added to `not_ready`, a failure to `failed`; `status.hooks` records the
/// phases done.
async fn hooks_ran(
    ctx: &Context,
    actx: &AppContext,
    unit: &Unit,
    member: &Member<'_>,
    phase: hook::Phase,
    status: &mut ClusterStatus,
) -> bool {
    let hooks = hook::of_phase(&unit.hooks, phase);
    if hooks.is_empty() || status.hooks.iter().any(|h| h == phase.name()) {
        return true;
    }
    let run = id(actx);
    match member.run_hooks(&hooks, &run).await {
        member::Hooks::Done => {
            status.hooks.push(phase.name().to_string());
            tracing::info!(appcontext = %actx.name_any(), cluster = %unit.cluster, phase = phase.name(), "hooks done");
            true
        }
        member::Hooks::Waiting(m) => {
            status.connectivity = Connectivity::Available;
            status.not_ready.push(m);
            false
        }
        member::Hooks::Failed(m) => {
            status.connectivity = Connectivity::Available;
            let note = announce::Note {
                warning: true,
                reason: "HookFailed",
                message: m.clone(),
                cluster: Some(unit.cluster.clone()),
            };
            announce::publish(&ctx.recorder, actx, vec![note]).await;
            status.failed.push(m);
            false
        }
        member::Hooks::Unreachable(m) => {
            status.connectivity = Connectivity::Retrying;
            status.failed.push(format!("cluster unreachable: {m}"));
            false
        }
    }
}

/// Applies again what changed on the member in fields rsync applied; one Event per object. How
/// many were put back.
async fn repair(ctx: &Context, actx: &AppContext, member: &Member<'_>, seen: &mut Outcome) -> u32 {
    let drifted = std::mem::take(&mut seen.drifted);
    let repaired = member.apply(&drifted).await;
    seen.failed.extend(repaired.failed.iter().cloned());
    let put_back: Vec<&Value> =
        drifted.iter().filter(|o| !repaired.failed.iter().any(|f| f.starts_with(&member::describe(o)))).collect();
    for obj in put_back.iter().copied() {
        let note = format!(
            "{} on {} differed from revision {}; applied again",
            member::describe(obj),
            member.name,
            actx.spec.revision
        );
        tracing::info!(appcontext = %actx.name_any(), cluster = member.name, object = %member::describe(obj), "drift repaired");
        let note =
            announce::Note { warning: true, reason: "DriftRepaired", message: note, cluster: Some(member.name.into()) };
        announce::publish(&ctx.recorder, actx, vec![note]).await;
    }
    put_back.len() as u32
}

/// What a member client is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Work {
    Apply,
    Delete,
}

/// A client for `cluster`, or why there is none.
async fn connect<'a>(
    ctx: &'a Context,
    actx: &'a AppContext,
    cluster: &'a str,
    work: Work,
    listing: &'a member::Listing,
) -> Result<Member<'a>, String> {
    let found =
        ctx.clusters.get(&ObjectRef::new(cluster)).ok_or_else(|| format!("cluster {cluster} is not registered"))?;
    let client = ctx.members.client(&found).await.map_err(|e| e.to_string())?;
    let (writer, confine) = match &actx.spec.logical_cloud {
        Some(lc) => match user_client(ctx, actx, &found, lc).await {
            Ok(user) => (user, None),
            // Removing what the user applied does not wait for the user (its Secret goes first
            // when the whole project is deleted, or when the cluster leaves the logical cloud),
            // but reaches no further than the user could: its namespace.
            Err(_) if work == Work::Delete => (client.clone(), Some(actx.spec.namespace.clone())),
            Err(message) => return Err(message),
        },
        None => (client.clone(), None),
    };
    let logical_cloud_objects = actx.spec.owner.kind == "LogicalCloud";
    Ok(Member {
        name: cluster,
        client,
        writer,
        makes_namespace: actx.spec.logical_cloud.is_none() && !logical_cloud_objects,
        guarded: logical_cloud_objects,
        confine,
        client_key: ctx.members.client_key(cluster),
        members: &ctx.members,
        monitor: &ctx.monitor,
        namespace: &actx.spec.namespace,
        owner: member::Owner { project: actx.namespace().unwrap_or_default(), dig: actx.spec.owner.label() },
        applied: &ctx.applied,
        listing,
    })
}

/// A client acting as logical cloud `lc`'s user on `cluster`, from the credentials dcm keeps in
/// the project's namespace.
async fn user_client(ctx: &Context, actx: &AppContext, cluster: &Cluster, lc: &str) -> Result<kube::Client, String> {
    use crate::api::dcm::user_secret;
    let ns = actx.namespace().unwrap_or_default();
    let name = user_secret::name(lc, &cluster.name_any());
    let missing = |what: &str| format!("logical cloud {lc} has no user on {} yet ({what})", cluster.name_any());
    let secret = Api::<Secret>::namespaced(ctx.hub.clone(), &ns)
        .get_opt(&name)
        .await
        .map_err(|e| format!("hub API: {e}"))?
        .ok_or_else(|| missing("no credentials Secret"))?;
    let data = secret.data.clone().unwrap_or_default();
    let (Some(certificate), Some(key)) = (data.get(user_secret::CERTIFICATE), data.get(user_secret::KEY)) else {
        return Err(missing("certificate not issued"));
    };
    let user = crate::members::User {
        name: secret.annotations().get(user_secret::USER).map_or(lc, String::as_str),
        namespace: &actx.spec.namespace,
        certificate: &certificate.0,
        key: &key.0,
    };
    let version = secret.resource_version().unwrap_or_default();
    ctx.members.user_client(cluster, &user, &version).await.map_err(|e| e.to_string())
}

/// Deletes everything the context applied, app by app in reverse dependency order.
async fn terminate(
    ctx: &Context,
    actx: &AppContext,
    units: &[Unit],
    mut results: BTreeMap<(String, String), ClusterStatus>,
) -> AppContextStatus {
    let (through_git, units): (Vec<&Unit>, Vec<&Unit>) = units.iter().partition(|u| git::is_git(ctx, &u.cluster));
    results.extend(git::sync(ctx, actx, &through_git, true).await);
    for app in machine::dependency_order(&actx.spec.apps).into_iter().rev() {
        let mut work = Vec::new();
        for u in units.iter().copied().filter(|u| u.app == app.name) {
            work.push(terminate_unit(ctx, actx, u).boxed());
        }
        results.extend(bounded(work).await);
    }
    summarize(actx, Operation::Terminate, results)
}

/// Deletes one app's resources from one cluster.
#[tracing::instrument(skip_all, fields(appcontext = %actx.name_any(), app = %u.app, cluster = %u.cluster))]
async fn terminate_unit(ctx: &Context, actx: &AppContext, u: &Unit) -> ((String, String), ClusterStatus) {
    let total = u.resources.len() as u32;
    let mut status = ClusterStatus {
        cluster: u.cluster.clone(),
        connectivity: Connectivity::Unknown,
        resources: total,
        deployed: total,
        observed_generation: actx.metadata.generation,
        ..Default::default()
    };
    let listing = member::Listing::default();
    let member = match connect(ctx, actx, &u.cluster, Work::Delete, &listing).await {
        Err(message) => {
            status.failed = vec![message];
            return (key(u), status);
        }
        Ok(member) => member,
    };
    let previous = actx.status.as_ref().and_then(|s| s.apps.iter().find(|a| a.name == u.app));
    status.hooks = previous
        .and_then(|a| a.clusters.iter().find(|c| c.cluster == u.cluster))
        .map(|c| c.hooks.clone())
        .unwrap_or_default();
    if !hooks_ran(ctx, actx, u, &member, hook::Phase::PreDelete, &mut status).await {
        return (key(u), status);
    }
    // The resources, and the hooks that ran before (a post-delete hook runs after and stays).
    let post = hook::of_phase(&u.hooks, hook::Phase::PostDelete);
    let earlier = u.hooks.iter().filter(|h| !post.contains(h));
    let out = member.delete(&u.resources.iter().chain(earlier).collect::<Vec<_>>()).await;
    ctx.applied.deliver(&u.cluster, &unit_key(actx, u), None);
    status.connectivity = if out.reachable { Connectivity::Available } else { Connectivity::Retrying };
    status.deployed = if out.reachable { out.present } else { total };
    status.failed = out.failed;
    if status.deployed == 0 && status.failed.is_empty() {
        hooks_ran(ctx, actx, u, &member, hook::Phase::PostDelete, &mut status).await;
    }
    (key(u), status)
}

/// Runs `work` with at most `CONCURRENCY` at once.
async fn bounded<'a, T>(work: Vec<BoxFuture<'a, T>>) -> Vec<T> {
    bounded_by(work, CONCURRENCY).await
}

/// Runs `work` with at most `at_once` at once.
async fn bounded_by<'a, T>(work: Vec<BoxFuture<'a, T>>, at_once: usize) -> Vec<T> {
    stream::iter(work).buffer_unordered(at_once).collect().await
}

/// After an update is applied: deletes, on each cluster, what the replaced contexts applied and
/// this one does not. The replaced context is followed back through `replaces` while a context
/// still holds rsync's finalizer (a revision replaced before it could prune its own predecessor).
/// Done once; the `Pruned` condition records it.
async fn prune(ctx: &Context, actx: &AppContext, units: &[Unit], status: &mut AppContextStatus) -> Result<(), Error> {
    let generation = actx.metadata.generation;
    let ns = actx.namespace().unwrap_or_default();
    let sharded = ctx.shards.is_sharded();
    // Sharded: the clusters some shard pruned already.
    let mut done: BTreeSet<String> = actx.status.iter().flat_map(|s| s.pruned_on.iter().cloned()).collect();
    let mut keep: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for u in units {
        keep.entry(&u.cluster)
            .or_default()
            .extend(u.resources.iter().map(|r| member::identity(r, &actx.spec.namespace)));
    }
    let api = Api::<AppContext>::namespaced(ctx.hub.clone(), &ns);
    let mut failures = Vec::new();
    let mut pruned = Vec::new();
    let mut next = actx.spec.replaces.clone();
    let mut chain_clusters = Vec::new();
    // (cluster, app) of the replaced contexts: those this revision no longer has hold no bundle.
    let mut chain_units = BTreeSet::new();
    while let Some(old_name) = next.clone() {
        let Some(old) = api.get_opt(&old_name).await? else { break };
        let first = pruned.is_empty();
        if !first && !finalizer::has(&old, FINALIZER) {
            next = None;
            break;
        }
        chain_clusters.extend(old.spec.apps.iter().flat_map(|a| &a.clusters).map(|c| c.cluster.clone()));
        chain_units
            .extend(old.spec.apps.iter().flat_map(|a| a.clusters.iter().map(|c| (c.cluster.clone(), a.name.clone()))));
        let failed = prune_one(ctx, &old, &keep, &done).await?;
        // Sharded, the replaced contexts go once every shard has pruned (below).
        if failed.is_empty() && !sharded {
            release(ctx, &old).await?;
        }
        failures.extend(failed);
        next = old.spec.replaces.clone().filter(|n| !pruned.contains(n) && *n != actx.name_any());
        pruned.push(old_name);
    }
    chain_units.retain(|(c, app)| !units.iter().any(|u| u.cluster == *c && u.app == *app));
    for (cluster, app) in &chain_units {
        ctx.applied.deliver(cluster, &app_key(actx, app), None);
    }
    // What no context names any more (a replaced context already deleted, say): every object of
    // this DIG the member watches show, on every cluster it may be on, that this revision lacks.
    let chain_complete = next.is_none();
    let mut clusters: BTreeSet<String> =
        actx.spec.apps.iter().flat_map(|a| &a.clusters).map(|c| c.cluster.clone()).collect();
    clusters.extend(chain_clusters);
    if !chain_complete {
        clusters.extend(ctx.clusters.state().iter().map(|c| c.name_any()));
    }
    // A logical cloud's objects have fixed names, all in its bundles: nothing to sweep by label
    // (labels a privileged tenant could put on anything, and these deletes run as the admin).
    // A GitOps member's folder holds exactly this revision: its tool removes the rest.
    let mine = |c: &&String| ctx.shards.owns(c) && !done.contains(*c) && !git::is_git(ctx, c);
    let sweeps: Vec<&String> =
        if actx.spec.owner.kind == "LogicalCloud" { Vec::new() } else { clusters.iter().filter(mine).collect() };
    for cluster in sweeps {
        failures.extend(sweep(ctx, actx, cluster, keep.get(cluster.as_str())).await);
    }
    if sharded && failures.is_empty() {
        done.extend(clusters.iter().filter(|c| ctx.shards.owns(c)).cloned());
        status.pruned_on = done.iter().cloned().collect();
        if !clusters.is_subset(&done) {
            return Ok(()); // other shards have clusters left to prune
        }
        for name in &pruned {
            if let Some(old) = api.get_opt(name).await? {
                release(ctx, &old).await?;
            }
        }
    }
    let (ok, reason, message) = match (failures.first(), pruned.is_empty()) {
        (Some(f), _) => (false, "PruneFailed", f.clone()),
        (None, true) => (true, "ReplacedContextGone", "the replaced revision no longer exists".to_string()),
        (None, false) => {
            (true, "Pruned", format!("removed what {} applied and this revision does not", pruned.join(", ")))
        }
    };
    condition::set(&mut status.conditions, condition::new(ConditionType::Pruned, ok, reason, message, generation));
    if !ok {
        status.state = ContextState::Updating;
    }
    Ok(())
}

/// Deletes from `cluster` every object of this context's DIG that its member watches have seen
/// and that `keep` (this revision's objects there) lacks; the failures.
async fn sweep(ctx: &Context, actx: &AppContext, cluster: &str, keep: Option<&BTreeSet<String>>) -> Vec<String> {
    let (project, dig) = (actx.namespace().unwrap_or_default(), &actx.spec.owner.label());
    let mut stale = Vec::new();
    for (resource, store) in ctx.monitor.caches_of(cluster).await {
        for obj in store.state() {
            let labels = obj.labels();
            let ours = labels.get(labels::PROJECT) == Some(&project) && labels.get(labels::DIG) == Some(dig);
            if !ours || resource.kind == "CustomResourceDefinition" || obj.annotations().contains_key(hook::HOOK) {
                continue;
            }
            let mut meta = json!({"name": obj.name_any()});
            if let Some(ns) = obj.namespace() {
                meta["namespace"] = json!(ns);
            }
            let candidate = json!({"apiVersion": resource.api_version, "kind": resource.kind, "metadata": meta});
            // The same identity as the bundle's objects (a cluster-scoped one takes the default
            // namespace on both sides).
            if !keep.is_some_and(|k| k.contains(&member::identity(&candidate, &actx.spec.namespace))) {
                stale.push(candidate);
            }
        }
    }
    if stale.is_empty() {
        return Vec::new();
    }
    tracing::info!(appcontext = %actx.name_any(), cluster, objects = stale.len(), "pruning objects no revision names");
    match connect(ctx, actx, cluster, Work::Delete, &Default::default()).await {
        Ok(m) => m.delete(&stale.iter().collect::<Vec<_>>()).await.failed,
        Err(message) => vec![message],
    }
}

/// Deletes what `old` applied and `keep` (per cluster) does not have; the failures.
#[tracing::instrument(skip_all, fields(appcontext = %old.name_any()))]
async fn prune_one(
    ctx: &Context,
    old: &AppContext,
    keep: &BTreeMap<&str, BTreeSet<String>>,
    done: &BTreeSet<String>,
) -> Result<Vec<String>, Error> {
    let ns = old.namespace().unwrap_or_default();
    let mut failures = Vec::new();
    for app in &old.spec.apps {
        let here = |c: &str| ctx.shards.owns(c) && !done.contains(c) && !git::is_git(ctx, c);
        for (cluster, bundle) in app.placements().into_iter().filter(|(c, _)| here(c)) {
            let Some(bundle) = bundle else {
                failures.push(format!("{} names no bundle for app {} on cluster {cluster}", old.name_any(), app.name));
                continue;
            };
            let resources = ctx.bundles.load(&ctx.hub, &ns, bundle).await?;
            let kept = keep.get(cluster);
            let dropped: Vec<&Value> = resources
                .iter()
                .filter(|r| !hook::is_hook(r))
                .filter(|r| !kept.is_some_and(|k| k.contains(&member::identity(r, &old.spec.namespace))))
                .collect();
            if dropped.is_empty() {
                continue;
            }
            match connect(ctx, old, cluster, Work::Delete, &Default::default()).await {
                Ok(m) => failures.extend(m.delete(&dropped).await.failed),
                Err(message) => failures.push(message),
            }
        }
    }
    Ok(failures)
}

/// Lets `actx` and its bundles go: rsync is done with what they applied.
async fn release(ctx: &Context, actx: &AppContext) -> kube::Result<()> {
    let ns = actx.namespace().unwrap_or_default();
    let secrets = Api::<Secret>::namespaced(ctx.hub.clone(), &ns);
    // Every bundle Secret of the revision, also parts a crash left unreferenced.
    let selector = format!("{}={},{}={}", labels::DIG, actx.spec.owner.label(), labels::REVISION, actx.spec.revision);
    for part in secrets.list_metadata(&ListParams::default().labels(&selector)).await? {
        finalizer::remove_from_metadata(&secrets, &part, FINALIZER).await?;
    }
    let released = id(actx);
    ctx.repairs.lock().unwrap_or_else(|e| e.into_inner()).retain(|(c, _, _), _| *c != released);
    let api = Api::<AppContext>::namespaced(ctx.hub.clone(), &ns);
    finalizer::remove_fresh(&api, actx, FINALIZER).await
}

/// Whether `app` reached `op` on every cluster it went to in this pass.
fn dependency_met(results: &BTreeMap<(String, String), ClusterStatus>, app: &str, op: OpStatus) -> bool {
    results.iter().filter(|((a, _), _)| a == app).all(|(_, s)| match op {
        OpStatus::Deployed => s.deployed == s.resources && s.failed.is_empty(),
        OpStatus::Ready => s.ready == s.resources && s.failed.is_empty(),
    })
}

/// A cluster rsync could not work on: its member did not answer, or could not be connected to (a
/// failure before any answer). Not one merely waiting for a dependency, nor a pair the context
/// names no bundle for (nothing to send, no resources: it failed on its own, whatever the member).
fn unreachable(c: &ClusterStatus) -> bool {
    let connect_failed = c.connectivity == Connectivity::Unknown && !c.failed.is_empty() && c.resources > 0;
    c.connectivity == Connectivity::Retrying || connect_failed
}

fn key(u: &Unit) -> (String, String) {
    (u.app.clone(), u.cluster.clone())
}

fn previous_of<'a>(previous: &'a AppContextStatus, u: &Unit) -> Option<&'a ClusterStatus> {
    previous.apps.iter().find(|a| a.name == u.app)?.clusters.iter().find(|c| c.cluster == u.cluster)
}

/// The AppContext status from the per-unit results.
fn summarize(
    actx: &AppContext,
    operation: Operation,
    results: BTreeMap<(String, String), ClusterStatus>,
) -> AppContextStatus {
    let generation = actx.metadata.generation;
    let mut status = AppContextStatus::default();
    let (mut total, mut present, mut ready, mut failed) = (0, 0, 0, 0);
    let mut problems = Vec::new();
    for ((app, _), s) in results {
        total += s.resources;
        present += s.deployed;
        ready += s.ready;
        failed += s.failed.len() as u32;
        problems.extend(s.failed.iter().map(|f| format!("{app} on {}: {f}", s.cluster)));
        match status.apps.iter_mut().find(|a| a.name == app) {
            Some(a) => a.clusters.push(s),
            None => status.apps.push(AppStatus { name: app, clusters: vec![s], ..Default::default() }),
        }
    }
    let unreachable = status.apps.iter().flat_map(|a| &a.clusters).any(unreachable);
    let terminating = operation == Operation::Terminate;
    status.deployed = Some(format!("{present}/{total}"));
    status.ready = Some(format!("{ready}/{total}"));
    if terminating {
        status.deployed_counts = BTreeMap::from([
            ("Applied".into(), present),
            ("Deleted".into(), total - present),
            ("Failed".into(), failed),
        ]);
    } else {
        status.deployed_counts = BTreeMap::from([
            ("Applied".into(), present),
            ("Pending".into(), total - present),
            ("Failed".into(), failed),
        ]);
    }
    status.ready_counts = BTreeMap::from([
        ("Ready".into(), ready),
        ("NotReady".into(), present - ready),
        ("NotPresent".into(), total - present),
    ]);
    let all_applied = present == total && failed == 0;
    // A Helm hook still running keeps the operation from being done (`hook ...` entries).
    let hooks_running =
        status.apps.iter().flat_map(|a| &a.clusters).any(|c| c.not_ready.iter().any(|n| n.starts_with("hook ")));
    let done = match terminating {
        true => present == 0 && failed == 0 && !unreachable && !hooks_running,
        false => all_applied && !hooks_running,
    };
    status.state = match (operation, done) {
        (Operation::Terminate, true) => ContextState::Terminated,
        (Operation::Terminate, false) => ContextState::Terminating,
        (Operation::Instantiate, true) => ContextState::Instantiated,
        (Operation::Instantiate, false) if failed > 0 && !unreachable => ContextState::InstantiateFailed,
        (Operation::Instantiate, false) => ContextState::Instantiating,
        (Operation::Update, true) => ContextState::Updated,
        (Operation::Update, false) if failed > 0 && !unreachable => ContextState::UpdateFailed,
        (Operation::Update, false) => ContextState::Updating,
    };
    let first = problems.first().cloned().unwrap_or_default();
    let (ok, reason, message) = match status.state {
        ContextState::Instantiated | ContextState::Updated => {
            (true, "Applied", format!("{present}/{total} resources applied"))
        }
        ContextState::Terminated => (false, "Terminated", "every applied resource was deleted".into()),
        _ if unreachable => (false, "ClusterUnreachable", first),
        _ if failed > 0 => (false, "ApplyFailed", first),
        _ => (false, "Applying", format!("{present}/{total} resources applied")),
    };
    condition::set(&mut status.conditions, condition::new(ConditionType::Deployed, ok, reason, message, generation));
    let all_ready = !terminating && ready == total && all_applied && !hooks_running;
    let not_ready = status
        .apps
        .iter()
        .flat_map(|a| a.clusters.iter().map(move |c| (a, c)))
        .filter(|(_, c)| c.ready < c.resources)
        .map(|(a, c)| format!("{} on {} {}/{} ({})", a.name, c.cluster, c.ready, c.resources, c.not_ready.join(", ")))
        .take(5)
        .collect::<Vec<_>>();
    let message = if all_ready {
        format!("{ready}/{total} resources ready")
    } else {
        format!("not ready: {}", not_ready.join(", "))
    };
    condition::set(
        &mut status.conditions,
        condition::new(
            ConditionType::Ready,
            all_ready,
            if all_ready { "Ready" } else { "NotReady" },
            message,
            generation,
        ),
    );
    status
}

/// A context that is all ready is looked at again after this long. The member watches wake it
/// at once when something of it changes there; this pass is only the safety net (a pass over
/// 10,000 objects costs about a second of CPU).
const RESYNC: Duration = Duration::from_secs(300);
/// How often a context not ready yet on a GitOps member reads its agent's report again.
const GIT_POLL: Duration = Duration::from_secs(2);
/// And once it is ready there.
const GIT_RESYNC: Duration = Duration::from_secs(30);

/// When to look again: soon while work is under way (250 ms, backing off to 5 s, and not sooner
/// than twice the pass's time unless that is past the cap), rarely once all is ready, with
/// exponential backoff while a cluster is unreachable or refuses resources.
fn next_look(ctx: &Context, actx: &AppContext, status: &AppContextStatus, pass: Duration) -> Action {
    let key = format!("appcontext/{}", id(actx));
    let poll = format!("poll/{key}");
    let unreachable = status.apps.iter().flat_map(|a| &a.clusters).any(unreachable);
    let failed = matches!(status.state, ContextState::InstantiateFailed | ContextState::UpdateFailed);
    let total = status.apps.iter().flat_map(|a| &a.clusters).map(|c| i64::from(c.resources)).sum();
    let count =
        |counts: &std::collections::BTreeMap<String, u32>, k: &str| i64::from(counts.get(k).copied().unwrap_or(0));
    let counts = [total, count(&status.deployed_counts, "Applied"), count(&status.ready_counts, "Ready")];
    let terminated = status.state == ContextState::Terminated;
    // No watch reports from a GitOps member: its agent's report is read instead.
    let through_git = status.apps.iter().flat_map(|a| &a.clusters).any(|c| git::is_git(ctx, &c.cluster));
    crate::metrics::resources(&id(actx), (!terminated).then_some(counts));
    match status.state {
        ContextState::Terminated => Action::await_change(),
        _ if unreachable || failed => {
            crate::metrics::retried();
            Action::requeue(ctx.backoff.retry_after(&key))
        }
        // Sharded: another shard may still have clusters to prune; look again soon.
        _ if awaiting_prune(actx, status) => {
            ctx.backoff.succeeded(&key);
            Action::requeue(ctx.backoff.next(&poll, Duration::from_millis(250), Duration::from_secs(5)))
        }
        _ if condition::is_true(&status.conditions, ConditionType::Ready) => {
            ctx.backoff.succeeded(&key);
            ctx.backoff.succeeded(&poll);
            Action::requeue(if through_git { GIT_RESYNC } else { RESYNC })
        }
        _ => {
            ctx.backoff.succeeded(&key);
            // Changes on the members wake us (monitor): once everything is applied and only
            // readiness is awaited, the watches say when it comes, and the poll backs off to the
            // safety net of a ready context (a pass over 10,000 objects a minute was 1.6 % of a
            // core at rest). No poll comes sooner than twice the pass's time: polling a big
            // context takes no more than a third of a core (at 50 clusters a pass over 1,000
            // units is 0.3 s, and polls every 0.25 s delayed the next revision's plan).
            let soonest = 2 * pass;
            let applied =
                status.deployed_counts.get("Pending") == Some(&0) && status.deployed_counts.get("Failed") == Some(&0);
            let cap = match (applied, through_git) {
                (_, true) => GIT_POLL,
                (true, false) => RESYNC,
                (false, false) => Duration::from_secs(5),
            };
            Action::requeue(ctx.backoff.next(&poll, Duration::from_millis(250), cap).max(soonest).min(cap))
        }
    }
}

/// An update whose prune is not complete everywhere yet.
fn awaiting_prune(actx: &AppContext, status: &AppContextStatus) -> bool {
    actx.spec.operation == Operation::Update
        && actx.spec.superseded_by.is_none()
        && !condition::is_true(&status.conditions, ConditionType::Pruned)
}

fn error_policy(actx: Arc<AppContext>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = format!("appcontext/{}", id(&actx));
    tracing::warn!(appcontext = %key, %error, "rsync reconcile failed");
    crate::metrics::retried();
    Action::requeue(ctx.backoff.retry_after(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(operation: &str) -> AppContext {
        serde_json::from_value(json!({
            "apiVersion": "rsync.emco.io/v1alpha1", "kind": "AppContext", "metadata": {"name": "d-1", "namespace": "p"},
            "spec": {"owner": {"kind": "DeploymentIntentGroup", "name": "d"}, "revision": 1, "operation": operation,
                     "namespace": "p", "apps": []}
        }))
        .unwrap()
    }

    fn unit(
        app: &str,
        cluster: &str,
        resources: u32,
        deployed: u32,
        ready: u32,
        connectivity: Connectivity,
    ) -> ((String, String), ClusterStatus) {
        let status =
            ClusterStatus { cluster: cluster.into(), connectivity, resources, deployed, ready, ..Default::default() };
        ((app.into(), cluster.into()), status)
    }

    #[test]
    fn a_context_a_newer_revision_replaces_is_superseded_before_it_is_marked() {
        let old = context("Instantiate");
        let mut new = context("Update");
        new.metadata.name = Some("d-2".into());
        new.spec.replaces = Some("d-1".into());
        let mut elsewhere = new.clone();
        elsewhere.metadata.namespace = Some("q".into());
        let (reader, mut writer) = reflector::store();
        writer.apply_watcher_event(&watcher::Event::Apply(elsewhere));
        let seen = with_successor(Arc::new(old.clone()), &reader);
        assert_eq!(machine::next(&seen), machine::next(&old), "a successor in another namespace is not one");
        writer.apply_watcher_event(&watcher::Event::Apply(new.clone()));
        writer.apply_watcher_event(&watcher::Event::Apply(old.clone()));
        let seen = with_successor(Arc::new(old), &reader);
        assert_eq!(seen.spec.superseded_by.as_deref(), Some("d-2"));
        assert_eq!(machine::next(&seen), Pass::Inert { release: false });
        assert_eq!(with_successor(Arc::new(new), &reader).spec.superseded_by, None);
    }

    #[test]
    fn applied_everywhere_but_not_ready_is_instantiated_and_not_ready() {
        let results = BTreeMap::from([
            unit("edge", "e1", 3, 3, 3, Connectivity::Available),
            unit("edge", "e2", 3, 3, 1, Connectivity::Available),
        ]);
        let s = summarize(&context("Instantiate"), Operation::Instantiate, results);
        assert_eq!(s.state, ContextState::Instantiated);
        assert_eq!((s.deployed.as_deref(), s.ready.as_deref()), (Some("6/6"), Some("4/6")));
        assert!(!condition::is_true(&s.conditions, ConditionType::Ready));
        assert!(condition::get(&s.conditions, ConditionType::Ready).unwrap().message.contains("edge on e2 1/3"));
    }

    #[test]
    fn an_unreachable_cluster_keeps_instantiating_and_says_so() {
        let mut down = unit("edge", "e2", 3, 0, 0, Connectivity::Retrying);
        down.1.failed = vec!["cluster unreachable: connection refused".into()];
        let s = summarize(
            &context("Instantiate"),
            Operation::Instantiate,
            BTreeMap::from([unit("edge", "e1", 3, 3, 3, Connectivity::Available), down]),
        );
        assert_eq!(s.state, ContextState::Instantiating);
        assert_eq!(condition::get(&s.conditions, ConditionType::Deployed).unwrap().reason, "ClusterUnreachable");
    }

    #[test]
    fn shards_merge_only_current_entries_of_the_others() {
        let mut actx = context("Instantiate");
        actx.metadata.generation = Some(2);
        let elsewhere = BTreeMap::from([(("edge".to_string(), "e2".to_string()), 3)]);
        let mut mine_results = BTreeMap::from([unit("edge", "e1", 3, 3, 3, Connectivity::Available)]);
        mine_results.extend(shard_entries(&AppContextStatus::default(), &elsewhere, Some(2), Operation::Instantiate));
        let mine = summarize(&actx, Operation::Instantiate, mine_results);
        assert_eq!(mine.state, ContextState::Instantiating, "the other shard's cluster counts as not applied yet");

        let (key, mut theirs) = unit("edge", "e2", 3, 3, 3, Connectivity::Available);
        theirs.observed_generation = Some(1);
        let stale = summarize(&actx, Operation::Instantiate, BTreeMap::from([(key.clone(), theirs.clone())]));
        let merged = merge_shards(&actx, Operation::Instantiate, &mine, &stale, &elsewhere);
        assert_eq!(merged.deployed.as_deref(), Some("3/6"), "an entry of an older generation is not merged");

        theirs.observed_generation = Some(2);
        let current = summarize(&actx, Operation::Instantiate, BTreeMap::from([(key, theirs)]));
        let merged = merge_shards(&actx, Operation::Instantiate, &mine, &current, &elsewhere);
        assert_eq!((merged.state, merged.deployed.as_deref()), (ContextState::Instantiated, Some("6/6")));

        let terminating = shard_entries(&AppContextStatus::default(), &elsewhere, Some(2), Operation::Terminate);
        assert_eq!(terminating.values().next().unwrap().deployed, 3, "not known deleted until its shard says so");
    }

    #[test]
    fn terminate_is_done_only_when_nothing_is_left_anywhere() {
        let left = summarize(
            &context("Terminate"),
            Operation::Terminate,
            BTreeMap::from([unit("edge", "e1", 3, 1, 0, Connectivity::Available)]),
        );
        assert_eq!(left.state, ContextState::Terminating);
        let gone = summarize(
            &context("Terminate"),
            Operation::Terminate,
            BTreeMap::from([unit("edge", "e1", 3, 0, 0, Connectivity::Available)]),
        );
        assert_eq!(gone.state, ContextState::Terminated);
        assert_eq!(gone.deployed_counts["Deleted"], 3);
    }
}
