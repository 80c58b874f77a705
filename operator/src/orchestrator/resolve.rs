//! Stage 1, resolve: reads the DIG's inputs from the hub (composite app, profile, logical cloud,
//! placement intent, clusters, chart packages and values files). The only stage that reads the API.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use super::Context;
use crate::api::clm::Cluster;
use crate::api::condition;
use crate::api::condition::ConditionType;
use crate::api::controller::Controller;
use crate::api::dcm::LogicalCloud;
use crate::api::dtc::TrafficIntent;
use crate::api::gac::{FileRef, GenericActionIntent};
use crate::api::hpa::HpaIntent;
use crate::api::ncm::{ProviderNetwork, VirtualNetwork};
use crate::api::orchestrator::{
    ChartSource, CompositeApp, CompositeProfile, ConfigMapKey, DeploymentIntentGroup, GenericPlacementIntent,
};
use crate::api::ovnaction::NetworkIntent;
use crate::render::repository;

use super::intents::{BUILT_IN, Intent};

/// Everything a DIG names, read at one point in time.
#[derive(Clone, Debug)]
pub struct Inputs {
    pub dig: DeploymentIntentGroup,
    pub composite_app: CompositeApp,
    pub profile: Option<CompositeProfile>,
    /// Values files named by the profile's `valuesFrom`, by app, in order: (where, YAML text).
    pub values_files: BTreeMap<String, Vec<(String, String)>>,
    pub logical_cloud: LogicalCloud,
    pub placement: GenericPlacementIntent,
    /// The registered clusters of the logical cloud.
    pub clusters: Vec<Cluster>,
    /// Each app's packaged chart.
    pub charts: BTreeMap<String, Vec<u8>>,
    /// The action intents the DIG names (the controller stage runs them).
    pub intents: Vec<Intent>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{kind} {name} not found in namespace {namespace}")]
    NotFound { kind: &'static str, name: String, namespace: String },
    #[error(
        "{kind} {name} names an object of project {project}: a DIG may name only objects in its own project's namespace"
    )]
    OtherProject { kind: &'static str, name: String, project: String },
    #[error("logical cloud {name} is not ready: {message}")]
    LogicalCloudNotReady { name: String, message: String },
    #[error("logical cloud {name} has not been judged since its last change; waiting for it")]
    LogicalCloudPending { name: String },
    #[error("intents name no genericPlacementIntent")]
    NoPlacementIntent,
    #[error("intents name controller {controller}, which is neither built in nor registered (known: {known})")]
    UnknownController { controller: String, known: String },
    #[error("controller {controller}: {message}")]
    ControllerRefused { controller: String, message: String },
    #[error("app {app}: chart ConfigMap {name} has no key {key} in binaryData")]
    ChartKeyMissing { app: String, name: String, key: String },
    #[error("Secret {name} holds credentials made by the operator or for a service account; a DIG may not name it")]
    CredentialsSecret { name: String },
    #[error("ConfigMap {name} has no key {key}")]
    ValuesKeyMissing { name: String, key: String },
    #[error("app {app}: {source}")]
    Repository { app: String, source: Box<repository::RepositoryError> },
    #[error("charts and values files of this DIG add up to {bytes} bytes, over the budget of {budget} bytes")]
    OverBudget { bytes: usize, budget: usize },
    #[error("hub API: {0}")]
    Hub(#[from] kube::Error),
}

/// Bytes of packaged charts and values files one DIG may name (each chart also has its own limits).
pub const DIG_INPUT_BYTES: usize = 32 * 1024 * 1024;

impl ResolveError {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            ResolveError::NotFound { kind, .. } => match *kind {
                "CompositeApp" => "CompositeAppNotFound",
                "CompositeProfile" => "CompositeProfileNotFound",
                "LogicalCloud" => "LogicalCloudNotFound",
                "GenericPlacementIntent" => "PlacementIntentNotFound",
                "GenericActionIntent" | "HpaIntent" => "IntentNotFound",
                "Secret" => "SecretNotFound",
                _ => "ConfigMapNotFound",
            },
            ResolveError::OtherProject { .. } => "CrossProjectReference",
            ResolveError::LogicalCloudNotReady { .. } => "LogicalCloudNotReady",
            ResolveError::LogicalCloudPending { .. } => "LogicalCloudPending",
            ResolveError::NoPlacementIntent => "PlacementIntentNotFound",
            ResolveError::UnknownController { .. } => "UnknownController",
            ResolveError::ControllerRefused { .. } => "ControllerEndpointRefused",
            ResolveError::ChartKeyMissing { .. } => "ChartNotFound",
            ResolveError::CredentialsSecret { .. } => "SecretRefused",
            ResolveError::ValuesKeyMissing { .. } => "ValuesNotFound",
            ResolveError::Repository { source, .. }
                if matches!(**source, repository::RepositoryError::Refused { .. }) =>
            {
                "RepositoryRefused"
            }
            ResolveError::Repository { .. } => "ChartFetchFailed",
            ResolveError::OverBudget { .. } => "InputsTooLarge",
            ResolveError::Hub(_) => "HubError",
        }
    }

    /// Whether retrying without any change can help.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ResolveError::Hub(_) | ResolveError::Repository { .. } | ResolveError::LogicalCloudPending { .. }
        )
    }
}

