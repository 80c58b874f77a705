//! Helm hooks on the members: a pre-install Job runs and completes before the chart's Deployment
//! is created, a post-delete Job runs once the Deployment is gone on terminate, hooks are not
//! counted as the app's resources, and a failing hook fails the instantiate with its message and
//! nothing after it is applied.

use std::time::Duration;

use anyhow::Result;
use emco::api::orchestrator::DigState;
use emco::api::rsync::AppContext;
use emco_e2e::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use serde_json::json;

const WEB: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - {name: web, image: registry.example/web:1}\n";
const PRE: &str = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n  annotations:\n    helm.sh/hook: pre-install\n    helm.sh/hook-weight: \"-5\"\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - {name: migrate, image: registry.example/migrate:1}\n";
const POST_DELETE: &str = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: cleanup\n  annotations:\n    helm.sh/hook: post-delete\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - {name: cleanup, image: registry.example/cleanup:1}\n";
/// Never scheduled (no node has the label), so its deadline fails it.
const FAILING: &str = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n  annotations:\n    helm.sh/hook: pre-install\nspec:\n  activeDeadlineSeconds: 2\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      nodeSelector: {emco-test/nowhere: \"true\"}\n      containers:\n      - {name: migrate, image: registry.example/migrate:1}\n";

fn chart(files: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut all = vec![("Chart.yaml", "apiVersion: v2\nname: probe\nversion: 0.1.0\n")];
    all.extend_from_slice(files);
    all
}

#[tokio::test]
async fn a_pre_install_hook_runs_first_and_a_post_delete_hook_after() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("hooks-{}", unique_suffix());
    project(&hub, &ns).await?;
    let files =
        chart(&[("templates/web.yaml", WEB), ("templates/pre.yaml", PRE), ("templates/post.yaml", POST_DELETE)]);
    Probe { chart: Some(files), ..Probe::new(json!({"app": "probe", "allOf": [{"cluster": "edge01"}]})) }
        .apply(&hub, &bed, &ns)
        .await?;
    let status = wait_dig(&hub, &ns, &ns, "Instantiated and ready", Duration::from_secs(60), |s| {
        s.state == DigState::Instantiated && complete(&s.ready)
    })
    .await?;
    assert_eq!(status.deployed.as_deref(), Some("1/1"), "hooks are not counted as the app's resources");

    let edge01 = bed.client("edge01").await;
    let (jobs, deployments) = (Api::<Job>::namespaced(edge01.clone(), &ns), Api::<Deployment>::namespaced(edge01, &ns));
    let migrate = jobs.get("migrate").await?;
    let web = deployments.get("web").await?;
    let finished = migrate.status.and_then(|s| s.completion_time).expect("the pre-install Job completed").0;
    let created = web.metadata.creation_timestamp.expect("a creation time").0;
    assert!(finished <= created, "the Deployment ({created}) came after the hook completed ({finished})");
    assert!(jobs.get_opt("cleanup").await?.is_none(), "the post-delete hook waits for the delete");
    let context = Api::<AppContext>::namespaced(hub.clone(), &ns).get(&format!("{ns}-1")).await?;
    let hooks: Vec<String> = context
        .status
        .unwrap_or_default()
        .apps
        .iter()
        .flat_map(|a| &a.clusters)
        .flat_map(|c| c.hooks.clone())
        .collect();
    assert_eq!(hooks, ["pre-install"]);

    // Terminate: the Deployment goes, then the post-delete hook runs (and stays, as in Helm).
    let asked = k8s_openapi::jiff::Timestamp::now();
    set_dig_state(&hub, &ns, &ns, "Terminated").await?;
    wait_dig(&hub, &ns, &ns, "Terminated", Duration::from_secs(60), |s| s.state == DigState::Terminated).await?;
    assert!(deployments.get_opt("web").await?.is_none(), "the Deployment is gone");
    assert!(jobs.get_opt("migrate").await?.is_none(), "the install hook is removed with the app");
    let cleanup = jobs.get("cleanup").await?;
    let started = cleanup.metadata.creation_timestamp.expect("a creation time").0;
    assert!(started.as_second() >= asked.as_second(), "the post-delete hook ran after the terminate was asked");
    assert!(cleanup.status.and_then(|s| s.completion_time).is_some(), "terminated once the post-delete hook completed");
    Api::<emco::api::orchestrator::Project>::all(hub.clone()).delete(&ns, &Default::default()).await?;
    Ok(())
}

#[tokio::test]
async fn a_failing_hook_fails_the_instantiate_with_its_message() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("badhook-{}", unique_suffix());
    project(&hub, &ns).await?;
    let files = chart(&[("templates/web.yaml", WEB), ("templates/pre.yaml", FAILING)]);
    Probe { chart: Some(files), ..Probe::new(json!({"app": "probe", "allOf": [{"cluster": "edge01"}]})) }
        .apply(&hub, &bed, &ns)
        .await?;
    let message = wait_until("the DIG failed by its hook", Duration::from_secs(60), || async {
        let status = dig(&hub, &ns, &ns).await?.status.unwrap_or_default();
        let failed = status.conditions.iter().find(|c| c.message.contains("hook Job/migrate failed"));
        Ok(match (status.state, failed) {
            (DigState::InstantiateFailed, Some(c)) => Ok(c.message.clone()),
            _ => Err(format!("{status:?}")),
        })
    })
    .await?;
    assert!(message.contains("DeadlineExceeded"), "the Job's own reason: {message}");
    let deployments = Api::<Deployment>::namespaced(bed.client("edge01").await, &ns);
    assert!(deployments.get_opt("web").await?.is_none(), "nothing after a failed pre-install hook");
    let events = hub_kubectl(&["events", "--for", &format!("dig/{ns}"), "-n", &ns])?;
    assert!(events.contains("HookFailed"), "{events}");
    Api::<emco::api::orchestrator::Project>::all(hub.clone()).delete(&ns, &Default::default()).await?;
    Ok(())
}
