//! Restart anywhere: the operator runs with `EMCO_FAULT_AFTER_WRITES=k`, so it exits right after
//! every k-th write to the hub or a member (a crash there; only the writes of this test's project
//! count, `EMCO_FAULT_SCOPE`), and a supervisor starts it again each
//! time (same pod identity, as a restarted container). Through a whole instantiate, update and
//! terminate of SmartCity, for each k of `EMCO_E2E_FAULT_KS` (default 1 and 4; k = 1 crashes
//! after every single write), every step must end in the right state: the right objects on the
//! right members and none elsewhere, the update on every member, exactly one AppContext per
//! revision and no revision more than the two asked for, and nothing left after terminate.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use emco::api::orchestrator::{DeploymentIntentGroup as Dig, DigState};
use emco::api::rsync::AppContext;
use emco_e2e::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

/// The identity every restart keeps (a Kubernetes pod keeps its name across container restarts),
/// so the Lease a crashed run held is taken back at once.
const POD_NAME: &str = "emco-fault-loop";

#[tokio::test]
async fn every_run_ends_right_whatever_write_the_operator_dies_after() -> Result<()> {
    let ks: Vec<u64> = std::env::var("EMCO_E2E_FAULT_KS")
        .unwrap_or_else(|_| "1,4".into())
        .split(',')
        .filter_map(|k| k.trim().parse().ok())
        .collect();
    let mut report = Vec::new();
    for k in ks {
        let started = Instant::now();
        let ns = format!("fault{k}-{}", unique_suffix());
        let supervisor = Supervisor::start(k, &ns);
        let outcome = scenario(k, &ns).await;
        let restarts = supervisor.stop();
        report.push(format!("k={k}: {restarts} restarts, {:.0?}", started.elapsed()));
        eprintln!("restart anywhere: {}", report.last().unwrap());
        // Back to an operator without the fault, for what follows.
        restart_operator_with(&[("POD_NAME", POD_NAME)])?;
        outcome?;
        ensure!(restarts >= 2, "k={k}: the fault must have struck (restarts: {restarts})");
    }
    eprintln!("restart anywhere: {}", report.join("; "));
    Ok(())
}

/// Instantiate, update and terminate SmartCity in a fresh project, checking each step.
async fn scenario(k: u64, ns: &str) -> Result<()> {
    let (bed, ns) = (Bed::get(), ns.to_string());
    let hub = bed.hub().await;
    project(&hub, &ns).await?;
    apply_sample(&hub, &ns, &ns).await?;
    let limit = Duration::from_secs(300);
    let deployed = |revision: u32| {
        move |s: &emco::api::orchestrator::DeploymentIntentGroupStatus| {
            s.revision == Some(revision)
                && matches!(s.state, DigState::Instantiated | DigState::Updated)
                && complete(&s.ready)
        }
    };
    wait_dig(&hub, &ns, &ns, &format!("k={k}: instantiated"), limit, deployed(1)).await?;
    on_the_right_members(&bed, &ns, "1.1").await?;

    // Update: the edge image tag.
    let patch = json!({"spec": {"overrideValues": [{"app": "edge", "values": {"image": {"tag": "1.2"}}}]}});
    Api::<Dig>::namespaced(hub.clone(), &ns).patch(&ns, &PatchParams::default(), &Patch::Merge(patch)).await?;
    wait_dig(&hub, &ns, &ns, &format!("k={k}: updated"), limit, deployed(2)).await?;
    wait_until(&format!("k={k}: revision 2 on the members"), Duration::from_secs(60), || async {
        Ok(on_the_right_members(&bed, &ns, "1.2").await.map_err(|e| e.to_string()))
    })
    .await?;
    one_context_per_revision(&hub, &ns, &[1, 2]).await?;

    // Terminate: nothing of the DIG left on any member.
    set_dig_state(&hub, &ns, &ns, "Terminated").await?;
    wait_dig(&hub, &ns, &ns, &format!("k={k}: terminated"), limit, |s| s.state == DigState::Terminated).await?;
    wait_until(&format!("k={k}: nothing left on the members"), Duration::from_secs(60), || async {
        let left = leftovers(&bed, &ns).await?;
        Ok(if left.is_empty() { Ok(()) } else { Err(format!("{left:?}")) })
    })
    .await?;
    one_context_per_revision(&hub, &ns, &[1, 2]).await?;
    Ok(())
}

