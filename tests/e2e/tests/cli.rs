//! `kubectl emco` against the live bed: the status query as a tree with its filters and as JSON
//! and YAML, watch until settled, history, and the lifecycle verbs (approve, terminate,
//! instantiate, stop, rollback), each checked on the DIG and on the members.

use std::time::Duration;

use anyhow::{Result, ensure};
use emco::api::orchestrator::{DeploymentIntentGroup, DigState};
use emco_e2e::*;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

/// Runs `kubectl-emco args` against the hub: (exit code, stdout, stderr).
fn emco(args: &[&str]) -> Result<(i32, String, String)> {
    let bed = Bed::get();
    let out = std::process::Command::new(repo_root().join("target/debug/kubectl-emco"))
        .env("KUBECONFIG", bed.kubeconfig(&bed.hub))
        .args(args)
        .output()?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    Ok((out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr)))
}

/// `emco(args)`, which must succeed; its stdout.
fn ok(args: &[&str]) -> Result<String> {
    let (code, out, err) = emco(args)?;
    ensure!(code == 0, "kubectl emco {args:?} exited {code}: {err}{out}");
    Ok(out)
}

#[tokio::test]
async fn kubectl_emco_reads_and_drives_smartcity() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("cli-{}", unique_suffix());
    project(&hub, &ns).await?;
    apply_sample(&hub, &ns, "smtc").await?;

    // watch: counts that move, until Instantiated and ready.
    let watched = ok(&["watch", "smtc", "-n", &ns, "--timeout", "120"])?;
    println!("{watched}");
    let last = watched.lines().last().unwrap_or_default();
    assert!(last.starts_with("smtc: Instantiated after"), "{watched}");
    assert!(watched.lines().any(|l| l.starts_with('[') && l.contains("ready")), "a progress line: {watched}");

    // The whole tree, then each filter.
    let tree = ok(&["status", "smtc", "-n", &ns])?;
    println!("{tree}");
    assert!(tree.starts_with(&format!("DeploymentIntentGroup {ns}/smtc: Instantiated, revision 1")), "{tree}");
    for line in [
        "app edge on 2 clusters",
        "cluster edge01 [Available]",
        "cluster edge02 [Available]",
        "app cloud on 1 cluster:",
    ] {
        assert!(tree.contains(line), "{line} in {tree}");
    }
    let edge01 = ok(&["status", "smtc", "-n", &ns, "--cluster", "edge01"])?;
    assert!(
        edge01.contains("cluster edge01") && !edge01.contains("cluster edge02") && !edge01.contains("app cloud"),
        "{edge01}"
    );
    let cloud = ok(&["status", "smtc", "-n", &ns, "--app", "cloud"])?;
    assert!(cloud.contains("app cloud") && !cloud.contains("app edge"), "{cloud}");
    let summary = ok(&["status", "smtc", "-n", &ns, "--summary"])?;
    assert!(summary.contains("app edge") && !summary.contains("cluster "), "{summary}");
    let detail = ok(&["status", "smtc", "-n", &ns, "--detail"])?;
    println!("{detail}");
    assert!(detail.contains("Deployment web: Applied, Ready"), "{detail}");

    // One resource, as JSON: on its one cluster, applied and ready.
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["status", "smtc", "-n", &ns, "--resource", "Deployment/web", "-o", "json"])?)?;
    let apps = json["apps"].as_array().cloned().unwrap_or_default();
    assert_eq!(apps.len(), 1, "only the app with Deployment/web: {json}");
    let clusters = apps[0]["clusters"].as_array().cloned().unwrap_or_default();
    assert_eq!(clusters.len(), 1, "{json}");
    assert_eq!(clusters[0]["cluster"], "cloud01");
    assert_eq!(
        clusters[0]["resourceStatus"],
        json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
        "deployed": "Applied", "ready": "Ready"}])
    );
    let yaml = ok(&["status", "smtc", "-n", &ns, "-o", "yaml", "--summary"])?;
    assert!(yaml.contains("state: Instantiated"), "{yaml}");
    let (code, _, err) = emco(&["status", "nothing", "-n", &ns])?;
    assert!(code == 1 && err.contains("no DeploymentIntentGroup nothing"), "{code} {err}");

    // history, and a rollback to a revision that does not exist is refused before anything changes.
    let history = ok(&["history", "smtc", "-n", &ns])?;
    assert!(
        history.lines().any(|l| l.starts_with("1 ") && l.contains("smtc-1") && l.ends_with("(current)")),
        "{history}"
    );
    let (code, _, err) = emco(&["rollback", "smtc", "7", "-n", &ns])?;
    assert!(code == 1 && err.contains("revision 7 is not in the history"), "{code} {err}");
    let digs = Api::<DeploymentIntentGroup>::namespaced(hub.clone(), &ns);
    assert_eq!(digs.get("smtc").await?.spec.rollback_to, None);

    // terminate: gone from the members; instantiate: back.
    ok(&["terminate", "smtc", "-n", &ns])?;
    let watched = ok(&["watch", "smtc", "-n", &ns, "--timeout", "120"])?;
    assert!(watched.lines().last().unwrap_or_default().starts_with("smtc: Terminated"), "{watched}");
    let on_cloud01 = Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(bed.client("cloud01").await, &ns);
    let names = || async {
        Ok::<_, anyhow::Error>(
            on_cloud01
                .list(&Default::default())
                .await?
                .items
                .into_iter()
                .filter_map(|d| d.metadata.name)
                .collect::<Vec<_>>(),
        )
    };
    assert!(names().await?.is_empty(), "terminated: nothing left on cloud01");
    ok(&["instantiate", "smtc", "-n", &ns])?;
    let watched = ok(&["watch", "smtc", "-n", &ns, "--timeout", "120"])?;
    assert!(watched.lines().last().unwrap_or_default().starts_with("smtc: Instantiated"), "{watched}");
    assert_eq!(names().await?, ["web"]);

    // approve and stop write the spec, as a GitOps repository would.
    digs.patch("smtc", &PatchParams::default(), &Patch::Merge(json!({"spec": {"approved": false}}))).await?;
    ok(&["approve", "smtc", "-n", &ns])?;
    assert!(digs.get("smtc").await?.spec.approved);
    ok(&["stop", "smtc", "-n", &ns])?;
    assert!(digs.get("smtc").await?.spec.stop);
    ok(&["stop", "smtc", "-n", &ns, "--clear"])?;
    assert!(!digs.get("smtc").await?.spec.stop);
    let status = dig(&hub, &ns, "smtc").await?.status.unwrap_or_default();
    assert_eq!(status.state, DigState::Instantiated);

    Api::<emco::api::orchestrator::Project>::all(hub.clone()).delete(&ns, &Default::default()).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}
