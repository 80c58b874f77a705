//! Test helper for end-to-end tests on the local test bed (`just up`): clients for the hub and the
//! member clusters, a fresh namespace per test, and waiting with timeouts that say what they saw.

pub mod git;

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
        let dir = std::env::var_os("EMCO_BED_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bed"));
        let env = std::fs::read_to_string(dir.join("bed.env")).unwrap_or_else(|_| {
            panic!("the test bed is not running ({} has no bed.env): run `just up` first", dir.display())
        });
        let vars: BTreeMap<&str, &str> =
            env.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k, v.trim_matches('"'))).collect();
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

/// The workspace root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The YAML documents of a file (relative to the workspace root), as JSON values.
pub fn yaml_docs(path: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    text.split("\n---")
        .filter_map(|doc| serde_saphyr::from_str::<serde_json::Value>(doc).ok())
        .filter(|v| v.is_object())
        .collect()
}

/// Server-side applies `obj` (any kind the cluster serves) as field manager `e2e`.
pub async fn apply(client: &Client, obj: &serde_json::Value) -> Result<kube::api::DynamicObject> {
    use kube::api::{Patch, PatchParams};
    use kube::core::GroupVersionKind;
    let api_version = obj["apiVersion"].as_str().context("apiVersion")?;
    let kind = obj["kind"].as_str().context("kind")?;
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let (ar, caps) = kube::discovery::pinned_kind(client, &GroupVersionKind::gvk(group, version, kind)).await?;
    let name = obj["metadata"]["name"].as_str().context("metadata.name")?;
    let api: Api<kube::api::DynamicObject> = match obj["metadata"]["namespace"].as_str() {
        Some(ns) if caps.scope == kube::discovery::Scope::Namespaced => Api::namespaced_with(client.clone(), ns, &ar),
        _ => Api::all_with(client.clone(), &ar),
    };
    api.patch(name, &PatchParams::apply("e2e").force(), &Patch::Apply(obj))
        .await
        .with_context(|| format!("applying {kind} {name}"))
}

/// A packaged chart (`.tgz`, one top-level folder named after the chart) from files in memory.
pub fn chart_tgz(chart: &str, files: &[(&str, &str)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default()));
    for (path, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, format!("{chart}/{path}"), content.as_bytes()).expect("tar in memory");
    }
    tar.into_inner().expect("tar in memory").finish().expect("gzip in memory")
}

/// A packaged chart from a chart folder (relative to the workspace root).
pub fn chart_dir_tgz(dir: &str) -> Vec<u8> {
    let root = repo_root().join(dir);
    let name = root.file_name().unwrap().to_string_lossy().to_string();
    let mut files = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(&root).unwrap().to_string_lossy().to_string();
                files.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    chart_tgz(&name, &refs)
}

/// A ConfigMap holding a packaged chart under `chart.tgz`.
pub fn chart_configmap(ns: &str, name: &str, tgz: &[u8]) -> serde_json::Value {
    use base64::Engine;
    serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns},
        "binaryData": {"chart.tgz": base64::engine::general_purpose::STANDARD.encode(tgz)}
    })
}

/// Creates a Project whose namespace is `name`, granted every cluster with every type of logical
/// cloud (ClusterGrant `e2e-<name>`: the hub is closed), and waits until the operator made it.
pub async fn project(hub: &Client, name: &str) -> Result<()> {
    grant(hub, name, serde_json::json!({})).await?;
    project_without_grant(hub, name).await
}

/// Applies ClusterGrant `e2e-<project>` giving `project` every cluster with every type of logical
/// cloud; `extra` is merged into its spec.
pub async fn grant(hub: &Client, project: &str, extra: serde_json::Value) -> Result<()> {
    let mut spec = serde_json::json!({"projects": [project], "logicalCloudTypes": ["Admin", "Standard", "Privileged"]});
    for (k, v) in extra.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    apply(
        hub,
        &serde_json::json!({"apiVersion": "dcm.emco.io/v1alpha1", "kind": "ClusterGrant",
            "metadata": {"name": format!("e2e-{project}")}, "spec": spec}),
    )
    .await?;
    Ok(())
}

