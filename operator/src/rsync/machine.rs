//! rsync's state machine (pure): what one pass over an AppContext does, from the context alone
//! (its operation, stop flag, deletion, supersession and last status), and which apps may go now
//! given their dependencies. The reconciler carries the answer out against the members.
//!
//! EMCO's table (seed 003) with this operator's events: the context's `operation` is the event,
//! `status.state` the current state.
//!
//! | event | from | working | done | failed |
//! |---|---|---|---|---|
//! | Instantiate | any but Terminating | Instantiating | Instantiated | InstantiateFailed |
//! | Update | Created, Updating, Updated, UpdateFailed | Updating | Updated, then prune | UpdateFailed |
//! | Terminate | any | Terminating | Terminated, then release | TerminateFailed |
//!
//! Differences, all on the safe side: a Terminate is never refused (deleting what is not there
//! does nothing, and a context whose first pass crashed before its status was written may still
//! have applied something); stop gives up whatever runs; a superseded context does nothing; a
//! context being deleted terminates (or, stopped, lets go at once).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::api::condition;
use crate::api::condition::ConditionType;
use crate::api::orchestrator::OpStatus;
use crate::api::rsync::{AppContext, ContextApp, ContextState, Operation};

/// What one pass does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Superseded by a newer revision: nothing (a superseded context being deleted lets go).
    Inert { release: bool },
    /// Terminated and released: nothing left to do.
    Done,
    /// `stop` while the operation runs: give it up and say so; being deleted, let go at once.
    Stop { release: bool },
    /// Delete everything the context applied (its operation is Terminate, or it is being deleted).
    Terminate,
    /// Apply and observe; after an update that is fully applied, prune what it replaced.
    Deploy { prune: bool },
    /// The event is not valid in the current state (EMCO skips it): report, touch nothing.
    Refuse,
}

/// The pass for `actx` as it is now.
pub fn next(actx: &AppContext) -> Pass {
    let deleting = actx.metadata.deletion_timestamp.is_some();
    let state = actx.status.as_ref().map(|s| s.state).unwrap_or_default();
    let operation = actx.spec.operation;
    if actx.spec.superseded_by.is_some() && operation != Operation::Terminate {
        return Pass::Inert { release: deleting };
    }
    let released = !crate::finalizer::has(actx, super::FINALIZER);
    if state == ContextState::Terminated && operation == Operation::Terminate && released {
        return Pass::Done;
    }
    if actx.spec.stop && !finished(state, operation) {
        return Pass::Stop { release: deleting };
    }
    if deleting || operation == Operation::Terminate {
        return Pass::Terminate;
    }
    if !valid(operation, state) {
        return Pass::Refuse;
    }
    Pass::Deploy { prune: operation == Operation::Update && !pruned(actx) }
}

/// Whether `operation` may run from `state` (seed 003, less what this operator never refuses).
pub fn valid(operation: Operation, state: ContextState) -> bool {
    use ContextState::*;
    match operation {
        Operation::Instantiate => state != Terminating,
        Operation::Update => matches!(state, Created | Updating | Updated | UpdateFailed),
        Operation::Terminate => true,
    }
}

/// Whether the operation has run to its end (there is nothing left to stop).
pub fn finished(state: ContextState, operation: Operation) -> bool {
    matches!(
        (state, operation),
        (ContextState::Instantiated, Operation::Instantiate)
            | (ContextState::Updated, Operation::Update)
            | (ContextState::Terminated, Operation::Terminate)
    )
}

fn pruned(actx: &AppContext) -> bool {
    actx.status
        .as_ref()
        .and_then(|s| condition::get(&s.conditions, ConditionType::Pruned))
        .is_some_and(|c| c.status == "True")
}

