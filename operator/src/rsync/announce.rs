//! The Events a person follows a deployment by, on the AppContext's owner (the DIG, or the
//! logical cloud), so that `kubectl events --for dig/<name>` tells the story: applied to a
//! cluster, a cluster unreachable and back, instantiated / updated / terminated or failed, ready,
//! pruned, drift repaired, refused. [`notes`] is pure: what changed between two statuses.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::ResourceExt;
use kube::runtime::events::EventType;

use crate::api::condition::{self, ConditionType};
use crate::api::rsync::{AppContext, AppContextStatus, Connectivity, ContextState};

/// One Event to publish.
#[derive(Debug, PartialEq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
    /// The member it is about, if one: the Event's related object, which also keeps the Events
    /// of different clusters apart (Events of one reason on one object are otherwise one series).
    pub cluster: Option<String>,
}

fn normal(reason: &'static str, message: String) -> Note {
    Note { warning: false, reason, message, cluster: None }
}

fn warning(reason: &'static str, message: String) -> Note {
    Note { warning: true, reason, message, cluster: None }
}

impl Note {
    fn on(self, cluster: &str) -> Note {
        Note { cluster: Some(cluster.to_string()), ..self }
    }
}

/// Per cluster: (resources, deployed, reachable), over every app there.
fn by_cluster(status: &AppContextStatus) -> BTreeMap<&str, (u32, u32, bool)> {
    let mut out: BTreeMap<&str, (u32, u32, bool)> = BTreeMap::new();
    for c in status.apps.iter().flat_map(|a| &a.clusters) {
        let e = out.entry(c.cluster.as_str()).or_insert((0, 0, true));
        e.0 += c.resources;
        e.1 += c.deployed;
        e.2 &= c.connectivity != Connectivity::Retrying;
    }
    out
}

/// The first failure recorded for `cluster`, for the message.
fn first_failure<'a>(status: &'a AppContextStatus, cluster: &str) -> &'a str {
    let failures = status.apps.iter().flat_map(|a| &a.clusters).filter(|c| c.cluster == cluster);
    failures.flat_map(|c| &c.failed).next().map_or("no answer", String::as_str)
}

/// What changed from `before` to `now`, as Events, for revision `revision`.
pub fn notes(before: &AppContextStatus, now: &AppContextStatus, revision: u32, terminating: bool) -> Vec<Note> {
    let mut out = Vec::new();
    let (was, is) = (by_cluster(before), by_cluster(now));
    for (cluster, &(resources, deployed, reachable)) in &is {
        let (_, was_deployed, was_reachable) = was.get(cluster).copied().unwrap_or((resources, 0, true));
        if was_reachable && !reachable {
            let why = first_failure(now, cluster);
            out.push(
                warning("ClusterUnreachable", format!("{cluster} cannot be reached, retrying: {why}")).on(cluster),
            );
        } else if !was_reachable && reachable {
            out.push(normal("ClusterReachable", format!("{cluster} answers again")).on(cluster));
        }
        if !terminating && deployed == resources && was_deployed < resources && resources > 0 {
            let note = format!("revision {revision}: {resources} resources applied to {cluster}");
            out.push(normal("Applied", note).on(cluster));
        }
    }
    if before.state != now.state {
        let clusters = is.len();
        let deployed = now.deployed.as_deref().unwrap_or("0/0");
        match now.state {
            ContextState::Instantiated | ContextState::Updated => out.push(normal(
                state_reason(now.state),
                format!("revision {revision}: {deployed} resources applied on {clusters} clusters"),
            )),
            ContextState::Terminated => out.push(normal(
                "Terminated",
                format!("revision {revision}: every resource removed from {clusters} clusters"),
            )),
            ContextState::InstantiateFailed | ContextState::UpdateFailed | ContextState::TerminateFailed => {
                let why = now.apps.iter().flat_map(|a| &a.clusters).flat_map(|c| &c.failed).next();
                let why = why.map_or("see the AppContext's status", String::as_str);
                out.push(warning(state_reason(now.state), format!("revision {revision}: {why}")));
            }
            _ => {}
        }
    }
    for (kind, reason) in [(ConditionType::Ready, "Ready"), (ConditionType::Pruned, "Pruned")] {
        let became = condition::is_true(&now.conditions, kind) && !condition::is_true(&before.conditions, kind);
        if let Some(c) = condition::get(&now.conditions, kind).filter(|_| became) {
            out.push(normal(reason, format!("revision {revision}: {}", c.message)));
        }
    }
    out
}

