//! Progressive rollout: three members in two label groups (the edges, then the cloud) with
//! `maxConcurrentClusters: 1`. Revision 1 reaches the members one at a time, each after the one
//! before was Ready for `minReadySeconds` (creation times on the members). Revision 2's pods never
//! get Ready: it stops on the first cluster, paused with a reason, while the two others keep
//! revision 1 (checked for a while and across an operator restart). A rollback to revision 1
//! then rolls out from there and the DIG is Ready on every member.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use emco::api::orchestrator::{DeploymentIntentGroup as Dig, DeploymentIntentGroupStatus as Status, DigState};
use emco_e2e::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

const CHART: &str = "apiVersion: v2\nname: probe\nversion: 0.1.0\n";
const VALUES: &str = "version: v1\nbroken: false\n";
const MARKER: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: marker-{{ Values.version }}\ndata:\n  version: {{ Values.version | quote }}\n";
const WEB: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      {% if Values.broken %}nodeSelector: {emco.io/nowhere: "true"}{% endif %}
      containers:
      - name: web
        image: registry.example/web:1
        env:
        - {name: VERSION, value: {{ Values.version | quote }}}
"#;
const MIN_READY: i64 = 3;
const ORDER: [&str; 3] = ["edge01", "edge02", "cloud01"];

