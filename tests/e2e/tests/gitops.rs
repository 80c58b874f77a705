//! Clusters reached through Git: SmartCity with edge02 registered as a GitOps cluster. A real Git
//! server (`git http-backend` behind `bed/git-server.py`) holds the repository; the operator binary
//! in agent mode runs against edge02's own kubeconfig, applies from the repository and reports
//! back. Update, rollback, a Git server down mid-update, terminate, and bad Clusters.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use emco::api::clm::Cluster;
use emco::api::orchestrator::{DeploymentIntentGroup, DigState};
use emco_e2e::git::*;
use emco_e2e::*;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;

#[tokio::test]
async fn smartcity_with_edge02_through_git() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let sfx = unique_suffix();
    let (ns, cluster, secret) = (format!("gitops-{sfx}"), format!("gitedge-{sfx}"), format!("git-{sfx}"));
    let root = bed.dir.join(format!("git-{sfx}"));
    init_repository(&root)?;
    let mut server = GitServer::start(&root, free_port()?)?;

    // Bad input first: both access methods, a missing Secret, credentials that may not push.
    let mut both = git_cluster(&format!("both-{sfx}"), &server.url(), &secret);
    both["spec"]["kubeconfig"] = json!({"secretRef": {"namespace": "emco-system", "name": "edge01"}});
    let refused = apply(&hub, &both).await.expect_err("a Cluster with both access methods is refused");
    ensure!(format!("{refused:#}").contains("exactly one"), "{refused:#}");
    let inline = git_cluster(&format!("inline-{sfx}"), "http://writer:s3cret-w@127.0.0.1:1/fleet.git", &secret);
    let refused = apply(&hub, &inline).await.expect_err("credentials in the URL are refused");
    ensure!(format!("{refused:#}").contains("never in the repository URL"), "{refused:#}");
    apply(&hub, &git_cluster(&format!("nosecret-{sfx}"), &server.url(), &format!("missing-{sfx}"))).await?;
    apply(&hub, &git_secret(&format!("reader-{sfx}"), "reader", "s3cret-r")).await?;
    apply(&hub, &git_cluster(&format!("reader-{sfx}"), &server.url(), &format!("reader-{sfx}"))).await?;
    cluster_ready(&hub, &format!("nosecret-{sfx}"), "False", "CredentialsSecretNotFound").await?;
    cluster_ready(&hub, &format!("reader-{sfx}"), "False", "PushRefused").await?;

    // edge02 through Git: the Cluster, its credentials and the agent on the member.
    let mut agent = through_git("agent", &bed, &hub, &server, &cluster, &secret, &root).await?;
    let (ready, took) = smartcity(&hub, &ns, Some(&cluster)).await?;
    println!("gitops: SmartCity ready {took:?} after kubectl apply, with edge02 through Git");
    println!("gitops: {} deployed, {} ready", ready.deployed.unwrap_or_default(), ready.ready.unwrap_or_default());

    // The repository holds edge02's objects; the agent applied them there; edge01 as ever.
    let folder = format!("clusters/edge02/{ns}/{ns}");
    let files = server.git(&["ls-tree", "-r", "--name-only", "main", &folder])?;
    for f in ["namespace.yaml", "edge/deployment.", "edge/configmap."] {
        ensure!(files.contains(&format!("{folder}/{f}")), "{f} in the repository: {files}");
    }
    ensure!(!files.contains("/cloud/"), "no cloud app in edge02's folder: {files}");
    let status = server.git(&["show", "main:.emco-status/clusters/edge02/status.yaml"])?;
    ensure!(status.contains("digest: "), "the agent's report: {status}");
    for member in ["edge01", "edge02"] {
        let client = bed.client(member).await;
        let deployments = deployed_names(&client, "apps/v1", "Deployment", "deployments", &ns).await?;
        ensure!(deployments == smartcity_deployments(member), "Deployments on {member}: {deployments:?}");
    }
    let table = hub_kubectl(&["get", "dig", "-n", &ns, &ns])?;
    ensure!(table.contains("Instantiated"), "kubectl get dig:\n{table}");
    println!("{table}");

    // An update commits only what changed: one value of the edge profile.
    let profiles = Api::<emco::api::orchestrator::CompositeProfile>::namespaced(hub.clone(), &ns);
    let set_replicas = |n: u32| {
        json!({"spec": {"profiles": [
            {"app": "edge", "values": {"office": {"name": "office1", "location": "45.539626,-122.929569"},
                "cloud": {"host": "web.smartcity.cloud01.example", "port": 80}, "sensorSimulator": {"replicas": n}}},
            {"app": "cloud", "values": {"web": {"replicas": 1}, "db": {"host": "cloud-db.smartcity.svc", "name": "smtc"}}}]}})
    };
    let before = server.git(&["rev-parse", "main"])?;
    profiles.patch("smtc-profile", &PatchParams::default(), &Patch::Merge(set_replicas(3))).await?;
    settled_on(&hub, &ns, 2).await?;
    let changed = changed_since(&server, &before, &folder)?;
    ensure!(changed == [format!("{folder}/edge/deployment.{ns}.sensor-simulator.yaml")], "update changed {changed:?}");
    ensure!(commits_naming(&server, "revision 2 ")? == 1, "one commit for revision 2");
    replicas_on_edge02(&bed, &ns, 3).await?;

    // A rollback commits the earlier content.
    let digs = Api::<DeploymentIntentGroup>::namespaced(hub.clone(), &ns);
    let before = server.git(&["rev-parse", "main"])?;
    digs.patch(&ns, &PatchParams::default(), &Patch::Merge(json!({"spec": {"rollbackTo": 1}}))).await?;
    settled_on(&hub, &ns, 3).await?;
    let changed = changed_since(&server, &before, &folder)?;
    ensure!(
        changed == [format!("{folder}/edge/deployment.{ns}.sensor-simulator.yaml")],
        "rollback changed {changed:?}"
    );
    replicas_on_edge02(&bed, &ns, 2).await?;
    digs.patch(&ns, &PatchParams::default(), &Patch::Merge(json!({"spec": {"rollbackTo": null}}))).await?;
    settled_on(&hub, &ns, 4).await?;
    replicas_on_edge02(&bed, &ns, 3).await?;

    // The Git server down during an update: the DIG says why and retries; when the server is
    // back the update lands in exactly one commit.
    server.stop();
    profiles.patch("smtc-profile", &PatchParams::default(), &Patch::Merge(set_replicas(4))).await?;
    let waiting = wait_dig(&hub, &ns, &ns, "retrying the repository", Duration::from_secs(60), |s| {
        s.revision == Some(5)
            && s.conditions.iter().any(|c| c.message.contains("unreachable") || c.reason == "ClusterUnreachable")
    })
    .await?;
    let why: Vec<String> =
        waiting.conditions.iter().map(|c| format!("{} {} {}", c.type_, c.reason, c.message)).collect();
    println!("gitops: while the Git server is down: {why:?}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    server.resume()?;
    settled_on(&hub, &ns, 5).await?;
    replicas_on_edge02(&bed, &ns, 4).await?;
    ensure!(commits_naming(&server, "revision 5 ")? == 1, "one commit for revision 5");

    // Across an operator restart nothing is committed again.
    let head = server.git(&["rev-parse", "main:clusters"])?;
    restart_operator()?;
    tokio::time::sleep(Duration::from_secs(8)).await;
    ensure!(server.git(&["rev-parse", "main:clusters"])? == head, "a restart committed nothing under clusters/");

    // Terminate removes the folder and the agent prunes the member.
    set_dig_state(&hub, &ns, &ns, "Terminated").await?;
    wait_dig(&hub, &ns, &ns, "Terminated", Duration::from_secs(90), |s| s.state == DigState::Terminated).await?;
    let files = server.git(&["ls-tree", "-r", "--name-only", "main", "clusters/edge02"])?;
    ensure!(!files.contains(&ns), "the DIG's folder is gone: {files}");
    let edge02 = bed.client("edge02").await;
    wait_until("edge02 pruned", Duration::from_secs(30), || async {
        let left = deployed_names(&edge02, "apps/v1", "Deployment", "deployments", &ns).await?;
        Ok(if left.is_empty() { Ok(()) } else { Err(format!("{left:?}")) })
    })
    .await?;

    let _ = agent.kill().await;
    digs.delete(&ns, &DeleteParams::default()).await?;
    let clusters = Api::<Cluster>::all(hub.clone());
    for name in [cluster.clone(), format!("nosecret-{sfx}"), format!("reader-{sfx}")] {
        let _ = clusters.delete(&name, &DeleteParams::default()).await;
    }
    Ok(())
}

