//! ncm: network configuration management. Each VirtualNetwork and ProviderNetwork becomes the
//! OVN4NFV object of its cluster (`k8s.plugin.opnfv.org/v1alpha1` Network or ProviderNetwork in
//! the member's `default` namespace, with its CRD when the member lacks it), carried there by an
//! AppContext in the operator's namespace that rsync applies like any other: retries, drift,
//! status. A changed spec makes a new revision replacing the last; deleting the network
//! terminates it on the member first (EMCO's apply and terminate of a cluster's networks).

mod member;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::api::condition::{self, ConditionType};
use crate::api::labels;
use crate::api::ncm::{NetworkStatus, ProviderNetwork, VirtualNetwork};
use crate::api::rsync::{
    AppContext, AppContextSpec, BundleRef, ContextApp, ContextCluster, ContextState, Operation, Owner, ResourceRef,
};
use crate::finalizer;
use crate::orchestrator::revisions::{self, INPUT_HASH, create_part, terminate};
use crate::reconcile::{Backoff, HubError, write_status};
use crate::rsync::{self, bundle};

/// Kept on a network until its object is gone from the member.
const FINALIZER: &str = "ncm.emco.io/applied";
/// The one app of a network's AppContext.
const APP: &str = "network";

pub struct Context {
    pub hub: Client,
    /// Where the networks' AppContexts and bundles live.
    pub operator_namespace: String,
    pub backoff: Backoff,
}

/// A network kind of `ncm.emco.io`.
pub trait Network:
    Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>
    + Clone
    + DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    fn cluster(&self) -> &str;
    fn network_status(&self) -> Option<&NetworkStatus>;
    /// What goes on the member: the OVN4NFV object.
    fn member_object(&self) -> Value;
}

impl Network for VirtualNetwork {
    fn cluster(&self) -> &str {
        &self.spec.cluster
    }
    fn network_status(&self) -> Option<&NetworkStatus> {
        self.status.as_ref()
    }
    fn member_object(&self) -> Value {
        member::network(self)
    }
}

impl Network for ProviderNetwork {
    fn cluster(&self) -> &str {
        &self.spec.cluster
    }
    fn network_status(&self) -> Option<&NetworkStatus> {
        self.status.as_ref()
    }
    fn member_object(&self) -> Value {
        member::provider_network(self)
    }
}

/// Runs the network controllers until a signal arrives.
pub async fn run(ctx: Arc<Context>) {
    futures::join!(watch::<VirtualNetwork>(ctx.clone()), watch::<ProviderNetwork>(ctx));
}

async fn watch<N: Network>(ctx: Arc<Context>) {
    let contexts = Api::<AppContext>::namespaced(ctx.hub.clone(), &ctx.operator_namespace);
    Controller::new(Api::<N>::all(ctx.hub.clone()), watcher::Config::default())
        .owns(contexts, watcher::Config::default())
        .shutdown_on_signal()
        .run(|o, c| crate::metrics::reconciled("ncm", reconcile(o, c)), error_policy::<N>, ctx)
        .for_each(|_| async {})
        .await;
}

fn owner<N: Network>(net: &N) -> Owner {
    Owner { kind: N::kind(&()).into(), name: net.name_any() }
}

async fn reconcile<N: Network>(net: Arc<N>, ctx: Arc<Context>) -> Result<Action, HubError> {
    let api = Api::<N>::all(ctx.hub.clone());
    let held = revisions::held(&ctx.hub, &ctx.operator_namespace, &owner(net.as_ref())).await?;
    if net.meta().deletion_timestamp.is_some() {
        return retire(&ctx, &api, net.as_ref(), held).await;
    }
    finalizer::add(&api, net.as_ref(), FINALIZER).await?;
    let current = held.iter().filter(|c| c.spec.superseded_by.is_none()).max_by_key(|c| c.spec.revision);
    let mut object = net.member_object();
    labels::own(&mut object, &ctx.operator_namespace, &owner(net.as_ref()).label(), Some(APP));
    let objects = member::with_crd(object);
    let hash = crate::hex::digest(json!({"cluster": net.cluster(), "objects": objects}).to_string().as_bytes(), 16);
    let current = match current {
        Some(c) if c.annotations().get(INPUT_HASH) == Some(&hash) => c.clone(),
        _ => {
            let made = create(&ctx, net.as_ref(), &hash, next_revision(&held), current, &objects).await?;
            if let Some(old) = current {
                let patch = Patch::Merge(json!({"spec": {"supersededBy": made.name_any()}}));
                contexts(&ctx).patch(&old.name_any(), &PatchParams::default(), &patch).await?;
            }
            made
        }
    };
    revisions::forget_released(&ctx.hub, &ctx.operator_namespace, &owner(net.as_ref()), Some(&current.name_any()))
        .await?;
    let status = status_from(net.as_ref(), &current);
    write_status(&api, net.as_ref(), net.network_status(), &status).await?;
    Ok(Action::await_change())
}

