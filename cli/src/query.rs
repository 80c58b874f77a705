//! EMCO's status query (seed 003, "Status Monitoring and Queries"), built from what `kubectl get`
//! reads: the DIG's status and its current AppContext. Pure: [`report`] builds it, [`tree`]
//! prints it.

use emco::api::orchestrator::DeploymentIntentGroup;
use emco::api::rsync::{AppContext, ClusterStatus, ResourceRef};
use kube::ResourceExt;
use serde::Serialize;

/// Which parts of the answer to keep.
#[derive(Default, Clone)]
pub struct Filter {
    pub app: Option<String>,
    pub cluster: Option<String>,
    /// `Kind/name` or `name`; the kind compares without case.
    pub resource: Option<String>,
    /// List every resource (implied by `resource`).
    pub detail: bool,
}

#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub name: String,
    pub namespace: String,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_context: Option<String>,
    pub deployed: String,
    pub ready: String,
    pub conditions: Vec<ConditionLine>,
    /// With `spec.rollout`: how far the current revision's rollout got.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<emco::api::rsync::RolloutStatus>,
    pub apps: Vec<AppReport>,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct ConditionLine {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct AppReport {
    pub name: String,
    pub resources: u32,
    pub deployed: u32,
    pub ready: u32,
    pub clusters: Vec<ClusterReport>,
}

#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterReport {
    pub cluster: String,
    pub connectivity: String,
    pub resources: u32,
    pub deployed: u32,
    pub ready: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_ready: Vec<String>,
    /// Per resource, with `--detail` or `--resource`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resource_status: Vec<ResourceReport>,
}

#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResourceReport {
    pub api_version: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    /// Applied, Failed, Pending or Unknown.
    pub deployed: &'static str,
    /// Ready, NotReady, NotPresent or Unknown.
    pub ready: &'static str,
}

/// The status query of `dig`, from its current AppContext (if it has one yet), filtered.
pub fn report(dig: &DeploymentIntentGroup, actx: Option<&AppContext>, filter: &Filter) -> Report {
    let status = dig.status.clone().unwrap_or_default();
    let conditions = status
        .conditions
        .iter()
        .map(|c| ConditionLine {
            type_: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
        })
        .collect();
    let apps = actx.map(|a| apps(a, filter)).unwrap_or_default();
    Report {
        name: dig.name_any(),
        namespace: dig.namespace().unwrap_or_default(),
        state: format!("{:?}", status.state),
        revision: status.revision,
        app_context: status.app_context.clone(),
        deployed: status.deployed.clone().unwrap_or_else(|| "0/0".into()),
        ready: status.ready.clone().unwrap_or_else(|| "0/0".into()),
        conditions,
        rollout: status.rollout.clone(),
        apps,
    }
}

fn apps(actx: &AppContext, filter: &Filter) -> Vec<AppReport> {
    let status = actx.status.clone().unwrap_or_default();
    let wanted = |name: &str, want: &Option<String>| want.as_deref().is_none_or(|w| w == name);
    let mut out = Vec::new();
    for app in actx.spec.apps.iter().filter(|a| wanted(&a.name, &filter.app)) {
        let observed = status.apps.iter().find(|a| a.name == app.name);
        let resources: Vec<&ResourceRef> = app.resources.iter().filter(|r| matches(r, &filter.resource)).collect();
        if filter.resource.is_some() && resources.is_empty() {
            continue;
        }
        let clusters: Vec<ClusterReport> = app
            .placements()
            .into_iter()
            .filter(|(c, _)| wanted(c, &filter.cluster))
            .map(|(cluster, bundle)| {
                let seen = observed.and_then(|a| a.clusters.iter().find(|s| s.cluster == cluster)).cloned();
                let total = bundle.map_or(0, |b| b.resources);
                let seen = seen.unwrap_or(ClusterStatus { resources: total, ..Default::default() });
                let detail = filter.detail || filter.resource.is_some();
                let resource_status =
                    if detail { resources.iter().map(|r| resource(r, &seen)).collect() } else { Vec::new() };
                ClusterReport {
                    cluster: cluster.to_string(),
                    connectivity: format!("{:?}", seen.connectivity),
                    resources: seen.resources,
                    deployed: seen.deployed,
                    ready: seen.ready,
                    failed: seen.failed.clone(),
                    not_ready: seen.not_ready.clone(),
                    resource_status,
                }
            })
            .collect();
        if clusters.is_empty() {
            continue;
        }
        let sum = |f: fn(&ClusterReport) -> u32| clusters.iter().map(f).sum();
        out.push(AppReport {
            name: app.name.clone(),
            resources: sum(|c| c.resources),
            deployed: sum(|c| c.deployed),
            ready: sum(|c| c.ready),
            clusters,
        });
    }
    out
}