/// Benchmark (`just bench`): SmartCity from `kubectl apply` to Ready with edge02 reached through
/// Git (agent interval 1 s), next to the same with edge02 reached with its kubeconfig.
#[tokio::test]
#[ignore = "benchmark: run with `just bench`"]
async fn bench_ready_through_git_and_through_kubeconfig() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let sfx = unique_suffix();
    let root = bed.dir.join(format!("git-bench-{sfx}"));
    init_repository(&root)?;
    let server = GitServer::start(&root, free_port()?)?;
    let cluster = format!("gitbench-{sfx}");
    let _agent = through_git("agent", &bed, &hub, &server, &cluster, &format!("git-bench-{sfx}"), &root).await?;
    let (mut git, mut direct) = (Vec::new(), Vec::new());
    for run in 0..3 {
        let ns = format!("gitbench-{sfx}-{run}");
        git.push(smartcity(&hub, &ns, Some(&cluster)).await?.1);
        set_dig_state(&hub, &ns, &ns, "Terminated").await?;
        let ns = format!("kcbench-{sfx}-{run}");
        direct.push(smartcity(&hub, &ns, None).await?.1);
        set_dig_state(&hub, &ns, &ns, "Terminated").await?;
    }
    git.sort();
    direct.sort();
    println!("SmartCity apply to Ready, edge02 through Git: min {:?} median {:?} max {:?}", git[0], git[1], git[2]);
    println!(
        "SmartCity apply to Ready, edge02 with kubeconfig: min {:?} median {:?} max {:?}",
        direct[0], direct[1], direct[2]
    );
    let _ = Api::<Cluster>::all(hub.clone()).delete(&cluster, &DeleteParams::default()).await;
    Ok(())
}