/// Creates a Project whose namespace is `name`, with no grant, and waits until the operator made it.
pub async fn project_without_grant(hub: &Client, name: &str) -> Result<()> {
    apply(
        hub,
        &serde_json::json!({
            "apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "Project",
            "metadata": {"name": name}, "spec": {"namespace": name}
        }),
    )
    .await?;
    let api = Api::<Namespace>::all(hub.clone());
    wait_for(&format!("namespace of project {name}"), Duration::from_secs(30), || async {
        Ok(api.get_opt(name).await?.map(|_| ()))
    })
    .await
}

/// The DIG `name` in `ns`, as the hub has it now.
pub async fn dig(hub: &Client, ns: &str, name: &str) -> Result<emco::api::orchestrator::DeploymentIntentGroup> {
    Ok(Api::namespaced(hub.clone(), ns).get(name).await?)
}

/// Waits until the DIG's status satisfies `done`; the failure message shows the last status seen.
pub async fn wait_dig(
    hub: &Client,
    ns: &str,
    name: &str,
    what: &str,
    timeout: Duration,
    done: impl Fn(&emco::api::orchestrator::DeploymentIntentGroupStatus) -> bool,
) -> Result<emco::api::orchestrator::DeploymentIntentGroupStatus> {
    wait_until(&format!("DIG {ns}/{name} {what}"), timeout, || async {
        let status = dig(hub, ns, name).await?.status.unwrap_or_default();
        Ok(if done(&status) { Ok(status) } else { Err(serde_json::to_string(&status)?) })
    })
    .await
}

/// Waits until DIG `ns`/`ns` has revision `revision` deployed and every resource ready.
pub async fn settled(hub: &Client, ns: &str, revision: u32) -> Result<()> {
    use emco::api::orchestrator::DigState;
    wait_dig(hub, ns, ns, &format!("revision {revision} deployed and ready"), Duration::from_secs(60), |s| {
        s.revision == Some(revision)
            && matches!(s.state, DigState::Instantiated | DigState::Updated)
            && complete(&s.ready)
    })
    .await
    .map(|_| ())
}

/// Names of the objects of `kind` (plural resource in group/version `gv`) labelled as deployed by
/// DIG `dig`, in every namespace of `client`.
pub async fn deployed_names(client: &Client, gv: &str, kind: &str, plural: &str, dig: &str) -> Result<Vec<String>> {
    let (group, version) = gv.rsplit_once('/').unwrap_or(("", gv));
    let ar = kube::api::ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: gv.into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    let api: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &ar);
    let selector = format!("{}={dig}", emco::api::labels::DIG);
    let list = api.list(&kube::api::ListParams::default().labels(&selector)).await?;
    let mut names: Vec<String> = list.items.iter().filter_map(|o| o.metadata.name.clone()).collect();
    names.sort();
    Ok(names)
}

/// Applies a Cluster with its own field manager (so it can be taken back alone).
pub async fn apply_cluster_as(client: &Client, obj: &serde_json::Value, manager: &str) -> Result<()> {
    use kube::api::{Patch, PatchParams};
    let name = obj["metadata"]["name"].as_str().context("metadata.name")?;
    let api: Api<emco::api::clm::Cluster> = Api::all(client.clone());
    api.patch(name, &PatchParams::apply(manager), &Patch::Apply(obj)).await?;
    Ok(())
}

/// Takes back what field manager `manager` set on Cluster `name` (an empty apply).
pub async fn remove_field_manager(client: &Client, name: &str, manager: &str) -> Result<()> {
    let empty =
        serde_json::json!({"apiVersion": "clm.emco.io/v1alpha1", "kind": "Cluster", "metadata": {"name": name}});
    apply_cluster_as(client, &empty, manager).await
}

