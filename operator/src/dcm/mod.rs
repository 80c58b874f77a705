//! dcm: the logical cloud controller (EMCO's distributed cloud manager).
//! - Admin (level 0): the named member clusters, reached with each cluster's own credentials.
//! - Standard and Privileged (level 1): on each member a namespace, a certificate user made
//!   through the member's CSR API (`user`), its Roles/RoleBindings (ClusterRole/Binding for
//!   cluster-wide permissions, Privileged only) and a ResourceQuota (`objects`), carried by an
//!   AppContext that rsync applies (`context`); the user's kubeconfig per member in a hub Secret.
//! - Every type needs its clusters granted to the project (`grant`) and is refused terminate while
//!   a DIG still uses it.

pub mod context;
pub mod grant;
pub mod objects;
pub mod user;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ListParams;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};

use crate::api::clm::Cluster;
use crate::api::condition::{self, ConditionType};
use crate::api::dcm::{
    ClusterGrant, LogicalCloud, LogicalCloudClusterStatus, LogicalCloudDesiredState, LogicalCloudStatus,
    LogicalCloudType, user_secret,
};
use crate::api::dcm::{LogicalCloudClusterState as ClusterState, LogicalCloudState as State};
use crate::api::orchestrator::{DeploymentIntentGroup, DigState, Project};
use crate::api::rsync::{AppContext, ContextState, Operation};
use crate::finalizer;
use crate::members::Members;
use crate::orchestrator::revisions;
use crate::reconcile::{Backoff, write_status};
use user::{Lifetime, UserState};

/// On Standard and Privileged logical clouds: nothing goes before their members are cleaned.
pub const FINALIZER: &str = "dcm.emco.io/terminate";

/// What the logical cloud controller needs.
pub struct Context {
    pub hub: kube::Client,
    pub clusters: Store<Cluster>,
    pub members: Members,
    pub lifetime: Lifetime,
    pub recorder: kube::runtime::events::Recorder,
    pub backoff: Backoff,
}

type Error = crate::reconcile::HubError;

