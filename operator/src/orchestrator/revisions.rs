//! Revisions: a DIG's AppContexts and their bundles. Stage 5, store, writes a plan as bundle
//! Secrets and the AppContext of a new revision, both owned by the DIG (idempotent: a retry after
//! a crash finds what it wrote and goes on). Also here: reading a revision's plan back (rollback),
//! superseding, terminating and forgetting revisions. Bundles are read through
//! `rsync::bundle::BundleCache` only.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::{BoxFuture, FutureExt};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use super::plan::{self, Plan};
use super::{Context, PipelineError};
use crate::api::dcm::{LogicalCloud, LogicalCloudType};
use crate::api::labels;
use crate::api::orchestrator::{DeploymentIntentGroup as Dig, DeploymentIntentGroupStatus};
use crate::api::rsync::{
    AppContext, AppContextSpec, BundleRef, ContextApp, ContextCluster, MAX_LISTED, Operation, Owner, ResourceRef,
};
use crate::finalizer;
use crate::rsync::{self, bundle};

/// Name of the AppContext of `revision` of `dig`.
pub fn context_name(dig: &str, revision: u32) -> String {
    format!("{dig}-{revision}")
}

/// Annotation on an AppContext: the hash of the DIG inputs it was made from.
pub const INPUT_HASH: &str = "emco.io/input-hash";

/// What `store` found or made.
pub enum Stored {
    /// The AppContext of the revision, made now or by an earlier try from the same inputs.
    Context(AppContext),
    /// The revision exists, made from other inputs (a crash before the DIG status recorded it):
    /// it is live and the plan goes into a later revision.
    Taken(AppContext),
}

/// Bundle Secrets written at once: a revision of 20 apps in one round, not three, on the way to
/// the first object on a member. At most 32 parts of 512 KiB in flight per DIG.
const BUNDLE_WRITES: usize = 32;

/// Writes the bundles of `plan` as those of revision `revision` of `dig` (what an earlier try
/// wrote already is not written again), keeps them in rsync's `cache`, and returns the context's
/// apps naming them.
pub async fn write_bundles(
    hub: &Client,
    cache: &bundle::BundleCache,
    dig: &Dig,
    plan: &Plan,
    revision: u32,
) -> kube::Result<Vec<ContextApp>> {
    let ns = dig.namespace().unwrap_or_default();
    let selector = format!("{}={},{}={revision}", labels::DIG, dig.name_any(), labels::REVISION);
    let written: BTreeSet<String> = Api::<Secret>::namespaced(hub.clone(), &ns)
        .list_metadata(&kube::api::ListParams::default().labels(&selector))
        .await?
        .into_iter()
        .map(|s| s.name_any())
        .collect();
    let mut apps = Vec::new();
    let (mut unwritten, mut kept) = (Vec::new(), Vec::new());
    for app in &plan.apps {
        let (mut clusters, mut bundles) = (Vec::new(), Vec::new());
        for planned in &app.bundles {
            let name = format!("{}-r{revision}-{}-{}", dig.name_any(), app.name, planned.hash);
            let parts = bundle::encode(&planned.resources);
            let mut on = planned.clusters.clone();
            on.sort();
            let bundle = BundleRef {
                name: name.clone(),
                parts: parts.len() as u32,
                resources: planned.resources.len() as u32,
                digest: Some(bundle::digest(&parts)),
                clusters: on,
            };
            let named = parts.into_iter().enumerate().map(|(i, part)| (bundle::part_name(&name, i as u32), part));
            unwritten.extend(named.filter(|(name, _)| !written.contains(name)));
            kept.push((name, planned.resources.clone()));
            clusters.extend(planned.clusters.iter().map(|c| ContextCluster { cluster: c.clone(), bundle: None }));
            bundles.push(bundle);
        }
        clusters.sort_by(|a, b| a.cluster.cmp(&b.cluster));
        let all: BTreeSet<ResourceRef> =
            app.bundles.iter().flat_map(|b| b.resources.iter()).map(ResourceRef::of).collect();
        let unlisted = all.len().saturating_sub(MAX_LISTED) as u32;
        let resources = all.into_iter().take(MAX_LISTED).collect();
        apps.push(ContextApp {
            name: app.name.clone(),
            depends_on: app.depends_on.clone(),
            clusters,
            bundles,
            resources,
            unlisted,
        });
    }
    // Side by side (a revision writes one per app).
    let owner = dig.controller_owner_ref(&()).expect("DIGs have a uid");
    let writes: Vec<BoxFuture<kube::Result<()>>> = unwritten
        .iter()
        .map(|(name, part)| create_part(hub, owner.clone(), owner_labels(dig, revision), &ns, name, part).boxed())
        .collect();
    futures::stream::iter(writes).buffer_unordered(BUNDLE_WRITES).try_collect::<Vec<()>>().await?;
    // Only what the hub holds: rsync reads these once a context names them.
    kept.into_iter().for_each(|(name, resources)| cache.keep(&ns, &name, resources));
    Ok(apps)
}

