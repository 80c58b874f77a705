//! orchestrator: the distributed application scheduler. The DIG reconciler turns the lifecycle
//! fields of a DeploymentIntentGroup into AppContext revisions through the pipeline
//! resolve → validate → place → plan → store, and mirrors rsync's progress into the DIG's status.

pub mod intents;
pub mod lifecycle;
pub mod place;
pub mod plan;
pub mod project;
pub mod recorded;
pub mod resolve;
pub mod revisions;
pub mod status;
pub mod validate;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::PartialObjectMeta;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::api::condition;
use crate::api::condition::ConditionType;
use crate::api::dcm::LogicalCloud;
use crate::api::dtc::TrafficIntent;
use crate::api::gac::GenericActionIntent;
use crate::api::hpa::HpaIntent;
use crate::api::ncm::{ProviderNetwork, VirtualNetwork};
use crate::api::orchestrator::{
    CompositeApp, CompositeProfile, DeploymentIntentGroup as Dig, DeploymentIntentGroupStatus, DigState,
    GenericPlacementIntent, Revision,
};
use crate::api::ovnaction::NetworkIntent;
use crate::api::rsync::{AppContext, Operation};
use crate::finalizer;
use crate::reconcile::{Backoff, write_status};
use lifecycle::{Read, Step};

const FINALIZER: &str = "orchestrator.emco.io/terminate";