#[tokio::test]
async fn one_cluster_at_a_time_a_failure_pauses_and_a_rollback_resumes() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("rollout-{}", unique_suffix());
    project(&hub, &ns).await?;
    let rollout = json!({
    "maxConcurrentClusters": 1, "minReadySeconds": MIN_READY, "progressDeadlineSeconds": 12,
    "groups": [
        {"name": "edge", "clusterSelector": {"matchExpressions": [{"key": "LabelSmartCityEdge", "operator": "Exists"}]}},
        {"name": "cloud", "clusterSelector": {"matchExpressions": [{"key": "LabelSmartCityCloud", "operator": "Exists"}]}}
    ]});
    let probe = Probe {
        chart: Some(vec![
            ("Chart.yaml", CHART),
            ("values.yaml", VALUES),
            ("templates/marker.yaml", MARKER),
            ("templates/web.yaml", WEB),
        ]),
        rollout: Some(rollout),
        ..Probe::new(
            json!({"app": "probe", "allOf": [{"cluster": "edge01"}, {"cluster": "edge02"}, {"cluster": "cloud01"}]}),
        )
    };
    probe.apply(&hub, &bed, &ns).await?;

    // Part way, the DIG shows one cluster on the revision and the others waiting.
    let part = wait_dig(&hub, &ns, &ns, "rollout under way", Duration::from_secs(60), |s| {
        s.rollout.as_ref().is_some_and(|r| r.clusters.len() == 1 && r.waiting.len() == 2)
    })
    .await?;
    let r = part.rollout.unwrap();
    ensure!(r.clusters[0].cluster == "edge01" && r.waiting == ["edge02", "cloud01"], "first the first edge: {r:?}");
    wait_dig(&hub, &ns, &ns, "revision 1 ready everywhere", Duration::from_secs(90), ready(1)).await?;
    // The last cluster is done once Ready for MIN_READY seconds too.
    wait_dig(&hub, &ns, &ns, "rollout done", Duration::from_secs(30), |s| {
        s.rollout.as_ref().is_some_and(|r| r.progress == "3/3" && !r.paused)
    })
    .await?;

    // One at a time, in group order, each after the one before was Ready MIN_READY seconds.
    let mut created = Vec::new();
    for m in ORDER {
        let cm = Api::<ConfigMap>::namespaced(bed.client(m).await, &ns).get("marker-v1").await?;
        created.push(cm.metadata.creation_timestamp.expect("set by the member").0.as_second());
    }
    for (i, pair) in created.windows(2).enumerate() {
        ensure!(
            pair[1] - pair[0] >= MIN_READY,
            "{} took revision 1 {}s after {} (at least {MIN_READY}s expected): {created:?}",
            ORDER[i + 1],
            pair[1] - pair[0],
            ORDER[i]
        );
    }

    // Revision 2 never gets Ready: it stops on edge01; the others keep revision 1.
    let broken = Probe { overrides: json!([{"app": "probe", "values": {"version": "v2", "broken": true}}]), ..probe };
    broken.apply(&hub, &bed, &ns).await?;
    let paused = wait_dig(&hub, &ns, &ns, "revision 2 paused", Duration::from_secs(90), |s| {
        s.revision == Some(2) && s.rollout.as_ref().is_some_and(|r| r.paused)
    })
    .await?;
    let reason = paused.conditions.iter().find(|c| c.type_ == "Ready").map(|c| (c.reason.clone(), c.message.clone()));
    ensure!(
        reason.as_ref().is_some_and(|(r, m)| r == "RolloutPaused" && m.contains("edge01 failed")),
        "the DIG says why: {reason:?}"
    );
    let start = Instant::now();
    let mut restarted = false;
    while start.elapsed() < Duration::from_secs(20) {
        let on = revisions_on(&bed, &ns).await?;
        let expected = BTreeMap::from([
            ("cloud01".to_string(), "v1".to_string()),
            // What revision 2 drops goes once the whole rollout is through (docs/api.md).
            ("edge01".into(), "v1+v2".into()),
            ("edge02".into(), "v1".into()),
        ]);
        ensure!(on == expected, "after {:?} (restarted: {restarted}): {on:?}", start.elapsed());
        if !restarted && start.elapsed() > Duration::from_secs(8) {
            restart_operator()?;
            restarted = true;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let s = dig(&hub, &ns, &ns).await?.status.unwrap_or_default();
    ensure!(s.rollout.as_ref().is_some_and(|r| r.paused && r.waiting == ["edge02", "cloud01"]), "{:?}", s.rollout);

    // A rollback to revision 1 goes out from there; the DIG ends Ready with every member on v1.
    Api::<Dig>::namespaced(hub.clone(), &ns)
        .patch(&ns, &PatchParams::default(), &Patch::Merge(json!({"spec": {"rollbackTo": 1}})))
        .await?;
    wait_dig(&hub, &ns, &ns, "rolled back", Duration::from_secs(120), ready(3)).await?;
    let back = wait_dig(&hub, &ns, &ns, "rollback done", Duration::from_secs(30), |s| {
        s.rollout.as_ref().is_some_and(|r| r.progress == "3/3")
    })
    .await?;
    ensure!(back.rollout.as_ref().is_some_and(|r| r.clusters[0].cluster == "edge01"), "{:?}", back.rollout);
    wait_until("every member on v1 alone", Duration::from_secs(30), || async {
        let on = revisions_on(&bed, &ns).await?;
        Ok(if on.values().all(|v| v == "v1") && on.len() == 3 { Ok(()) } else { Err(format!("{on:?}")) })
    })
    .await?;
    let edge01 = Api::<Deployment>::namespaced(bed.client("edge01").await, &ns).get("web").await?;
    let selector = edge01.spec.and_then(|s| s.template.spec).and_then(|p| p.node_selector);
    ensure!(selector.as_ref().is_none_or(|s| s.is_empty()), "edge01's web back to revision 1: {selector:?}");

    set_dig_state(&hub, &ns, &ns, "Terminated").await?;
    wait_dig(&hub, &ns, &ns, "terminated", Duration::from_secs(60), |s| s.state == DigState::Terminated).await?;
    Ok(())
}

fn ready(revision: u32) -> impl Fn(&Status) -> bool {
    move |s: &Status| {
        s.revision == Some(revision)
            && matches!(s.state, DigState::Instantiated | DigState::Updated)
            && complete(&s.ready)
    }
}

/// Per member, the marker versions it holds (`v1`, `v2`, or both joined).
async fn revisions_on(bed: &Bed, ns: &str) -> Result<BTreeMap<String, String>> {
    let mut on = BTreeMap::new();
    for m in ORDER {
        let names: Vec<String> = Api::<ConfigMap>::namespaced(bed.client(m).await, ns)
            .list(&Default::default())
            .await?
            .into_iter()
            .filter_map(|c| c.metadata.name?.strip_prefix("marker-").map(String::from))
            .collect();
        on.insert(m.to_string(), names.join("+"));
    }
    Ok(on)
}

/// The rollout sample is a DIG the hub accepts (server-side dry run) with the rollout it documents.
#[tokio::test]
async fn the_rollout_sample_is_accepted() -> Result<()> {
    let hub = Bed::get().hub().await;
    let doc = yaml_docs("config/samples/rollout/dig-rollout.yaml").remove(0);
    let dig: Dig = serde_json::from_value(doc.clone())?;
    let rollout = dig.spec.rollout.expect("the sample sets a rollout");
    ensure!(rollout.max_concurrent_clusters == Some(1) && rollout.groups.len() == 2, "{rollout:?}");
    let ns = format!("rollout-sample-{}", unique_suffix());
    project(&hub, &ns).await?;
    let mut doc = doc;
    doc["metadata"]["namespace"] = json!(ns);
    let params = PatchParams::apply("e2e").dry_run();
    Api::<Dig>::namespaced(hub.clone(), &ns).patch("smtc", &params, &Patch::Apply(&doc)).await?;
    Ok(())
}
