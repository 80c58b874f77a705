//! The project controller: each Project owns one hub namespace, created and labelled here, with
//! the project's admins bound to the `emco-project-admin` role in it.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::api::condition;
use crate::api::condition::ConditionType;
use crate::api::labels;
use crate::api::orchestrator::Project;
use crate::reconcile::{Backoff, MANAGER, write_status};

/// What the project controller needs.
pub struct Context {
    pub hub: kube::Client,
    /// No Project may claim the operator's own namespace.
    pub operator_namespace: String,
    pub backoff: Backoff,
}

type Error = crate::reconcile::HubError;

pub async fn run(ctx: Arc<Context>) {
    // Unreadable objects are reported and skipped, never a stalled watch (`reconcile::readable`).
    let projects = Api::<DeserializeGuard<Project>>::all(ctx.hub.clone());
    Controller::new(projects, watcher::Config::default())
        .owns(Api::<Namespace>::all(ctx.hub.clone()), watcher::Config::default().labels(labels::PROJECT))
        .shutdown_on_signal()
        .run(|o, c| crate::metrics::reconciled("projects", reconcile(o, c)), error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

async fn reconcile(guard: Arc<DeserializeGuard<Project>>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(project) = crate::reconcile::readable(&guard, None).await else { return Ok(Action::await_change()) };
    let ns = project.namespace_name();
    let existing = Api::<Namespace>::all(ctx.hub.clone()).get_opt(&ns).await?;
    let mut status = project.status.clone().unwrap_or_default();
    let generation = project.metadata.generation;
    match claim(&project, &ns, existing.as_ref(), &ctx.operator_namespace) {
        Err((reason, msg)) => {
            condition::set(
                &mut status.conditions,
                condition::new(ConditionType::Ready, false, reason, msg, generation),
            );
            status.namespace = None;
        }
        Ok(create) => {
            if !labelled(existing.as_ref(), &project) {
                apply_namespace(&ctx, &project, &ns, create).await?;
            }
            apply_admins(&ctx, &project, &ns).await?;
            let msg = format!("namespace {ns} is ready");
            condition::set(
                &mut status.conditions,
                condition::new(ConditionType::Ready, true, "NamespaceReady", msg, generation),
            );
            status.namespace = Some(ns);
        }
    }
    status.observed_generation = generation;
    write_status(&Api::all(ctx.hub.clone()), project.as_ref(), project.status.as_ref(), &status).await?;
    Ok(Action::await_change())
}

/// Whether `project` may have namespace `ns` (`Ok(true)`: create and own it; `Ok(false)`: it is
/// already the project's), or why not. A project gets a namespace it creates, or one an admin
/// labelled `emco.io/project=<project>`; never the operator's, `default` or a `kube-*` one.
pub fn claim(
    project: &Project,
    ns: &str,
    existing: Option<&Namespace>,
    operator_namespace: &str,
) -> Result<bool, (&'static str, String)> {
    if ns == operator_namespace || ns == "default" || ns.starts_with("kube-") {
        return Err(("NamespaceReserved", format!("namespace {ns} is reserved for the system or the operator")));
    }
    let Some(existing) = existing else { return Ok(true) };
    match existing.labels().get(labels::PROJECT) {
        Some(p) if p == &project.name_any() => {
            let uid = project.metadata.uid.as_ref();
            Ok(existing.owner_references().iter().any(|o| Some(&o.uid) == uid))
        }
        Some(_) => Err(("NamespaceTaken", format!("namespace {ns} already belongs to another project"))),
        None => Err((
            "NamespaceNotClaimable",
            format!(
                "namespace {ns} exists and was not made for this project: an admin can label it {}={} to hand it over",
                labels::PROJECT,
                project.name_any()
            ),
        )),
    }
}

/// Whether the namespace carries the project's labels already (nothing to write).
fn labelled(existing: Option<&Namespace>, project: &Project) -> bool {
    existing.is_some_and(|n| {
        n.labels().get(labels::PROJECT) == Some(&project.name_any())
            && n.labels().get(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGER)
    })
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

/// The ClusterRole (shipped by the chart) a Project's `admins` get in its namespace.
pub const PROJECT_ADMIN_ROLE: &str = "emco-project-admin";

async fn apply_admins(ctx: &Context, project: &Project, ns: &str) -> kube::Result<()> {
    let api = Api::<RoleBinding>::namespaced(ctx.hub.clone(), ns);
    let name = "emco-project-admins";
    let existing = api.get_opt(name).await?;
    if project.spec.admins.is_empty() {
        if existing.is_some() {
            let _ = api.delete(name, &Default::default()).await;
        }
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
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": PROJECT_ADMIN_ROLE},
        "subjects": subjects,
    });
    if existing.as_ref().is_some_and(|b| same_binding(b, &patch)) {
        return Ok(());
    }
    // roleRef cannot change: a binding to another role (an older operator's) is made again.
    if existing.is_some_and(|b| b.role_ref.name != PROJECT_ADMIN_ROLE) {
        api.delete(name, &Default::default()).await?;
    }
    api.patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(patch)).await?;
    Ok(())
}

/// Whether binding `b` already is what `desired` (the patch) says.
fn same_binding(b: &RoleBinding, desired: &serde_json::Value) -> bool {
    let subjects = serde_json::to_value(b.subjects.clone().unwrap_or_default()).unwrap_or_default();
    let wanted: Vec<k8s_openapi::api::rbac::v1::Subject> =
        serde_json::from_value(desired["subjects"].clone()).unwrap_or_default();
    b.role_ref.name == PROJECT_ADMIN_ROLE
        && subjects == serde_json::to_value(wanted).unwrap_or_default()
        && b.labels().get(labels::PROJECT).map(String::as_str)
            == desired["metadata"]["labels"][labels::PROJECT].as_str()
}

fn error_policy(project: Arc<DeserializeGuard<Project>>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(project = %project.name_any(), %error, "project reconcile failed");
    Action::requeue(ctx.backoff.retry_after(&format!("project/{}", project.name_any())))
}
