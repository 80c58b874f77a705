//! Conditions: the `Ready`-and-friends entries on every status, set so that
//! `lastTransitionTime` only moves when the status flips.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// The condition types the operator writes (serialized by name, as Kubernetes conditions are).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionType {
    /// Everything asked for is in place and healthy (every kind).
    Ready,
    /// A member's API server answered (Cluster).
    Reachable,
    /// `spec.approved` (DIG).
    Approved,
    /// The inputs could be read (DIG).
    InputsResolved,
    /// The pipeline placed the apps (DIG).
    Placed,
    /// Every resource is applied (DIG, AppContext).
    Deployed,
    /// An update removed what it replaced (AppContext).
    Pruned,
    /// `stop` gave the operation up (AppContext).
    Stopped,
    /// Everything the logical cloud made on its members is gone (LogicalCloud).
    Terminated,
}

impl AsRef<str> for ConditionType {
    fn as_ref(&self) -> &str {
        match self {
            ConditionType::Ready => "Ready",
            ConditionType::Reachable => "Reachable",
            ConditionType::Approved => "Approved",
            ConditionType::InputsResolved => "InputsResolved",
            ConditionType::Placed => "Placed",
            ConditionType::Deployed => "Deployed",
            ConditionType::Pruned => "Pruned",
            ConditionType::Stopped => "Stopped",
            ConditionType::Terminated => "Terminated",
        }
    }
}

/// Builds a condition of `type_`; `reason` is CamelCase, `message` is for people.
pub fn new(
    type_: ConditionType,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.as_ref().to_string(),
        status: if ok { "True" } else { "False" }.to_string(),
        reason: reason.to_string(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: Time(Timestamp::now()),
    }
}

/// Sets `cond` in `conditions`, keeping the old transition time when the status did not change.
pub fn set(conditions: &mut Vec<Condition>, mut cond: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == cond.type_) {
        Some(old) => {
            if old.status == cond.status {
                cond.last_transition_time = old.last_transition_time.clone();
            }
            *old = cond;
        }
        None => conditions.push(cond),
    }
}

/// Keeps, in `conditions` (made afresh), the transition times of `before` for every condition
/// whose status did not change: a pass that finds everything as it was writes nothing.
pub fn keep_times(before: &[Condition], conditions: &mut [Condition]) {
    for c in conditions.iter_mut() {
        if let Some(old) = before.iter().find(|o| o.type_ == c.type_ && o.status == c.status) {
            c.last_transition_time = old.last_transition_time.clone();
        }
    }
}

/// The condition of `type_`, if present.
pub fn get(conditions: &[Condition], type_: impl AsRef<str>) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == type_.as_ref())
}

/// Whether the condition of `type_` is present and True.
pub fn is_true(conditions: &[Condition], type_: impl AsRef<str>) -> bool {
    get(conditions, type_).is_some_and(|c| c.status == "True")
}

/// The status of a kind the operator reads but does not act on by itself (composite apps,
/// profiles, intents, providers, grants, controllers): whether it accepted the spec as it is.
/// Whether a deployment that uses it went well is the DIG's status.
#[derive(kube::KubeSchema, serde::Serialize, serde::Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InputStatus {
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
