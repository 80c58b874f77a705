//! A GitOps cluster with Flux: edge02 registered with `tool: flux`. Flux's source-controller and
//! kustomize-controller (built from their Go modules by `bed/flux.sh`) run against edge02 and
//! apply the cluster's folder; the agent only reports. SmartCity reaches Ready through Git, and a
//! terminate removes the folder and Flux prunes edge02.
//!
//! Ignored by `just test`: the source-controller that builds from the module proxy reachable here
//! cannot store artifacts (see docs/gitops-clusters.md, "Flux"); `tool: agent` is what runs.

use std::time::Duration;

use anyhow::{Result, ensure};
use emco::api::orchestrator::DigState;
use emco_e2e::git::*;
use emco_e2e::*;
use kube::Api;
use kube::api::DeleteParams;
use serde_json::json;

/// Flux on edge02, stopped when dropped.
struct Flux(std::path::PathBuf);

impl Flux {
    fn start(dir: &std::path::Path) -> Result<Flux> {
        let script = repo_root().join("tests/e2e/bed/flux.sh");
        let out = std::process::Command::new("bash").arg(script).args(["start", "edge02"]).arg(dir).output()?;
        ensure!(out.status.success(), "flux.sh start: {}", String::from_utf8_lossy(&out.stderr));
        Ok(Flux(dir.to_path_buf()))
    }
}

impl Drop for Flux {
    fn drop(&mut self) {
        let script = repo_root().join("tests/e2e/bed/flux.sh");
        let _ = std::process::Command::new("bash").arg(script).arg("stop").arg(&self.0).status();
    }
}

#[tokio::test]
#[ignore = "Flux cannot store artifacts when built here (docs/gitops-clusters.md, \"Flux\"): run with --ignored where it can"]
async fn smartcity_with_edge02_through_flux() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let edge02 = bed.client("edge02").await;
    let sfx = unique_suffix();
    let (ns, cluster) = (format!("flux-{sfx}"), format!("fluxedge-{sfx}"));
    let root = bed.dir.join(format!("git-flux-{sfx}"));
    init_repository(&root)?;
    let server = GitServer::start(&root, free_port()?)?;
    let _flux = Flux::start(&root.join("flux"))?;

    // Flux's source and Kustomization for edge02's folder, with the repository's credentials.
    let source = format!("fleet-{sfx}");
    for doc in [
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": source, "namespace": "flux-system"},
            "stringData": {"username": "writer", "password": "s3cret-w"}}),
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": {"name": source, "namespace": "flux-system"},
            "spec": {"interval": "1s", "url": server.url(), "ref": {"branch": "main"}, "secretRef": {"name": source}}}),
        json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": source, "namespace": "flux-system"},
            "spec": {"interval": "1s", "path": "./clusters/edge02", "prune": true, "timeout": "30s",
                "sourceRef": {"kind": "GitRepository", "name": source}}}),
    ] {
        apply(&edge02, &doc).await?;
    }

    let _agent = through_git("flux", &bed, &hub, &server, &cluster, &format!("git-flux-{sfx}"), &root).await?;
    let (ready, took) = smartcity(&hub, &ns, Some(&cluster)).await?;
    println!("gitops with Flux: SmartCity ready {took:?} after kubectl apply ({:?})", ready.ready);

    // Flux applied edge02's objects (its labels are on them), from the repository.
    let deployments = Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(edge02.clone(), &ns);
    for name in smartcity_deployments("edge02") {
        let d = deployments.get(name).await?;
        let by = d.metadata.labels.unwrap_or_default().get("kustomize.toolkit.fluxcd.io/name").cloned();
        ensure!(by.as_deref() == Some(source.as_str()), "{name} on edge02 applied by Flux: {by:?}");
    }

    // Terminate: the folder goes, Flux prunes edge02.
    set_dig_state(&hub, &ns, &ns, "Terminated").await?;
    wait_dig(&hub, &ns, &ns, "Terminated", Duration::from_secs(90), |s| s.state == DigState::Terminated).await?;
    let files = server.git(&["ls-tree", "-r", "--name-only", "main", "clusters/edge02"])?;
    ensure!(!files.contains(&ns), "the DIG's folder is gone: {files}");
    wait_until("Flux pruned edge02", Duration::from_secs(60), || async {
        let left = deployed_names(&edge02, "apps/v1", "Deployment", "deployments", &ns).await?;
        Ok(if left.is_empty() { Ok(()) } else { Err(format!("{left:?}")) })
    })
    .await?;

    Api::<emco::api::orchestrator::DeploymentIntentGroup>::namespaced(hub.clone(), &ns)
        .delete(&ns, &DeleteParams::default())
        .await?;
    let _ = Api::<emco::api::clm::Cluster>::all(hub.clone()).delete(&cluster, &DeleteParams::default()).await;
    Ok(())
}
