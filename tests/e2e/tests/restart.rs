//! Resumable: an operator restarted right after a DIG is applied (often mid-instantiate) picks up from the hub's
//! objects, finishes the same revision and applies nothing twice.

use std::time::Duration;

use anyhow::Result;
use emco::api::orchestrator::DigState;
use emco::api::rsync::AppContext;
use emco_e2e::*;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;

#[tokio::test]
async fn a_restart_right_after_apply_finishes_the_same_revision() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("restart-{}", unique_suffix());
    project(&hub, &ns).await?;
    apply_sample(&hub, &ns, &ns).await?;
    let restart =
        std::process::Command::new("bash").arg(repo_root().join("tests/e2e/hub.sh")).arg("restart").output()?;
    assert!(restart.status.success(), "restart failed: {}", String::from_utf8_lossy(&restart.stderr));

    let status = wait_dig(&hub, &ns, &ns, "Instantiated and ready after the restart", Duration::from_secs(120), |s| {
        s.state == DigState::Instantiated && complete(&s.ready)
    })
    .await?;
    assert_eq!(status.revision, Some(1), "a restart must not make a new revision");
    let contexts = Api::<AppContext>::namespaced(hub.clone(), &ns).list(&Default::default()).await?;
    assert_eq!(contexts.items.len(), 1);
    for member in ["edge01", "edge02"] {
        let deployments =
            Api::<Deployment>::namespaced(bed.client(member).await, &ns).list(&Default::default()).await?;
        assert_eq!(deployments.items.len(), 3, "edge Deployments on {member}");
        for d in deployments.items {
            let managers: Vec<String> =
                d.metadata.managed_fields.unwrap_or_default().into_iter().filter_map(|m| m.manager).collect();
            let ours = format!("emco-rsync/{ns}/{ns}");
            assert!(managers.iter().all(|m| *m == ours || m == "kube-controller-manager"), "{managers:?}");
            assert_eq!(
                d.metadata.generation,
                Some(1),
                "{} was changed after it was applied",
                d.metadata.name.unwrap_or_default()
            );
        }
    }
    Ok(())
}