/// A small composite app for placement and bad-input tests: one app `probe` whose chart holds one
/// ConfigMap, a logical cloud of every member, and a DIG named after the namespace.
pub struct Probe {
    /// The app intent of `probe`.
    pub placement: serde_json::Value,
    /// The DIG's overrideValues.
    pub overrides: serde_json::Value,
    /// Files of the chart; the default one when `None`.
    pub chart: Option<Vec<(&'static str, &'static str)>>,
    /// The chart ConfigMap the composite app names.
    pub chart_configmap: &'static str,
    /// The composite profile's `profiles`, if any.
    pub profiles: Option<serde_json::Value>,
    /// A Helm repository `{url, chart, version}` to take the chart from instead of the ConfigMap.
    pub repository: Option<serde_json::Value>,
    /// The logical cloud's clusters; every member of the bed when `None`.
    pub clusters: Option<Vec<String>>,
    /// The logical cloud's spec (`clusters` is set from the field above); Admin when `None`.
    pub logical_cloud: Option<serde_json::Value>,
    /// The DIG's `rollout`, if any.
    pub rollout: Option<serde_json::Value>,
}

impl Probe {
    pub fn new(placement: serde_json::Value) -> Probe {
        Probe {
            placement,
            overrides: serde_json::json!([]),
            chart: None,
            chart_configmap: "probe-chart",
            profiles: None,
            repository: None,
            clusters: None,
            logical_cloud: None,
            rollout: None,
        }
    }

    pub async fn apply(&self, hub: &Client, bed: &Bed, ns: &str) -> Result<()> {
        use serde_json::json;
        let files = self.chart.clone().unwrap_or_else(|| probe_chart_files().to_vec());
        apply(hub, &chart_configmap(ns, "probe-chart", &chart_tgz("probe", &files))).await?;
        let names = self.clusters.as_ref().unwrap_or(&bed.members);
        let clusters: Vec<serde_json::Value> = names.iter().map(|m| json!({"cluster": m})).collect();
        let chart_source = match &self.repository {
            Some(repo) => json!({"repository": repo}),
            None => json!({"configMap": {"name": self.chart_configmap}}),
        };
        let mut dig = dig_manifest(ns, json!({"genericPlacementIntent": "gpi"}));
        dig["spec"]["overrideValues"] = self.overrides.clone();
        if let Some(rollout) = &self.rollout {
            dig["spec"]["rollout"] = rollout.clone();
        }
        if let Some(profiles) = &self.profiles {
            apply(
                hub,
                &json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "CompositeProfile",
                "metadata": {"name": "profile", "namespace": ns}, "spec": {"profiles": profiles}}),
            )
            .await?;
            dig["spec"]["compositeProfile"] = json!("profile");
        }
        let mut lc_spec = self.logical_cloud.clone().unwrap_or_else(|| json!({"type": "Admin", "namespace": ns}));
        lc_spec["clusters"] = json!(clusters);
        let docs = [
            json!({"apiVersion": "dcm.emco.io/v1alpha1", "kind": "LogicalCloud", "metadata": {"name": "lc", "namespace": ns},
                   "spec": lc_spec}),
            json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "CompositeApp", "metadata": {"name": "ca", "namespace": ns},
                   "spec": {"apps": [{"name": "probe", "chart": chart_source}]}}),
            json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "GenericPlacementIntent", "metadata": {"name": "gpi", "namespace": ns},
                   "spec": {"appIntents": [self.placement]}}),
            dig,
        ];
        for doc in &docs {
            apply(hub, doc).await?;
        }
        Ok(())
    }
}

/// A probe chart whose one object is Deployment `web` (container `web`, env `A=1`), for the
/// controller tests that patch or size a workload.
pub fn web_chart_files() -> Vec<(&'static str, &'static str)> {
    const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: registry.example/web:1
        env:
        - {name: A, value: "1"}
"#;
    vec![("Chart.yaml", "apiVersion: v2\nname: probe\nversion: 0.1.0\n"), ("templates/web.yaml", DEPLOYMENT)]
}

/// An approved DIG `ns` in namespace `ns` of composite app `ca` on logical cloud `lc` (as
/// [`Probe`] makes them), naming `intents`.
pub fn dig_manifest(ns: &str, intents: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "DeploymentIntentGroup",
           "metadata": {"name": ns, "namespace": ns},
           "spec": {"compositeApp": "ca", "logicalCloud": "lc", "intents": intents, "approved": true}})
}