/// Whether an app may be applied now, or which dependencies it still waits for: each must have
/// reached its `opStatus` (`reached`, by app and status, since when) `waitSeconds` ago.
pub fn waiting_for(app: &ContextApp, reached: &BTreeMap<(String, OpStatus), Time>, now: Timestamp) -> Vec<String> {
    app.depends_on
        .iter()
        .filter(|d| {
            let since = reached.get(&(d.app.clone(), d.op_status)).map(|t| t.0);
            since.is_none_or(|t| now < t + SignedDuration::from_secs(d.wait_seconds.into()))
        })
        .map(|d| d.app.clone())
        .collect()
}

/// Apps with every dependency before its dependents (validate refused cycles; should one slip
/// through, the apps go in their own order).
pub fn dependency_order(apps: &[ContextApp]) -> Vec<&ContextApp> {
    let nodes: Vec<(&str, Vec<&str>)> =
        apps.iter().map(|a| (a.name.as_str(), a.depends_on.iter().map(|d| d.app.as_str()).collect())).collect();
    match crate::graph::order(&nodes) {
        Ok(names) => names.iter().filter_map(|n| apps.iter().find(|a| a.name == *n)).collect(),
        Err(_) => apps.iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// An AppContext from a YAML fixture: operation, stop, deletion, supersession, finalizer, state.
    fn context(yaml: &str) -> AppContext {
        let mut v: Value = serde_saphyr::from_str(yaml).expect("fixture YAML");
        let base: Value = serde_json::json!({
            "apiVersion": "rsync.emco.io/v1alpha1", "kind": "AppContext",
            "metadata": {"name": "d-2", "namespace": "p", "finalizers": [super::super::FINALIZER]},
            "spec": {"owner": {"kind": "DeploymentIntentGroup", "name": "d"}, "revision": 2, "namespace": "p", "apps": []}
        });
        let mut merged = base;
        crate::render::merge(&mut merged, &v.take());
        serde_json::from_value(merged).expect("fixture fits AppContext")
    }

    #[test]
    fn every_event_from_every_state() {
        use ContextState::*;
        // Every state the type has, read from its schema: a new state cannot be left out here.
        let schema = serde_json::to_value(schemars::schema_for!(ContextState)).unwrap();
        let states: Vec<ContextState> =
            schema["enum"].as_array().unwrap().iter().map(|s| serde_json::from_value(s.clone()).unwrap()).collect();
        assert_eq!(states.len(), 10);
        for state in states {
            for (operation, expected_valid) in [
                ("Instantiate", state != Terminating),
                ("Update", matches!(state, Created | Updating | Updated | UpdateFailed)),
                ("Terminate", true),
            ] {
                let actx = context(&format!("{{spec: {{operation: {operation}}}, status: {{state: {state:?}}}}}"));
                let pass = next(&actx);
                let expected = match (operation, expected_valid) {
                    ("Terminate", _) => Pass::Terminate,
                    (_, false) => Pass::Refuse,
                    ("Update", true) => Pass::Deploy { prune: true },
                    _ => Pass::Deploy { prune: false },
                };
                assert_eq!(pass, expected, "{operation} from {state:?}");
            }
        }
    }

    #[test]
    fn the_table_of_special_cases() {
        let cases: &[(&str, &str, Pass)] = &[
            (
                "superseded does nothing",
                "{spec: {operation: Instantiate, supersededBy: d-3}, status: {state: Instantiated}}",
                Pass::Inert { release: false },
            ),
            (
                "superseded and deleted lets go",
                "{metadata: {deletionTimestamp: '2026-01-01T00:00:00Z'}, spec: {operation: Update, supersededBy: d-3}}",
                Pass::Inert { release: true },
            ),
            (
                "superseded but told to terminate terminates",
                "{spec: {operation: Terminate, supersededBy: d-3}, status: {state: Updated}}",
                Pass::Terminate,
            ),
            (
                "terminated and released is done",
                "{metadata: {finalizers: []}, spec: {operation: Terminate}, status: {state: Terminated}}",
                Pass::Done,
            ),
            (
                "terminated but still holding its finalizer releases",
                "{spec: {operation: Terminate}, status: {state: Terminated}}",
                Pass::Terminate,
            ),
            (
                "stop while instantiating gives up",
                "{spec: {operation: Instantiate, stop: true}, status: {state: Instantiating}}",
                Pass::Stop { release: false },
            ),
            (
                "stop while terminating gives up",
                "{spec: {operation: Terminate, stop: true}, status: {state: Terminating}}",
                Pass::Stop { release: false },
            ),
            (
                "stop after the end changes nothing",
                "{spec: {operation: Instantiate, stop: true}, status: {state: Instantiated}}",
                Pass::Deploy { prune: false },
            ),
            (
                "stopped and deleted lets go at once",
                "{metadata: {deletionTimestamp: '2026-01-01T00:00:00Z'}, spec: {operation: Instantiate, stop: true}, status: {state: Instantiating}}",
                Pass::Stop { release: true },
            ),
            (
                "deleted terminates first",
                "{metadata: {deletionTimestamp: '2026-01-01T00:00:00Z'}, spec: {operation: Instantiate}, status: {state: Instantiated}}",
                Pass::Terminate,
            ),
            (
                "an update already pruned does not prune again",
                "{spec: {operation: Update}, status: {state: Updated, conditions: [{type: Pruned, status: 'True', reason: Pruned, message: m, lastTransitionTime: '2026-01-01T00:00:00Z'}]}}",
                Pass::Deploy { prune: false },
            ),
            (
                "a failed prune is tried again",
                "{spec: {operation: Update}, status: {state: Updating, conditions: [{type: Pruned, status: 'False', reason: PruneFailed, message: m, lastTransitionTime: '2026-01-01T00:00:00Z'}]}}",
                Pass::Deploy { prune: true },
            ),
            ("a new context has no status yet", "{spec: {operation: Instantiate}}", Pass::Deploy { prune: false }),
        ];
        for (name, yaml, expected) in cases {
            assert_eq!(next(&context(yaml)), *expected, "{name}");
        }
    }

    #[test]
    fn an_app_waits_for_its_dependencies_and_their_wait_seconds() {
        let app: ContextApp = serde_json::from_value(serde_json::json!(
            {"name": "web", "clusters": [], "dependsOn": [{"app": "db", "opStatus": "Ready", "waitSeconds": 10}]}
        ))
        .unwrap();
        let now = Timestamp::from_second(1_000).unwrap();
        let at = |s: i64| Time(Timestamp::from_second(s).unwrap());
        let reached = |s: i64| BTreeMap::from([(("db".to_string(), OpStatus::Ready), at(s))]);
        assert_eq!(waiting_for(&app, &BTreeMap::new(), now), ["db"], "db not ready yet");
        assert_eq!(waiting_for(&app, &reached(995), now), ["db"], "ready 5 s ago, 10 s asked");
        assert!(waiting_for(&app, &reached(990), now).is_empty(), "ready 10 s ago");
        let deployed_only = BTreeMap::from([(("db".to_string(), OpStatus::Deployed), at(0))]);
        assert_eq!(waiting_for(&app, &deployed_only, now), ["db"], "Deployed is not Ready");
    }

    #[test]
    fn dependencies_come_first_and_unknown_ones_are_ignored() {
        let apps: Vec<ContextApp> = serde_json::from_value(serde_json::json!([
            {"name": "web", "clusters": [], "dependsOn": [{"app": "api", "opStatus": "Ready"}]},
            {"name": "api", "clusters": [], "dependsOn": [{"app": "db", "opStatus": "Deployed"}, {"app": "gone", "opStatus": "Ready"}]},
            {"name": "db", "clusters": []}
        ]))
        .unwrap();
        let order: Vec<&str> = dependency_order(&apps).iter().map(|a| a.name.as_str()).collect();
        assert_eq!(order, ["db", "api", "web"]);
    }
}