/// Creates revision `revision` of `dig`, made from inputs with hash `hash`, whose `apps` name
/// the bundles [`write_bundles`] wrote.
pub async fn create_context(
    hub: &Client,
    dig: &Dig,
    plan: &Plan,
    apps: Vec<ContextApp>,
    revision: u32,
    replaces: Option<String>,
    hash: &str,
) -> kube::Result<Stored> {
    let ns = dig.namespace().unwrap_or_default();
    let operation = if replaces.is_some() { Operation::Update } else { Operation::Instantiate };
    let context = AppContext {
        metadata: ObjectMeta {
            name: Some(context_name(&dig.name_any(), revision)),
            namespace: Some(ns.clone()),
            labels: Some(owner_labels(dig, revision)),
            annotations: Some(BTreeMap::from([(INPUT_HASH.to_string(), hash.to_string())])),
            owner_references: Some(vec![dig.controller_owner_ref(&()).expect("DIGs have a uid")]),
            finalizers: Some(vec![rsync::FINALIZER.into()]),
            ..Default::default()
        },
        spec: AppContextSpec {
            owner: Owner { kind: "DeploymentIntentGroup".into(), name: dig.name_any() },
            revision,
            operation,
            stop: false,
            replaces,
            superseded_by: None,
            namespace: plan.namespace.clone(),
            logical_cloud: plan.logical_cloud.clone(),
            apps,
            rollout: dig.spec.rollout.clone(),
        },
        status: None,
    };
    let api = Api::<AppContext>::namespaced(hub.clone(), &ns);
    let found = |existing: AppContext| {
        let same = existing.annotations().get(INPUT_HASH).map(String::as_str) == Some(hash);
        if same { Stored::Context(existing) } else { Stored::Taken(existing) }
    };
    // Read first: a retry after a crash finds it without a write (a refused create is a write too).
    if let Some(existing) = api.get_opt(&context.name_any()).await? {
        return Ok(found(existing));
    }
    match api.create(&PostParams::default(), &context).await {
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(found(api.get(&context.name_any()).await?)),
        other => other.map(Stored::Context),
    }
}

fn owner_labels(dig: &Dig, revision: u32) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::MANAGED_BY.into(), labels::MANAGER.into()),
        (labels::DIG.into(), dig.name_any()),
        (labels::REVISION.into(), revision.to_string()),
    ])
}

/// Writes one bundle part, owned by `owner` (a retry finds it written).
pub async fn create_part(
    hub: &Client,
    owner: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    labels: BTreeMap<String, String>,
    ns: &str,
    name: &str,
    data: &[u8],
) -> kube::Result<()> {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            labels: Some(labels),
            owner_references: Some(vec![owner]),
            finalizers: Some(vec![rsync::FINALIZER.into()]),
            ..Default::default()
        },
        type_: Some(bundle::SECRET_TYPE.into()),
        immutable: Some(true),
        data: Some([(bundle::DATA_KEY.to_string(), ByteString(data.to_vec()))].into()),
        ..Default::default()
    };
    match Api::<Secret>::namespaced(hub.clone(), ns).create(&PostParams::default(), &secret).await {
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()), // same name, same content: written before
        other => other.map(|_| ()),
    }
}

/// Revisions kept (their AppContexts and bundles), as Helm's default history.
const HISTORY: usize = 10;