/// Reads every input of `dig`.
pub async fn resolve(ctx: &Context, dig: &DeploymentIntentGroup) -> Result<Inputs, ResolveError> {
    let ns = dig.namespace().unwrap_or_default();
    let spec = &dig.spec;
    let composite_app: CompositeApp = get(ctx, &ns, "CompositeApp", &spec.composite_app).await?;
    let profile = match &spec.composite_profile {
        Some(name) => Some(get::<CompositeProfile>(ctx, &ns, "CompositeProfile", name).await?),
        None => None,
    };
    let logical_cloud: LogicalCloud = get(ctx, &ns, "LogicalCloud", &spec.logical_cloud).await?;
    let Some(usable) = usable_clusters(&logical_cloud) else {
        let lc_status = logical_cloud.status.clone().unwrap_or_default();
        let name = spec.logical_cloud.clone();
        return Err(
            match condition::get(&lc_status.conditions, ConditionType::Ready)
                .filter(|c| c.observed_generation == logical_cloud.metadata.generation)
            {
                Some(c) => ResolveError::LogicalCloudNotReady { name, message: c.message.clone() },
                None => ResolveError::LogicalCloudPending { name },
            },
        );
    };
    let placement_name = spec.intents.get("genericPlacementIntent").ok_or(ResolveError::NoPlacementIntent)?;
    let placement: GenericPlacementIntent = get(ctx, &ns, "GenericPlacementIntent", placement_name).await?;
    let clusters =
        usable.iter().filter_map(|name| ctx.clusters.get(&ObjectRef::new(name))).map(|c| (*c).clone()).collect();
    let mut charts = BTreeMap::new();
    let mut bytes = 0;
    // Apps that share a chart source read it once.
    let mut read: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for app in &composite_app.spec.apps {
        let source = serde_json::to_string(&app.chart).unwrap_or_default();
        if !read.contains_key(&source) {
            read.insert(source.clone(), chart(ctx, &ns, &app.name, &app.chart).await?);
        }
        let tgz = read[&source].clone();
        bytes = within_budget(bytes + tgz.len())?;
        charts.insert(app.name.clone(), tgz);
    }
    let mut values_files = BTreeMap::new();
    for p in profile.iter().flat_map(|p| &p.spec.profiles) {
        let mut files = Vec::new();
        for source in &p.values_from {
            let file = values_file(ctx, &ns, &source.config_map).await?;
            bytes = within_budget(bytes + file.1.len())?;
            files.push(file);
        }
        values_files.insert(p.app.clone(), files);
    }
    let intents = action_intents(ctx, dig).await?;
    let file_bytes: usize = intents
        .iter()
        .map(|i| match i {
            Intent::Gac { files, .. } => files.values().map(Vec::len).sum::<usize>(),
            _ => 0,
        })
        .sum();
    within_budget(bytes + file_bytes)?;
    Ok(Inputs {
        dig: dig.clone(),
        composite_app,
        profile,
        values_files,
        logical_cloud,
        placement,
        clusters,
        charts,
        intents,
    })
}

