//! The operator as a pod of the hub: the bed's hub gets one real node (a kubelet built from the
//! pinned Kubernetes modules, containerd and runc from Debian; `tests/e2e/bed/node.sh`), the image
//! built from the debug binary (`image/build.sh`) is imported there, the chart is `helm install`ed
//! with host networking, and SmartCity is deployed by that pod alone (the host operator is
//! stopped). Whatever happens, the guard uninstalls the release, takes the node down and starts the
//! host operator again. Run it under the bed's lock, alone:
//!
//!     flock -o /tmp/emco-bed.lock cargo test -p emco-e2e --test in_cluster -- --nocapture
//!
//! A machine that cannot run a node (not root, no writable cgroups) fails this test with the
//! reason, unless `EMCO_E2E_SKIP_IN_CLUSTER=1`, which turns that into a printed skip.
//! docs/in-cluster.md describes the node.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use emco::api::orchestrator::{DeploymentIntentGroup, DigState};
use emco_e2e::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};

/// The Helm release, and the `<fullname>` of its objects: neither clashes with the chart objects
/// `hub.sh` applies for the host operator (`emco-operator`), so the release owns only its own.
const RELEASE: &str = "emco-bed";
const FULLNAME: &str = "emco-in-cluster";
const NAMESPACE: &str = "emco-system";
const IMAGE_REPOSITORY: &str = "ghcr.io/emco-rs/emco-operator";
const IMAGE_TAG: &str = "e2e";

fn bin_dir(bed: &Bed) -> Result<PathBuf> {
    let env = std::fs::read_to_string(bed.dir.join("bed.env"))?;
    let bin = env.lines().find_map(|l| l.strip_prefix("BIN_DIR=")).context("BIN_DIR in bed.env")?;
    Ok(PathBuf::from(bin.trim_matches('"')))
}