/// Waits until revision `revision` is deployed and ready.
async fn settled_on(hub: &kube::Client, ns: &str, revision: u32) -> Result<()> {
    wait_dig(hub, ns, ns, &format!("revision {revision} ready"), Duration::from_secs(90), |s| {
        s.revision == Some(revision)
            && matches!(s.state, DigState::Instantiated | DigState::Updated)
            && complete(&s.ready)
    })
    .await
    .map(|_| ())
}

/// Files under `folder` changed between `before` and `main`.
fn changed_since(server: &GitServer, before: &str, folder: &str) -> Result<Vec<String>> {
    let out = server.git(&["diff", "--name-only", before.trim(), "main", "--", folder])?;
    Ok(out.lines().map(str::to_string).collect())
}

/// Waits until sensor-simulator on edge02 asks for `n` replicas (so the agent applied it).
async fn replicas_on_edge02(bed: &Bed, ns: &str, n: i32) -> Result<()> {
    let api = Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(bed.client("edge02").await, ns);
    wait_until(&format!("sensor-simulator with {n} replicas on edge02"), Duration::from_secs(30), || async {
        let d = api.get("sensor-simulator").await.context("sensor-simulator")?;
        let replicas = d.spec.and_then(|s| s.replicas);
        Ok(if replicas == Some(n) { Ok(()) } else { Err(format!("{replicas:?}")) })
    })
    .await
}