pub async fn run(ctx: Arc<Context>) {
    // Unreadable objects are reported and skipped, never a stalled watch (`reconcile::readable`).
    let clouds = Api::<DeserializeGuard<LogicalCloud>>::all(ctx.hub.clone());
    let controller = Controller::new(clouds, watcher::Config::default());
    let (by_cluster, all) = (controller.store(), controller.store());
    controller
        .owns(Api::<AppContext>::all(ctx.hub.clone()), watcher::Config::default())
        .watches(Api::<Cluster>::all(ctx.hub.clone()), watcher::Config::default(), move |cluster: Cluster| {
            let name = cluster.name_any();
            by_cluster
                .state()
                .into_iter()
                .filter(|lc| lc.0.as_ref().is_ok_and(|lc| lc.spec.clusters.iter().any(|c| c.cluster == name)))
                .map(|lc| ObjectRef::from_obj(lc.as_ref()))
                .collect::<Vec<_>>()
        })
        // A user's Secret changed or went (by hand, say): its logical cloud looks again at once.
        // Metadata only: the operator never holds every tenant's keys in memory.
        .watches_stream(
            watcher(
                Api::<kube::core::PartialObjectMeta<Secret>>::all(ctx.hub.clone()),
                watcher::Config::default().labels(user_secret::LOGICAL_CLOUD),
            )
            .default_backoff()
            .touched_objects(),
            |secret| {
                let lc = secret.labels().get(user_secret::LOGICAL_CLOUD).cloned().unwrap_or_default();
                Some(ObjectRef::new(&lc).within(&secret.namespace().unwrap_or_default()))
            },
        )
        .watches(Api::<ClusterGrant>::all(ctx.hub.clone()), watcher::Config::default(), move |_: ClusterGrant| {
            all.state().into_iter().map(|lc| ObjectRef::from_obj(lc.as_ref())).collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(|o, c| crate::metrics::reconciled("dcm", reconcile(o, c)), error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

async fn reconcile(guard: Arc<DeserializeGuard<LogicalCloud>>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(lc) = crate::reconcile::readable(&guard, None).await else { return Ok(Action::await_change()) };
    let api = Api::<LogicalCloud>::namespaced(ctx.hub.clone(), &lc.namespace().unwrap_or_default());
    let tenant = lc.spec.type_ != LogicalCloudType::Admin;
    if lc.metadata.deletion_timestamp.is_some() {
        return delete(&ctx, &api, &lc).await;
    }
    if tenant {
        finalizer::add(&api, lc.as_ref(), FINALIZER).await?;
    }
    let mut status = lc.status.clone().unwrap_or_default();
    status.observed_generation = lc.metadata.generation;
    status.clusters = checked_clusters(&ctx, &lc).await?;
    status.cluster_count = Some(status.clusters.len() as u32);
    let action = if lc.spec.state == LogicalCloudDesiredState::Terminated {
        terminate(&ctx, &lc, &mut status).await?
    } else if let Some((reason, message)) = unusable(&status.clusters) {
        if tenant && let Some(current) = current_context(&ctx, &lc).await? {
            revoke(&ctx, &lc, current, &mut status).await?;
        }
        set(&mut status, State::InstantiateFailed, false, reason, message, lc.metadata.generation);
        Action::requeue(Duration::from_secs(60))
    } else if tenant {
        instantiate(&ctx, &lc, &mut status).await?
    } else {
        let message = format!("{} clusters", status.clusters.len());
        set(&mut status, State::Instantiated, true, "Instantiated", message, lc.metadata.generation);
        Action::await_change()
    };
    announce(&ctx, &lc, &status).await;
    write_status(&api, lc.as_ref(), lc.status.as_ref(), &status).await?;
    Ok(action)
}

/// Events for what changed since the last status: a certificate issued (or renewed) on a
/// cluster, a terminate refused. They name Secrets and times, never their content.
async fn announce(ctx: &Context, lc: &LogicalCloud, status: &LogicalCloudStatus) {
    use kube::runtime::events::EventType;
    let before = lc.status.clone().unwrap_or_default();
    let about = kube::Resource::object_ref(lc, &());
    for c in &status.clusters {
        let old = before.clusters.iter().find(|b| b.cluster == c.cluster).and_then(|b| b.certificate_expiry.clone());
        if let Some(expiry) = c.certificate_expiry.as_ref().filter(|e| Some(*e) != old.as_ref()) {
            let note = format!("user certificate on {} issued by the member, expires {}", c.cluster, expiry.0);
            crate::reconcile::publish(&ctx.recorder, &about, EventType::Normal, "CertificateIssued", "Issue", note)
                .await;
        }
    }
    let refused = |s: &LogicalCloudStatus| {
        condition::get(&s.conditions, ConditionType::Terminated)
            .filter(|c| c.reason == "InUse")
            .map(|c| c.message.clone())
    };
    if let Some(message) = refused(status).filter(|_| refused(&before).is_none()) {
        crate::reconcile::publish(&ctx.recorder, &about, EventType::Warning, "TerminateRefused", "Terminate", message)
            .await;
    }
}

/// Sets the state and the Ready condition (and clears a refused terminate once it no longer is).
fn set(
    status: &mut LogicalCloudStatus,
    state: State,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
) {
    status.state = Some(state);
    condition::set(&mut status.conditions, condition::new(ConditionType::Ready, ok, reason, message, generation));
    if state != State::Terminated && state != State::Terminating {
        status.conditions.retain(|c| c.type_ != ConditionType::Terminated.as_ref());
    }
}

/// Each named cluster: registered, of the named provider, granted to the project for this type.
async fn checked_clusters(ctx: &Context, lc: &LogicalCloud) -> Result<Vec<LogicalCloudClusterStatus>, Error> {
    let grants = Api::<ClusterGrant>::all(ctx.hub.clone()).list(&ListParams::default()).await?.items;
    let project = project_of(ctx, lc).await?;
    let previous = lc.status.as_ref().map(|s| s.clusters.clone()).unwrap_or_default();
    let tenant = lc.spec.type_ != LogicalCloudType::Admin;
    let ask = grant::Ask {
        project: &project,
        type_: lc.spec.type_,
        pod_security: tenant.then(|| lc.spec.pod_security.unwrap_or_default()),
    };
    Ok(lc
        .spec
        .clusters
        .iter()
        .map(|r| {
            let found = ctx.clusters.get(&ObjectRef::new(&r.cluster));
            let (state, message) = match found {
                None => (ClusterState::ClusterNotFound, None),
                Some(c) if r.cluster_provider.as_ref().is_some_and(|p| p != &c.spec.provider) => {
                    (ClusterState::ProviderMismatch, None)
                }
                Some(c) if !grant::allows(&grants, &ask, &c) => {
                    (ClusterState::NotGranted, Some(grant::missing(&ask, &r.cluster)))
                }
                Some(_) => (ClusterState::Ready, None),
            };
            let before = previous.iter().find(|p| p.cluster == r.cluster);
            LogicalCloudClusterStatus {
                cluster: r.cluster.clone(),
                state,
                kubeconfig_secret: before.and_then(|b| b.kubeconfig_secret.clone()),
                certificate_expiry: before.and_then(|b| b.certificate_expiry.clone()),
                message,
            }
        })
        .collect())
}

/// The reason and message when some cluster cannot be used.
fn unusable(clusters: &[LogicalCloudClusterStatus]) -> Option<(&'static str, String)> {
    let bad: Vec<_> = clusters.iter().filter(|c| c.state != ClusterState::Ready).collect();
    let first = bad.first()?;
    let reason = match first.state {
        ClusterState::NotGranted => "ClusterNotGranted",
        _ => "ClusterNotReady",
    };
    let list: Vec<String> = bad
        .iter()
        .map(|c| match &c.message {
            Some(m) => format!("{} {:?} ({m})", c.cluster, c.state),
            None => format!("{} {:?}", c.cluster, c.state),
        })
        .collect();
    Some((reason, format!("clusters not usable: {}", list.join(", "))))
}

/// The project whose namespace holds `lc` (the namespace's name when no Project claims it).
async fn project_of(ctx: &Context, lc: &LogicalCloud) -> Result<String, Error> {
    let ns = lc.namespace().unwrap_or_default();
    let projects = Api::<Project>::all(ctx.hub.clone()).list(&ListParams::default()).await?;
    Ok(projects
        .items
        .iter()
        .find(|p| p.spec.namespace.clone().unwrap_or_else(|| p.name_any()) == ns)
        .map_or(ns, |p| p.name_any()))
}

/// The AppContext the status names, if it still exists.
async fn current_context(ctx: &Context, lc: &LogicalCloud) -> Result<Option<AppContext>, Error> {
    let Some(name) = lc.status.as_ref().and_then(|s| s.app_context.clone()) else { return Ok(None) };
    Ok(Api::<AppContext>::namespaced(ctx.hub.clone(), &lc.namespace().unwrap_or_default()).get_opt(&name).await?)
}

/// Standard/Privileged: the member objects through rsync, and a user on every member.
async fn instantiate(ctx: &Context, lc: &LogicalCloud, status: &mut LogicalCloudStatus) -> Result<Action, Error> {
    let clusters: Vec<String> = lc.spec.clusters.iter().map(|c| c.cluster.clone()).collect();
    // The users of clusters taken out go first: their credentials before their namespace.
    forget_users(ctx, lc, |cluster| !clusters.iter().any(|c| c == cluster)).await?;
    let current = current_context(ctx, lc).await?;
    let actx = context::ensure(&ctx.hub, lc, current.as_ref(), &bundles(ctx, lc, &clusters)).await?;
    status.app_context = Some(actx.name_any());
    status.revision = Some(actx.spec.revision);
    if current.as_ref().map(ResourceExt::name_any) != status.app_context {
        // Recorded at once: a later failure in this pass must not leave the revision unknown.
        let api = Api::<LogicalCloud>::namespaced(ctx.hub.clone(), &lc.namespace().unwrap_or_default());
        let mut recorded = lc.status.clone().unwrap_or_default();
        (recorded.app_context, recorded.revision) = (status.app_context.clone(), status.revision);
        write_status(&api, lc, lc.status.as_ref(), &recorded).await?;
    }
    let ns = lc.namespace().unwrap_or_default();
    revisions::forget_released(&ctx.hub, &ns, &objects::owner(lc), Some(&actx.name_any())).await?;
    let users = futures::future::join_all(status.clusters.iter().map(|c| async {
        match ctx.clusters.get(&ObjectRef::new(&c.cluster)) {
            Some(cluster) => user::ensure(&ctx.hub, &ctx.members, lc, &cluster, ctx.lifetime).await,
            None => Ok(UserState::Pending("the cluster was unregistered meanwhile".into())),
        }
    }))
    .await;
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let mut next = 3600;
    for (c, state) in status.clusters.iter_mut().zip(users) {
        let discovered = lc.spec.type_ != LogicalCloudType::Standard
            || ctx
                .clusters
                .get(&ObjectRef::new(&c.cluster))
                .is_some_and(|k| k.status.as_ref().is_some_and(|s| !s.namespaced_resources.is_empty()));
        let applied = if discovered {
            applied_on(&actx, &c.cluster)
        } else {
            Err("waiting for the member's discovery (the Cluster's status) to expand the user's rules".into())
        };
        let user = state.map_err(|user::UserError::Hub(e)| e)?;
        (c.state, c.message) = match (&user, &applied) {
            (UserState::Issued { renewing: None, .. }, Ok(())) => (ClusterState::Ready, None),
            (UserState::Issued { renewing: Some(m), .. }, Ok(())) => {
                (ClusterState::Ready, Some(format!("renewing: {m}")))
            }
            (UserState::Pending(m) | UserState::Refused(m), _) => (ClusterState::Pending, Some(m.clone())),
            (_, Err(m)) => (ClusterState::Pending, Some(m.clone())),
        };
        // rsync's progress wakes this controller (it owns the AppContext); the CSR round trip is polled.
        next = next.min(match user {
            UserState::Issued { expiry, renew_at, .. } => {
                c.kubeconfig_secret = Some(user_secret::name(&lc.name_any(), &c.cluster));
                c.certificate_expiry = Some(Time(expiry));
                renew_at - now
            }
            UserState::Pending(_) => 2,
            UserState::Refused(_) => 30,
        });
    }
    let pending: Vec<String> =
        status.clusters.iter().filter(|c| c.state != ClusterState::Ready).map(|c| c.cluster.clone()).collect();
    let generation = lc.metadata.generation;
    if pending.is_empty() {
        let message = format!("namespace, user, RBAC and quota on {} clusters", status.clusters.len());
        set(status, State::Instantiated, true, "Instantiated", message, generation);
    } else {
        let message = format!("under way on {}", pending.join(", "));
        set(status, State::Instantiating, false, "Instantiating", message, generation);
        next = next.min(30);
    }
    Ok(Action::requeue(Duration::from_secs(next.max(1) as u64)))
}

/// The member objects of `lc` for each of `clusters`, clusters that get the same ones together
/// (the rules of a Standard cloud follow what each member serves: its Cluster's status).
fn bundles(ctx: &Context, lc: &LogicalCloud, clusters: &[String]) -> Vec<context::Bundle> {
    let mut bundles: Vec<context::Bundle> = Vec::new();
    for name in clusters {
        let served = ctx.clusters.get(&ObjectRef::new(name)).and_then(|c| c.status.clone()).unwrap_or_default();
        let objects = objects::member_objects(lc, &served.namespaced_resources);
        match bundles.iter_mut().find(|(o, _)| *o == objects) {
            Some((_, on)) => on.push(name.clone()),
            None => bundles.push((objects, vec![name.clone()])),
        }
    }
    bundles
}

/// A grant taken away from an instantiated logical cloud: its namespace, RBAC, quota and user go
/// from the clusters no longer granted (the others keep theirs).
async fn revoke(
    ctx: &Context,
    lc: &LogicalCloud,
    current: AppContext,
    status: &mut LogicalCloudStatus,
) -> Result<(), Error> {
    if current.spec.operation == Operation::Terminate {
        return Ok(());
    }
    let keep: Vec<String> =
        status.clusters.iter().filter(|c| c.state != ClusterState::NotGranted).map(|c| c.cluster.clone()).collect();
    // Credentials first, then the namespace, RBAC and quota.
    forget_users(ctx, lc, |cluster| !keep.iter().any(|k| k == cluster)).await?;
    if keep.is_empty() {
        revisions::terminate(&ctx.hub, &current).await?;
    } else {
        let actx = context::ensure(&ctx.hub, lc, Some(&current), &bundles(ctx, lc, &keep)).await?;
        (status.app_context, status.revision) = (Some(actx.name_any()), Some(actx.spec.revision));
    }
    for c in status.clusters.iter_mut().filter(|c| c.state == ClusterState::NotGranted) {
        (c.kubeconfig_secret, c.certificate_expiry) = (None, None);
    }
    Ok(())
}

/// Whether rsync applied everything on `cluster`, or what it says.
fn applied_on(actx: &AppContext, cluster: &str) -> Result<(), String> {
    let status = actx.status.as_ref().and_then(|s| s.apps.iter().find(|a| a.name == context::APP));
    let Some(c) = status.and_then(|a| a.clusters.iter().find(|c| c.cluster == cluster)) else {
        return Err(format!("waiting for rsync to apply {}", actx.name_any()));
    };
    match c.failed.first() {
        Some(f) => Err(f.clone()),
        None if c.deployed < c.resources => Err(format!("applied {}/{}", c.deployed, c.resources)),
        None => Ok(()),
    }
}

/// Deletes the users (CSRs left on the members, hub Secrets) of the clusters `gone` picks.
async fn forget_users(ctx: &Context, lc: &LogicalCloud, gone: impl Fn(&str) -> bool) -> Result<(), Error> {
    let secrets = Api::<Secret>::namespaced(ctx.hub.clone(), &lc.namespace().unwrap_or_default());
    let selector = format!("{}={}", user_secret::LOGICAL_CLOUD, lc.name_any());
    for s in secrets.list_metadata(&ListParams::default().labels(&selector)).await? {
        let Some(cluster) = s.labels().get(user_secret::CLUSTER).filter(|c| gone(c)) else { continue };
        match ctx.clusters.get(&ObjectRef::new(cluster)) {
            Some(c) => user::forget(&ctx.hub, &ctx.members, lc, &c).await?,
            None => {
                let _ = secrets.delete(&s.name_any(), &Default::default()).await;
            }
        }
    }
    Ok(())
}

/// The DIGs still using `lc`: they name it and are not terminated.
async fn users_of(ctx: &Context, lc: &LogicalCloud) -> Result<Vec<String>, Error> {
    let digs = Api::<DeploymentIntentGroup>::namespaced(ctx.hub.clone(), &lc.namespace().unwrap_or_default());
    Ok(digs
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|d| d.spec.logical_cloud == lc.name_any())
        .filter(|d| d.status.as_ref().is_some_and(|s| s.app_context.is_some() && s.state != DigState::Terminated))
        .map(|d| d.name_any())
        .collect())
}

/// EMCO terminate: refused while a DIG uses the logical cloud; else everything it made on the
/// members goes (through rsync), then its users.
async fn terminate(ctx: &Context, lc: &LogicalCloud, status: &mut LogicalCloudStatus) -> Result<Action, Error> {
    let generation = lc.metadata.generation;
    let digs = users_of(ctx, lc).await?;
    if !digs.is_empty() {
        let message = format!("DIGs still use this logical cloud: {}; terminate them first", digs.join(", "));
        let refused = condition::new(ConditionType::Terminated, false, "InUse", message, generation);
        condition::set(&mut status.conditions, refused);
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    // Every revision rsync holds, recorded in the status or not (a crash between making one and
    // recording it), is terminated.
    let (ns, owner) = (lc.namespace().unwrap_or_default(), objects::owner(lc));
    let held = revisions::held(&ctx.hub, &ns, &owner).await?;
    for actx in &held {
        revisions::terminate(&ctx.hub, actx).await?;
    }
    let busy: Vec<String> = held
        .iter()
        .filter(|a| a.status.as_ref().is_none_or(|s| s.state != ContextState::Terminated))
        .map(|a| a.name_any())
        .collect();
    if !busy.is_empty() {
        let message = format!("removing what {} applied", busy.join(", "));
        set(status, State::Terminating, false, "Terminating", message.clone(), generation);
        let cond = condition::new(ConditionType::Terminated, false, "Terminating", message, generation);
        condition::set(&mut status.conditions, cond);
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    forget_users(ctx, lc, |_| true).await?;
    revisions::forget_released(&ctx.hub, &ns, &owner, None).await?;
    status.app_context = None;
    for c in &mut status.clusters {
        (c.kubeconfig_secret, c.certificate_expiry) = (None, None);
    }
    let message = "everything the logical cloud made on its clusters is gone".to_string();
    set(status, State::Terminated, false, "Terminated", message.clone(), generation);
    condition::set(
        &mut status.conditions,
        condition::new(ConditionType::Terminated, true, "Terminated", message, generation),
    );
    Ok(Action::await_change())
}

/// A Standard/Privileged logical cloud being deleted: terminated first, then let go.
async fn delete(ctx: &Context, api: &Api<LogicalCloud>, lc: &LogicalCloud) -> Result<Action, Error> {
    if !finalizer::has(lc, FINALIZER) {
        return Ok(Action::await_change());
    }
    let mut status = lc.status.clone().unwrap_or_default();
    let action = terminate(ctx, lc, &mut status).await?;
    if status.state == Some(State::Terminated) {
        finalizer::remove(api, lc, FINALIZER).await?;
        return Ok(Action::await_change());
    }
    write_status(api, lc, lc.status.as_ref(), &status).await?;
    Ok(action)
}

fn error_policy(lc: Arc<DeserializeGuard<LogicalCloud>>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(logical_cloud = %lc.name_any(), %error, "logical cloud reconcile failed");
    Action::requeue(ctx.backoff.retry_after(&format!("lc/{}", lc.name_any())))
}