fn state_reason(state: ContextState) -> &'static str {
    match state {
        ContextState::Instantiated => "Instantiated",
        ContextState::Updated => "Updated",
        ContextState::InstantiateFailed => "InstantiateFailed",
        ContextState::UpdateFailed => "UpdateFailed",
        _ => "TerminateFailed",
    }
}

/// The object Events about `actx` go on: its owner (a DIG or a logical cloud), else itself.
pub fn owner(actx: &AppContext) -> ObjectReference {
    let Some(o) = actx.owner_references().first() else { return kube::Resource::object_ref(actx, &()) };
    ObjectReference {
        api_version: Some(o.api_version.clone()),
        kind: Some(o.kind.clone()),
        name: Some(o.name.clone()),
        namespace: actx.namespace(),
        uid: Some(o.uid.clone()),
        ..Default::default()
    }
}

/// A reference to Cluster `name`, for an Event's related object.
pub fn cluster(name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("clm.emco.io/v1alpha1".into()),
        kind: Some("Cluster".into()),
        name: Some(name.into()),
        ..Default::default()
    }
}

/// Publishes `notes` on the owner of `actx`.
pub async fn publish(recorder: &kube::runtime::events::Recorder, actx: &AppContext, notes: Vec<Note>) {
    let about = owner(actx);
    for note in notes {
        let type_ = if note.warning { EventType::Warning } else { EventType::Normal };
        tracing::info!(appcontext = %actx.name_any(), cluster = ?note.cluster, reason = note.reason, "{}", note.message);
        let event = kube::runtime::events::Event {
            type_,
            reason: note.reason.into(),
            note: Some(note.message),
            action: "Rsync".into(),
            secondary: note.cluster.as_deref().map(cluster),
        };
        crate::reconcile::publish_event(recorder, &event, &about).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(state: &str, clusters: serde_json::Value) -> AppContextStatus {
        serde_json::from_value(
            json!({"state": state, "deployed": "2/2", "apps": [{"name": "web", "clusters": clusters}]}),
        )
        .unwrap()
    }

    #[test]
    fn a_deployment_tells_its_story() {
        let start = status(
            "Instantiating",
            json!([
            {"cluster": "edge01", "connectivity": "Available", "resources": 1, "deployed": 0, "ready": 0},
            {"cluster": "edge02", "connectivity": "Unknown", "resources": 1, "deployed": 0, "ready": 0}]),
        );
        let half = status(
            "Instantiating",
            json!([
            {"cluster": "edge01", "connectivity": "Available", "resources": 1, "deployed": 1, "ready": 0},
            {"cluster": "edge02", "connectivity": "Retrying", "resources": 1, "deployed": 0, "ready": 0,
             "failed": ["cluster unreachable: connection refused"]}]),
        );
        let done = status(
            "Instantiated",
            json!([
            {"cluster": "edge01", "connectivity": "Available", "resources": 1, "deployed": 1, "ready": 0},
            {"cluster": "edge02", "connectivity": "Available", "resources": 1, "deployed": 1, "ready": 0}]),
        );
        let reasons = |a, b| notes(a, b, 3, false).into_iter().map(|n| n.reason).collect::<Vec<_>>();
        assert_eq!(reasons(&start, &half), ["Applied", "ClusterUnreachable"]);
        assert!(notes(&start, &half, 3, false)[1].message.contains("connection refused"));
        assert_eq!(reasons(&half, &done), ["ClusterReachable", "Applied", "Instantiated"]);
        assert_eq!(reasons(&done, &done), Vec::<&str>::new(), "nothing new, nothing said");
    }
}
