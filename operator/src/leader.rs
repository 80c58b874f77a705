//! Leader election with a coordination.k8s.io Lease: of several operator replicas, only the holder
//! of the Lease runs controllers, so two replicas never apply the same AppContext at once. A
//! replica that cannot renew in time stops (and is restarted), never carrying on as a second leader.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

/// The Lease's name in the operator's namespace.
pub const LEASE: &str = "emco-operator-leader";
const LEASE_SECONDS: i32 = 15;
const RENEW_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("lost the leader Lease to {0}")]
    Lost(String),
    #[error("could not renew the leader Lease for {0:?}: {1}")]
    Renew(Duration, kube::Error),
}

/// Who this replica is: `POD_NAME` in a cluster, else host and process id.
pub fn identity() -> String {
    std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    })
}

/// Waits until this replica holds the Lease.
pub async fn acquire(hub: &Client, namespace: &str, me: &str) {
    let api = Api::<Lease>::namespaced(hub.clone(), namespace);
    let mut announced = false;
    let mut seen = None;
    loop {
        match try_take(&api, me, &mut seen).await {
            Ok(true) => {
                crate::health::ready();
                return tracing::info!(identity = me, "acquired the leader Lease");
            }
            Ok(false) if !announced => {
                tracing::info!(identity = me, "waiting for leadership (another replica holds the Lease)");
                crate::health::ready(); // a standby that reaches the hub is what it should be
                announced = true;
            }
            Ok(false) => crate::health::ready(),
            Err(e) => {
                crate::health::not_ready("the hub's leader Lease cannot be read");
                tracing::warn!(error = %e, "leader Lease not reachable");
            }
        }
        tokio::time::sleep(RENEW_EVERY).await;
    }
}

/// Renews the Lease until it is lost; returns why it was lost.
pub async fn hold(hub: &Client, namespace: &str, me: &str) -> LeaderError {
    let api = Api::<Lease>::namespaced(hub.clone(), namespace);
    let mut last_renewed = tokio::time::Instant::now();
    let mut seen = None;
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        match try_take(&api, me, &mut seen).await {
            Ok(true) => last_renewed = tokio::time::Instant::now(),
            Ok(false) => return LeaderError::Lost(holder(&api).await.unwrap_or_default()),
            Err(e) if last_renewed.elapsed() > Duration::from_secs(LEASE_SECONDS as u64 - 5) => {
                return LeaderError::Renew(last_renewed.elapsed(), e);
            }
            Err(e) => tracing::warn!(error = %e, "renewing the leader Lease failed, retrying"),
        }
    }
}

/// Gives the Lease up on shutdown, so that another replica need not wait for it to expire.
pub async fn release(hub: &Client, namespace: &str, me: &str) {
    let api = Api::<Lease>::namespaced(hub.clone(), namespace);
    let Ok(Some(mut lease)) = api.get_opt(LEASE).await else { return };
    if lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) != Some(me) {
        return;
    }
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = None;
        spec.renew_time = None;
    }
    match api.replace(LEASE, &PostParams::default(), &lease).await {
        Ok(_) => tracing::info!("released the leader Lease"),
        Err(e) => tracing::warn!(error = %e, "could not release the leader Lease; it expires by itself"),
    }
}

async fn holder(api: &Api<Lease>) -> Option<String> {
    api.get_opt(LEASE).await.ok()??.spec?.holder_identity
}

/// Takes or renews the Lease when it is free, expired or ours; `Ok(false)` when another holds it.
/// The write carries the read's resourceVersion, so of two racing replicas one fails. Expiry is
/// judged by this replica's clock alone: a holder's record that has not changed (`seen`: its
/// resourceVersion and when this replica first saw it) for the lease duration has expired, so
/// clocks that disagree between machines cannot make two leaders.
async fn try_take(api: &Api<Lease>, me: &str, seen: &mut Option<(String, std::time::Instant)>) -> kube::Result<bool> {
    let now = Timestamp::now();
    let Some(mut lease) = api.get_opt(LEASE).await? else {
        let lease = Lease {
            metadata: ObjectMeta { name: Some(LEASE.into()), ..Default::default() },
            spec: Some(spec(me, now, 0)),
        };
        return conflict_is_false(api.create(&PostParams::default(), &lease).await);
    };
    let current = lease.spec.clone().unwrap_or_default();
    let ours = current.holder_identity.as_deref() == Some(me);
    let record = lease.metadata.resource_version.clone().unwrap_or_default();
    let since = match seen {
        Some((r, at)) if *r == record => *at,
        _ => seen.insert((record, std::time::Instant::now())).1,
    };
    let duration = Duration::from_secs(current.lease_duration_seconds.unwrap_or(LEASE_SECONDS).max(1) as u64);
    let expired = current.holder_identity.is_none() || since.elapsed() > duration;
    if !ours && !expired {
        return Ok(false);
    }
    let transitions = current.lease_transitions.unwrap_or(0) + i32::from(!ours);
    let mut renewed = spec(me, now, transitions);
    if ours {
        renewed.acquire_time = current.acquire_time;
    }
    lease.spec = Some(renewed);
    conflict_is_false(api.replace(LEASE, &PostParams::default(), &lease).await)
}

fn spec(me: &str, now: Timestamp, transitions: i32) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(me.into()),
        lease_duration_seconds: Some(LEASE_SECONDS),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..Default::default()
    }
}

fn conflict_is_false(result: kube::Result<Lease>) -> kube::Result<bool> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}
