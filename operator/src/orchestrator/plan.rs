//! Stage 4, plan (pure but for waiting its turn: loading and rendering a chart hold a render slot,
//! `render::sandbox::Slot`): renders each app's chart with its merged values (chart < profile <
//! DIG override) for the clusters it was placed on, labels every resource with its owner, and groups
//! clusters that get identical resources into one bundle. Clusters that render alike share one
//! copy of the output (`Arc`) from rendering to the bundle; a controller that changes one cluster's
//! resources copies only that cluster's.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::ResourceExt;
use serde_json::{Value, json};

use super::intents::{Placed, PlacedApp, PlacedCluster};
use super::place::Placement;
use super::resolve::Inputs;
use crate::api::labels;
use crate::api::rsync::ContextDependency;
use crate::render::{self, RenderContext, chart, values};

/// Kubernetes version assumed for a cluster that has not been probed yet.
const DEFAULT_KUBE_VERSION: &str = "v1.35.0";

/// What a new revision deploys.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Namespace for namespaced resources that name none.
    pub namespace: String,
    /// A Standard or Privileged logical cloud whose user applies the plan on the members.
    pub logical_cloud: Option<String>,
    pub apps: Vec<PlannedApp>,
    /// The controllers that ran, in order.
    pub controllers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedApp {
    pub name: String,
    pub depends_on: Vec<ContextDependency>,
    pub bundles: Vec<PlannedBundle>,
}

/// Identical resources for a set of clusters.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedBundle {
    /// First 12 hex digits of the SHA-256 of the resources.
    pub hash: String,
    pub resources: Arc<Vec<Value>>,
    pub clusters: Vec<String>,
}

impl PlannedBundle {
    /// `resources` for `clusters`, named by their content.
    pub fn new(resources: Arc<Vec<Value>>, clusters: Vec<String>) -> PlannedBundle {
        PlannedBundle { hash: digest(&resources), resources, clusters }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("app {app}: {source}")]
    Chart { app: String, source: chart::ChartError },
    #[error("app {app}: {source}")]
    Values { app: String, source: values::ValuesError },
    #[error("app {app}: {source}")]
    Render { app: String, source: render::RenderError },
}

impl PlanError {
    pub fn reason(&self) -> &'static str {
        match self {
            PlanError::Chart { .. } => "InvalidChart",
            PlanError::Values { .. } => "InvalidValues",
            PlanError::Render { source: render::RenderError::Limit { .. }, .. } => "RenderLimitExceeded",
            PlanError::Render { source: render::RenderError::Values { .. }, .. } => "InvalidValues",
            PlanError::Render { .. } => "TemplateError",
        }
    }
}

/// The namespace of the DIG's logical cloud, where namespaced resources that name none go.
fn namespace(inputs: &Inputs) -> String {
    inputs.logical_cloud.spec.namespace.clone().unwrap_or_else(|| "default".into())
}

/// Renders every placed app of `inputs` for revision `revision`, for the clusters it was placed on.
/// Apps render side by side, as many at once as there are render slots; an error stops the rest.
pub fn render(inputs: &Inputs, placement: &Placement, revision: u32) -> Result<Placed, PlanError> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let apps: Vec<_> =
        inputs.composite_app.spec.apps.iter().filter_map(|a| Some((&a.name, placement.get(&a.name)?))).collect();
    let next = AtomicUsize::new(0);
    let done = std::sync::Mutex::new(BTreeMap::new());
    std::thread::scope(|scope| {
        for _ in 0..render::limits::workers().clamp(1, apps.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(app, clusters)) = apps.get(i) else { break };
                    let placed = render_app(inputs, app, clusters, revision);
                    if placed.is_err() {
                        next.store(apps.len(), Ordering::Relaxed);
                    }
                    done.lock().unwrap_or_else(|e| e.into_inner()).insert(i, placed);
                }
            });
        }
    });
    let rendered = done.into_inner().unwrap_or_else(|e| e.into_inner());
    let apps = rendered.into_values().collect::<Result<Vec<_>, _>>()?;
    Ok(Placed { apps })
}

