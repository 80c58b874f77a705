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

/// A store stopped between making the next revision and recording it (a crash, a failed write):
/// the next revision exists, names the current one as replaced, and the DIG does not know it.
/// The operator marks the current revision superseded, goes on after the one it finds, and the
/// members keep the sample.
#[tokio::test]
async fn a_revision_made_but_not_recorded_is_taken_over() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let (ns, contexts) = interrupted_sample(&hub, "interrupted").await?;
    restart_operator()?;

    let status = wait_dig(&hub, &ns, &ns, "revision 3 ready", Duration::from_secs(120), |s| {
        s.revision == Some(3) && complete(&s.ready)
    })
    .await?;
    assert_eq!(status.app_context.as_deref(), Some(format!("{ns}-3").as_str()));
    for (n, by) in [(1, 2), (2, 3)] {
        let context = contexts.get(&format!("{ns}-{n}")).await?;
        assert_eq!(context.spec.superseded_by, Some(format!("{ns}-{by}")), "revision {n} is marked replaced");
    }
    for member in ["edge01", "edge02"] {
        let deployments =
            Api::<Deployment>::namespaced(bed.client(member).await, &ns).list(&Default::default()).await?;
        assert_eq!(deployments.items.len(), 3, "edge Deployments on {member}");
    }
    Ok(())
}

/// The sample deployed as revision 1, then, with the operator stopped, what a store cut short
/// would leave: revision 2, made from other inputs, replacing revision 1, and not recorded in
/// the DIG. The namespace (and DIG name) and its AppContexts.
async fn interrupted_sample(hub: &kube::Client, prefix: &str) -> Result<(String, Api<AppContext>)> {
    let ns = format!("{prefix}-{}", unique_suffix());
    project(hub, &ns).await?;
    apply_sample(hub, &ns, &ns).await?;
    wait_dig(hub, &ns, &ns, "revision 1 ready", Duration::from_secs(120), |s| {
        s.revision == Some(1) && complete(&s.ready)
    })
    .await?;
    let contexts = Api::<AppContext>::namespaced(hub.clone(), &ns);
    let stop = std::process::Command::new("bash").arg(repo_root().join("tests/e2e/hub.sh")).arg("stop").output()?;
    assert!(stop.status.success(), "stop failed: {}", String::from_utf8_lossy(&stop.stderr));

    let first = contexts.get(&format!("{ns}-1")).await?;
    let mut next = AppContext::new(&format!("{ns}-2"), first.spec.clone());
    next.metadata.namespace = Some(ns.clone());
    next.metadata.owner_references = first.metadata.owner_references.clone();
    next.metadata.finalizers = first.metadata.finalizers.clone();
    let mut labels = first.metadata.labels.clone().unwrap_or_default();
    labels.insert(emco::api::labels::REVISION.into(), "2".into());
    next.metadata.labels = Some(labels);
    next.metadata.annotations = Some([("emco.io/input-hash".to_string(), "interrupted".to_string())].into());
    next.spec.revision = 2;
    next.spec.operation = emco::api::rsync::Operation::Update;
    next.spec.replaces = Some(format!("{ns}-1"));
    contexts.create(&Default::default(), &next).await?;
    Ok((ns, contexts))
}

/// The same cut-short store, then the DIG terminated before the operator is back: the revision
/// the DIG never recorded is terminated too, and nothing of the sample stays on the members.
#[tokio::test]
async fn a_terminate_reaches_a_revision_made_but_not_recorded() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let (ns, contexts) = interrupted_sample(&hub, "interrupted-end").await?;
    set_dig_state(&hub, &ns, &ns, "Terminated").await?;
    restart_operator()?;

    wait_dig(&hub, &ns, &ns, "terminated", Duration::from_secs(120), |s| s.state == DigState::Terminated).await?;
    for n in [1, 2] {
        let context = contexts.get(&format!("{ns}-{n}")).await?;
        assert_eq!(context.spec.operation, emco::api::rsync::Operation::Terminate, "revision {n} is terminated");
    }
    for member in ["edge01", "edge02", "cloud01"] {
        let client = bed.client(member).await;
        wait_for(&format!("nothing of the sample on {member}"), Duration::from_secs(60), || {
            let api = Api::<Deployment>::namespaced(client.clone(), &ns);
            async move { Ok(api.list(&Default::default()).await?.items.is_empty().then_some(())) }
        })
        .await?;
    }
    Ok(())
}