/// Why a revision could not be made; the stage names the condition reason.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Resolve(Box<resolve::ResolveError>),
    #[error(transparent)]
    Validate(#[from] validate::ValidateError),
    #[error(transparent)]
    Place(#[from] place::PlaceError),
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    #[error(transparent)]
    Controller(#[from] intents::IntentError),
    #[error("rollback to revision {revision}: {reason}")]
    RollbackUnavailable { revision: u32, reason: String },
    #[error("planning failed: {0}")]
    Crashed(String),
}

impl From<resolve::ResolveError> for PipelineError {
    fn from(e: resolve::ResolveError) -> Self {
        PipelineError::Resolve(Box::new(e))
    }
}

impl PipelineError {
    pub fn reason(&self) -> &'static str {
        match self {
            PipelineError::Resolve(e) => e.reason(),
            PipelineError::Validate(e) => e.reason(),
            PipelineError::Place(e) => e.reason(),
            PipelineError::Plan(e) => e.reason(),
            PipelineError::Controller(e) => e.reason,
            PipelineError::RollbackUnavailable { .. } => "RevisionNotFound",
            PipelineError::Crashed(_) => "PlanFailed",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("hub API: {0}")]
    Hub(#[from] kube::Error),
}

/// What the DIG reconciler needs: the hub, the cluster inventory, chart repositories, and the
/// bundles of earlier revisions (rollback).
pub struct Context {
    pub hub: kube::Client,
    pub clusters: Store<crate::api::clm::Cluster>,
    /// For Helm HTTP repositories (fenced: see `render::repository::client`).
    pub http: reqwest::Client,
    /// Where charts may be fetched from for tenants.
    pub fence: Arc<crate::render::fence::Fence>,
    /// Charts read from Helm repositories in the last minute.
    pub repository_charts: crate::render::repository::RecentCharts,
    pub recorder: kube::runtime::events::Recorder,
    pub bundles: Arc<crate::rsync::bundle::BundleCache>,
    pub backoff: Backoff,
    pub recorded: recorded::Recorded,
}

pub async fn run(ctx: Arc<Context>) {
    let hub = ctx.hub.clone();
    // A DIG that cannot be read (written before a schema bound existed, say) is reported and
    // skipped; it must not stop the watch of every other DIG.
    let controller = Controller::new(Api::<DeserializeGuard<Dig>>::all(hub.clone()), watcher::Config::default());
    let digs = controller.store();
    let (s1, s2, s3, s4, s5, s6) = (digs.clone(), digs.clone(), digs.clone(), digs.clone(), digs.clone(), digs.clone());
    let (s7, s8, s9, s10, s11) = (digs.clone(), digs.clone(), digs.clone(), digs.clone(), digs);
    // Chart packages and values files are ConfigMaps: a change wakes the DIGs of its namespace.
    let configmaps = watcher(Api::<PartialObjectMeta<ConfigMap>>::all(hub.clone()), watcher::Config::default())
        .default_backoff()
        .touched_objects();
    controller
        .owns(Api::<AppContext>::all(hub.clone()), watcher::Config::default())
        .watches(Api::<CompositeApp>::all(hub.clone()), watcher::Config::default(), move |o| {
            referencing(&s1, &o, |d, n| d.spec.composite_app == n)
        })
        .watches(Api::<CompositeProfile>::all(hub.clone()), watcher::Config::default(), move |o| {
            referencing(&s2, &o, |d, n| d.spec.composite_profile.as_deref() == Some(n))
        })
        .watches(Api::<GenericPlacementIntent>::all(hub.clone()), watcher::Config::default(), move |o| {
            referencing(&s3, &o, |d, n| d.spec.intents.values().any(|i| i == n))
        })
        .watches(Api::<GenericActionIntent>::all(hub.clone()), watcher::Config::default(), move |o| {
            referencing(&s6, &o, |d, n| d.spec.intents.get("gac").is_some_and(|i| i == n))
        })
        .watches(Api::<HpaIntent>::all(hub.clone()), watcher::Config::default(), move |o| {
            referencing(&s7, &o, |d, n| d.spec.intents.get("hpa").is_some_and(|i| i == n))
        })
        .watches(Api::<NetworkIntent>::all(hub.clone()), watcher::Config::default(), move |o| {
            referencing(&s8, &o, |d, n| d.spec.intents.get("ovnaction").is_some_and(|i| i == n))
        })
        .watches(Api::<TrafficIntent>::all(hub.clone()), watcher::Config::default(), move |o| {
            referencing(&s9, &o, |d, n| d.spec.intents.get("dtc").is_some_and(|i| i == n))
        })
        // A cluster's networks decide whether a network intent can be carried out.
        .watches(Api::<VirtualNetwork>::all(hub.clone()), watcher::Config::default(), move |_| network_users(&s10))
        .watches(Api::<ProviderNetwork>::all(hub.clone()), watcher::Config::default(), move |_| network_users(&s11))
        .watches(Api::<LogicalCloud>::all(hub), watcher::Config::default(), move |o| {
            referencing(&s4, &o, |d, n| d.spec.logical_cloud == n)
        })
        .watches_stream(configmaps, move |cm: PartialObjectMeta<ConfigMap>| referencing(&s5, &cm, |_, _| true))
        .shutdown_on_signal()
        .run(|o, c| crate::metrics::reconciled("orchestrator", reconcile(o, c)), error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// The DIGs with a network intent.
fn network_users(digs: &Store<DeserializeGuard<Dig>>) -> Vec<ObjectRef<DeserializeGuard<Dig>>> {
    let users =
        digs.state().into_iter().filter(|d| d.0.as_ref().is_ok_and(|d| d.spec.intents.contains_key("ovnaction")));
    users.map(|d| ObjectRef::from_obj(d.as_ref())).collect()
}

/// The DIGs in `input`'s namespace that name it.
fn referencing<K: Resource>(
    digs: &Store<DeserializeGuard<Dig>>,
    input: &K,
    names: impl Fn(&Dig, &str) -> bool,
) -> Vec<ObjectRef<DeserializeGuard<Dig>>> {
    let (ns, name) = (input.meta().namespace.clone(), input.meta().name.clone().unwrap_or_default());
    digs.state()
        .into_iter()
        .filter(|d| d.0.as_ref().is_ok_and(|d| d.metadata.namespace == ns && names(d, &name)))
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

async fn reconcile(guard: Arc<DeserializeGuard<Dig>>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(dig) = crate::reconcile::readable(&guard, Some(&ctx.recorder)).await else {
        return Ok(Action::await_change());
    };
    // The watch has not delivered this replica's last status write yet: its event wakes the DIG.
    if ctx.recorded.behind(&dig) {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let api = Api::<Dig>::namespaced(ctx.hub.clone(), &dig.namespace().unwrap_or_default());
    let current = revisions::current_context(&ctx, &dig).await?;
    if let Some(c) = &current {
        revisions::pass_lifecycle(&ctx, c, &dig).await?;
    }
    // Decide (pure), reading the inputs only when the decision needs them.
    let mut read = Read::NotYet;
    let mut inputs = None;
    let step = loop {
        match lifecycle::decide(&dig, current.as_ref(), &read) {
            Step::ReadInputs => {
                let started = std::time::Instant::now();
                let resolved = resolve::resolve(&ctx, &dig).await;
                tracing::debug!(dig = %key(&dig), elapsed = ?started.elapsed(), "inputs read");
                read = match &resolved {
                    Ok(i) => Read::Hash(input_hash(i)),
                    Err(e) if e.is_transient() => Read::Transient,
                    Err(_) => Read::Refused,
                };
                inputs = Some(resolved);
            }
            step => break step,
        }
    };
    match step {
        Step::TerminateBeforeDelete => {
            revisions::terminate(&ctx.hub, current.as_ref().expect("a live revision to terminate")).await?;
            let mut status = dig.status.clone().unwrap_or_default();
            status::mirror(&mut status, current.as_ref(), dig.metadata.generation);
            write_status(&api, dig.as_ref(), dig.status.as_ref(), &status).await?;
            return Ok(Action::requeue(Duration::from_secs(2)));
        }
        Step::Release => {
            finalizer::remove(&api, dig.as_ref(), FINALIZER).await?;
            return Ok(Action::await_change());
        }
        _ => {}
    }
    finalizer::add(&api, dig.as_ref(), FINALIZER).await?;
    let mut status = dig.status.clone().unwrap_or_default();
    status.observed_generation = dig.metadata.generation;
    let action = execute(&ctx, &dig, step, current, inputs.map(|i| i.map(|i| (i, read))), &mut status).await?;
    // A pass that ends where the last one did writes nothing (mirror, then refuse, flips Ready).
    if let Some(before) = &dig.status {
        condition::keep_times(&before.conditions, &mut status.conditions);
    }
    write_status(&api, dig.as_ref(), dig.status.as_ref(), &status).await?;
    ctx.recorded.wrote(&dig, status.revision);
    // Best effort, after the new revision is recorded: a failure here never holds the DIG back.
    let mut trimmed = status.clone();
    match revisions::forget_old_revisions(&ctx, &dig, &mut trimmed).await {
        Ok(()) => write_status(&api, dig.as_ref(), Some(&status), &trimmed).await?,
        Err(e) => tracing::warn!(dig = %key(&dig), error = %e, "deleting revisions beyond the history failed"),
    }
    Ok(action)
}

/// Carries out `step` for a DIG that is not being deleted; returns when to look again.
async fn execute(
    ctx: &Context,
    dig: &Dig,
    step: Step,
    current: Option<AppContext>,
    inputs: Option<Result<(resolve::Inputs, Read), resolve::ResolveError>>,
    status: &mut DeploymentIntentGroupStatus,
) -> Result<Action, Error> {
    let generation = dig.metadata.generation;
    let later = Action::requeue(Duration::from_secs(300));
    if step == Step::AwaitApproval {
        let cond =
            condition::new(ConditionType::Approved, false, "NotApproved", "set spec.approved to deploy", generation);
        condition::set(&mut status.conditions, cond);
        if current.is_none() {
            status.state = DigState::Created;
            let cond = condition::new(ConditionType::Ready, false, "NotApproved", "waiting for approval", generation);
            condition::set(&mut status.conditions, cond);
        }
        return Ok(Action::await_change());
    }
    condition::set(
        &mut status.conditions,
        condition::new(ConditionType::Approved, true, "Approved", "approved", generation),
    );
    // Progress of the current revision first; a new one below replaces it.
    status::mirror(status, current.as_ref(), generation);
    match (&step, inputs) {
        (Step::Terminate, _) => {
            revisions::terminate(&ctx.hub, current.as_ref().expect("a live revision to terminate")).await?;
            status::mirror(status, current.as_ref(), generation);
            Ok(later)
        }
        (Step::RollBack(target), _) => match revisions::rollback_plan(ctx, dig, status, *target).await {
            Ok(plan) => advance(ctx, dig, current.as_ref(), status, &plan, &lifecycle::rollback_hash(*target)).await,
            Err(e) => Ok(refuse(ctx, dig, current.as_ref(), status, e).await),
        },
        (Step::RefuseRollback(target), _) => {
            let e = revisions::not_in_history(status, *target);
            Ok(refuse(ctx, dig, current.as_ref(), status, e).await)
        }
        (Step::RetryInputs, Some(Err(e))) => {
            // What is deployed stays; say why nothing newer can be read, and retry with backoff.
            let cond = condition::new(ConditionType::InputsResolved, false, e.reason(), e.to_string(), generation);
            condition::set(&mut status.conditions, cond);
            tracing::warn!(dig = %key(dig), error = %e, "reading the DIG's inputs failed");
            Ok(Action::requeue(ctx.backoff.retry_after(&key(dig))))
        }
        (Step::Refuse, Some(Err(e))) => Ok(refuse(ctx, dig, current.as_ref(), status, e.into()).await),
        (Step::UpToDate | Step::NewRevision, Some(Ok((inputs, read)))) => {
            let resolved =
                condition::new(ConditionType::InputsResolved, true, "Resolved", "every input was read", generation);
            condition::set(&mut status.conditions, resolved);
            ctx.backoff.succeeded(&key(dig));
            if step == Step::UpToDate {
                return Ok(later);
            }
            let Read::Hash(hash) = read else { return Ok(later) };
            let revision = status.revision.unwrap_or(0) + 1;
            let started = std::time::Instant::now();
            match plan_revision(Arc::new(inputs), revision).await {
                Ok(plan) => {
                    tracing::debug!(dig = %key(dig), revision, elapsed = ?started.elapsed(), "revision planned");
                    let stored = advance(ctx, dig, current.as_ref(), status, &plan, &hash).await;
                    tracing::debug!(dig = %key(dig), revision, elapsed = ?started.elapsed(), "revision stored");
                    stored
                }
                Err(e) => Ok(refuse(ctx, dig, current.as_ref(), status, e).await),
            }
        }
        _ => Ok(later),
    }
}

/// Records refused input; nothing new reaches the members. A change to the DIG or anything it
/// names wakes the DIG again; the requeue covers what is not watched (chart repositories).
async fn refuse(
    ctx: &Context,
    dig: &Dig,
    current: Option<&AppContext>,
    status: &mut DeploymentIntentGroupStatus,
    error: PipelineError,
) -> Action {
    status::refused(status, current, &error, dig.metadata.generation);
    publish(ctx, dig, EventType::Warning, error.reason(), error.to_string()).await;
    Action::requeue(Duration::from_secs(60))
}

/// Stores `plan` (made from inputs with `hash`) as the next revision and records it in the DIG
/// status; the revision it replaces is marked superseded after the new one exists.
async fn advance(
    ctx: &Context,
    dig: &Dig,
    current: Option<&AppContext>,
    status: &mut DeploymentIntentGroupStatus,
    plan: &plan::Plan,
    hash: &str,
) -> Result<Action, Error> {
    let mut replaces = current.filter(|c| c.spec.operation != Operation::Terminate).cloned();
    let mut revision = status.revision.unwrap_or(0) + 1;
    let mut superseded = Vec::new();
    let context = loop {
        let apps = revisions::write_bundles(&ctx.hub, &ctx.bundles, dig, plan, revision).await?;
        let replaced = replaces.as_ref().map(|c| c.name_any());
        match revisions::create_context(&ctx.hub, dig, plan, apps, revision, replaced, hash).await? {
            revisions::Stored::Context(c) => break c,
            revisions::Stored::Taken(live) => {
                tracing::info!(dig = %key(dig), revision, "revision made from older inputs found; going on after it");
                // In the history, so that it is forgotten in its turn.
                let (app_context, generation) = (live.name_any(), dig.metadata.generation.unwrap_or(0));
                status.history.push(Revision { revision, app_context, generation, time: Time(Timestamp::now()) });
                superseded.extend(replaces.replace(live.clone()).map(|old| (old, live.name_any())));
                revision += 1;
            }
        }
    };
    // Marked once the new revision exists: rsync takes a context that a newer one replaces as
    // superseded already, and writing the old context (every cluster's status) took 0.3-0.4 s
    // at 50 clusters, on the update's path.
    superseded.extend(replaces.map(|old| (old, context.name_any())));
    for (old, by) in &superseded {
        revisions::supersede(ctx, old, by).await?;
    }
    status.revision = Some(revision);
    status.app_context = Some(context.name_any());
    status.history.push(Revision {
        revision,
        app_context: context.name_any(),
        generation: dig.metadata.generation.unwrap_or(0),
        time: Time(Timestamp::now()),
    });
    let placed = plan
        .apps
        .iter()
        .map(|a| {
            format!(
                "{} on {}",
                a.name,
                a.bundles.iter().flat_map(|b| &b.clusters).cloned().collect::<Vec<_>>().join(",")
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let placed = format!("{placed}; controllers: {}", plan.controllers.join(", "));
    condition::set(
        &mut status.conditions,
        condition::new(ConditionType::Placed, true, "Placed", placed, dig.metadata.generation),
    );
    status.controllers = plan.controllers.clone();
    status::mirror(status, Some(&context), dig.metadata.generation);
    let note = format!("revision {} in AppContext {}", context.spec.revision, context.name_any());
    publish(ctx, dig, EventType::Normal, "RevisionCreated", note).await;
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Stages 2 to 5: validate, place, the placement controllers, render, the action controllers and
/// bundle. All but the external controllers' calls are pure.
async fn plan_revision(inputs: Arc<resolve::Inputs>, revision: u32) -> Result<plan::Plan, PipelineError> {
    validate::validate(&inputs)?;
    let candidates = place::place(&inputs.placement, &inputs.clusters, &inputs.logical_cloud.name_any())?;
    let stage = intents::Stage {
        intents: &inputs.intents,
        about: about(&inputs, revision),
        clusters: facts(&inputs),
        namespace: inputs.logical_cloud.spec.namespace.clone().unwrap_or_else(|| "default".into()),
    };
    let mut ran = vec!["genericPlacementIntent".to_string()];
    let placement = stage.place(candidates, &mut ran).await?.choose();
    // Rendering runs charts' code: off the async workers (and, in the operator, in a child process).
    let rendering = inputs.clone();
    let placed = tokio::task::spawn_blocking(move || plan::render(&rendering, &placement, revision))
        .await
        .map_err(|e| PipelineError::Crashed(e.to_string()))??;
    let placed = stage.act(placed, &mut ran).await?;
    Ok(plan::bundle(&inputs, placed, ran))
}

/// Who external controllers are told is asking.
fn about(inputs: &resolve::Inputs, revision: u32) -> intents::external::About {
    intents::external::About {
        project: inputs.dig.namespace().unwrap_or_default(),
        deployment_intent_group: inputs.dig.name_any(),
        composite_app: inputs.dig.spec.composite_app.clone(),
        logical_cloud: inputs.dig.spec.logical_cloud.clone(),
        revision,
        ..Default::default()
    }
}

/// What placement controllers know of the logical cloud's clusters.
fn facts(inputs: &resolve::Inputs) -> Vec<intents::ClusterFacts> {
    inputs
        .clusters
        .iter()
        .map(|c| {
            let status = c.status.clone().unwrap_or_default();
            intents::ClusterFacts {
                name: c.name_any(),
                labels: c.labels().clone(),
                kubernetes_version: status.kubernetes_version,
                nodes: status.nodes,
                kv: c.spec.kv.clone(),
                provider: c.spec.provider.clone(),
                api_versions: status.api_versions,
            }
        })
        .collect()
}

/// DIG spec fields that steer the lifecycle instead of shaping what is deployed.
const LIFECYCLE_FIELDS: [&str; 5] = ["approved", "state", "stop", "rollbackTo", "rollout"];

/// A hash of everything that shapes what is deployed: the DIG's spec less its lifecycle fields (so
/// a field added to the DIG counts unless it is listed there), the composite app, profile and
/// values files, the placement intent and every chart's bytes. Not the clusters: placement is
/// decided once per revision, so a cluster label change alone moves nothing.
fn input_hash(inputs: &resolve::Inputs) -> String {
    let mut dig = serde_json::to_value(&inputs.dig.spec).expect("a DIG spec serializes");
    if let Some(fields) = dig.as_object_mut() {
        fields.retain(|k, _| !LIFECYCLE_FIELDS.contains(&k.as_str()));
    }
    let charts: BTreeMap<&String, String> =
        inputs.charts.iter().map(|(app, tgz)| (app, crate::hex::digest(tgz, 64))).collect();
    let intents: Vec<serde_json::Value> = inputs
        .intents
        .iter()
        .map(|i| match i {
            intents::Intent::Gac { name, intent, files } => {
                // File data by digest: a Secret's content never leaves in clear, even into a hash input.
                let files: Vec<(String, String)> = files
                    .iter()
                    .map(|(r, data)| (format!("{}/{}/{}", r.secret, r.name, r.key), crate::hex::digest(data, 64)))
                    .collect();
                json!({"gac": name, "spec": intent.spec, "files": files})
            }
            intents::Intent::Hpa { name, intent } => json!({"hpa": name, "spec": intent.spec}),
            intents::Intent::Ovn { name, intent, networks } => {
                json!({"ovnaction": name, "spec": intent.spec, "networks": networks})
            }
            intents::Intent::Dtc { name, intent } => json!({"dtc": name, "spec": intent.spec}),
            intents::Intent::External { controller, intent, spec } => {
                json!({"controller": controller, "intent": intent, "spec": spec})
            }
        })
        .collect();
    let all = json!([
        dig,
        intents,
        inputs.composite_app.spec,
        inputs.profile.as_ref().map(|p| &p.spec),
        inputs.values_files,
        inputs.placement.spec,
        charts,
    ]);
    crate::hex::digest(all.to_string().as_bytes(), 16)
}

async fn publish(ctx: &Context, dig: &Dig, type_: EventType, reason: &str, note: String) {
    crate::reconcile::publish(&ctx.recorder, &dig.object_ref(&()), type_, reason, "Reconcile", note).await;
}

fn key(dig: &Dig) -> String {
    format!("dig/{}/{}", dig.namespace().unwrap_or_default(), dig.name_any())
}

fn error_policy(dig: Arc<DeserializeGuard<Dig>>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = format!("dig/{}/{}", dig.namespace().unwrap_or_default(), dig.name_any());
    tracing::warn!(dig = %key, %error, "deployment intent group reconcile failed");
    Action::requeue(ctx.backoff.retry_after(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dig_field_but_the_lifecycle_ones_makes_a_new_revision() {
        let base = plan::tests::inputs();
        let hash = input_hash(&base);
        let with = |patch: serde_json::Value| {
            let mut i = base.clone();
            let mut spec = serde_json::to_value(&i.dig.spec).unwrap();
            crate::render::merge(&mut spec, &patch);
            i.dig.spec = serde_json::from_value(spec).unwrap();
            input_hash(&i)
        };
        for lifecycle in [
            json!({"approved": true}),
            json!({"state": "Terminated"}),
            json!({"stop": true}),
            json!({"rollbackTo": 3}),
            json!({"rollout": {"maxConcurrentClusters": 1}}),
        ] {
            assert_eq!(with(lifecycle.clone()), hash, "{lifecycle} must not make a revision");
        }
        for shaping in
            [json!({"release": "other"}), json!({"compositeProfile": "p2"}), json!({"intents": {"gac": "g"}})]
        {
            assert_ne!(with(shaping.clone()), hash, "{shaping} must make a revision");
        }
    }
}