/// The network's status as its AppContext has it (pure).
fn status_from<N: Network>(net: &N, actx: &AppContext) -> NetworkStatus {
    let generation = net.meta().generation;
    let mut status = net.network_status().cloned().unwrap_or_default();
    let observed = actx.status.clone().unwrap_or_default();
    status.state = Some(format!("{:?}", observed.state));
    status.app_context = Some(actx.name_any());
    status.observed_generation = generation;
    let ready = condition::get(&observed.conditions, ConditionType::Ready).cloned();
    let (ok, reason, message) = match ready {
        Some(r) if r.status == "True" => (true, "Ready".to_string(), format!("on {}: {}", net.cluster(), r.message)),
        Some(r) => (false, r.reason, format!("on {}: {}", net.cluster(), r.message)),
        None => (false, "Applying".to_string(), format!("rsync is applying it to {}", net.cluster())),
    };
    condition::set(&mut status.conditions, condition::new(ConditionType::Ready, ok, &reason, message, generation));
    status
}

/// Being deleted: terminated on the member first, then let go.
async fn retire<N: Network>(ctx: &Context, api: &Api<N>, net: &N, held: Vec<AppContext>) -> Result<Action, HubError> {
    for actx in &held {
        terminate(&ctx.hub, actx).await?;
    }
    let busy = held.iter().any(|a| a.status.as_ref().is_none_or(|s| s.state != ContextState::Terminated));
    if busy {
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    revisions::forget_released(&ctx.hub, &ctx.operator_namespace, &owner(net), None).await?;
    finalizer::remove(api, net, FINALIZER).await?;
    Ok(Action::await_change())
}

fn contexts(ctx: &Context) -> Api<AppContext> {
    Api::namespaced(ctx.hub.clone(), &ctx.operator_namespace)
}

fn next_revision(held: &[AppContext]) -> u32 {
    held.iter().map(|c| c.spec.revision).max().unwrap_or(0) + 1
}

fn owner_labels<N: Network>(net: &N, revision: u32) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::MANAGED_BY.into(), labels::MANAGER.into()),
        (labels::DIG.into(), owner(net).label()),
        (labels::REVISION.into(), revision.to_string()),
    ])
}

/// Revision `revision`: the network's objects for its cluster, replacing `current`.
async fn create<N: Network>(
    ctx: &Context,
    net: &N,
    hash: &str,
    revision: u32,
    current: Option<&AppContext>,
    objects: &[Value],
) -> kube::Result<AppContext> {
    let ns = &ctx.operator_namespace;
    let owner_ref = net.controller_owner_ref(&()).expect("networks have a uid");
    let base = format!("{}.{}", owner(net).label().replace('_', "-"), revision);
    let parts = bundle::encode(objects);
    for (i, part) in parts.iter().enumerate() {
        let name = bundle::part_name(&base, i as u32);
        create_part(&ctx.hub, owner_ref.clone(), owner_labels(net, revision), ns, &name, part).await?;
    }
    let bundle = BundleRef {
        name: base.clone(),
        parts: parts.len() as u32,
        resources: objects.len() as u32,
        digest: Some(bundle::digest(&parts)),
        clusters: vec![net.cluster().to_string()],
    };
    let cluster = ContextCluster { cluster: net.cluster().to_string(), bundle: None };
    let context = AppContext {
        metadata: ObjectMeta {
            name: Some(base),
            namespace: Some(ns.clone()),
            labels: Some(owner_labels(net, revision)),
            annotations: Some(BTreeMap::from([(INPUT_HASH.to_string(), hash.to_string())])),
            owner_references: Some(vec![owner_ref]),
            finalizers: Some(vec![rsync::FINALIZER.into()]),
            ..Default::default()
        },
        spec: AppContextSpec {
            owner: owner(net),
            revision,
            operation: if current.is_some() { Operation::Update } else { Operation::Instantiate },
            stop: false,
            replaces: current.map(ResourceExt::name_any),
            superseded_by: None,
            namespace: member::NAMESPACE.into(),
            logical_cloud: None,
            apps: vec![ContextApp {
                name: APP.into(),
                depends_on: vec![],
                clusters: vec![cluster],
                bundles: vec![bundle],
                resources: objects.iter().map(ResourceRef::of).collect(),
                unlisted: 0,
            }],
            rollout: None,
        },
        status: None,
    };
    let api = contexts(ctx);
    match api.create(&PostParams::default(), &context).await {
        Err(kube::Error::Api(e)) if e.code == 409 => api.get(&context.name_any()).await,
        other => other,
    }
}

fn error_policy<N: Network>(net: Arc<N>, error: &HubError, ctx: Arc<Context>) -> Action {
    let key = format!("{}/{}", N::kind(&()), net.name_any());
    tracing::warn!(network = %key, %error, "network reconcile failed");
    Action::requeue(ctx.backoff.retry_after(&key))
}
