//! Bundles: an app's rendered resources for a set of clusters, stored gzipped as JSON in hub Secrets
//! of at most `PART_BYTES` each (so no hub object nears 1 MiB, and rendered Secrets are never in a
//! ConfigMap). Written once by the orchestrator, read (and cached, they never change) by rsync.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use serde_json::Value;

use crate::api::rsync::BundleRef;

/// Largest payload of one bundle Secret (base64 in JSON makes it about 700 KiB on the wire).
pub const PART_BYTES: usize = 512 * 1024;
/// The Secret type of bundle parts.
pub const SECRET_TYPE: &str = "emco.io/bundle";
/// The data key of a bundle part.
pub const DATA_KEY: &str = "bundle.json.gz";
/// Largest decompressed bundle accepted (a chart renders at most 16 MiB of text).
pub const MAX_BUNDLE_BYTES: u64 = 32 * 1024 * 1024;
/// Bytes of decoded bundles rsync keeps in memory (JSON size); the oldest go first.
pub const CACHE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle part Secret {0} not found")]
    Missing(String),
    #[error("bundle {0} is corrupt: {1}")]
    Corrupt(String, String),
    #[error("hub API: {0}")]
    Hub(#[from] kube::Error),
}

/// The name of part `i` of `bundle`.
pub fn part_name(bundle: &str, i: u32) -> String {
    format!("{bundle}-{i}")
}

/// Gzipped JSON of `resources`, cut into parts.
pub fn encode(resources: &[Value]) -> Vec<Vec<u8>> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    serde_json::to_writer(&mut gz, resources).expect("JSON values serialize");
    let bytes = gz.finish().expect("writing to memory");
    bytes.chunks(PART_BYTES).map(<[u8]>::to_vec).collect()
}

/// The digest recorded in a [`BundleRef`] for `parts`.
pub fn digest(parts: &[Vec<u8>]) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    parts.iter().for_each(|p| hasher.update(p));
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The resources held by `parts`, joined in order.
pub fn decode(name: &str, parts: &[Vec<u8>]) -> Result<Vec<Value>, BundleError> {
    decode_sized(name, parts).map(|(resources, _)| resources)
}

/// The resources held by `parts` and their size as JSON.
fn decode_sized(name: &str, parts: &[Vec<u8>]) -> Result<(Vec<Value>, usize), BundleError> {
    let joined = parts.concat();
    let mut json = Vec::new();
    GzDecoder::new(joined.as_slice())
        .take(MAX_BUNDLE_BYTES + 1)
        .read_to_end(&mut json)
        .map_err(|e| BundleError::Corrupt(name.into(), e.to_string()))?;
    if json.len() as u64 > MAX_BUNDLE_BYTES {
        return Err(BundleError::Corrupt(name.into(), format!("over {MAX_BUNDLE_BYTES} bytes decompressed")));
    }
    let resources = serde_json::from_slice(&json).map_err(|e| BundleError::Corrupt(name.into(), e.to_string()))?;
    Ok((resources, json.len()))
}

/// A bundle's resources, shared by every reader.
pub type Resources = Arc<Vec<Value>>;

/// Bundles read so far, by namespace and name, within [`CACHE_BYTES`].
#[derive(Default)]
pub struct BundleCache {
    loaded: Mutex<Loaded>,
}

#[derive(Default)]
struct Loaded {
    bundles: HashMap<(String, String), (Resources, usize)>,
    /// Keys in the order they were loaded.
    order: std::collections::VecDeque<(String, String)>,
    bytes: usize,
}

impl BundleCache {
    /// The resources of `bundle` in namespace `ns`, read from the hub the first time only.
    pub async fn load(&self, hub: &Client, ns: &str, bundle: &BundleRef) -> Result<Resources, BundleError> {
        let key = (ns.to_string(), bundle.name.clone());
        if let Some((found, _)) = self.loaded.lock().unwrap().bundles.get(&key) {
            return Ok(found.clone());
        }
        let api = Api::<Secret>::namespaced(hub.clone(), ns);
        let mut parts = Vec::new();
        for i in 0..bundle.parts {
            let name = part_name(&bundle.name, i);
            let secret = api.get_opt(&name).await?.ok_or_else(|| BundleError::Missing(name.clone()))?;
            let data = secret.data.and_then(|mut d| d.remove(DATA_KEY)).ok_or_else(|| BundleError::Missing(name))?;
            parts.push(data.0);
        }
        if bundle.digest.as_ref().is_some_and(|d| *d != digest(&parts)) {
            return Err(BundleError::Corrupt(bundle.name.clone(), "its parts do not match the recorded digest".into()));
        }
        let (resources, size) = decode_sized(&bundle.name, &parts)?;
        let resources = Arc::new(resources);
        self.insert(key, resources.clone(), size);
        Ok(resources)
    }

    /// Keeps the resources of bundle `name` in `ns` as just written, so that rsync in this process
    /// does not read back what the orchestrator wrote.
    pub fn keep(&self, ns: &str, name: &str, resources: Resources) {
        let size = serde_json::to_vec(resources.as_ref()).map_or(0, |json| json.len());
        self.insert((ns.to_string(), name.to_string()), resources, size);
    }

    fn insert(&self, key: (String, String), resources: Resources, size: usize) {
        let mut loaded = self.loaded.lock().unwrap();
        while loaded.bytes + size > CACHE_BYTES {
            let Some(oldest) = loaded.order.pop_front() else { break };
            if let Some((_, n)) = loaded.bundles.remove(&oldest) {
                loaded.bytes -= n;
            }
        }
        if size <= CACHE_BYTES && loaded.bundles.insert(key.clone(), (resources, size)).is_none() {
            loaded.order.push_back(key);
            loaded.bytes += size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_bundle_round_trips_through_parts_under_the_limit() {
        // Random-looking data does not compress: force several parts.
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let noise: String = (0..3_000_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'a' + (x % 26) as u8)
            })
            .collect();
        let resources = vec![serde_json::json!({"kind": "ConfigMap", "data": {"x": noise}})];
        let parts = encode(&resources);
        assert!(parts.len() > 1, "expected several parts, got {}", parts.len());
        assert!(parts.iter().all(|p| p.len() <= PART_BYTES));
        assert_eq!(decode("b", &parts).unwrap(), resources);
    }

    #[tokio::test]
    async fn a_kept_bundle_is_served_without_asking_the_hub() {
        // Nothing listens there: a read would fail.
        let hub = Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
        let resources: Resources = Arc::new(vec![serde_json::json!({"kind": "ConfigMap", "metadata": {"name": "a"}})]);
        let cache = BundleCache::default();
        cache.keep("p", "d-r2-app-h", resources.clone());
        let bundle = BundleRef { name: "d-r2-app-h".into(), parts: 1, resources: 1, digest: None, clusters: vec![] };
        assert_eq!(cache.load(&hub, "p", &bundle).await.unwrap(), resources);
        let elsewhere = BundleRef { name: "d-r2-other-h".into(), ..bundle };
        assert!(cache.load(&hub, "p", &elsewhere).await.is_err(), "not kept: read from the hub");
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn a_corrupt_bundle_is_an_error_not_a_panic() {
        assert!(matches!(decode("b", &[b"not gzip".to_vec()]), Err(BundleError::Corrupt(..))));
        assert!(matches!(decode("b", &[gzip(b"{not json")]), Err(BundleError::Corrupt(..))));
    }
}
