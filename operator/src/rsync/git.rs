//! rsync's work on GitOps members: per cluster, one write of the DIG's folder holding every app
//! of this pass there (one commit when anything changed, none otherwise), then the agent's report
//! read into each unit's status. Terminate writes the folder away and is done once the report
//! shows nothing of it left. Prune needs nothing more: the folder always holds exactly the
//! current revision, and the applying tool removes what left it.

use std::collections::BTreeMap;

use futures::FutureExt;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use serde_json::Value;

use super::{Context, Unit, bounded, key, member};
use crate::api::rsync::{AppContext, ClusterStatus, Connectivity};
use crate::gitops::layout;
use crate::gitops::repo::Change;

/// Whether `cluster` is reached through Git.
pub(super) fn is_git(ctx: &Context, cluster: &str) -> bool {
    ctx.clusters.get(&ObjectRef::new(cluster)).is_some_and(|c| c.spec.is_git())
}

/// Writes (or, under terminate, removes) `units` on their GitOps clusters and reads back how
/// they fare.
pub(super) async fn sync(
    ctx: &Context,
    actx: &AppContext,
    units: &[&Unit],
    terminate: bool,
) -> Vec<((String, String), ClusterStatus)> {
    let mut by_cluster: BTreeMap<&str, Vec<&Unit>> = BTreeMap::new();
    for u in units {
        by_cluster.entry(u.cluster.as_str()).or_default().push(u);
    }
    let work = by_cluster.into_iter().map(|(c, us)| sync_cluster(ctx, actx, c, us, terminate).boxed()).collect();
    bounded(work).await.into_iter().flatten().collect()
}

/// The objects of `u` as written, each with the digest it carries.
fn written(u: &Unit, namespace: &str) -> Vec<(Value, String)> {
    u.resources
        .iter()
        .map(|r| {
            let placed = layout::placed(r, namespace);
            let digest = member::content_digest(&placed);
            (member::with_digest(&placed, &placed), digest)
        })
        .collect()
}

#[tracing::instrument(skip_all, fields(appcontext = %actx.name_any(), cluster))]
async fn sync_cluster(
    ctx: &Context,
    actx: &AppContext,
    cluster: &str,
    units: Vec<&Unit>,
    terminate: bool,
) -> Vec<((String, String), ClusterStatus)> {
    let ns = &actx.spec.namespace;
    let base = |u: &Unit| {
        let total = u.resources.len() as u32;
        ClusterStatus {
            cluster: cluster.to_string(),
            connectivity: Connectivity::Unknown,
            resources: total,
            deployed: if terminate { total } else { 0 },
            observed_generation: actx.metadata.generation,
            ..Default::default()
        }
    };
    let failed = |message: String, connectivity: Connectivity| {
        let status = |u: &Unit| ClusterStatus { failed: vec![message.clone()], connectivity, ..base(u) };
        units.iter().map(|u| (key(u), status(u))).collect::<Vec<_>>()
    };
    let Some(found) = ctx.clusters.get(&ObjectRef::new(cluster)) else {
        return failed(format!("cluster {cluster} is not registered"), Connectivity::Unknown);
    };
    let Some(git) = found.spec.git_ops.as_ref() else {
        return failed("not a GitOps cluster".into(), Connectivity::Unknown);
    };
    if actx.spec.logical_cloud.is_some() && !terminate {
        let message = "a logical cloud's user cannot reach a GitOps cluster: use an Admin logical cloud there";
        return failed(message.into(), Connectivity::Available);
    }
    let remote = match ctx.members.git_credentials(&found) {
        Ok(credentials) => crate::gitops::remote(&found, credentials).expect("a GitOps cluster"),
        Err(e) => return failed(e.to_string(), Connectivity::Unknown),
    };
    let written: Vec<(&str, Vec<(Value, String)>)> = units.iter().map(|u| (u.app.as_str(), written(u, ns))).collect();
    let files = match terminate {
        true => BTreeMap::new(),
        false => {
            let apps: Vec<(&str, Vec<Value>)> =
                written.iter().map(|(a, objs)| (*a, objs.iter().map(|(o, _)| o.clone()).collect())).collect();
            let makes_namespace = actx.spec.owner.kind != "LogicalCloud";
            layout::files(&apps, makes_namespace.then_some(ns.as_str()))
        }
    };
    let project = actx.namespace().unwrap_or_default();
    let folder = layout::dig_folder(&git.repository.path, &project, &actx.spec.owner.label());
    let what = if terminate { "terminate".to_string() } else { format!("{:?}", actx.spec.operation).to_lowercase() };
    let message = format!(
        "{project}/{} revision {} on {cluster}: {what}\n\nAppContext {}",
        actx.spec.owner.label(),
        actx.spec.revision,
        actx.name_any()
    );
    let change = Change { folder, files: Some(files), message };
    let status_file = git.repository.status_file();
    let exchange = match ctx.git.exchange(&remote, Some(change), Some(&status_file)).await {
        Ok(e) => e,
        Err(e) => {
            let connectivity = if e.transient() { Connectivity::Retrying } else { Connectivity::Available };
            return failed(e.to_string(), connectivity);
        }
    };
    if let Some(commit) = &exchange.committed {
        tracing::info!(appcontext = %actx.name_any(), cluster, commit, "committed");
    }
    let report = exchange.read.as_deref().and_then(layout::Report::parse);
    units
        .iter()
        .zip(&written)
        .map(|(u, (_, objects))| {
            let judged = layout::judge(objects, report.as_ref());
            let mut status = ClusterStatus { connectivity: Connectivity::Available, ..base(u) };
            match terminate {
                true => status.deployed = judged.remaining,
                false => {
                    status.deployed = status.resources;
                    status.ready = judged.ready;
                    status.not_ready = judged.not_ready;
                    status.failed = judged.failed;
                }
            }
            (key(u), status)
        })
        .collect()
}