/// EMCO rollback: the plan of an earlier revision still in the history, read from its bundles.
pub async fn rollback_plan(
    ctx: &Context,
    dig: &Dig,
    status: &DeploymentIntentGroupStatus,
    target: u32,
) -> Result<plan::Plan, PipelineError> {
    let unavailable = |reason: String| PipelineError::RollbackUnavailable { revision: target, reason };
    let entry = status.history.iter().find(|h| h.revision == target).ok_or_else(|| not_in_history(status, target))?;
    let ns = dig.namespace().unwrap_or_default();
    let old = Api::<AppContext>::namespaced(ctx.hub.clone(), &ns)
        .get_opt(&entry.app_context)
        .await
        .map_err(|e| unavailable(e.to_string()))?
        .ok_or_else(|| unavailable(format!("AppContext {} is gone", entry.app_context)))?;
    // The DIG's logical cloud as it is now decides the credentials and the clusters, not the
    // one the old revision was made for.
    let lc = Api::<LogicalCloud>::namespaced(ctx.hub.clone(), &ns)
        .get_opt(&dig.spec.logical_cloud)
        .await
        .map_err(|e| unavailable(e.to_string()))?
        .ok_or_else(|| unavailable(format!("logical cloud {} is gone", dig.spec.logical_cloud)))?;
    let usable = crate::orchestrator::resolve::usable_clusters(&lc)
        .ok_or_else(|| unavailable(format!("logical cloud {} is not ready", dig.spec.logical_cloud)))?;
    let mut apps = Vec::new();
    for app in &old.spec.apps {
        let mut bundles: Vec<(String, plan::PlannedBundle)> = Vec::new();
        for (cluster, bundle) in app.placements().into_iter().filter(|(c, _)| usable.iter().any(|u| u == c)) {
            let bundle =
                bundle.ok_or_else(|| unavailable(format!("app {} names no bundle for {cluster}", app.name)))?;
            if let Some((_, b)) = bundles.iter_mut().find(|(name, _)| *name == bundle.name) {
                b.clusters.push(cluster.to_string());
                continue;
            }
            let resources = ctx.bundles.load(&ctx.hub, &ns, bundle).await.map_err(|e| unavailable(e.to_string()))?;
            let planned = plan::PlannedBundle::new(resources.clone(), vec![cluster.to_string()]);
            bundles.push((bundle.name.clone(), planned));
        }
        let bundles = bundles.into_iter().map(|(_, b)| b).collect();
        apps.push(plan::PlannedApp { name: app.name.clone(), depends_on: app.depends_on.clone(), bundles });
    }
    let controllers = vec![format!("rollback to revision {target}")];
    let logical_cloud = (lc.spec.type_ != LogicalCloudType::Admin).then(|| lc.name_any());
    Ok(plan::Plan { namespace: old.spec.namespace.clone(), logical_cloud, apps, controllers })
}

/// Revision `target` is not among those kept.
pub fn not_in_history(status: &DeploymentIntentGroupStatus, target: u32) -> PipelineError {
    let kept: Vec<String> = status.history.iter().map(|h| h.revision.to_string()).collect();
    PipelineError::RollbackUnavailable {
        revision: target,
        reason: format!("not in the history (kept: {})", kept.join(", ")),
    }
}

/// Tells rsync that `old` is replaced by the revision `by`: it leaves `old` alone from now on.
pub async fn supersede(ctx: &Context, old: &AppContext, by: &str) -> kube::Result<()> {
    if old.spec.superseded_by.as_deref() == Some(by) {
        return Ok(());
    }
    let api = Api::<AppContext>::namespaced(ctx.hub.clone(), &old.namespace().unwrap_or_default());
    let patch = Patch::Merge(json!({"spec": {"supersededBy": by}}));
    match api.patch(&old.name_any(), &PatchParams::default(), &patch).await {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()), // gone already: nothing to tell
        other => other.map(|_| ()),
    }
}

/// The AppContext of the DIG's current revision, if any. When the next revision exists though
/// the DIG does not name it yet (a store stopped between making it and recording it), the
/// current one is marked superseded now, as that store would have: it is no longer up to date,
/// whatever the inputs say, and the next store takes the existing revision over.
pub async fn current_context(ctx: &Context, dig: &Dig) -> kube::Result<Option<AppContext>> {
    let Some(name) = dig.status.as_ref().and_then(|s| s.app_context.clone()) else { return Ok(None) };
    let api = Api::<AppContext>::namespaced(ctx.hub.clone(), &dig.namespace().unwrap_or_default());
    let Some(mut current) = api.get_opt(&name).await? else { return Ok(None) };
    if current.spec.superseded_by.is_none() {
        let next = context_name(&dig.name_any(), current.spec.revision + 1);
        // This DIG's own (not one left by a deleted DIG of the same name) and not going away.
        let ours = |m: &kube::core::PartialObjectMeta<AppContext>| {
            let mut owners = m.metadata.owner_references.iter().flatten();
            m.metadata.deletion_timestamp.is_none() && owners.any(|o| Some(&o.uid) == dig.uid().as_ref())
        };
        if api.get_metadata_opt(&next).await?.is_some_and(|m| ours(&m)) {
            supersede(ctx, &current, &next).await?;
            current.spec.superseded_by = Some(next);
        }
    }
    Ok(Some(current))
}

