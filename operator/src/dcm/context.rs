//! The AppContext that carries a logical cloud's member objects to its clusters: rsync applies
//! it like any DIG revision (retries, drift, status). A change of the objects or of the clusters
//! makes a new revision replacing the last, so rsync removes from a cluster what the logical cloud
//! no longer puts there (a cluster taken out loses its namespace, RBAC and quota, and only it).

use std::collections::BTreeMap;

use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{Value, json};

use super::objects;
use crate::api::dcm::LogicalCloud;
use crate::api::labels;
use crate::api::rsync::{AppContext, AppContextSpec, BundleRef, ContextApp, ContextCluster, Operation};
use crate::orchestrator::revisions::{INPUT_HASH, create_part};
use crate::rsync::{self, bundle};

/// The one app of a logical cloud's AppContext.
pub const APP: &str = "logical-cloud";

/// Name of revision `revision` of `lc`'s AppContext (a DIG's are `<dig>-<n>`: never this form).
fn context_name(lc: &LogicalCloud, revision: u32) -> String {
    format!("{}.lc.{revision}", lc.name_any())
}

fn owner_labels(lc: &LogicalCloud, revision: u32) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::MANAGED_BY.into(), labels::MANAGER.into()),
        (labels::DIG.into(), objects::owner(lc).label()),
        (labels::REVISION.into(), revision.to_string()),
    ])
}

/// Objects for a set of clusters (those that serve the same resources get the same rules).
pub type Bundle = (Vec<Value>, Vec<String>);

/// The AppContext putting each bundle's objects on its clusters: the current one when it does
/// already, else a new revision replacing it.
pub async fn ensure(
    hub: &Client,
    lc: &LogicalCloud,
    current: Option<&AppContext>,
    bundles: &[Bundle],
) -> kube::Result<AppContext> {
    let hash = crate::hex::digest(json!({"bundles": bundles}).to_string().as_bytes(), 16);
    let live = current.filter(|c| c.spec.operation != Operation::Terminate);
    if let Some(c) = live
        && c.annotations().get(INPUT_HASH) == Some(&hash)
    {
        return Ok(c.clone());
    }
    let ns = lc.namespace().unwrap_or_default();
    let api = Api::<AppContext>::namespaced(hub.clone(), &ns);
    let mut revision =
        lc.status.as_ref().and_then(|s| s.revision).unwrap_or(0).max(current.map_or(0, |c| c.spec.revision));
    let mut replaced: Vec<AppContext> = live.into_iter().cloned().collect();
    loop {
        revision += 1;
        let replaces = replaced.last().map(ResourceExt::name_any);
        let made = create(hub, lc, &hash, revision, replaces, bundles).await?;
        if made.annotations().get(INPUT_HASH) != Some(&hash) {
            // Made from other objects before a crash kept it from the status: it may have applied
            // them, so the next revision replaces it too.
            replaced.push(made);
            continue;
        }
        for old in &replaced {
            let patch = json!({"spec": {"supersededBy": made.name_any()}});
            api.patch(&old.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?;
        }
        return Ok(made);
    }
}

async fn create(
    hub: &Client,
    lc: &LogicalCloud,
    hash: &str,
    revision: u32,
    replaces: Option<String>,
    bundles: &[Bundle],
) -> kube::Result<AppContext> {
    let ns = lc.namespace().unwrap_or_default();
    let owner = lc.controller_owner_ref(&()).expect("logical clouds have a uid");
    let (mut clusters, mut refs) = (Vec::new(), Vec::new());
    for (b, (resources, on)) in bundles.iter().enumerate() {
        let name = format!("{}.lc.r{revision}-{hash}-{b}", lc.name_any());
        let parts = bundle::encode(resources);
        for (i, part) in parts.iter().enumerate() {
            let part_name = bundle::part_name(&name, i as u32);
            create_part(hub, owner.clone(), owner_labels(lc, revision), &ns, &part_name, part).await?;
        }
        let bundle = BundleRef {
            name,
            parts: parts.len() as u32,
            resources: resources.len() as u32,
            digest: Some(bundle::digest(&parts)),
            clusters: on.clone(),
        };
        clusters.extend(on.iter().map(|c| ContextCluster { cluster: c.clone(), bundle: None }));
        refs.push(bundle);
    }
    let operation = if replaces.is_some() { Operation::Update } else { Operation::Instantiate };
    let context = AppContext {
        metadata: ObjectMeta {
            name: Some(context_name(lc, revision)),
            namespace: Some(ns.clone()),
            labels: Some(owner_labels(lc, revision)),
            annotations: Some(BTreeMap::from([(INPUT_HASH.to_string(), hash.to_string())])),
            owner_references: Some(vec![owner]),
            finalizers: Some(vec![rsync::FINALIZER.into()]),
            ..Default::default()
        },
        spec: AppContextSpec {
            owner: objects::owner(lc),
            revision,
            operation,
            stop: false,
            replaces,
            superseded_by: None,
            namespace: lc.spec.namespace.clone().unwrap_or_default(),
            logical_cloud: None,
            apps: vec![ContextApp {
                name: APP.into(),
                depends_on: vec![],
                clusters,
                bundles: refs,
                resources: vec![],
                unlisted: 0,
            }],
            rollout: None,
        },
        status: None,
    };
    let api = Api::<AppContext>::namespaced(hub.clone(), &ns);
    match api.create(&PostParams::default(), &context).await {
        Err(kube::Error::Api(e)) if e.code == 409 => api.get(&context.name_any()).await,
        other => other,
    }
}