/// Every member holds exactly SmartCity's Deployments for it, the edge ones at image tag `tag`.
async fn on_the_right_members(bed: &Bed, ns: &str, tag: &str) -> Result<()> {
    for m in &bed.members {
        let found = deployed_names(&bed.client(m).await, "apps/v1", "Deployment", "deployments", ns).await?;
        ensure!(found == smartcity_deployments(m), "{m}: {found:?}");
        if m.starts_with("edge") {
            let api = Api::<Deployment>::namespaced(bed.client(m).await, ns);
            for d in api.list(&ListParams::default()).await? {
                let images: Vec<String> = d
                    .spec
                    .and_then(|s| s.template.spec)
                    .map(|p| p.containers.into_iter().filter_map(|c| c.image).collect())
                    .unwrap_or_default();
                ensure!(images.iter().all(|i| i.ends_with(&format!(":{tag}"))), "{m}: {images:?} not at {tag}");
            }
        }
    }
    Ok(())
}

/// The DIG's history, its AppContexts and its bundles all name exactly `revisions`, one
/// AppContext each.
async fn one_context_per_revision(hub: &kube::Client, ns: &str, revisions: &[u32]) -> Result<()> {
    let status = dig(hub, ns, ns).await?.status.unwrap_or_default();
    let history: Vec<u32> = status.history.iter().map(|h| h.revision).collect();
    ensure!(history == revisions, "history: {history:?}");
    let mut contexts: Vec<u32> = Api::<AppContext>::namespaced(hub.clone(), ns)
        .list(&ListParams::default())
        .await?
        .iter()
        .map(|c| c.spec.revision)
        .collect();
    contexts.sort();
    ensure!(contexts == revisions, "AppContexts: {contexts:?}");
    let selector = format!("{}={ns}", emco::api::labels::DIG);
    let secrets = Api::<Secret>::namespaced(hub.clone(), ns).list(&ListParams::default().labels(&selector)).await?;
    for s in secrets {
        let revision = s.labels().get(emco::api::labels::REVISION).and_then(|r| r.parse::<u32>().ok());
        ensure!(revision.is_some_and(|r| revisions.contains(&r)), "bundle {} of revision {revision:?}", s.name_any());
    }
    Ok(())
}

/// Objects of the DIG still on a member.
async fn leftovers(bed: &Bed, ns: &str) -> Result<Vec<String>> {
    let mut left = Vec::new();
    for m in &bed.members {
        let c = bed.client(m).await;
        for (gv, kind, plural) in
            [("apps/v1", "Deployment", "deployments"), ("v1", "ConfigMap", "configmaps"), ("v1", "Service", "services")]
        {
            left.extend(deployed_names(&c, gv, kind, plural, ns).await?.into_iter().map(|n| format!("{m} {kind}/{n}")));
        }
    }
    Ok(left)
}

/// Starts the operator again each time it exits, armed with the fault at `k`.
struct Supervisor {
    running: Arc<AtomicBool>,
    restarts: Arc<AtomicU32>,
    thread: std::thread::JoinHandle<()>,
}

impl Supervisor {
    fn start(k: u64, scope: &str) -> Supervisor {
        let running = Arc::new(AtomicBool::new(true));
        let restarts = Arc::new(AtomicU32::new(0));
        let (run, count, scope) = (running.clone(), restarts.clone(), scope.to_string());
        let thread = std::thread::spawn(move || {
            let k = k.to_string();
            launch(&k, &scope);
            while run.load(Ordering::SeqCst) {
                if !alive() {
                    count.fetch_add(1, Ordering::SeqCst);
                    launch(&k, &scope);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Supervisor { running, restarts, thread }
    }

    /// Stops supervising; how many times the operator was started again.
    fn stop(self) -> u32 {
        self.running.store(false, Ordering::SeqCst);
        let _ = self.thread.join();
        self.restarts.load(Ordering::SeqCst)
    }
}

/// `hub.sh restart` with the fault armed for the writes of `scope` (the test's project: what
/// other tests left on the hub neither counts nor is held), not waiting for readiness: it may
/// die first.
fn launch(k: &str, scope: &str) {
    let _ = std::process::Command::new("bash")
        .arg(repo_root().join("tests/e2e/hub.sh"))
        .arg("restart")
        .env(emco::fault::ENV, k)
        .env(emco::fault::SCOPE_ENV, scope)
        .env("POD_NAME", POD_NAME)
        .output();
}

/// Whether the bed's operator process runs (a zombie does not).
fn alive() -> bool {
    let Ok(pid) = operator_pid() else { return false };
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| !r.trim_start().starts_with('Z')))
        .unwrap_or(false)
}