/// Renders one app for its clusters: once per distinct Kubernetes version and API set.
fn render_app(
    inputs: &Inputs,
    app: &str,
    clusters: &std::collections::BTreeSet<String>,
    revision: u32,
) -> Result<PlacedApp, PlanError> {
    // Loading and rendering wait for a render slot: the pod's memory budget counts them.
    let _slot = render::sandbox::Slot::take();
    let chart =
        chart::load_chart(&inputs.charts[app]).map_err(|source| PlanError::Chart { app: app.to_string(), source })?;
    let values = merged_values(inputs, app, &chart.values)?;
    let mut placed_app = PlacedApp { name: app.to_string(), clusters: Vec::new() };
    for ((version, api_versions), group) in by_capabilities(inputs, clusters.iter()) {
        let ctx = RenderContext {
            release_name: inputs.dig.spec.release.clone().unwrap_or_else(|| inputs.dig.name_any()),
            release_namespace: namespace(inputs),
            revision,
            kube_version: version,
            api_versions,
        };
        let mut resources = render::render_app(&chart, &values, &ctx)
            .map_err(|source| PlanError::Render { app: app.to_string(), source })?;
        resources.iter_mut().for_each(|r| label(r, inputs, app));
        let resources = Arc::new(resources);
        placed_app.clusters.extend(group.into_iter().map(|cluster| PlacedCluster {
            labels: cluster_labels(inputs, &cluster),
            kv: inputs.clusters.iter().find(|c| c.name_any() == cluster).map(|c| c.spec.kv.clone()).unwrap_or_default(),
            cluster,
            resources: resources.clone(),
        }));
    }
    Ok(placed_app)
}

/// Labels the resources of `placed` with their owner and groups clusters that get identical
/// resources into bundles.
pub fn bundle(inputs: &Inputs, placed: Placed, controllers: Vec<String>) -> Plan {
    let mut apps = Vec::new();
    for placed_app in placed.apps {
        let mut bundles: Vec<PlannedBundle> = Vec::new();
        for c in placed_app.clusters {
            let mut resources = c.resources;
            // Objects a controller added are labelled here; rendered ones already are.
            if resources.iter().any(|r| !labelled(r, inputs, &placed_app.name)) {
                Arc::make_mut(&mut resources).iter_mut().for_each(|r| label(r, inputs, &placed_app.name));
            }
            // Clusters that still share a bundle's copy are not hashed again.
            let shared = bundles.iter().find(|b| Arc::ptr_eq(&b.resources, &resources));
            let hash = shared.map_or_else(|| digest(&resources), |b| b.hash.clone());
            match bundles.iter_mut().find(|b| b.hash == hash) {
                Some(b) => b.clusters.push(c.cluster),
                None => bundles.push(PlannedBundle { hash, resources, clusters: vec![c.cluster] }),
            }
        }
        let app = inputs.composite_app.spec.apps.iter().find(|a| a.name == placed_app.name);
        let depends_on = app
            .into_iter()
            .flat_map(|a| &a.depends_on)
            .map(|d| ContextDependency { app: d.app.clone(), op_status: d.op_status, wait_seconds: d.wait_seconds })
            .collect();
        apps.push(PlannedApp { name: placed_app.name, depends_on, bundles });
    }
    let user = inputs.logical_cloud.spec.type_ != crate::api::dcm::LogicalCloudType::Admin;
    let logical_cloud = user.then(|| inputs.logical_cloud.name_any());
    Plan { namespace: namespace(inputs), logical_cloud, apps, controllers }
}

/// The labels of Cluster `name` (EMCO cluster labels).
fn cluster_labels(inputs: &Inputs, name: &str) -> BTreeMap<String, String> {
    inputs.clusters.iter().find(|c| c.name_any() == name).map(|c| c.labels().clone()).unwrap_or_default()
}

