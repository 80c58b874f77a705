//! What a platform team watches: `kubectl events --for dig/<name>` tells a deployment's story
//! (applied to a cluster, a member unreachable and back, instantiated, ready, drift repaired),
//! Clusters say when they become unreachable and reachable again, and `/metrics` counts it all
//! with bounded labels.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, Result};
use emco::api::orchestrator::DigState;
use emco_e2e::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

/// The Events `kubectl events --for <what>` lists, in order, as `reason: note`.
fn event_reasons(ns: Option<&str>, what: &str) -> Result<Vec<String>> {
    let mut args = vec!["events", "--for", what, "-o", "json"];
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    let out = hub_kubectl(&args)?;
    let list: serde_json::Value = serde_json::from_str(&out).with_context(|| format!("kubectl events: {out}"))?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let note = |e: &serde_json::Value| e["note"].as_str().or(e["message"].as_str()).unwrap_or_default().to_string();
    Ok(items.iter().map(|e| format!("{}: {}", e["reason"].as_str().unwrap_or_default(), note(e))).collect())
}

async fn wait_events(ns: Option<&str>, what: &str, wanted: &[&str]) -> Result<Vec<String>> {
    wait_until(&format!("events {wanted:?} for {what}"), Duration::from_secs(60), || async {
        let reasons = event_reasons(ns, what)?;
        Ok(if wanted.iter().all(|w| reasons.iter().any(|r| r.starts_with(&format!("{w}:")) || r.starts_with(w))) {
            Ok(reasons)
        } else {
            Err(format!("{reasons:?}"))
        })
    })
    .await
}