fn matches(r: &ResourceRef, want: &Option<String>) -> bool {
    let Some(want) = want else { return true };
    match want.split_once('/') {
        Some((kind, name)) => r.kind.eq_ignore_ascii_case(kind) && r.name == name,
        None => r.name == *want,
    }
}

/// One resource on one cluster, from that cluster's counts and its lists of failed and not-ready
/// resources (rsync lists at most ten of each; beyond that a resource's state is Unknown).
fn resource(r: &ResourceRef, seen: &ClusterStatus) -> ResourceReport {
    let described = format!("{}/{}", r.kind, r.name);
    let named = |list: &[String]| {
        list.iter()
            .find(|e| {
                e.starts_with(&format!("{described} ")) || e.starts_with(&format!("{described}:")) || **e == described
            })
            .cloned()
    };
    let all_applied = seen.deployed == seen.resources && seen.resources > 0;
    let deployed = match named(&seen.failed) {
        Some(_) => "Failed",
        None if all_applied => "Applied",
        None if seen.deployed == 0 => "Pending",
        None => "Unknown",
    };
    let complete = seen.not_ready.len() < 10;
    let ready = match named(&seen.not_ready) {
        Some(e) if e.contains("(absent)") => "NotPresent",
        Some(_) => "NotReady",
        None if seen.ready == seen.resources && seen.resources > 0 => "Ready",
        None if deployed == "Applied" && complete => "Ready",
        None if deployed == "Pending" => "NotPresent",
        None => "Unknown",
    };
    ResourceReport {
        api_version: r.api_version.clone(),
        kind: r.kind.clone(),
        namespace: r.namespace.clone(),
        name: r.name.clone(),
        deployed,
        ready,
    }
}

/// The report as a tree: DIG, then apps, clusters and (with detail) resources. `summary` stops
/// at the apps.
pub fn tree(report: &Report, summary: bool) -> String {
    let mut out = format!(
        "DeploymentIntentGroup {}/{}: {}{}\n",
        report.namespace,
        report.name,
        report.state,
        match (&report.revision, &report.app_context) {
            (Some(r), Some(a)) => format!(", revision {r} (AppContext {a})"),
            _ => String::new(),
        }
    );
    out += &format!("  deployed {}, ready {}\n", report.deployed, report.ready);
    for c in report.conditions.iter().filter(|c| !summary || c.type_ == "Ready") {
        out += &format!("  {}={} {}: {}\n", c.type_, c.status, c.reason, c.message);
    }
    if let Some(r) = &report.rollout {
        let on: Vec<String> = r.clusters.iter().map(|c| format!("{} {:?}", c.cluster, c.phase)).collect();
        out += &format!("  rollout {} done{}: {}", r.progress, if r.paused { ", paused" } else { "" }, on.join(", "));
        out += &match r.waiting.is_empty() {
            true => "\n".to_string(),
            false => format!("; waiting: {}\n", r.waiting.join(", ")),
        };
    }
    for (i, app) in report.apps.iter().enumerate() {
        let (fork, stem) = branch(i, report.apps.len());
        out += &format!(
            "{fork}app {} on {} cluster{}: deployed {}/{}, ready {}/{}\n",
            app.name,
            app.clusters.len(),
            if app.clusters.len() == 1 { "" } else { "s" },
            app.deployed,
            app.resources,
            app.ready,
            app.resources
        );
        if summary {
            continue;
        }
        for (j, c) in app.clusters.iter().enumerate() {
            let (fork, inner) = branch(j, app.clusters.len());
            out += &format!(
                "{stem}{fork}cluster {} [{}]: deployed {}/{}, ready {}/{}\n",
                c.cluster, c.connectivity, c.deployed, c.resources, c.ready, c.resources
            );
            let notes = c.failed.iter().map(|f| format!("failed: {f}"));
            let notes = notes.chain(c.not_ready.iter().map(|n| format!("not ready: {n}")));
            let lines: Vec<String> = if c.resource_status.is_empty() {
                notes.collect()
            } else {
                c.resource_status.iter().map(resource_line).collect()
            };
            for (k, line) in lines.iter().enumerate() {
                let (fork, _) = branch(k, lines.len());
                out += &format!("{stem}{inner}{fork}{line}\n");
            }
        }
    }
    out
}

