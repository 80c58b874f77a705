//! Helm hooks (`helm.sh/hook`): objects a chart runs at a point of the release's life instead of
//! keeping them, in Go-template and tera charts alike. rsync takes them out of an app's resources
//! ([`split`]): they are not counted, pruned or repaired. Before and after the resources it runs
//! those of the operation's phases ([`Phase`]) in weight order, one at a time, waiting for a Job
//! or Pod to finish ([`state`]); a failed one fails the operation on that cluster with its
//! message. `helm.sh/hook-delete-policy` says when a hook object goes: `before-hook-creation`
//! (also when none is given, as in Helm 3), `hook-succeeded`, `hook-failed`. Pure.

use serde_json::Value;

pub const HOOK: &str = "helm.sh/hook";
pub const WEIGHT: &str = "helm.sh/hook-weight";
pub const DELETE_POLICY: &str = "helm.sh/hook-delete-policy";
/// The run (AppContext) that made a hook object: a later pass of the same run waits for it
/// instead of starting it again.
pub const RUN: &str = "emco.io/hook-run";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    PreInstall,
    PostInstall,
    PreUpgrade,
    PostUpgrade,
    PreDelete,
    PostDelete,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::PreInstall => "pre-install",
            Phase::PostInstall => "post-install",
            Phase::PreUpgrade => "pre-upgrade",
            Phase::PostUpgrade => "post-upgrade",
            Phase::PreDelete => "pre-delete",
            Phase::PostDelete => "post-delete",
        }
    }
}

pub fn is_hook(obj: &Value) -> bool {
    obj["metadata"]["annotations"][HOOK].is_string()
}

/// `resources` as (the app's resources, its hooks).
pub fn split(resources: &[Value]) -> (Vec<Value>, Vec<Value>) {
    resources.iter().cloned().partition(|r| !is_hook(r))
}

/// The hooks of `phase`, in the order they run: weight, then kind, then name.
pub fn of_phase(hooks: &[Value], phase: Phase) -> Vec<&Value> {
    let mut found: Vec<&Value> = hooks
        .iter()
        .filter(|h| {
            h["metadata"]["annotations"][HOOK].as_str().unwrap_or_default().split(',').any(|p| p.trim() == phase.name())
        })
        .collect();
    let weight = |h: &Value| {
        h["metadata"]["annotations"][WEIGHT].as_str().and_then(|w| w.trim().parse::<i64>().ok()).unwrap_or(0)
    };
    found.sort_by(|a, b| {
        (weight(a), a["kind"].as_str(), a["metadata"]["name"].as_str()).cmp(&(
            weight(b),
            b["kind"].as_str(),
            b["metadata"]["name"].as_str(),
        ))
    });
    found
}

/// Whether `hook`'s delete policy names `policy`; no policy means `before-hook-creation`.
pub fn policy(hook: &Value, policy: &str) -> bool {
    match hook["metadata"]["annotations"][DELETE_POLICY].as_str() {
        None => policy == "before-hook-creation",
        Some(list) => list.split(',').any(|p| p.trim() == policy),
    }
}

/// Where a hook object stands on the member.
#[derive(Debug, PartialEq)]
pub enum State {
    Running,
    Done,
    Failed(String),
}

/// A Job runs until it is Complete or Failed, a Pod until Succeeded or Failed; anything else is
/// done once it exists.
pub fn state(live: &Value) -> State {
    let status = &live["status"];
    match live["kind"].as_str() {
        Some("Job") => {
            let condition = |t: &str| {
                status["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == t && c["status"] == "True")
            };
            if condition("Complete").is_some() {
                return State::Done;
            }
            match condition("Failed") {
                Some(c) => State::Failed(text(c, "Job failed")),
                None => State::Running,
            }
        }
        Some("Pod") => match status["phase"].as_str() {
            Some("Succeeded") => State::Done,
            Some("Failed") => State::Failed(text(status, "Pod failed")),
            _ => State::Running,
        },
        _ => State::Done,
    }
}

/// `message` (and `reason`) of a condition or status, for people.
fn text(v: &Value, otherwise: &str) -> String {
    match (v["reason"].as_str(), v["message"].as_str()) {
        (Some(r), Some(m)) => format!("{r}: {m}"),
        (None, Some(m)) => m.to_string(),
        (Some(r), None) => r.to_string(),
        (None, None) => otherwise.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hook(name: &str, phases: &str, weight: &str) -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name,
               "annotations": {HOOK: phases, WEIGHT: weight}}})
    }

    #[test]
    fn hooks_run_by_phase_and_weight() {
        let resources = vec![
            hook("b", "pre-install", "5"),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
            hook("a", "pre-install,pre-upgrade", "-1"),
            hook("z", "post-delete", "0"),
        ];
        let (kept, hooks) = split(&resources);
        assert_eq!(kept.len(), 1);
        let names = |p| of_phase(&hooks, p).iter().map(|h| h["metadata"]["name"].as_str().unwrap()).collect::<Vec<_>>();
        assert_eq!(names(Phase::PreInstall), ["a", "b"]);
        assert_eq!(names(Phase::PreUpgrade), ["a"]);
        assert_eq!(names(Phase::PostDelete), ["z"]);
        assert!(policy(&hooks[0], "before-hook-creation") && !policy(&hooks[0], "hook-succeeded"));
    }

    #[test]
    fn jobs_and_pods_say_when_they_are_done() {
        let job = |conditions: Value| json!({"kind": "Job", "status": {"conditions": conditions}});
        assert_eq!(state(&job(json!([]))), State::Running);
        assert_eq!(state(&job(json!([{"type": "Complete", "status": "True"}]))), State::Done);
        let failed = job(json!([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
            "message": "Job was active longer than specified deadline"}]));
        assert_eq!(
            state(&failed),
            State::Failed("DeadlineExceeded: Job was active longer than specified deadline".into())
        );
        assert_eq!(state(&json!({"kind": "Pod", "status": {"phase": "Succeeded"}})), State::Done);
        assert_eq!(state(&json!({"kind": "ConfigMap"})), State::Done);
    }
}