/// The files of the probe chart: one ConfigMap `probe` with a greeting from the values.
pub fn probe_chart_files() -> [(&'static str, &'static str); 3] {
    [
        ("Chart.yaml", "apiVersion: v2\nname: probe\nversion: 0.1.0\n"),
        ("values.yaml", "greeting: hello\n"),
        (
            "templates/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\ndata:\n  greeting: {{ Values.greeting | quote }}\n",
        ),
    ]
}

/// A Helm HTTP repository on 127.0.0.1 serving `files` (path → content) until dropped.
pub struct HelmRepository {
    pub url: String,
    server: tokio::task::JoinHandle<()>,
}

impl HelmRepository {
    /// Serves on 127.0.0.2, the address the suite's operator allow-lists.
    pub async fn serve(files: Vec<(String, Vec<u8>)>) -> HelmRepository {
        HelmRepository::serve_on("127.0.0.2", files).await
    }

    /// Serves on `address` (a loopback address).
    pub async fn serve_on(address: &str, files: Vec<(String, Vec<u8>)>) -> HelmRepository {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind((address, 0)).await.expect("binding a loopback address");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let files = std::sync::Arc::new(files);
        let server = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let files = files.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let n = conn.read(&mut buf).await.unwrap_or(0);
                    let request = String::from_utf8_lossy(&buf[..n]);
                    let path = request.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_string();
                    let reply = match files.iter().find(|(p, _)| *p == path) {
                        Some((_, body)) => [
                            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len())
                                .into_bytes(),
                            body.clone(),
                        ]
                        .concat(),
                        None => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec(),
                    };
                    let _ = conn.write_all(&reply).await;
                });
            }
        });
        HelmRepository { url, server }
    }
}

impl Drop for HelmRepository {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Members that hold a ConfigMap deployed by DIG `dig`.
pub async fn holders(bed: &Bed, dig: &str) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for m in &bed.members {
        if !deployed_names(&bed.client(m).await, "v1", "ConfigMap", "configmaps", dig).await?.is_empty() {
            found.push(m.clone());
        }
    }
    Ok(found)
}

/// The SmartCity sample's folder.
pub const SAMPLE: &str = "config/samples/smartcity";

/// Applies the sample's project-scoped manifests into namespace `ns`, the DIG named `dig`.
pub async fn apply_sample(hub: &Client, ns: &str, dig: &str) -> Result<()> {
    apply_sample_edited(hub, ns, dig, |_| {}).await
}

/// [`apply_sample`] with `edit` applied to each document before it is applied.
pub async fn apply_sample_edited(
    hub: &Client,
    ns: &str,
    dig: &str,
    edit: impl Fn(&mut serde_json::Value),
) -> Result<()> {
    use serde_json::json;
    for (cm, chart) in [("smtc-edge-chart", "smtc-edge"), ("smtc-cloud-chart", "smtc-cloud")] {
        apply(hub, &chart_configmap(ns, cm, &chart_dir_tgz(&format!("{SAMPLE}/charts/{chart}")))).await?;
    }
    for file in [
        "03-logical-cloud.yaml",
        "04-composite-app.yaml",
        "05-composite-profile.yaml",
        "06-placement.yaml",
        "06-action-intent.yaml",
        "06-traffic-intent.yaml",
        "07-dig.yaml",
    ] {
        for mut doc in yaml_docs(&format!("{SAMPLE}/{file}")) {
            doc["metadata"]["namespace"] = json!(ns);
            match doc["kind"].as_str() {
                Some("LogicalCloud") => doc["spec"]["namespace"] = json!(ns),
                Some("DeploymentIntentGroup") => doc["metadata"]["name"] = json!(dig),
                _ => {}
            }
            edit(&mut doc);
            apply(hub, &doc).await?;
        }
    }
    Ok(())
}

/// Whether an `a/b` count is complete and non-empty.
pub fn complete(f: &Option<String>) -> bool {
    f.as_deref().and_then(|f| f.split_once('/')).is_some_and(|(a, b)| a == b && b != "0")
}

/// Restarts the operator of the bed (`hub.sh restart`) and returns the new process id.
pub fn restart_operator() -> Result<u32> {
    restart_operator_with(&[])
}

