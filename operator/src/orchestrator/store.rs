//! Stage 5, store: writes a plan as bundle Secrets and the AppContext of a new revision, both owned
//! by the DIG. Idempotent: a retry after a crash finds what it wrote and goes on.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client, Resource, ResourceExt};

use super::plan::Plan;
use crate::api::labels;
use crate::api::orchestrator::DeploymentIntentGroup;
use crate::api::rsync::{AppContext, AppContextSpec, BundleRef, ContextApp, ContextCluster, Operation, Owner};
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

/// Writes `plan`, made from inputs with hash `hash`, as revision `revision` of `dig`.
pub async fn store(
    hub: &Client,
    dig: &DeploymentIntentGroup,
    plan: &Plan,
    revision: u32,
    replaces: Option<String>,
    hash: &str,
) -> kube::Result<Stored> {
    let ns = dig.namespace().unwrap_or_default();
    let mut apps = Vec::new();
    for app in &plan.apps {
        let mut clusters = Vec::new();
        for planned in &app.bundles {
            let name = format!("{}-r{revision}-{}-{}", dig.name_any(), app.name, planned.hash);
            let parts = bundle::encode(&planned.resources);
            for (i, part) in parts.iter().enumerate() {
                create_part(hub, dig, &ns, &bundle::part_name(&name, i as u32), part, revision).await?;
            }
            let bundle = BundleRef { name, parts: parts.len() as u32, resources: planned.resources.len() as u32 };
            clusters
                .extend(planned.clusters.iter().map(|c| ContextCluster { cluster: c.clone(), bundle: bundle.clone() }));
        }
        clusters.sort_by(|a, b| a.cluster.cmp(&b.cluster));
        apps.push(ContextApp { name: app.name.clone(), depends_on: app.depends_on.clone(), clusters });
    }
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
            apps,
        },
        status: None,
    };
    let api = Api::<AppContext>::namespaced(hub.clone(), &ns);
    match api.create(&PostParams::default(), &context).await {
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let existing = api.get(&context.name_any()).await?;
            let same = existing.annotations().get(INPUT_HASH).map(String::as_str) == Some(hash);
            Ok(if same { Stored::Context(existing) } else { Stored::Taken(existing) })
        }
        other => other.map(Stored::Context),
    }
}

fn owner_labels(dig: &DeploymentIntentGroup, revision: u32) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::MANAGED_BY.into(), labels::MANAGER.into()),
        (labels::DIG.into(), dig.name_any()),
        (labels::REVISION.into(), revision.to_string()),
    ])
}

async fn create_part(
    hub: &Client,
    dig: &DeploymentIntentGroup,
    ns: &str,
    name: &str,
    data: &[u8],
    revision: u32,
) -> kube::Result<()> {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            labels: Some(owner_labels(dig, revision)),
            owner_references: Some(vec![dig.controller_owner_ref(&()).expect("DIGs have a uid")]),
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