fn resource_line(r: &ResourceReport) -> String {
    let ns = r.namespace.as_deref().map(|n| format!("{n}/")).unwrap_or_default();
    format!("{} {ns}{}: {}, {}", r.kind, r.name, r.deployed, r.ready)
}

/// The branch for item `i` of `n`, and the stem under it.
fn branch(i: usize, n: usize) -> (&'static str, &'static str) {
    if i + 1 == n { ("└─ ", "   ") } else { ("├─ ", "│  ") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dig() -> DeploymentIntentGroup {
        serde_json::from_value(json!({
            "apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "DeploymentIntentGroup",
            "metadata": {"name": "smtc", "namespace": "smtc"},
            "spec": {"compositeApp": "smtc", "logicalCloud": "default", "intents": {}},
            "status": {"state": "Instantiating", "revision": 1, "appContext": "smtc-1", "deployed": "3/4", "ready": "2/4"}}))
        .unwrap()
    }

    fn actx() -> AppContext {
        let r = |kind: &str, name: &str| json!({"apiVersion": "v1", "kind": kind, "name": name});
        serde_json::from_value(json!({
            "apiVersion": "rsync.emco.io/v1alpha1", "kind": "AppContext", "metadata": {"name": "smtc-1", "namespace": "smtc"},
            "spec": {"owner": {"kind": "DeploymentIntentGroup", "name": "smtc"}, "revision": 1, "operation": "Instantiate",
                "namespace": "smtc", "apps": [{"name": "edge", "resources": [r("ConfigMap", "a"), r("Service", "b")], "clusters": [
                    {"cluster": "edge01", "bundle": {"name": "x", "parts": 1, "resources": 2}},
                    {"cluster": "edge02", "bundle": {"name": "x", "parts": 1, "resources": 2}}]}]},
            "status": {"state": "Instantiating", "apps": [{"name": "edge", "clusters": [
                {"cluster": "edge01", "connectivity": "Available", "resources": 2, "deployed": 2, "ready": 1,
                 "notReady": ["Service/b (no endpoints)"]},
                {"cluster": "edge02", "connectivity": "Retrying", "resources": 2, "deployed": 1, "ready": 1,
                 "failed": ["Service/b: forbidden (403)"]}]}]}}))
        .unwrap()
    }

    #[test]
    fn resources_get_their_state_from_the_cluster_lists() {
        let filter = Filter { detail: true, ..Default::default() };
        let r = report(&dig(), Some(&actx()), &filter);
        let states: Vec<(&str, &str, &str, &str)> = r.apps[0]
            .clusters
            .iter()
            .flat_map(|c| {
                c.resource_status.iter().map(move |s| (c.cluster.as_str(), s.name.as_str(), s.deployed, s.ready))
            })
            .collect();
        assert_eq!(
            states,
            [
                ("edge01", "a", "Applied", "Ready"),
                ("edge01", "b", "Applied", "NotReady"),
                ("edge02", "a", "Unknown", "Unknown"),
                ("edge02", "b", "Failed", "Unknown"),
            ]
        );
    }

    #[test]
    fn filters_keep_what_was_asked() {
        let only = Filter { cluster: Some("edge02".into()), ..Default::default() };
        let r = report(&dig(), Some(&actx()), &only);
        assert_eq!(r.apps[0].clusters.len(), 1);
        assert_eq!((r.apps[0].deployed, r.apps[0].resources), (1, 2));
        let by_resource = Filter { resource: Some("service/b".into()), ..Default::default() };
        let r = report(&dig(), Some(&actx()), &by_resource);
        assert!(r.apps[0].clusters.iter().all(|c| c.resource_status.len() == 1));
        let nothing = Filter { app: Some("cloud".into()), ..Default::default() };
        assert!(report(&dig(), Some(&actx()), &nothing).apps.is_empty());
        let text = tree(&report(&dig(), Some(&actx()), &Filter::default()), false);
        assert!(text.contains("└─ app edge on 2 clusters: deployed 3/4, ready 2/4"), "{text}");
        assert!(text.contains("cluster edge02 [Retrying]: deployed 1/2"), "{text}");
        assert!(text.contains("failed: Service/b: forbidden (403)"), "{text}");
    }
}
