//! Sharded rsync: replicas split the member clusters between them. Each replica holds a Lease of
//! its own (label `rsync.emco.io/shard`) and renews it; the Leases renewed lately are the shards.
//! A cluster belongs to the shard with the highest hash of (shard, cluster): rendezvous hashing,
//! so a shard that joins or dies moves only the clusters it takes or had. Liveness is judged by
//! this replica's clock alone (a Lease whose record has not changed for its duration is dead), as
//! the leader Lease is. Unsharded (one replica), every cluster is this replica's.

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::api::clm::Cluster;

/// The label on every shard Lease.
pub const LABEL: &str = "rsync.emco.io/shard";
/// On a shard Lease: the clusters that shard works on, comma-separated (for people and tests).
pub const CLUSTERS: &str = "rsync.emco.io/clusters";
const LEASE_SECONDS: i32 = 15;
const RENEW_EVERY: Duration = Duration::from_secs(5);

/// Which clusters this replica's rsync and clm work on.
pub struct Shards {
    /// This replica's shard name; `None` when unsharded.
    me: Option<String>,
    /// The live shards, sorted.
    live: RwLock<Vec<String>>,
    changed: watch::Sender<u64>,
}

impl Shards {
    /// One replica: every cluster is this one's.
    pub fn single() -> Shards {
        Shards { me: None, live: RwLock::default(), changed: watch::channel(0).0 }
    }

    /// A shard named after `identity` (made a valid object name).
    pub fn sharded(identity: &str) -> Shards {
        let me = lease_name(identity);
        Shards { live: RwLock::new(vec![me.clone()]), me: Some(me), changed: watch::channel(0).0 }
    }

    pub fn is_sharded(&self) -> bool {
        self.me.is_some()
    }

    /// Whether `cluster` is this replica's to work on.
    pub fn owns(&self, cluster: &str) -> bool {
        let Some(me) = &self.me else { return true };
        owner(&self.live.read().expect("shards lock"), cluster) == Some(me.as_str())
    }

    /// Fires whenever the live shards change (so clusters may have moved).
    pub fn changes(&self) -> impl futures::Stream<Item = ()> + Send + 'static + use<> {
        futures::stream::unfold(self.changed.subscribe(), |mut rx| async move {
            rx.changed().await.ok()?;
            Some(((), rx))
        })
    }

    /// Renews this replica's Lease and follows the others' until the process ends.
    pub async fn run(&self, hub: Client, namespace: String, clusters: Store<Cluster>) {
        let Some(me) = self.me.clone() else { return futures::future::pending().await };
        let api = Api::<Lease>::namespaced(hub, &namespace);
        let mut seen: BTreeMap<String, (String, Instant)> = BTreeMap::new();
        loop {
            let mine: Vec<String> = clusters.state().iter().map(|c| c.name_any()).filter(|c| self.owns(c)).collect();
            if let Err(e) = renew(&api, &me, &mine).await {
                tracing::warn!(shard = %me, error = %e, "renewing the shard Lease failed");
            }
            match api.list(&ListParams::default().labels(LABEL)).await {
                Ok(leases) => self.follow(&me, &leases.items, &mut seen),
                Err(e) => tracing::warn!(error = %e, "listing the shard Leases failed"),
            }
            tokio::time::sleep(RENEW_EVERY).await;
        }
    }

    /// Deletes this replica's Lease, so that the others take its clusters at once.
    pub async fn leave(&self, hub: Client, namespace: &str) {
        let Some(me) = &self.me else { return };
        match Api::<Lease>::namespaced(hub, namespace).delete(me, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(shard = %me, "left the shards"),
            Err(e) => tracing::warn!(shard = %me, error = %e, "could not delete the shard Lease; it expires by itself"),
        }
    }

    /// Updates the live shards from the Leases listed now.
    fn follow(&self, me: &str, leases: &[Lease], seen: &mut BTreeMap<String, (String, Instant)>) {
        let mut live = vec![me.to_string()];
        for lease in leases {
            let name = lease.name_any();
            let record = lease.resource_version().unwrap_or_default();
            let since = match seen.get(&name) {
                Some((r, at)) if *r == record => *at,
                _ => {
                    seen.insert(name.clone(), (record, Instant::now()));
                    Instant::now()
                }
            };
            let duration = lease.spec.as_ref().and_then(|s| s.lease_duration_seconds).unwrap_or(LEASE_SECONDS);
            if name != me && since.elapsed() <= Duration::from_secs(duration.max(1) as u64) {
                live.push(name);
            }
        }
        seen.retain(|name, _| leases.iter().any(|l| l.name_any() == *name));
        live.sort();
        let mut current = self.live.write().expect("shards lock");
        if *current != live {
            tracing::info!(shards = ?live, "rsync shards changed");
            *current = live;
            self.changed.send_modify(|n| *n += 1);
        }
    }
}

/// The shard `cluster` belongs to among `shards`: the one with the highest hash of the pair.
pub fn owner<'a>(shards: &'a [String], cluster: &str) -> Option<&'a str> {
    shards.iter().max_by_key(|s| weight(s, cluster)).map(String::as_str)
}

fn weight(shard: &str, cluster: &str) -> u64 {
    let digest = Sha256::new().chain_update(shard).chain_update([0]).chain_update(cluster).finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// A Lease name from an identity: lowercase, `[a-z0-9-]`, at most 63 characters.
pub fn lease_name(identity: &str) -> String {
    let clean: String =
        identity.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let mut name = format!("emco-rsync-{}", clean.trim_matches('-'));
    name.truncate(63);
    name.trim_end_matches('-').to_string()
}

/// Creates or renews this shard's Lease, saying which clusters it works on.
async fn renew(api: &Api<Lease>, me: &str, clusters: &[String]) -> kube::Result<()> {
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(me.to_string()),
            labels: Some([(LABEL.to_string(), "true".to_string())].into()),
            annotations: Some([(CLUSTERS.to_string(), clusters.join(","))].into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(me.to_string()),
            lease_duration_seconds: Some(LEASE_SECONDS),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..Default::default()
        }),
    };
    let mut value = serde_json::to_value(&lease).expect("a Lease serializes");
    value["apiVersion"] = "coordination.k8s.io/v1".into();
    value["kind"] = "Lease".into();
    api.patch(me, &PatchParams::apply(crate::reconcile::MANAGER).force(), &Patch::Apply(value)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_that_leaves_moves_only_its_own_clusters() {
        let three: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let two: Vec<String> = ["a", "c"].map(String::from).to_vec();
        let clusters: Vec<String> = (0..300).map(|i| format!("edge{i}")).collect();
        let mut per_shard = BTreeMap::<&str, usize>::new();
        for c in &clusters {
            let before = owner(&three, c).unwrap();
            *per_shard.entry(before).or_default() += 1;
            if before != "b" {
                assert_eq!(owner(&two, c), Some(before), "{c} moved although its shard stayed");
            }
        }
        assert!(per_shard.values().all(|n| (60..=140).contains(n)), "uneven split: {per_shard:?}");
    }

    #[test]
    fn unsharded_owns_everything() {
        assert!(Shards::single().owns("anything"));
        let s = Shards::sharded("Pod_1");
        assert_eq!(s.me.as_deref(), Some("emco-rsync-pod-1"));
        assert!(s.owns("edge01"), "alone, a shard owns every cluster");
    }
}