/// Restarts the operator with `env` added to (or overriding) its environment.
pub fn restart_operator_with(env: &[(&str, &str)]) -> Result<u32> {
    let mut command = std::process::Command::new("bash");
    command.arg(repo_root().join("tests/e2e/hub.sh")).arg("restart");
    command.envs(env.iter().copied());
    let out = command.output()?;
    if !out.status.success() {
        bail!("restart failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    wait_ready(Duration::from_secs(30));
    operator_pid()
}

/// Waits (up to `limit`) until the bed's operator answers `/readyz` with 200, so that the next
/// test does not meet a process still starting. One that never gets ready is the caller's to see.
fn wait_ready(limit: Duration) {
    use std::io::{Read, Write};
    let until = std::time::Instant::now() + limit;
    while std::time::Instant::now() < until {
        let answer = std::net::TcpStream::connect("127.0.0.1:18080").ok().and_then(|mut s| {
            s.write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\n\r\n").ok()?;
            let mut reply = String::new();
            s.read_to_string(&mut reply).ok()?;
            Some(reply)
        });
        if answer.is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The samples of `/metrics` on the bed's operator: `name{labels}` to value.
pub async fn scrape() -> Result<std::collections::BTreeMap<String, f64>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect("127.0.0.1:18080").await?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n").await?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await?;
    let (head, body) = reply.split_once("\r\n\r\n").context("an HTTP reply")?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "{head}");
    anyhow::ensure!(head.contains("application/openmetrics-text"), "{head}");
    anyhow::ensure!(body.ends_with("# EOF\n"), "an OpenMetrics document");
    Ok(body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect())
}

/// The process id of the bed's operator.
pub fn operator_pid() -> Result<u32> {
    let pidfile = Bed::get().dir.join("operator.pid");
    Ok(std::fs::read_to_string(&pidfile).with_context(|| format!("reading {}", pidfile.display()))?.trim().parse()?)
}

/// Sets the DIG's desired state (`Instantiated` or `Terminated`).
pub async fn set_dig_state(hub: &Client, ns: &str, name: &str, state: &str) -> Result<()> {
    use kube::api::{Patch, PatchParams};
    Api::<emco::api::orchestrator::DeploymentIntentGroup>::namespaced(hub.clone(), ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(serde_json::json!({"spec": {"state": state}})))
        .await?;
    Ok(())
}

/// The ConfigMaps labelled as deployed by DIG `dig` on every member: (member, name, data).
pub async fn configmaps_everywhere(bed: &Bed, dig: &str) -> Result<Vec<(String, String, BTreeMap<String, String>)>> {
    use k8s_openapi::api::core::v1::ConfigMap;
    let selector = format!("{}={dig}", emco::api::labels::DIG);
    let mut found = Vec::new();
    for m in &bed.members {
        let api = Api::<ConfigMap>::all(bed.client(m).await);
        for cm in api.list(&kube::api::ListParams::default().labels(&selector)).await? {
            found.push((m.clone(), cm.metadata.name.clone().unwrap_or_default(), cm.data.unwrap_or_default()));
        }
    }
    found.sort();
    Ok(found)
}

/// Waits until the logical cloud's status satisfies `done`; the failure shows the last status.
pub async fn wait_lc(
    hub: &Client,
    ns: &str,
    name: &str,
    what: &str,
    timeout: Duration,
    done: impl Fn(&emco::api::dcm::LogicalCloudStatus) -> bool,
) -> Result<emco::api::dcm::LogicalCloudStatus> {
    let api = Api::<emco::api::dcm::LogicalCloud>::namespaced(hub.clone(), ns);
    wait_until(&format!("logical cloud {ns}/{name} {what}"), timeout, || async {
        let status = api.get(name).await?.status.unwrap_or_default();
        Ok(if done(&status) { Ok(status) } else { Err(serde_json::to_string(&status)?) })
    })
    .await
}

/// A client acting as logical cloud `lc`'s user on `cluster`, from the kubeconfig dcm generated.
pub async fn logical_cloud_user(hub: &Client, ns: &str, lc: &str, cluster: &str) -> Result<Client> {
    let secret = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(hub.clone(), ns)
        .get(&emco::api::dcm::user_secret::name(lc, cluster))
        .await?;
    let bytes = secret
        .data
        .and_then(|d| d.get(emco::api::dcm::user_secret::KUBECONFIG).cloned())
        .context("no kubeconfig in the user's Secret")?;
    let kc = Kubeconfig::from_yaml(std::str::from_utf8(&bytes.0)?)?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Runs the bed's kubectl against the hub; its standard output, trimmed (a failing command is fine:
/// `kubectl auth can-i` answers `no` with exit code 1).
pub fn hub_kubectl(args: &[&str]) -> Result<String> {
    let bed = Bed::get();
    let env = std::fs::read_to_string(bed.dir.join("bed.env"))?;
    let bin = env.lines().find_map(|l| l.strip_prefix("BIN_DIR=")).context("BIN_DIR in bed.env")?;
    let out = std::process::Command::new(format!("{}/kubectl", bin.trim_matches('"')))
        .arg("--kubeconfig")
        .arg(bed.kubeconfig(&bed.hub))
        .args(args)
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The operator container's memory limit in the chart's values (`resources.limits.memory`), in bytes.
pub fn chart_memory_limit() -> u64 {
    let values = yaml_docs("charts/emco-operator/values.yaml").remove(0);
    let text = values["resources"]["limits"]["memory"].as_str().expect("resources.limits.memory").to_string();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let scale = match unit {
        "Gi" => 1 << 30,
        "Mi" => 1 << 20,
        "Ki" => 1 << 10,
        _ => 1,
    };
    number.parse::<u64>().expect("a number of bytes") * scale
}

/// Resident memory of a process in bytes (0 once it is gone).
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    kib * 1024
}

/// The processes whose parent is `pid` (the operator's render workers).
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            // pid (comm) state ppid ...: the command may hold spaces, so read after the last ')'.
            stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok()) == Some(pid)
        })
        .collect()
}

