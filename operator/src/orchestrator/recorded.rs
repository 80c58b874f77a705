//! The revisions this replica recorded in DIG statuses, so that a reconcile that reads a DIG from
//! a cache that has not yet seen that write waits for it instead of planning the same revision
//! again (a second render, bundle listing and `RevisionCreated` Event for nothing).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::ResourceExt;

use crate::api::orchestrator::DeploymentIntentGroup as Dig;

/// How long a recorded revision is trusted over the cache: past it the cache wins whatever it
/// says (a status changed by someone else, a write the watch never delivered).
const TRUSTED: Duration = Duration::from_secs(10);

/// By DIG uid: the revision last written to its status, and when.
#[derive(Default)]
pub struct Recorded(Mutex<HashMap<String, (u32, Instant)>>);

impl Recorded {
    /// Notes that `dig`'s status now says `revision`.
    pub fn wrote(&self, dig: &Dig, revision: Option<u32>) {
        let (Some(uid), Some(revision)) = (dig.uid(), revision) else { return };
        let mut recorded = self.0.lock().unwrap();
        recorded.retain(|_, (_, at)| at.elapsed() < TRUSTED);
        recorded.insert(uid, (revision, Instant::now()));
    }

    /// Whether `dig` as read is older than what this replica wrote to its status lately.
    pub fn behind(&self, dig: &Dig) -> bool {
        let Some(uid) = dig.uid() else { return false };
        let seen = dig.status.as_ref().and_then(|s| s.revision).unwrap_or(0);
        self.0.lock().unwrap().get(&uid).is_some_and(|(wrote, at)| at.elapsed() < TRUSTED && *wrote > seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::orchestrator::DeploymentIntentGroupStatus;

    fn dig(uid: &str, revision: Option<u32>) -> Dig {
        let mut dig: Dig = serde_json::from_value(serde_json::json!({
            "apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "DeploymentIntentGroup",
            "metadata": {"name": "d", "namespace": "p", "uid": uid},
            "spec": {"compositeApp": "ca", "logicalCloud": "lc", "intents": {"genericPlacementIntent": "g"}}
        }))
        .unwrap();
        dig.status = Some(DeploymentIntentGroupStatus { revision, ..Default::default() });
        dig
    }

    #[test]
    fn a_dig_read_before_the_write_arrived_is_behind_until_it_shows_the_revision() {
        let recorded = Recorded::default();
        assert!(!recorded.behind(&dig("u1", None)), "nothing written yet");
        recorded.wrote(&dig("u1", None), Some(2));
        assert!(recorded.behind(&dig("u1", Some(1))));
        assert!(recorded.behind(&dig("u1", None)));
        assert!(!recorded.behind(&dig("u1", Some(2))));
        assert!(!recorded.behind(&dig("u1", Some(3))), "someone went further: the cache is newer");
        assert!(!recorded.behind(&dig("u2", Some(1))), "another DIG (or one recreated under the name)");
    }
}