/// The clusters a DIG may use through `lc`: those dcm found usable (registered, granted, with a
/// user for Standard/Privileged) when it last saw the current spec; `None` while it is not Ready
/// for the current spec (a change dcm has not judged yet grants nothing).
pub fn usable_clusters(lc: &LogicalCloud) -> Option<Vec<String>> {
    let status = lc.status.as_ref()?;
    let ready = condition::get(&status.conditions, ConditionType::Ready)?;
    if ready.status != "True" || ready.observed_generation != lc.metadata.generation {
        return None;
    }
    let judged = |name: &str| {
        status.clusters.iter().any(|c| c.cluster == name && c.state == crate::api::dcm::LogicalCloudClusterState::Ready)
    };
    Some(lc.spec.clusters.iter().map(|r| r.cluster.clone()).filter(|c| judged(c)).collect())
}

/// The intents of `dig`'s `intents` map other than generic placement, read; a controller name
/// that is neither built in nor registered is refused.
async fn action_intents(ctx: &Context, dig: &DeploymentIntentGroup) -> Result<Vec<Intent>, ResolveError> {
    let ns = dig.namespace().unwrap_or_default();
    let mut intents = Vec::new();
    for (controller, name) in &dig.spec.intents {
        match controller.as_str() {
            "genericPlacementIntent" => {}
            "gac" => {
                let intent: GenericActionIntent = get(ctx, &ns, "GenericActionIntent", name).await?;
                let mut files = BTreeMap::new();
                let refs = intent.spec.resources.iter().flat_map(|r| &r.customizations).flat_map(|c| &c.files);
                for r in refs.filter_map(|f| f.source()) {
                    let data = file_data(ctx, &ns, &r).await?;
                    files.insert(r, data);
                }
                intents.push(Intent::Gac { name: name.clone(), intent: Box::new(intent), files });
            }
            "hpa" => {
                let intent: HpaIntent = get(ctx, &ns, "HpaIntent", name).await?;
                intents.push(Intent::Hpa { name: name.clone(), intent: Box::new(intent) });
            }
            "ovnaction" => {
                let intent: NetworkIntent = get(ctx, &ns, "NetworkIntent", name).await?;
                // Only the networks the intent names count (and enter the input hash).
                let named: BTreeSet<&String> =
                    intent.spec.workload_intents.iter().flat_map(|w| &w.interfaces).map(|i| &i.network).collect();
                let mut networks = networks(ctx).await?;
                networks.values_mut().for_each(|n| n.retain(|name| named.contains(name)));
                intents.push(Intent::Ovn { name: name.clone(), intent: Box::new(intent), networks });
            }
            "dtc" => {
                let intent: TrafficIntent = get(ctx, &ns, "TrafficIntent", name).await?;
                intents.push(Intent::Dtc { name: name.clone(), intent: Box::new(intent) });
            }
            other => intents.push(external(ctx, other, name).await?),
        }
    }
    Ok(intents)
}

/// The networks (ncm) defined for each cluster, leaving out those being deleted.
async fn networks(ctx: &Context) -> Result<super::intents::ovnaction::Networks, ResolveError> {
    let mut networks = super::intents::ovnaction::Networks::new();
    let params = kube::api::ListParams::default();
    for v in Api::<VirtualNetwork>::all(ctx.hub.clone()).list(&params).await?.items {
        if v.metadata.deletion_timestamp.is_none() {
            networks.entry(v.spec.cluster.clone()).or_default().insert(v.name_any());
        }
    }
    for p in Api::<ProviderNetwork>::all(ctx.hub.clone()).list(&params).await?.items {
        if p.metadata.deletion_timestamp.is_none() {
            networks.entry(p.spec.cluster.clone()).or_default().insert(p.name_any());
        }
    }
    Ok(networks)
}

/// The intent `name` for the registered external controller `controller`.
async fn external(ctx: &Context, controller: &str, name: &str) -> Result<Intent, ResolveError> {
    let api = Api::<Controller>::all(ctx.hub.clone());
    let Some(registered) = api.get_opt(controller).await? else {
        let mut known: Vec<String> = BUILT_IN.iter().map(|n| n.to_string()).collect();
        known.extend(api.list(&Default::default()).await?.items.iter().map(|c| c.name_any()));
        return Err(ResolveError::UnknownController { controller: controller.to_string(), known: known.join(", ") });
    };
    if let Some(message) = registered.spec.endpoint.refused() {
        return Err(ResolveError::ControllerRefused { controller: controller.to_string(), message });
    }
    Ok(Intent::External { controller: controller.to_string(), intent: name.to_string(), spec: registered.spec })
}