/// Runs `program args` in the workspace root; its stdout, or an error with its stderr's tail.
fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str], env: &[(&str, &str)]) -> Result<String> {
    let program = program.as_ref();
    let out = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(repo_root())
        .output()
        .with_context(|| format!("running {program:?}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        bail!(
            "{program:?} {args:?} failed ({}):\n{}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a bash script of the workspace with no file descriptor above 2: a process it leaves
/// running (the host operator of `hub.sh start`) must not keep the bed's lock, which
/// `flock /tmp/emco-bed.lock cargo test ...` hands down to this test.
fn bash(script: &str, args: &[&str]) -> Result<String> {
    const CLOSE_FDS: &str =
        r#"for fd in $(ls /proc/$$/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null; done; exec bash "$@""#;
    let mut all = vec!["-c", CLOSE_FDS, "bash", script];
    all.extend_from_slice(args);
    run("bash", &all, &[])
}

/// Undoes everything the test set up, in order, even when it failed: uninstall the release (and
/// wait for its pod, so that the operator gives the Lease up), take the node down, start the host
/// operator again.
struct Restore {
    helm: PathBuf,
    kubectl: PathBuf,
    hub_kubeconfig: PathBuf,
}

impl Drop for Restore {
    fn drop(&mut self) {
        let kubeconfig = self.hub_kubeconfig.to_string_lossy().to_string();
        let started = Instant::now();
        let step = |what: &str, result: Result<String>| match result {
            Ok(_) => println!("cleanup: {what} ({:.1?})", started.elapsed()),
            Err(e) => eprintln!("cleanup: {what} FAILED: {e:#}"),
        };
        // The pod stops first, while its RBAC still lets it give the Lease up (helm uninstall
        // deletes the Deployment and the bindings at once). Its last words go with it: keep them.
        let scaled = run(
            &self.kubectl,
            &["--kubeconfig", &kubeconfig, "-n", NAMESPACE, "scale", &format!("deployment/{FULLNAME}"), "--replicas=0"],
            &[],
        );
        step("scale the operator to 0", scaled);
        let selector = format!("app.kubernetes.io/instance={RELEASE}");
        let mut last_words = String::new();
        for _ in 0..120 {
            last_words = pod_logs().unwrap_or(last_words);
            let pods = run(
                &self.kubectl,
                &["--kubeconfig", &kubeconfig, "-n", NAMESPACE, "get", "pods", "-l", &selector, "-o", "name"],
                &[],
            );
            if pods.map(|p| p.trim().is_empty()).unwrap_or(true) {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let uninstalled = run(
            &self.helm,
            &["uninstall", RELEASE, "-n", NAMESPACE, "--kubeconfig", &kubeconfig, "--ignore-not-found"],
            &[],
        );
        step("helm uninstall", uninstalled);
        if !last_words.is_empty() {
            let kept = repo_root().join("target/bed/node/in-cluster-operator.log");
            let _ = std::fs::write(&kept, &last_words);
            let tail: Vec<&str> = last_words.lines().rev().take(3).collect();
            println!(
                "cleanup: the pod's last log lines (all in {}):\n{}",
                kept.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        step("node.sh down", bash("tests/e2e/bed/node.sh", &["down"]));
        step("hub.sh start (the host operator again)", bash("tests/e2e/hub.sh", &["start"]));
    }
}

/// What the operator pod looks like now: `Ok(pod)` once Running and Ready, else a description.
fn pod_state(pods: &[Pod]) -> std::result::Result<Pod, String> {
    let Some(pod) = pods.iter().find(|p| p.metadata.deletion_timestamp.is_none()) else {
        return Err("no pod yet".into());
    };
    let status = pod.status.clone().unwrap_or_default();
    let phase = status.phase.clone().unwrap_or_default();
    let ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
    if phase == "Running" && ready {
        return Ok(pod.clone());
    }
    let containers: Vec<String> = status
        .container_statuses
        .iter()
        .flatten()
        .map(|c| {
            let state = c.state.clone().unwrap_or_default();
            match (state.waiting, state.terminated) {
                (Some(w), _) => format!("waiting {} {}", w.reason.unwrap_or_default(), w.message.unwrap_or_default()),
                (_, Some(t)) => format!("terminated {} exit {}", t.reason.unwrap_or_default(), t.exit_code),
                _ => format!("running, ready {} restarts {}", c.ready, c.restart_count),
            }
        })
        .collect();
    let conditions: Vec<String> = status
        .conditions
        .iter()
        .flatten()
        .map(|c| format!("{}={} {}", c.type_, c.status, c.message.clone().unwrap_or_default()))
        .collect();
    Err(format!(
        "pod {} on {:?}: phase {phase}, containers [{}], conditions [{}]",
        pod.metadata.name.clone().unwrap_or_default(),
        pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        containers.join("; "),
        conditions.join("; ")
    ))
}

/// Every log of the release's operator containers on the node, while the kubelet keeps them.
fn pod_logs() -> Option<String> {
    let root = repo_root().join("target/bed/node/kubelet/pod-logs");
    let mut text = String::new();
    for pod in std::fs::read_dir(root).ok()?.flatten() {
        if !pod.file_name().to_string_lossy().starts_with(&format!("{NAMESPACE}_{FULLNAME}-")) {
            continue;
        }
        for file in std::fs::read_dir(pod.path().join("operator")).into_iter().flatten().flatten() {
            text.push_str(&std::fs::read_to_string(file.path()).unwrap_or_default());
        }
    }
    (!text.is_empty()).then_some(text)
}

/// The operator container's log as the node's kubelet keeps it (`kubectl logs` needs the API
/// server to reach the kubelet, which listens on 127.0.0.1 only).
fn container_log(pod: &Pod) -> Result<String> {
    let dir = repo_root().join("target/bed/node/kubelet/pod-logs").join(format!(
        "{NAMESPACE}_{}_{}/operator",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    ));
    let mut text = String::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for file in files {
        text.push_str(&std::fs::read_to_string(&file).unwrap_or_default());
    }
    Ok(text)
}

fn hub_api_port(kubeconfig: &Path) -> Result<String> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let server = kc.clusters.first().and_then(|c| c.cluster.as_ref()?.server.clone()).context("the hub's server")?;
    let port = server.rsplit(':').next().context("a port in the hub's server")?.trim_end_matches('/');
    ensure!(server.starts_with("https://127.0.0.1:"), "the hub's API server is not on 127.0.0.1: {server}");
    Ok(port.to_string())
}

#[tokio::test]
async fn the_chart_runs_the_operator_in_the_hub_and_it_deploys_smartcity() -> Result<()> {
    let bed = Bed::get();
    let bin = bin_dir(&bed)?;
    let skip = std::env::var("EMCO_E2E_SKIP_IN_CLUSTER").is_ok_and(|v| v == "1");

    // Can this machine run a node at all? (root, writable cgroups, the bed up)
    let status = bash("tests/e2e/bed/node.sh", &["status"])?;
    if let Some(why) = status.trim().strip_prefix("unfit: ") {
        if skip {
            println!("SKIPPED (EMCO_E2E_SKIP_IN_CLUSTER=1): no node on this machine: {why}");
            return Ok(());
        }
        bail!("the hub's node cannot run on this machine: {why} (EMCO_E2E_SKIP_IN_CLUSTER=1 skips this test)");
    }

    // The image, from the debug binary the suite runs.
    let binary = repo_root().join("target/debug/emco-operator");
    ensure!(
        binary.is_file(),
        "no {}: build it (cargo build -p emco-operator --bin emco-operator, or tests/e2e/hub.sh start)",
        binary.display()
    );
    let node_dir = bed.dir.join("node");
    std::fs::create_dir_all(&node_dir)?;
    let t = Instant::now();
    let image = format!("{IMAGE_REPOSITORY}:{IMAGE_TAG}");
    let built = run(
        "bash",
        &["image/build.sh", &binary.to_string_lossy()],
        &[("IMAGE", &image), ("OUT", &node_dir.to_string_lossy())],
    )?;
    let tarball = node_dir.join("emco-operator.oci.tar");
    let image_build = t.elapsed();
    println!("image built in {image_build:.1?}:\n{}", built.trim_end());

    let hub_kubeconfig = bed.kubeconfig(&bed.hub);
    let _restore =
        Restore { helm: bin.join("helm"), kubectl: bin.join("kubectl"), hub_kubeconfig: hub_kubeconfig.clone() };

    // The node, with the image.
    let t = Instant::now();
    if let Err(e) = bash("tests/e2e/bed/node.sh", &["up", &tarball.to_string_lossy()]) {
        if skip {
            println!("SKIPPED (EMCO_E2E_SKIP_IN_CLUSTER=1): the node did not come up: {e:#}");
            return Ok(());
        }
        return Err(e.context("the hub's node did not come up (EMCO_E2E_SKIP_IN_CLUSTER=1 skips this test)"));
    }
    let node_up = t.elapsed();
    println!("node up in {node_up:.1?}");

    // The host operator steps aside: the pod must do all the work.
    bash("tests/e2e/hub.sh", &["stop"])?;
    ensure!(!bed.dir.join("operator.pid").exists(), "the host operator still has a pid file after hub.sh stop");

    // helm install, host network, the API server on loopback (no kube-proxy for the Service IP).
    let api_port = hub_api_port(&hub_kubeconfig)?;
    let health_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let values = format!(
        "# written by tests/e2e/tests/in_cluster.rs\n\
         fullnameOverride: {FULLNAME}\n\
         personas: {{create: false}}  # hub.sh applied them for the host operator\n\
         image: {{repository: {IMAGE_REPOSITORY}, tag: {IMAGE_TAG}, pullPolicy: Never}}\n\
         hostNetwork: true\n\
         dnsPolicy: Default\n\
         health: {{port: {health_port}, bindAddress: 127.0.0.1, probeHost: 127.0.0.1}}\n\
         nodeSelector: {{emco.io/bed-node: \"true\"}}\n\
         logLevel: info,kube=warn\n\
         extraEnv:\n\
         - {{name: KUBERNETES_SERVICE_HOST, value: \"127.0.0.1\"}}\n\
         - {{name: KUBERNETES_SERVICE_PORT, value: \"{api_port}\"}}\n"
    );
    let values_file = node_dir.join("in-cluster-values.yaml");
    std::fs::write(&values_file, &values)?;
    let t = Instant::now();
    run(
        bin.join("helm"),
        &[
            "install",
            RELEASE,
            "charts/emco-operator",
            "-n",
            NAMESPACE,
            "--kubeconfig",
            &hub_kubeconfig.to_string_lossy(),
            "--skip-crds",
            "-f",
            &values_file.to_string_lossy(),
        ],
        &[],
    )?;

    let hub = bed.hub().await;
    let pods = Api::<Pod>::namespaced(hub.clone(), NAMESPACE);
    let selector = format!("app.kubernetes.io/instance={RELEASE}");
    let waited = wait_until("the operator pod Running and Ready (its /readyz)", Duration::from_secs(180), || async {
        Ok(pod_state(&pods.list(&ListParams::default().labels(&selector)).await?.items))
    })
    .await;
    let pod = match waited {
        Ok(pod) => pod,
        Err(e) => {
            // What the kubelet and the scheduler said about it (FailedCreatePodSandBox, ...).
            let events = Api::<Event>::namespaced(hub.clone(), NAMESPACE).list(&ListParams::default()).await?;
            let said: Vec<String> = events
                .items
                .iter()
                .filter(|ev| ev.involved_object.name.as_deref().is_some_and(|n| n.starts_with(FULLNAME)))
                .map(|ev| {
                    format!(
                        "{} {}: {}",
                        ev.reason.clone().unwrap_or_default(),
                        ev.count.unwrap_or(1),
                        ev.message.clone().unwrap_or_default()
                    )
                })
                .collect();
            bail!("{e:#}\nevents:\n{}\n(node logs: target/bed/node/{{kubelet,containerd}}.log)", said.join("\n"));
        }
    };
    let pod_ready = t.elapsed();
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let container =
        pod.status.as_ref().and_then(|s| s.container_statuses.as_ref()?.first().cloned()).unwrap_or_default();
    println!("pod {pod_name} Running and Ready {pod_ready:.1?} after helm install ({:?})", container.container_id);
    assert_eq!(spec.node_name.as_deref(), Some("hub-node"), "the pod runs on the real node");
    assert_eq!(spec.host_network, Some(true));
    assert!(
        container.container_id.as_deref().is_some_and(|id| id.starts_with("containerd://")),
        "a container that containerd runs: {container:?}"
    );
    assert!(container.image.contains(IMAGE_TAG), "the image imported on the node: {}", container.image);

    // The pod leads: the Lease is its (POD_NAME is the identity).
    let leases = Api::<Lease>::namespaced(hub.clone(), NAMESPACE);
    let t = Instant::now();
    wait_until("the pod holding the leader Lease", Duration::from_secs(60), || async {
        let holder =
            leases.get_opt(emco::leader::LEASE).await?.and_then(|l| l.spec?.holder_identity).unwrap_or_default();
        Ok(if holder == pod_name { Ok(()) } else { Err(format!("holder {holder:?}")) })
    })
    .await?;
    println!("pod {pod_name} holds the leader Lease {:.1?} after it was Ready", t.elapsed());

    // SmartCity, in a fresh project, by the pod alone.
    let ns = format!("smtc-ic-{}", unique_suffix());
    let t = Instant::now();
    project(&hub, &ns).await?;
    apply_sample(&hub, &ns, &ns).await?;
    let ready = wait_dig(&hub, &ns, &ns, "Instantiated and ready n/n", Duration::from_secs(180), |s| {
        s.state == DigState::Instantiated && complete(&s.ready) && complete(&s.deployed)
    })
    .await?;
    let smartcity_ready = t.elapsed();
    assert_eq!(ready.revision, Some(1));
    for member in &bed.members {
        let client = bed.client(member).await;
        let deployments = deployed_names(&client, "apps/v1", "Deployment", "deployments", &ns).await?;
        assert_eq!(deployments, smartcity_deployments(member), "Deployments of {ns} on {member}");
    }

    // The pod did it: it still leads, and its log (kept by the node's kubelet) has the work.
    let holder = leases.get(emco::leader::LEASE).await?.spec.and_then(|s| s.holder_identity).unwrap_or_default();
    assert_eq!(holder, pod_name, "the in-cluster replica holds the Lease after the deployment");
    let log = container_log(&pod)?;
    for needed in [
        "acquired the leader Lease".to_string(),
        "starting controllers".to_string(),
        format!("appcontext={ns}-1"),
        "resources ready".to_string(),
    ] {
        assert!(log.contains(&needed), "the pod's log lacks {needed:?}:\n{}", &log[log.len().saturating_sub(4000)..]);
    }

    // Terminate and delete through the pod too, so the host operator inherits nothing.
    set_dig_state(&hub, &ns, &ns, "Terminated").await?;
    wait_dig(&hub, &ns, &ns, "Terminated", Duration::from_secs(60), |s| s.state == DigState::Terminated).await?;
    let digs = Api::<DeploymentIntentGroup>::namespaced(hub.clone(), &ns);
    digs.delete(&ns, &DeleteParams::default()).await?;
    wait_for("DIG deleted", Duration::from_secs(30), || async { Ok(digs.get_opt(&ns).await?.is_none().then_some(())) })
        .await?;
    for member in &bed.members {
        let left = deployed_names(&bed.client(member).await, "apps/v1", "Deployment", "deployments", &ns).await?;
        assert!(left.is_empty(), "Deployments of {ns} left on {member}: {left:?}");
    }
    Api::<emco::api::orchestrator::Project>::all(hub.clone()).delete(&ns, &DeleteParams::default()).await?;
    Api::<emco::api::dcm::ClusterGrant>::all(hub.clone())
        .delete(&format!("e2e-{ns}"), &DeleteParams::default())
        .await?;

    // A graceful stop: scaled to 0 (its RBAC still in place), the pod's kubelet sends SIGTERM and
    // the operator gives the Lease up instead of letting it expire.
    let t = Instant::now();
    Api::<Deployment>::namespaced(hub.clone(), NAMESPACE)
        .patch(FULLNAME, &PatchParams::default(), &Patch::Merge(serde_json::json!({"spec": {"replicas": 0}})))
        .await?;
    let mut last_words = String::new();
    wait_for("the operator pod gone after scaling to 0", Duration::from_secs(60), || {
        last_words = pod_logs().unwrap_or(std::mem::take(&mut last_words));
        let pods = pods.clone();
        let selector = selector.clone();
        async move { Ok(pods.list(&ListParams::default().labels(&selector)).await?.items.is_empty().then_some(())) }
    })
    .await?;
    let stopped = t.elapsed();
    std::fs::write(node_dir.join("in-cluster-operator.log"), &last_words)?;
    let holder = leases.get(emco::leader::LEASE).await?.spec.and_then(|s| s.holder_identity);
    assert_eq!(holder, None, "the stopped pod released the Lease (log in target/bed/node/in-cluster-operator.log)");

    println!(
        "in-cluster timings: image build {image_build:.1?}, node up {node_up:.1?}, pod Ready {pod_ready:.1?} \
         after helm install, SmartCity Instantiated and ready {smartcity_ready:.1?} after apply, pod gone and \
         Lease released {stopped:.1?} after scaling to 0"
    );
    Ok(())
}