/// An API server's own request counters (`apiserver_request_total` from its /metrics), as
/// (verb, resource, count) per series.
pub async fn request_counts(client: &Client) -> Result<Vec<(String, String, u64)>> {
    let text = client.request_text(http::Request::get("/metrics").body(Vec::new())?).await?;
    let label = |line: &str, name: &str| {
        line.split(&format!("{name}=\"")).nth(1).and_then(|v| v.split('"').next()).unwrap_or_default().to_string()
    };
    Ok(text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter_map(|l| Some((label(l, "verb"), label(l, "resource"), l.rsplit(' ').next()?.parse().ok()?)))
        .collect())
}

/// A kubeconfig Secret `emco-system/<name>` holding `kubeconfig` (key `kubeconfig`).
pub fn kubeconfig_secret(name: &str, kubeconfig: &str) -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "emco-system"},
           "stringData": {"kubeconfig": kubeconfig}})
}

/// Registers Cluster `name` with `member`'s kubeconfig pointed at a closed port, so the hub cannot
/// reach it; returns the real kubeconfig, to mend the Secret with.
pub async fn register_unreachable(bed: &Bed, hub: &Client, name: &str, member: &str) -> Result<String> {
    let real = std::fs::read_to_string(bed.kubeconfig(member))?;
    let server = real.lines().find_map(|l| l.trim().strip_prefix("server: ")).context("a server line")?.to_string();
    apply(hub, &kubeconfig_secret(name, &real.replace(&server, "https://127.0.0.1:1"))).await?;
    let cluster = serde_json::json!({"apiVersion": "clm.emco.io/v1alpha1", "kind": "Cluster", "metadata": {"name": name},
        "spec": {"provider": "smartcity", "kubeconfig": {"secretRef": {"namespace": "emco-system", "name": name}}}});
    apply(hub, &cluster).await?;
    Ok(real)
}

/// CPU seconds (user + system) process `pid` has used.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// The Deployments the SmartCity sample puts on `member` of the bed.
pub fn smartcity_deployments(member: &str) -> Vec<&'static str> {
    match member {
        "edge01" | "edge02" => vec!["analytics", "sensor-simulator", "storage"],
        "cloud01" => vec!["web"],
        _ => vec![],
    }
}