/// The bytes of a ConfigMap or Secret key in the project's namespace.
async fn file_data(ctx: &Context, ns: &str, r: &FileRef) -> Result<Vec<u8>, ResolveError> {
    let missing = || ResolveError::ValuesKeyMissing { name: r.name.clone(), key: r.key.clone() };
    if r.secret {
        let secret: Secret = get(ctx, ns, "Secret", &r.name).await?;
        if credentials(&secret) {
            return Err(ResolveError::CredentialsSecret { name: r.name.clone() });
        }
        return secret.data.and_then(|mut d| d.remove(&r.key)).map(|b| b.0).ok_or_else(missing);
    }
    let cm: ConfigMap = get(ctx, ns, "ConfigMap", &r.name).await?;
    let text = cm.data.and_then(|mut d| d.remove(&r.key)).map(String::into_bytes);
    text.or_else(|| cm.binary_data.and_then(|mut d| d.remove(&r.key)).map(|b| b.0)).ok_or_else(missing)
}

/// Whether `secret` holds credentials no DIG may copy: a logical cloud user's, a bundle or
/// anything else the operator made, or a service account token.
fn credentials(secret: &Secret) -> bool {
    let made_by_operator =
        secret.labels().get(crate::api::labels::MANAGED_BY).is_some_and(|m| m == crate::api::labels::MANAGER)
            || secret.labels().contains_key(crate::api::dcm::user_secret::LOGICAL_CLOUD);
    let kind = secret.type_.as_deref().unwrap_or_default();
    made_by_operator || kind.starts_with("emco.io/") || kind == "kubernetes.io/service-account-token"
}

/// `bytes` if within [`DIG_INPUT_BYTES`].
fn within_budget(bytes: usize) -> Result<usize, ResolveError> {
    if bytes > DIG_INPUT_BYTES { Err(ResolveError::OverBudget { bytes, budget: DIG_INPUT_BYTES }) } else { Ok(bytes) }
}

async fn get<K>(ctx: &Context, ns: &str, kind: &'static str, name: &str) -> Result<K, ResolveError>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    if let Some((project, _)) = name.split_once('/') {
        return Err(ResolveError::OtherProject { kind, name: name.to_string(), project: project.to_string() });
    }
    Api::<K>::namespaced(ctx.hub.clone(), ns).get_opt(name).await?.ok_or_else(|| ResolveError::NotFound {
        kind,
        name: name.to_string(),
        namespace: ns.to_string(),
    })
}

async fn chart(ctx: &Context, ns: &str, app: &str, source: &ChartSource) -> Result<Vec<u8>, ResolveError> {
    if let Some(repo) = &source.repository {
        let key = (repo.url.clone(), repo.chart.clone(), repo.version.clone());
        if let Some(tgz) = ctx.repository_charts.get(&key) {
            return Ok(tgz);
        }
        ctx.fence.refresh_nodes(&ctx.hub).await;
        let tgz = repository::fetch_chart(&ctx.http, &ctx.fence, &repo.url, &repo.chart, repo.version.as_deref())
            .await
            .map_err(|source| ResolveError::Repository { app: app.to_string(), source: Box::new(source) })?;
        ctx.repository_charts.put(key, tgz.clone());
        return Ok(tgz);
    }
    let key_ref = source.config_map.clone().unwrap_or_default();
    let key = key_ref.key.clone().unwrap_or_else(|| "chart.tgz".into());
    let cm: ConfigMap = get(ctx, ns, "ConfigMap", &key_ref.name).await?;
    cm.binary_data.and_then(|mut d| d.remove(&key)).map(|b| b.0).ok_or(ResolveError::ChartKeyMissing {
        app: app.to_string(),
        name: key_ref.name,
        key,
    })
}

async fn values_file(ctx: &Context, ns: &str, key_ref: &ConfigMapKey) -> Result<(String, String), ResolveError> {
    let key = key_ref.key.clone().unwrap_or_else(|| "values.yaml".into());
    let cm: ConfigMap = get(ctx, ns, "ConfigMap", &key_ref.name).await?;
    let text = cm
        .data
        .and_then(|mut d| d.remove(&key))
        .ok_or_else(|| ResolveError::ValuesKeyMissing { name: key_ref.name.clone(), key: key.clone() })?;
    Ok((format!("ConfigMap {} key {key}", key_ref.name), text))
}