/// Chart values < profile (inline, then each values file) < DIG overrideValues.
fn merged_values(inputs: &Inputs, app: &str, chart_values: &Value) -> Result<Value, PlanError> {
    let mut merged = chart_values.clone();
    let profile = inputs.profile.iter().flat_map(|p| &p.spec.profiles).find(|p| p.app == app);
    if let Some(inline) = profile.and_then(|p| p.values.as_ref()) {
        values::merge(&mut merged, &json!(inline));
    }
    for (what, text) in inputs.values_files.get(app).into_iter().flatten() {
        let parsed =
            values::parse_values_yaml(text, what).map_err(|source| PlanError::Values { app: app.into(), source })?;
        values::merge(&mut merged, &parsed);
    }
    for o in inputs.dig.spec.override_values.iter().filter(|o| o.app == app) {
        values::merge(&mut merged, &json!(o.values));
    }
    Ok(merged)
}

/// Placed clusters grouped by their Kubernetes version and served API versions (charts may
/// render differently for each).
fn by_capabilities<'a>(
    inputs: &Inputs,
    clusters: impl Iterator<Item = &'a String>,
) -> BTreeMap<(String, Vec<String>), Vec<String>> {
    let mut groups: BTreeMap<(String, Vec<String>), Vec<String>> = BTreeMap::new();
    for name in clusters {
        let status = inputs.clusters.iter().find(|c| &c.name_any() == name).and_then(|c| c.status.clone());
        let status = status.unwrap_or_default();
        let version = status.kubernetes_version.unwrap_or_else(|| DEFAULT_KUBE_VERSION.into());
        groups.entry((version, status.api_versions)).or_default().push(name.clone());
    }
    groups
}

/// Whether `resource` carries the owner labels of `app`.
fn labelled(resource: &Value, inputs: &Inputs, app: &str) -> bool {
    let l = &resource["metadata"]["labels"];
    l[labels::MANAGED_BY] == labels::MANAGER
        && l[labels::PROJECT] == inputs.dig.namespace().unwrap_or_default().as_str()
        && l[labels::DIG] == inputs.dig.name_any().as_str()
        && l[labels::APP] == app
}

/// Adds the owner labels that prune and status select on.
fn label(resource: &mut Value, inputs: &Inputs, app: &str) {
    labels::own(resource, &inputs.dig.namespace().unwrap_or_default(), &inputs.dig.name_any(), Some(app));
}

