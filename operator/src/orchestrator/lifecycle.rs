//! The DIG lifecycle (pure): what the reconciler does next, from the DIG (its lifecycle fields and
//! history), the AppContext of its current revision, and what reading its inputs gave.
//!
//! EMCO's operations are fields here (seed 003, "Orchestrator Lifecycle Operations"):
//!
//! | DIG | current revision | step |
//! |---|---|---|
//! | being deleted | live | Terminate, then Release once Terminated (or stopped) |
//! | `approved: false` | any | AwaitApproval (what is deployed stays) |
//! | `state: Terminated` | live | Terminate |
//! | `state: Terminated` | none, or terminated | Idle |
//! | `rollbackTo: n`, n in the history | not from n | RollBack(n) |
//! | `rollbackTo: n`, n not kept | any | RefuseRollback(n) |
//! | `state: Instantiated` | any | ReadInputs, then UpToDate, NewRevision, Refuse or RetryInputs |
//!
//! EMCO refuses `terminate` before `instantiate` and `instantiate` twice; declaratively those are
//! simply Idle and UpToDate. `stop` is passed to the current revision whatever the step.

use kube::ResourceExt;

use crate::api::condition::ConditionType;
use crate::api::orchestrator::{DeploymentIntentGroup as Dig, DesiredState};
use crate::api::rsync::{AppContext, ContextState, Operation};

use super::revisions::INPUT_HASH;

/// What reading the DIG's inputs gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// Not read yet.
    NotYet,
    /// Read: the hash of everything that shapes the deployment.
    Hash(String),
    /// Could not be read for now (the hub or a repository failed): retry.
    Transient,
    /// Read and refused (something named is missing or invalid).
    Refused,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Deleting: ask rsync to terminate the current revision (and those it has not pruned).
    TerminateBeforeDelete,
    /// Deleting and nothing is left on the members (or `stop` gave up): let the DIG go.
    Release,
    /// `approved` is false: nothing new reaches the members.
    AwaitApproval,
    /// `state: Terminated` with a live revision.
    Terminate,
    /// Nothing to do (terminated already, or never deployed and not asked to).
    Idle,
    /// Deploy revision n's bundles again as a new revision.
    RollBack(u32),
    /// Revision n is not in the kept history.
    RefuseRollback(u32),
    /// Read the inputs, then decide again.
    ReadInputs,
    /// The inputs could not be read: keep what is deployed, retry with backoff.
    RetryInputs,
    /// The inputs are refused: keep what is deployed, report why.
    Refuse,
    /// The current revision was made from these inputs.
    UpToDate,
    /// Make a new revision from these inputs.
    NewRevision,
}

/// The marker kept as input hash on a rollback revision.
pub fn rollback_hash(target: u32) -> String {
    format!("rollback-{target}")
}

/// The next step for `dig` with `current` (its current revision) and what reading gave.
pub fn decide(dig: &Dig, current: Option<&AppContext>, read: &Read) -> Step {
    let live = current.filter(|c| c.spec.operation != Operation::Terminate);
    if dig.metadata.deletion_timestamp.is_some() {
        let gave_up = dig.spec.stop && current.is_some_and(stopped);
        return if gave_up || current.is_none_or(terminated) { Step::Release } else { Step::TerminateBeforeDelete };
    }
    if !dig.spec.approved {
        return Step::AwaitApproval;
    }
    if dig.spec.state == DesiredState::Terminated {
        return if live.is_some() { Step::Terminate } else { Step::Idle };
    }
    if let Some(target) = dig.spec.rollback_to {
        let kept = dig.status.as_ref().is_some_and(|s| s.history.iter().any(|h| h.revision == target));
        return match (up_to_date(current, &rollback_hash(target)), kept) {
            (true, _) => Step::UpToDate,
            (false, true) => Step::RollBack(target),
            (false, false) => Step::RefuseRollback(target),
        };
    }
    match read {
        Read::NotYet => Step::ReadInputs,
        Read::Transient => Step::RetryInputs,
        Read::Refused => Step::Refuse,
        Read::Hash(hash) if up_to_date(current, hash) => Step::UpToDate,
        Read::Hash(_) => Step::NewRevision,
    }
}

/// Whether `current` is live and was made from inputs with this hash. A context marked superseded
/// whose successor was never recorded (a failed store) is not: a new revision takes over.
pub fn up_to_date(current: Option<&AppContext>, hash: &str) -> bool {
    current.is_some_and(|c| {
        c.spec.operation != Operation::Terminate
            && c.spec.superseded_by.is_none()
            && c.annotations().get(INPUT_HASH).map(String::as_str) == Some(hash)
    })
}

/// Whether rsync has removed everything `context` applied.
pub fn terminated(context: &AppContext) -> bool {
    context.status.as_ref().is_some_and(|s| s.state == ContextState::Terminated)
}