/// Asks rsync to remove what `context` applied.
/// An update still under way has not pruned the revisions it replaces: those still holding rsync's
/// finalizer are terminated too, or what only they applied would stay on the members.
/// A newer revision the DIG never recorded (a store cut short, see [`current_context`]) replaces
/// `context`: it is terminated as well.
pub async fn terminate(hub: &Client, context: &AppContext) -> kube::Result<()> {
    let api = Api::<AppContext>::namespaced(hub.clone(), &context.namespace().unwrap_or_default());
    let mut context = context.clone();
    let mut newer_seen = vec![context.name_any()];
    while let Some(next) = context.spec.superseded_by.clone().filter(|n| !newer_seen.contains(n)) {
        match api.get_opt(&next).await? {
            Some(newer) if newer.spec.replaces.as_ref() == Some(&context.name_any()) => context = newer,
            _ => break,
        }
        newer_seen.push(next);
    }
    if context.spec.operation == Operation::Terminate {
        return Ok(());
    }
    let patch = json!({"spec": {"operation": "Terminate"}});
    api.patch(&context.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    let mut seen = vec![context.name_any()];
    let mut next = context.spec.replaces.clone();
    while let Some(replaced) = next.take().filter(|r| !seen.contains(r)) {
        let Some(old) = api.get_opt(&replaced).await? else { break };
        if !finalizer::has(&old, crate::rsync::FINALIZER) {
            break;
        }
        if old.spec.operation != Operation::Terminate {
            api.patch(&replaced, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        next = old.spec.replaces.clone();
        seen.push(replaced);
    }
    Ok(())
}

/// Deletes the AppContexts and bundles of revisions beyond the last `HISTORY`, once rsync has
/// released them (a context still holding its finalizer has work left and stays).
pub async fn forget_old_revisions(
    ctx: &Context,
    dig: &Dig,
    status: &mut DeploymentIntentGroupStatus,
) -> kube::Result<()> {
    let ns = dig.namespace().unwrap_or_default();
    let contexts = Api::<AppContext>::namespaced(ctx.hub.clone(), &ns);
    let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(ctx.hub.clone(), &ns);
    while status.history.len() > HISTORY {
        let oldest = &status.history[0];
        if let Some(old) = contexts.get_opt(&oldest.app_context).await?
            && finalizer::has(&old, crate::rsync::FINALIZER)
        {
            break;
        }
        let _ = contexts.delete(&oldest.app_context, &Default::default()).await;
        let selector = format!("{}={},{}={}", labels::DIG, dig.name_any(), labels::REVISION, oldest.revision);
        secrets.delete_collection(&Default::default(), &kube::api::ListParams::default().labels(&selector)).await?;
        status.history.remove(0);
    }
    Ok(())
}

/// Every revision of `owner` in `ns` that rsync still holds (it has work left on the members, or
/// may have): a logical cloud's or a network's.
pub async fn held(hub: &Client, ns: &str, owner: &Owner) -> kube::Result<Vec<AppContext>> {
    let selector = format!("{}={}", labels::DIG, owner.label());
    let all = Api::<AppContext>::namespaced(hub.clone(), ns)
        .list(&kube::api::ListParams::default().labels(&selector))
        .await?;
    Ok(all.items.into_iter().filter(|c| finalizer::has(c, rsync::FINALIZER)).collect())
}

/// Deletes the revisions of `owner` in `ns` other than `keep` that rsync has let go, with their
/// bundles.
pub async fn forget_released(hub: &Client, ns: &str, owner: &Owner, keep: Option<&str>) -> kube::Result<()> {
    let api = Api::<AppContext>::namespaced(hub.clone(), ns);
    let secrets = Api::<Secret>::namespaced(hub.clone(), ns);
    let selector = format!("{}={}", labels::DIG, owner.label());
    for old in api.list(&kube::api::ListParams::default().labels(&selector)).await? {
        if Some(old.name_any().as_str()) == keep || finalizer::has(&old, rsync::FINALIZER) {
            continue;
        }
        api.delete(&old.name_any(), &Default::default()).await?;
        let bundles = format!("{selector},{}={}", labels::REVISION, old.spec.revision);
        secrets.delete_collection(&Default::default(), &kube::api::ListParams::default().labels(&bundles)).await?;
    }
    Ok(())
}

/// EMCO stop and the DIG's rollout reach rsync through the current AppContext.
pub async fn pass_lifecycle(ctx: &Context, context: &AppContext, dig: &Dig) -> kube::Result<()> {
    let (stop, rollout) = (dig.spec.stop, &dig.spec.rollout);
    if context.spec.stop == stop && context.spec.rollout == *rollout {
        return Ok(());
    }
    let api = Api::<AppContext>::namespaced(ctx.hub.clone(), &context.namespace().unwrap_or_default());
    let patch = json!({"spec": {"stop": stop, "rollout": rollout}});
    api.patch(&context.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?;
    Ok(())
}