fn digest(resources: &[Value]) -> String {
    crate::hex::digest(&serde_json::to_vec(resources).expect("JSON values serialize"), 12)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::clm::Cluster;
    use std::collections::BTreeSet;

    fn from<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
        let value: Value = serde_saphyr::from_str(yaml).expect("fixture YAML");
        serde_json::from_value(value).expect("fixture fits the type")
    }

    /// A packaged chart `web` holding `files`.
    fn tgz(files: &[(&str, &str)]) -> Vec<u8> {
        let paths: Vec<(String, &str)> = files.iter().map(|(p, c)| (format!("web/{p}"), *c)).collect();
        let entries: Vec<(&str, &str)> = paths.iter().map(|(p, c)| (p.as_str(), *c)).collect();
        crate::render::chart::tests::tgz(&entries)
    }

    fn cluster(name: &str, version: &str) -> Cluster {
        from(&format!(
            "{{apiVersion: clm.emco.io/v1alpha1, kind: Cluster, metadata: {{name: {name}}},
              spec: {{provider: p, kubeconfig: {{secretRef: {{namespace: emco-system, name: {name}}}}}}},
              status: {{kubernetesVersion: {version}}}}}"
        ))
    }

    /// Inputs of a DIG `d` in project `p` with one app `web` whose chart renders one ConfigMap.
    pub(crate) fn inputs() -> Inputs {
        let chart = tgz(&[
            ("Chart.yaml", "apiVersion: v2\nname: web\nversion: 1.0.0\n"),
            ("values.yaml", "greeting: chart\ncolour: chart\nsize: chart\n"),
            (
                "templates/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n  labels: {tier: front}\ndata:\n  greeting: {{ Values.greeting }}\n  colour: {{ Values.colour }}\n  size: {{ Values.size }}\n  minor: \"{{ Capabilities.KubeVersion.Minor }}\"\n",
            ),
        ]);
        Inputs {
            dig: from("{apiVersion: orchestrator.emco.io/v1alpha1, kind: DeploymentIntentGroup, metadata: {name: d, namespace: p},
                spec: {compositeApp: ca, logicalCloud: lc, intents: {genericPlacementIntent: gpi},
                       overrideValues: [{app: web, values: {size: override}}]}}"),
            composite_app: from("{apiVersion: orchestrator.emco.io/v1alpha1, kind: CompositeApp, metadata: {name: ca, namespace: p},
                spec: {apps: [{name: web, chart: {configMap: {name: web-chart}}}]}}"),
            profile: Some(from("{apiVersion: orchestrator.emco.io/v1alpha1, kind: CompositeProfile, metadata: {name: prof, namespace: p},
                spec: {profiles: [{app: web, values: {colour: profile, size: profile}}]}}")),
            values_files: BTreeMap::from([("web".to_string(), vec![("file".to_string(), "greeting: file\n".to_string())])]),
            logical_cloud: from("{apiVersion: dcm.emco.io/v1alpha1, kind: LogicalCloud, metadata: {name: lc, namespace: p},
                spec: {namespace: apps, clusters: [{cluster: a}, {cluster: b}, {cluster: c}]}}"),
            placement: from("{apiVersion: orchestrator.emco.io/v1alpha1, kind: GenericPlacementIntent, metadata: {name: gpi, namespace: p},
                spec: {appIntents: [{app: web, allOf: [{cluster: a}, {cluster: b}, {cluster: c}]}]}}"),
            clusters: vec![cluster("a", "v1.35.4"), cluster("b", "v1.35.4"), cluster("c", "v1.34.2")],
            charts: BTreeMap::from([("web".to_string(), chart)]),
            intents: Vec::new(),
        }
    }

    fn plan(inputs: &Inputs, placement: &Placement, revision: u32) -> Result<Plan, PlanError> {
        Ok(bundle(inputs, render(inputs, placement, revision)?, Vec::new()))
    }

    fn placed_on(names: &[&str]) -> Placement {
        Placement::from([("web".to_string(), names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>())])
    }

    #[test]
    fn values_merge_chart_then_profile_then_file_then_override_and_resources_are_labelled() {
        let plan = plan(&inputs(), &placed_on(&["a"]), 1).unwrap();
        assert_eq!(plan.namespace, "apps");
        let cm = &plan.apps[0].bundles[0].resources[0];
        assert_eq!(cm["data"]["greeting"], "file");
        assert_eq!(cm["data"]["colour"], "profile");
        assert_eq!(cm["data"]["size"], "override");
        let labels = &cm["metadata"]["labels"];
        assert_eq!(labels["tier"], "front", "the chart's own labels stay");
        assert_eq!(
            (labels[labels::DIG].as_str(), labels[labels::PROJECT].as_str(), labels[labels::APP].as_str()),
            (Some("d"), Some("p"), Some("web"))
        );
    }

    #[test]
    fn clusters_with_identical_resources_share_a_bundle_and_versions_render_apart() {
        let plan = plan(&inputs(), &placed_on(&["a", "b", "c"]), 1).unwrap();
        let bundles = &plan.apps[0].bundles;
        assert_eq!(bundles.len(), 2, "a and b share one bundle, c (1.34) gets its own");
        let by_minor: BTreeMap<String, Vec<String>> = bundles
            .iter()
            .map(|b| (b.resources[0]["data"]["minor"].as_str().unwrap().to_string(), b.clusters.clone()))
            .collect();
        assert_eq!(by_minor["35"], ["a", "b"]);
        assert_eq!(by_minor["34"], ["c"]);
    }

    #[test]
    fn a_values_file_that_is_not_a_map_is_refused_with_its_name() {
        let mut i = inputs();
        i.values_files.insert("web".into(), vec![("ConfigMap v key values.yaml".into(), "- a\n".into())]);
        let e = plan(&i, &placed_on(&["a"]), 1).unwrap_err();
        assert_eq!(e.reason(), "InvalidValues");
        assert!(e.to_string().contains("ConfigMap v key values.yaml"), "{e}");
    }
}
