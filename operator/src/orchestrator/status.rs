//! DIG status (pure): the DIG's state, counts and conditions, mirrored from the AppContext of its
//! current revision, or the reason the pipeline refused its inputs.

use crate::api::condition;
use crate::api::condition::ConditionType;
use crate::api::orchestrator::{DeploymentIntentGroupStatus as Status, DigState};
use crate::api::rsync::{AppContext, ContextState, Operation};

use super::PipelineError;

use super::lifecycle::stopped;

/// Copies rsync's progress on `context` into the DIG status.
pub fn mirror(status: &mut Status, context: Option<&AppContext>, generation: Option<i64>) {
    let Some(context) = context else {
        status.state = DigState::Approved;
        return;
    };
    let cs = context.status.clone().unwrap_or_default();
    status.state = match (cs.state, context.spec.operation) {
        (ContextState::Created, Operation::Terminate) => DigState::Terminating,
        (ContextState::Created, Operation::Update) => DigState::Updating,
        (ContextState::Created, _) => DigState::Instantiating,
        (s, _) => dig_state(s),
    };
    if stopped(context) {
        status.state = match status.state {
            DigState::Terminating => DigState::TerminateStopped,
            DigState::Instantiating | DigState::Updating => DigState::InstantiateStopped,
            other => other,
        };
    }
    status.deployed = cs.deployed.clone();
    status.rollout = cs.rollout.clone();
    status.ready = cs.ready.clone();
    let deployed = matches!(status.state, DigState::Instantiated | DigState::Updated);
    let (d_reason, d_message) = match condition::get(&cs.conditions, ConditionType::Deployed) {
        Some(c) => (c.reason.clone(), c.message.clone()),
        None => (format!("{:?}", status.state), "rsync has not reported yet".into()),
    };
    condition::set(
        &mut status.conditions,
        condition::new(ConditionType::Deployed, deployed, &d_reason, d_message.clone(), generation),
    );
    let all_ready = deployed && condition::is_true(&cs.conditions, ConditionType::Ready);
    let (reason, message) = if all_ready {
        ("Ready".to_string(), format!("{} resources ready", cs.ready.clone().unwrap_or_default()))
    } else if deployed {
        (
            "NotReady".to_string(),
            condition::get(&cs.conditions, ConditionType::Ready).map(|c| c.message.clone()).unwrap_or_default(),
        )
    } else if d_reason == "RolloutPaused" {
        (d_reason, d_message)
    } else {
        (format!("{:?}", status.state), d_message)
    };
    condition::set(
        &mut status.conditions,
        condition::new(ConditionType::Ready, all_ready, &reason, message, generation),
    );
}

/// Records that the pipeline refused the inputs; what `current` deployed stays as it was.
pub fn refused(status: &mut Status, current: Option<&AppContext>, error: &PipelineError, generation: Option<i64>) {
    let reason = error.reason();
    condition::set(
        &mut status.conditions,
        condition::new(ConditionType::Placed, false, reason, error.to_string(), generation),
    );
    condition::set(
        &mut status.conditions,
        condition::new(ConditionType::Ready, false, reason, error.to_string(), generation),
    );
    let live = current.is_some_and(|c| c.spec.operation != Operation::Terminate);
    status.state = if live { DigState::UpdateFailed } else { DigState::InstantiateFailed };
}

fn dig_state(s: ContextState) -> DigState {
    match s {
        ContextState::Created | ContextState::Instantiating => DigState::Instantiating,
        ContextState::Instantiated => DigState::Instantiated,
        ContextState::InstantiateFailed => DigState::InstantiateFailed,
        ContextState::Updating => DigState::Updating,
        ContextState::Updated => DigState::Updated,
        ContextState::UpdateFailed => DigState::UpdateFailed,
        ContextState::Terminating => DigState::Terminating,
        ContextState::Terminated => DigState::Terminated,
        ContextState::TerminateFailed => DigState::TerminateFailed,
    }
}
