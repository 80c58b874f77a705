//! Test helper for end-to-end tests on the local test bed (`just up`): clients for the hub and the
//! member clusters, a fresh namespace per test, and waiting with timeouts that say what they saw.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// The running test bed: where its kubeconfigs are and which members it has.
pub struct Bed {
    pub dir: PathBuf,
    pub hub: String,
    pub members: Vec<String>,
}

impl Bed {
    /// Finds the bed started by `just up` (`EMCO_BED_DIR`, or `target/bed` of this workspace).
    pub fn get() -> Bed {
        let dir = std::env::var_os("EMCO_BED_DIR").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bed")
        });
        let env = std::fs::read_to_string(dir.join("bed.env")).unwrap_or_else(|_| {
            panic!("the test bed is not running ({} has no bed.env): run `just up` first", dir.display())
        });
        let vars: BTreeMap<&str, &str> = env
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        Bed {
            hub: vars.get("HUB").unwrap_or(&"hub").to_string(),
            members: vars.get("MEMBERS").unwrap_or(&"").split_whitespace().map(String::from).collect(),
            dir,
        }
    }

    /// Path of a cluster's kubeconfig.
    pub fn kubeconfig(&self, cluster: &str) -> PathBuf {
        self.dir.join(format!("{cluster}.kubeconfig"))
    }

    /// A client for any cluster of the bed.
    pub async fn client(&self, cluster: &str) -> Client {
        install_crypto();
        let path = self.kubeconfig(cluster);
        let config = async {
            let kc = Kubeconfig::read_from(&path)?;
            Ok::<_, anyhow::Error>(Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?)
        }
        .await
        .unwrap_or_else(|e| panic!("cannot read {}: {e:#} (is the bed up? `just up`)", path.display()));
        Client::try_from(config).expect("client from kubeconfig")
    }

    pub async fn hub(&self) -> Client {
        self.client(&self.hub.clone()).await
    }
}

/// rustls needs one process-wide crypto provider.
pub fn install_crypto() {
    emco::install_crypto_provider();
}

/// A namespace made for one test, with a unique name, on any number of clusters.
pub struct TestNamespace {
    pub name: String,
}

impl TestNamespace {
    /// Creates `<prefix>-<random>` on each of `clients`.
    pub async fn create(prefix: &str, clients: &[&Client]) -> TestNamespace {
        let name = format!("{prefix}-{}", unique_suffix());
        for client in clients {
            let ns = Namespace {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some([("emco.io/e2e".to_string(), "true".to_string())].into()),
                    ..Default::default()
                },
                ..Default::default()
            };
            Api::<Namespace>::all((*client).clone())
                .create(&PostParams::default(), &ns)
                .await
                .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        }
        TestNamespace { name }
    }

    /// Deletes the namespace from each of `clients` (kept when a test fails, for inspection).
    pub async fn delete(&self, clients: &[&Client]) {
        for client in clients {
            let _ = Api::<Namespace>::all((*client).clone()).delete(&self.name, &DeleteParams::default()).await;
        }
    }
}

/// Six lowercase hex digits, unique enough for names made by concurrent tests.
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let n = nanos ^ (std::process::id() << 8) ^ COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(2654435761);
    format!("{:06x}", n & 0xff_ffff)
}

/// Polls `probe` every 250 ms until it returns `Ok(Some(value))`. On timeout, fails with `what` and
/// the last thing `probe` reported (`Ok(None)` means "not yet", `Err` is kept as the last state).
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    let mut last = String::from("nothing observed yet");
    loop {
        match probe().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if start.elapsed() > timeout {
            bail!("timed out after {:?} waiting for {what}; last seen: {last}", timeout);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Like [`wait_for`], but the probe describes what it saw each time, so the failure message
/// carries the latest state: return `Ok(Ok(value))` when done, `Ok(Err(description))` otherwise.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<std::result::Result<T, String>>>,
{
    wait_for(what, timeout, || {
        let fut = probe();
        async move {
            match fut.await.context("probe failed")? {
                Ok(v) => Ok(Some(v)),
                Err(seen) => Err(anyhow::anyhow!(seen)),
            }
        }
    })
    .await
}
