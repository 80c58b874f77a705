//! The project controller: each Project owns one hub namespace, created and labelled here, with
//! the project's admins bound to the `admin` role in it.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::api::condition;
use crate::api::labels;
use crate::api::orchestrator::Project;
use crate::controller::{Context, MANAGER, write_status};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("hub API: {0}")]
    Hub(#[from] kube::Error),
}

pub async fn run(ctx: Arc<Context>) {
    let projects = Api::<Project>::all(ctx.hub.clone());
    Controller::new(projects, watcher::Config::default())
        .owns(Api::<Namespace>::all(ctx.hub.clone()), watcher::Config::default().labels(labels::PROJECT))
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

async fn reconcile(project: Arc<Project>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = project.namespace_name();
    let namespaces = Api::<Namespace>::all(ctx.hub.clone());
    let existing = namespaces.get_opt(&ns).await?;
    let mut status = project.status.clone().unwrap_or_default();
    let generation = project.metadata.generation;
    let owned_elsewhere =
        existing.as_ref().is_some_and(|n| n.labels().get(labels::PROJECT).is_some_and(|p| p != &project.name_any()));
    if owned_elsewhere {
        let msg = format!("namespace {ns} already belongs to another project");
        condition::set(&mut status.conditions, condition::new("Ready", false, "NamespaceTaken", msg, generation));
    } else {
        let uid = project.metadata.uid.clone();
        let ours = existing.as_ref().is_none_or(|n| n.owner_references().iter().any(|o| Some(&o.uid) == uid.as_ref()));
        apply_namespace(&ctx, &project, &ns, ours).await?;
        apply_admins(&ctx, &project, &ns).await?;
        let msg = format!("namespace {ns} is ready");
        condition::set(&mut status.conditions, condition::new("Ready", true, "NamespaceReady", msg, generation));
        status.namespace = Some(ns);
    }
    status.observed_generation = generation;
    write_status(&Api::all(ctx.hub.clone()), project.as_ref(), project.status.as_ref(), &status).await?;
    Ok(Action::await_change())
}

/// Labels the namespace; a namespace the project created is also owned by it, so it goes with it.
async fn apply_namespace(ctx: &Context, project: &Project, ns: &str, create: bool) -> kube::Result<()> {
    let mut meta =
        json!({"name": ns, "labels": {labels::PROJECT: project.name_any(), labels::MANAGED_BY: labels::MANAGER}});
    if create {
        meta["ownerReferences"] = json!([project.controller_owner_ref(&()).expect("projects have a uid")]);
    }
    let patch = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta});
    Api::<Namespace>::all(ctx.hub.clone()).patch(ns, &PatchParams::apply(MANAGER), &Patch::Apply(patch)).await?;
    Ok(())
}

async fn apply_admins(ctx: &Context, project: &Project, ns: &str) -> kube::Result<()> {
    let api = Api::<RoleBinding>::namespaced(ctx.hub.clone(), ns);
    let name = "emco-project-admins";
    if project.spec.admins.is_empty() {
        let _ = api.delete(name, &Default::default()).await;
        return Ok(());
    }
    let subjects: Vec<_> = project
        .spec
        .admins
        .iter()
        .map(|s| {
            let group = if s.kind == "ServiceAccount" { "" } else { "rbac.authorization.k8s.io" };
            json!({"kind": s.kind, "name": s.name, "apiGroup": group, "namespace": s.namespace})
        })
        .collect();
    let patch = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": name, "labels": {labels::PROJECT: project.name_any()}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": subjects,
    });
    api.patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(patch)).await?;
    Ok(())
}

fn error_policy(project: Arc<Project>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(project = %project.name_any(), %error, "project reconcile failed");
    Action::requeue(ctx.retry_after(&format!("project/{}", project.name_any())))
}
