//! Placement on the bed: anyOf places on exactly one candidate, and a label added to a Cluster
//! does not move an instantiated app until a new revision.

use std::time::Duration;

use anyhow::Result;
use emco::api::orchestrator::DigState;
use emco_e2e::*;
use serde_json::json;

fn instantiated(s: &emco::api::orchestrator::DeploymentIntentGroupStatus) -> bool {
    matches!(s.state, DigState::Instantiated | DigState::Updated)
        && s.ready.as_deref().is_some_and(|r| r.split_once('/').is_some_and(|(a, b)| a == b && b != "0"))
}

#[tokio::test]
async fn any_of_places_on_exactly_one_candidate() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("anyof-{}", unique_suffix());
    project(&hub, &ns).await?;
    Probe::new(json!({"app": "probe", "anyOf": [{"clusterLabel": "LabelSmartCityEdge"}]}))
        .apply(&hub, &bed, &ns)
        .await?;
    wait_dig(&hub, &ns, &ns, "Instantiated", Duration::from_secs(60), instantiated).await?;
    assert_eq!(holders(&bed, &ns).await?, ["edge01"], "anyOf over edge01 and edge02 picks exactly the first");

    // Deleting the whole project (its namespace, DIG, AppContexts and bundles at once) still
    // terminates first: nothing is left on the members.
    kube::Api::<emco::api::orchestrator::Project>::all(hub.clone()).delete(&ns, &Default::default()).await?;
    wait_until("the project's app removed from every member", Duration::from_secs(60), || async {
        let h = holders(&bed, &ns).await?;
        Ok(if h.is_empty() { Ok(()) } else { Err(format!("still on {h:?}")) })
    })
    .await?;
    let namespaces = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(hub.clone());
    wait_for("the project namespace gone", Duration::from_secs(60), || async {
        Ok(namespaces.get_opt(&ns).await?.is_none().then_some(()))
    })
    .await
}

#[tokio::test]
async fn a_new_cluster_label_moves_nothing_until_a_new_revision() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("move-{}", unique_suffix());
    let label = format!("e2e-{ns}");
    project(&hub, &ns).await?;
    // Prefer clusters with the test's own label; none has it yet, so the app lands on edge01.
    let placement = json!({"app": "probe", "anyOf": [{"clusterLabel": label}, {"clusterLabel": "LabelSmartCityEdge"}]});
    Probe::new(placement.clone()).apply(&hub, &bed, &ns).await?;
    wait_dig(&hub, &ns, &ns, "Instantiated", Duration::from_secs(60), instantiated).await?;
    assert_eq!(holders(&bed, &ns).await?, ["edge01"]);

    let labelled = json!({"apiVersion": "clm.emco.io/v1alpha1", "kind": "Cluster", "metadata": {"name": "cloud01", "labels": {label.clone(): ""}}});
    apply_cluster_as(&hub, &labelled, &format!("e2e-{ns}")).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = dig(&hub, &ns, &ns).await?.status.unwrap_or_default();
    assert_eq!(status.revision, Some(1), "a cluster label alone must not make a new revision");
    assert_eq!(holders(&bed, &ns).await?, ["edge01"], "the app moved without a new revision");

    // A change of the DIG's inputs makes revision 2, placed afresh: cloud01 now matches first.
    let moved =
        Probe { overrides: json!([{"app": "probe", "values": {"greeting": "moved"}}]), ..Probe::new(placement) };
    moved.apply(&hub, &bed, &ns).await?;
    wait_dig(&hub, &ns, &ns, "revision 2 deployed", Duration::from_secs(60), |s| {
        s.revision == Some(2) && instantiated(s)
    })
    .await?;
    wait_until("probe only on cloud01", Duration::from_secs(30), || async {
        let h = holders(&bed, &ns).await?;
        Ok(if h == ["cloud01"] { Ok(()) } else { Err(format!("held by {h:?}")) })
    })
    .await?;
    remove_field_manager(&hub, "cloud01", &format!("e2e-{ns}")).await
}

#[tokio::test]
async fn chart_from_a_helm_http_repository() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("repo-{}", unique_suffix());
    project(&hub, &ns).await?;
    let tgz = chart_tgz("probe", &probe_chart_files());
    let index =
        "apiVersion: v1\nentries:\n  probe:\n  - name: probe\n    version: 0.1.0\n    urls: [charts/probe-0.1.0.tgz]\n";
    let repo = HelmRepository::serve(vec![
        ("index.yaml".into(), index.as_bytes().to_vec()),
        ("charts/probe-0.1.0.tgz".into(), tgz),
    ])
    .await;
    let probe = Probe {
        repository: Some(json!({"url": repo.url, "chart": "probe"})),
        ..Probe::new(json!({"app": "probe", "allOf": [{"cluster": "edge02"}]}))
    };
    probe.apply(&hub, &bed, &ns).await?;
    wait_dig(&hub, &ns, &ns, "Instantiated", Duration::from_secs(60), instantiated).await?;
    assert_eq!(holders(&bed, &ns).await?, ["edge02"]);
    Ok(())
}