#[tokio::test]
async fn events_tell_a_digs_story_and_metrics_count_it() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let suffix = unique_suffix();
    let (ns, flaky) = (format!("story-{suffix}"), format!("flaky-{suffix}"));
    let real = register_unreachable(&bed, &hub, &flaky, "edge02").await?;
    project(&hub, &ns).await?;
    let placement = json!({"app": "probe", "allOf": [{"cluster": "edge01"}, {"cluster": flaky}]});
    Probe { clusters: Some(vec!["edge01".into(), flaky.clone()]), ..Probe::new(placement) }
        .apply(&hub, &bed, &ns)
        .await?;
    let dig = format!("dig/{ns}");

    // Applied where it can be, and the member that cannot be reached said so, on the DIG and the Cluster.
    let reasons = wait_events(Some(&ns), &dig, &["RevisionCreated", "Applied", "ClusterUnreachable"]).await?;
    assert!(
        !reasons.iter().any(|r| r.starts_with("Instantiated:")),
        "not instantiated while a member is unreachable: {reasons:?}"
    );
    wait_events(None, &format!("cluster/{flaky}"), &["Unreachable"]).await?;

    // Mended: back, instantiated, ready.
    apply(&hub, &kubeconfig_secret(&flaky, &real)).await?;
    wait_dig(&hub, &ns, &ns, "Instantiated once the member answers", Duration::from_secs(90), |s| {
        s.state == DigState::Instantiated && complete(&s.ready)
    })
    .await?;
    let applied = format!("Applied: revision 1: 1 resources applied to {flaky}");
    wait_events(Some(&ns), &dig, &["ClusterReachable", "Instantiated", "Ready", &applied]).await?;
    wait_events(Some(&ns), &dig, &["Applied: revision 1: 1 resources applied to edge01"]).await?;
    wait_events(None, &format!("cluster/{flaky}"), &["Unreachable", "Reachable"]).await?;

    // Drift repaired, and said so on the DIG.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let configmaps = Api::<ConfigMap>::namespaced(bed.client("edge01").await, &ns);
    let edit = json!({"data": {"greeting": "edited by hand"}});
    configmaps.patch("probe", &PatchParams::default(), &Patch::Merge(&edit)).await?;
    let reasons = wait_events(Some(&ns), &dig, &["DriftRepaired"]).await?;
    println!("kubectl events --for {dig}: {reasons:?}");
    let text = hub_kubectl(&["events", "--for", &dig, "-n", &ns])?;
    println!("{text}");

    // The metrics counted it, with no object or cluster names in their labels.
    let m = scrape().await?;
    let get = |k: &str| m.get(k).copied().unwrap_or(0.0);
    assert!(get(r#"emco_reconciles_total{controller="orchestrator",result="ok"}"#) > 0.0);
    assert!(get(r#"emco_reconciles_total{controller="rsync",result="ok"}"#) > 0.0);
    assert!(get("emco_rsync_objects_applied_total") > 0.0);
    assert!(get("emco_rsync_retries_total") > 0.0, "the unreachable member was retried");
    assert!(get(r#"emco_rsync_member_failures_total{reason="Unreachable"}"#) > 0.0);
    assert!(get(r#"emco_api_requests_total{api="member",verb="patch"}"#) > 0.0);
    assert!(get(r#"emco_api_requests_total{api="hub",verb="watch"}"#) > 0.0);
    assert!(get("emco_render_duration_seconds_count") > 0.0);
    assert!(get(r#"emco_clusters{state="Available"}"#) >= 4.0, "the bed's three members and the mended one");
    assert!(get(r#"emco_resources{state="ready"}"#) >= 2.0);
    assert!(get(r#"emco_reconcile_duration_seconds_count{controller="rsync"}"#) > 0.0);
    for key in m.keys() {
        assert!(!key.contains(&suffix) && !key.contains("edge01"), "an unbounded label: {key}");
    }

    // A terminate says when it is done.
    set_dig_state(&hub, &ns, &ns, "Terminated").await?;
    wait_events(Some(&ns), &dig, &["Terminated"]).await?;
    Api::<emco::api::orchestrator::Project>::all(hub.clone()).delete(&ns, &Default::default()).await?;
    Api::<emco::api::clm::Cluster>::all(hub.clone()).delete(&flaky, &Default::default()).await?;
    Ok(())
}

/// `status.observedGeneration` equal to the generation and a `Ready` condition with a reason, on
/// `obj`; its Ready status.
fn ready_of(obj: &kube::api::DynamicObject) -> std::result::Result<String, String> {
    let kind = obj.types.as_ref().map(|t| t.kind.clone()).unwrap_or_default();
    let what = format!("{kind} {}", obj.metadata.name.as_deref().unwrap_or_default());
    let status = &obj.data["status"];
    if status["observedGeneration"].as_i64() != obj.metadata.generation {
        return Err(format!(
            "{what}: observedGeneration {} at generation {:?}",
            status["observedGeneration"], obj.metadata.generation
        ));
    }
    let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
    let ready = conditions.iter().find(|c| c["type"] == "Ready").ok_or(format!("{what}: no Ready condition"))?;
    if ready["reason"].as_str().unwrap_or_default().is_empty() {
        return Err(format!("{what}: Ready without a reason"));
    }
    Ok(ready["status"].as_str().unwrap_or_default().to_string())
}

#[tokio::test]
async fn every_kind_reports_observed_generation_and_ready() -> Result<()> {
    use kube::api::{ApiResource, DynamicObject};
    let bed = Bed::get();
    let hub = bed.hub().await;
    let suffix = unique_suffix();
    let ns = format!("kinds-{suffix}");
    project(&hub, &ns).await?;
    apply_sample(&hub, &ns, "smtc").await?;
    let controller = format!("kinds-{suffix}");
    apply(
        &hub,
        &json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "Controller", "metadata": {"name": controller},
        "spec": {"type": "action", "priority": 10, "endpoint": {"url": "http://127.0.0.1:1/"}}}),
    )
    .await?;
    apply(&hub, &json!({"apiVersion": "hpa.emco.io/v1alpha1", "kind": "HpaIntent", "metadata": {"name": "needs", "namespace": ns},
        "spec": {"app": "edge", "consumers": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "container": "web",
            "replicas": 1, "requirements": [{"resource": {"name": "cpu", "requests": 1, "limits": 2}}]}]}})).await?;
    // A composite app whose dependencies go round: refused, with the reason.
    apply(&hub, &json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "CompositeApp", "metadata": {"name": "loop", "namespace": ns},
        "spec": {"apps": [{"name": "a", "chart": {"configMap": {"name": "x", "key": "chart.tgz"}}, "dependsOn": [{"app": "b"}]},
                          {"name": "b", "chart": {"configMap": {"name": "x", "key": "chart.tgz"}}, "dependsOn": [{"app": "a"}]}]}})).await?;
    wait_dig(&hub, &ns, "smtc", "SmartCity Instantiated", Duration::from_secs(90), |s| {
        s.state == DigState::Instantiated
    })
    .await?;

    let crds = emco::api::crds();
    let seen =
        wait_until("every object of every kind reporting Ready at its generation", Duration::from_secs(30), || async {
            let mut seen = BTreeMap::new();
            let mut problems = Vec::new();
            for crd in &crds {
                let version = &crd.spec.versions[0].name;
                let gvk = kube::api::GroupVersionKind::gvk(&crd.spec.group, version, &crd.spec.names.kind);
                let ar = ApiResource::from_gvk_with_plural(&gvk, &crd.spec.names.plural);
                let namespaced = crd.spec.scope == "Namespaced";
                let api: Api<DynamicObject> = if namespaced {
                    Api::namespaced_with(hub.clone(), &ns, &ar)
                } else {
                    Api::all_with(hub.clone(), &ar)
                };
                for obj in api.list(&Default::default()).await?.items {
                    let name = obj.metadata.name.clone().unwrap_or_default();
                    // Cluster-scoped: the bed's own and this test's.
                    if !(namespaced || name == controller || ["smartcity", "edge01", &ns].contains(&name.as_str())) {
                        continue;
                    }
                    match ready_of(&obj) {
                        Ok(ready) => seen.insert(format!("{} {name}", crd.spec.names.kind), ready),
                        Err(problem) => {
                            problems.push(problem);
                            None
                        }
                    };
                }
            }
            Ok(if problems.is_empty() { Ok(seen) } else { Err(problems.join("; ")) })
        })
        .await?;
    println!("{seen:#?}");
    for kind in [
        "ClusterProvider smartcity",
        "Cluster edge01",
        "CompositeApp smtc",
        "CompositeProfile smtc-profile",
        "GenericPlacementIntent smtc-placement",
        "GenericActionIntent smtc-gac",
        "HpaIntent needs",
        "DeploymentIntentGroup smtc",
        "LogicalCloud default",
        &format!("Controller {controller}"),
        &format!("Project {ns}"),
    ] {
        assert!(seen.contains_key(kind), "{kind} was checked: {:?}", seen.keys().collect::<Vec<_>>());
    }
    assert!(seen.keys().any(|k| k.starts_with("AppContext ")), "an AppContext was checked");
    assert_eq!(seen.get("CompositeApp loop").map(String::as_str), Some("False"));
    let out = hub_kubectl(&["get", "compositeapp", "loop", "-n", &ns, "-o", "wide"])?;
    assert!(out.contains("DependencyCycle"), "{out}");
    let out = hub_kubectl(&["wait", "--for=condition=Ready", "compositeapp/smtc", "-n", &ns, "--timeout=5s"])?;
    assert!(out.contains("condition met"), "{out}");

    Api::<emco::api::orchestrator::Project>::all(hub.clone()).delete(&ns, &Default::default()).await?;
    Api::<emco::api::controller::Controller>::all(hub.clone()).delete(&controller, &Default::default()).await?;
    Ok(())
}