/// Whether rsync gave up `context`'s operation because of `stop`.
pub fn stopped(context: &AppContext) -> bool {
    context.spec.stop
        && context
            .status
            .as_ref()
            .is_some_and(|s| crate::api::condition::is_true(&s.conditions, ConditionType::Stopped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn dig(yaml: &str) -> Dig {
        let mut base = json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "DeploymentIntentGroup",
            "metadata": {"name": "d", "namespace": "p"},
            "spec": {"compositeApp": "ca", "logicalCloud": "lc", "intents": {"genericPlacementIntent": "g"}, "approved": true},
            "status": {"history": [{"revision": 1, "appContext": "d-1", "generation": 1, "time": "2026-01-01T00:00:00Z"},
                                   {"revision": 2, "appContext": "d-2", "generation": 2, "time": "2026-01-01T00:00:00Z"}]}});
        let overlay: Value = serde_saphyr::from_str(yaml).expect("fixture YAML");
        crate::render::merge(&mut base, &overlay);
        serde_json::from_value(base).expect("fixture fits the DIG")
    }

    fn context(yaml: &str) -> AppContext {
        let mut base = json!({"apiVersion": "rsync.emco.io/v1alpha1", "kind": "AppContext",
            "metadata": {"name": "d-2", "namespace": "p", "annotations": {INPUT_HASH: "h2"}},
            "spec": {"owner": {"kind": "DeploymentIntentGroup", "name": "d"}, "revision": 2, "operation": "Instantiate",
                     "namespace": "p", "apps": []},
            "status": {"state": "Instantiated"}});
        let overlay: Value = serde_saphyr::from_str(yaml).expect("fixture YAML");
        crate::render::merge(&mut base, &overlay);
        serde_json::from_value(base).expect("fixture fits the AppContext")
    }

    const DELETING: &str = "{metadata: {deletionTimestamp: '2026-01-01T00:00:00Z'}}";

    #[test]
    fn the_lifecycle_table() {
        let hash = |h: &str| Read::Hash(h.into());
        let none = "";
        // (case, DIG overlay, current revision overlay or "" for none, read, step)
        let cases: &[(&str, &str, &str, Read, Step)] = &[
            ("created: waits for approval", "{spec: {approved: false}}", none, Read::NotYet, Step::AwaitApproval),
            (
                "unapproved later: what is deployed stays",
                "{spec: {approved: false}}",
                "{}",
                Read::NotYet,
                Step::AwaitApproval,
            ),
            ("approved: reads its inputs", "{}", none, Read::NotYet, Step::ReadInputs),
            ("instantiate: a first revision", "{}", none, hash("h1"), Step::NewRevision),
            ("instantiated from these inputs", "{}", "{}", hash("h2"), Step::UpToDate),
            ("update: inputs changed", "{}", "{}", hash("h3"), Step::NewRevision),
            (
                "update while the last one still runs",
                "{}",
                "{status: {state: Updating}}",
                hash("h3"),
                Step::NewRevision,
            ),
            (
                "re-instantiate after terminate",
                "{}",
                "{spec: {operation: Terminate}, status: {state: Terminated}}",
                hash("h2"),
                Step::NewRevision,
            ),
            (
                "a superseded current (failed store) is replaced",
                "{}",
                "{spec: {supersededBy: d-3}}",
                hash("h2"),
                Step::NewRevision,
            ),
            ("inputs missing: refused, deployed stays", "{}", "{}", Read::Refused, Step::Refuse),
            ("hub down: retried", "{}", "{}", Read::Transient, Step::RetryInputs),
            ("terminate", "{spec: {state: Terminated}}", "{}", Read::NotYet, Step::Terminate),
            (
                "terminate while instantiating",
                "{spec: {state: Terminated}}",
                "{status: {state: Instantiating}}",
                Read::NotYet,
                Step::Terminate,
            ),
            (
                "terminate before instantiate: nothing to do",
                "{spec: {state: Terminated}}",
                none,
                Read::NotYet,
                Step::Idle,
            ),
            (
                "terminated already",
                "{spec: {state: Terminated}}",
                "{spec: {operation: Terminate}, status: {state: Terminated}}",
                Read::NotYet,
                Step::Idle,
            ),
            ("rollback to a kept revision", "{spec: {rollbackTo: 1}}", "{}", Read::NotYet, Step::RollBack(1)),
            (
                "rolled back already",
                "{spec: {rollbackTo: 1}}",
                "{metadata: {annotations: {emco.io/input-hash: rollback-1}}}",
                Read::NotYet,
                Step::UpToDate,
            ),
            (
                "rollback to a revision not kept is refused",
                "{spec: {rollbackTo: 9}}",
                "{}",
                Read::NotYet,
                Step::RefuseRollback(9),
            ),
            ("deleted: terminate first", DELETING, "{}", Read::NotYet, Step::TerminateBeforeDelete),
            (
                "deleted while terminating: wait",
                DELETING,
                "{spec: {operation: Terminate}, status: {state: Terminating}}",
                Read::NotYet,
                Step::TerminateBeforeDelete,
            ),
            (
                "deleted and terminated: let go",
                DELETING,
                "{spec: {operation: Terminate}, status: {state: Terminated}}",
                Read::NotYet,
                Step::Release,
            ),
            ("deleted, never deployed: let go", DELETING, none, Read::NotYet, Step::Release),
            (
                "deleted, stopped: let go",
                "{metadata: {deletionTimestamp: '2026-01-01T00:00:00Z'}, spec: {stop: true}}",
                "{spec: {stop: true, operation: Terminate}, status: {state: Terminating, conditions: [{type: Stopped, status: 'True', reason: Stopped, message: m, lastTransitionTime: '2026-01-01T00:00:00Z'}]}}",
                Read::NotYet,
                Step::Release,
            ),
            (
                "deleted, stop asked but not yet honoured: wait",
                "{metadata: {deletionTimestamp: '2026-01-01T00:00:00Z'}, spec: {stop: true}}",
                "{spec: {operation: Terminate}, status: {state: Terminating}}",
                Read::NotYet,
                Step::TerminateBeforeDelete,
            ),
        ];
        for (case, d, c, read, step) in cases {
            let current = (!c.is_empty()).then(|| context(c));
            assert_eq!(decide(&dig(d), current.as_ref(), read), *step, "{case}");
        }
    }
}
