//! What every reconciler shares and nothing else: per-object exponential backoff, the one status
//! writer, the one Event publisher and the reader of guarded watches. A leaf module: it knows no
//! controller.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Resource};

/// Field manager for everything the operator writes on the hub with server-side apply.
pub const MANAGER: &str = "emco-operator";

/// The one error of a reconciler whose only failures are the hub's.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("hub API: {0}")]
    Hub(#[from] kube::Error),
}

/// Per-object backoff: how many times in a row each key failed (or polled without progress).
#[derive(Default)]
pub struct Backoff {
    counts: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// The delay before retrying `key` after a transient failure: 1 s, doubling up to 2 min.
    pub fn retry_after(&self, key: &str) -> Duration {
        self.next(key, Duration::from_secs(1), Duration::from_secs(120))
    }

    /// The delay before looking at `key` again: `base`, doubling on every call up to `max`.
    pub fn next(&self, key: &str, base: Duration, max: Duration) -> Duration {
        let mut counts = self.counts.lock().unwrap();
        let n = counts.entry(key.to_string()).or_insert(0);
        *n = (*n + 1).min(10);
        (base * (1 << (*n - 1))).min(max)
    }

    /// Forgets the failures of `key` after a success.
    pub fn succeeded(&self, key: &str) {
        self.counts.lock().unwrap().remove(key);
    }
}

/// The object a guarded watch read, or `None` for one it could not read (written before a schema
/// bound existed, say): that one is logged, and with a `recorder` gets a Warning Event, and is
/// skipped, so that it cannot stop the watch of every other object of its kind.
pub async fn readable<K>(guard: &DeserializeGuard<K>, recorder: Option<&Recorder>) -> Option<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone,
{
    let invalid = match &guard.0 {
        Ok(obj) => return Some(Arc::new(obj.clone())),
        Err(invalid) => invalid,
    };
    let (ns, name) = (invalid.metadata.namespace.clone(), invalid.metadata.name.clone());
    tracing::warn!(kind = %K::kind(&()), namespace = ?ns, name = ?name, error = %invalid.error, "skipping an object that cannot be read");
    if let Some(recorder) = recorder {
        let reference = ObjectReference {
            api_version: Some(K::api_version(&()).into()),
            kind: Some(K::kind(&()).into()),
            name,
            namespace: ns,
            uid: invalid.metadata.uid.clone(),
            ..Default::default()
        };
        let note = format!("cannot be read, so it is not reconciled: {}", invalid.error);
        publish(recorder, &reference, EventType::Warning, "Unreadable", "Reconcile", note).await;
    }
    None
}

/// Publishes an Event on `about`; a failure to publish is logged, never fatal.
pub async fn publish(
    recorder: &Recorder,
    about: &ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary: None };
    publish_event(recorder, &event, about).await;
}

/// Publishes `event` on `about`; a failure to publish is logged, never fatal.
pub async fn publish_event(recorder: &Recorder, event: &Event, about: &ObjectReference) {
    if let Err(e) = recorder.publish(event, about).await {
        tracing::debug!(error = %e, "could not publish event");
    }
}

/// Writes `status` on `obj` (through `api`) with server-side apply, unless it already has exactly
/// that status.
pub async fn write_status<K, S>(api: &Api<K>, obj: &K, current: Option<&S>, status: &S) -> kube::Result<()>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: serde::Serialize + PartialEq,
{
    if current == Some(status) {
        return Ok(());
    }
    apply_status(api, &obj.meta().name.clone().unwrap_or_default(), None, status).await
}

/// Writes `status` on object `name` with server-side apply; with `resource_version`, only over
/// that version of the object (409 otherwise).
pub async fn apply_status<K, S>(
    api: &Api<K>,
    name: &str,
    resource_version: Option<String>,
    status: &S,
) -> kube::Result<()>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: serde::Serialize,
{
    let mut patch = serde_json::json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status});
    if let Some(version) = resource_version {
        patch["metadata"] = serde_json::json!({"resourceVersion": version});
    }
    // No strict decode of the body: it could only find duplicate keys, which a serialized map
    // cannot have, and it parses the whole body a second time (an AppContext status runs to
    // hundreds of KB).
    let params = PatchParams::apply(MANAGER).force().validation_ignore();
    api.patch_status(name, &params, &Patch::Apply(patch)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets_on_success() {
        let b = Backoff::default();
        let delays: Vec<u64> = (0..9).map(|_| b.retry_after("k").as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 120, 120]);
        b.succeeded("k");
        assert_eq!(b.retry_after("k").as_secs(), 1);
    }
}
