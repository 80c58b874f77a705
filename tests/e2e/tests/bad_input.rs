//! Bad input gets a clear error at the right place, and nothing reaches a member: CRD validation
//! at apply time, or a condition with a reason on the object.

use std::time::Duration;

use anyhow::Result;
use emco::api::condition;
use emco::api::orchestrator::DigState;
use emco::api::rsync::AppContext;
use emco_e2e::*;
use kube::Api;
use serde_json::json;

fn edge() -> serde_json::Value {
    json!({"app": "probe", "allOf": [{"clusterLabel": "LabelSmartCityEdge"}]})
}

/// Applies `probe`, waits for the DIG to be refused with `reason`, checks nothing was deployed;
/// returns the Ready condition's message.
async fn refused(prefix: &str, probe: Probe, reason: &str) -> Result<String> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("{prefix}-{}", unique_suffix());
    project(&hub, &ns).await?;
    probe.apply(&hub, &bed, &ns).await?;
    let status = wait_dig(&hub, &ns, &ns, &format!("refused with {reason}"), Duration::from_secs(30), |s| {
        condition::get(&s.conditions, "Ready").is_some_and(|c| c.reason == reason)
    })
    .await?;
    assert_eq!(status.state, DigState::InstantiateFailed);
    assert_eq!(status.revision, None, "no revision may be made from refused input");
    let contexts = Api::<AppContext>::namespaced(hub.clone(), &ns).list(&Default::default()).await?;
    assert!(contexts.items.is_empty(), "an AppContext was made from refused input");
    assert!(holders(&bed, &ns).await?.is_empty(), "something reached a member");
    Ok(condition::get(&status.conditions, "Ready").unwrap().message.clone())
}

#[tokio::test]
async fn unknown_app_in_a_placement_intent() -> Result<()> {
    let message =
        refused("unknown-app", Probe::new(json!({"app": "nosuch", "allOf": [{"cluster": "edge01"}]})), "UnknownApp")
            .await?;
    assert!(message.contains("nosuch"), "{message}");
    Ok(())
}

#[tokio::test]
async fn placement_matching_no_cluster() -> Result<()> {
    let probe = Probe::new(json!({"app": "probe", "allOf": [{"clusterLabel": "NoClusterHasThis"}]}));
    let message = refused("no-match", probe, "NoClusterMatched").await?;
    assert!(message.contains("clusterLabel NoClusterHasThis matches no cluster"), "{message}");
    Ok(())
}

#[tokio::test]
async fn missing_chart_configmap() -> Result<()> {
    let probe = Probe { chart_configmap: "no-such-chart", ..Probe::new(edge()) };
    let message = refused("no-chart", probe, "ConfigMapNotFound").await?;
    assert!(message.contains("no-such-chart"), "{message}");
    Ok(())
}

#[tokio::test]
async fn template_error_names_chart_file_and_line() -> Result<()> {
    let chart = vec![
        ("Chart.yaml", "apiVersion: v2\nname: probe\nversion: 0.1.0\n"),
        ("templates/good.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: good\n"),
        (
            "templates/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\ndata:\n  x: {{ Values.missing.key }}\n",
        ),
    ];
    let message = refused("template", Probe { chart: Some(chart), ..Probe::new(edge()) }, "TemplateError").await?;
    for part in ["probe", "templates/cm.yaml", "line 6"] {
        assert!(message.contains(part), "message lacks {part:?}: {message}");
    }
    Ok(())
}

#[tokio::test]
async fn values_file_that_is_not_a_map() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("values-{}", unique_suffix());
    project(&hub, &ns).await?;
    apply(
        &hub,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "list-values", "namespace": ns},
        "data": {"values.yaml": "- a\n- b\n"}}),
    )
    .await?;
    let probe = Probe {
        profiles: Some(json!([{"app": "probe", "valuesFrom": [{"configMap": {"name": "list-values"}}]}])),
        ..Probe::new(edge())
    };
    probe.apply(&hub, &bed, &ns).await?;
    let status = wait_dig(&hub, &ns, &ns, "refused with InvalidValues", Duration::from_secs(30), |s| {
        condition::get(&s.conditions, "Ready").is_some_and(|c| c.reason == "InvalidValues")
    })
    .await?;
    let message = &condition::get(&status.conditions, "Ready").unwrap().message;
    assert!(message.contains("list-values") && message.contains("map"), "{message}");
    assert!(holders(&bed, &ns).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn values_that_are_not_a_map_are_rejected_at_apply() -> Result<()> {
    let hub = Bed::get().hub().await;
    let ns = format!("values-apply-{}", unique_suffix());
    project(&hub, &ns).await?;
    let dig = json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "DeploymentIntentGroup",
        "metadata": {"name": "d", "namespace": ns},
        "spec": {"compositeApp": "ca", "logicalCloud": "lc", "intents": {"genericPlacementIntent": "gpi"},
                 "overrideValues": [{"app": "probe", "values": "replicas=2"}]}});
    let err = apply(&hub, &dig).await.expect_err("a string as values must be rejected");
    assert!(format!("{err:#}").contains("values"), "{err:#}");
    Ok(())
}

#[tokio::test]
async fn placement_entry_with_two_matchers_is_rejected_at_apply() -> Result<()> {
    let hub = Bed::get().hub().await;
    let ns = format!("gpi-apply-{}", unique_suffix());
    project(&hub, &ns).await?;
    let gpi = json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "GenericPlacementIntent",
        "metadata": {"name": "gpi", "namespace": ns},
        "spec": {"appIntents": [{"app": "probe", "allOf": [{"cluster": "edge01", "clusterLabel": "x"}]}]}});
    let err = apply(&hub, &gpi).await.expect_err("two matchers in one entry must be rejected");
    assert!(format!("{err:#}").contains("exactly one of cluster, clusterLabel"), "{err:#}");
    Ok(())
}

#[tokio::test]
async fn cluster_with_missing_or_garbage_kubeconfig_is_not_ready_with_a_reason() -> Result<()> {
    let hub = Bed::get().hub().await;
    let suffix = unique_suffix();
    let garbage = format!("garbage-{suffix}");
    apply(
        &hub,
        &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": garbage, "namespace": "emco-system"},
        "stringData": {"kubeconfig": "s3cr3t-token-do-not-print: [unclosed"}}),
    )
    .await?;
    for (cluster, secret, reason) in [
        (format!("missing-{suffix}"), format!("absent-{suffix}"), "KubeconfigSecretNotFound"),
        (format!("garbage-{suffix}"), garbage.clone(), "KubeconfigInvalid"),
    ] {
        apply(&hub, &json!({"apiVersion": "clm.emco.io/v1alpha1", "kind": "Cluster", "metadata": {"name": cluster},
            "spec": {"provider": "smartcity", "kubeconfig": {"secretRef": {"namespace": "emco-system", "name": secret}}}})).await?;
        let api = Api::<emco::api::clm::Cluster>::all(hub.clone());
        let ready = wait_until(&format!("{cluster} Ready=False {reason}"), Duration::from_secs(30), || async {
            let c = api.get(&cluster).await?;
            let conditions = c.status.map(|s| s.conditions).unwrap_or_default();
            Ok(match condition::get(&conditions, "Ready") {
                Some(r) if r.status == "False" && r.reason == reason => Ok(r.clone()),
                other => Err(format!("{other:?}")),
            })
        })
        .await?;
        assert!(!ready.message.contains("s3cr3t"), "the kubeconfig content leaked into the status: {}", ready.message);
        api.delete(&cluster, &Default::default()).await?;
    }
    Ok(())
}

#[tokio::test]
async fn numbers_out_of_range_are_refused_at_apply() -> Result<()> {
    let hub = Bed::get().hub().await;
    let ns = format!("bounds-{}", unique_suffix());
    project(&hub, &ns).await?;
    let app = |wait: serde_json::Value| {
        json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "CompositeApp", "metadata": {"name": "ca", "namespace": ns},
               "spec": {"apps": [{"name": "db", "chart": {"configMap": {"name": "c"}}},
                                 {"name": "web", "chart": {"configMap": {"name": "c"}},
                                  "dependsOn": [{"app": "db", "opStatus": "Ready", "waitSeconds": wait}]}]}})
    };
    let err = apply(&hub, &app(json!(4294967296u64))).await.unwrap_err();
    assert!(format!("{err:#}").contains("waitSeconds"), "{err:#}");
    apply(&hub, &app(json!(30))).await?;
    let dig = |rollback: serde_json::Value| {
        json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "DeploymentIntentGroup", "metadata": {"name": "d", "namespace": ns},
               "spec": {"compositeApp": "ca", "logicalCloud": "lc", "intents": {"genericPlacementIntent": "gpi"}, "rollbackTo": rollback}})
    };
    let err = apply(&hub, &dig(json!(4294967296u64))).await.unwrap_err();
    assert!(format!("{err:#}").contains("rollbackTo"), "{err:#}");
    Ok(())
}

#[tokio::test]
async fn projects_cannot_claim_system_or_foreign_namespaces() -> Result<()> {
    use k8s_openapi::api::core::v1::Namespace;
    let hub = Bed::get().hub().await;
    let suffix = unique_suffix();
    let foreign = format!("foreign-{suffix}");
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": foreign}}))?;
    Api::<Namespace>::all(hub.clone()).create(&Default::default(), &ns).await?;
    let projects = Api::<emco::api::orchestrator::Project>::all(hub.clone());
    for (namespace, reason) in [
        ("kube-system", "NamespaceReserved"),
        ("emco-system", "NamespaceReserved"),
        (foreign.as_str(), "NamespaceNotClaimable"),
    ] {
        let name = format!("claim-{}-{suffix}", namespace.split('-').next().unwrap_or_default());
        apply(
            &hub,
            &json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "Project",
                            "metadata": {"name": name}, "spec": {"namespace": namespace}}),
        )
        .await?;
        wait_until(&format!("project {name} refused"), Duration::from_secs(30), || async {
            let p = projects.get(&name).await?;
            let conditions = p.status.map(|s| s.conditions).unwrap_or_default();
            Ok(match condition::get(&conditions, "Ready") {
                Some(r) if r.status == "False" && r.reason == reason => Ok(()),
                other => Err(format!("{other:?}")),
            })
        })
        .await?;
        let labels = Api::<Namespace>::all(hub.clone()).get(namespace).await?.metadata.labels.unwrap_or_default();
        assert!(!labels.contains_key(emco::api::labels::PROJECT), "{namespace} was labelled: {labels:?}");
        projects.delete(&name, &Default::default()).await?;
    }
    // An admin hands the namespace over with the label: then the project takes it.
    let name = format!("claim-handed-{suffix}");
    let label = json!({"metadata": {"labels": {emco::api::labels::PROJECT: name}}});
    Api::<Namespace>::all(hub.clone())
        .patch(&foreign, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&label))
        .await?;
    apply(
        &hub,
        &json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "Project",
                        "metadata": {"name": name}, "spec": {"namespace": foreign}}),
    )
    .await?;
    wait_until(&format!("project {name} Ready"), Duration::from_secs(30), || async {
        let p = projects.get(&name).await?;
        Ok(if p.status.is_some_and(|s| condition::is_true(&s.conditions, "Ready")) {
            Ok(())
        } else {
            Err("not yet".into())
        })
    })
    .await?;
    projects.delete(&name, &Default::default()).await?;
    Ok(())
}

/// An AppContext that names no bundle for one of its clusters (written by hand, or by a tool
/// that does not know the shape): that pair fails with a message on the context, the others are
/// applied, and deleting it still goes through rsync's terminate to the end.
#[tokio::test]
async fn an_appcontext_cluster_without_a_bundle_fails_that_pair_only() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("nobundle-{}", unique_suffix());
    project(&hub, &ns).await?;
    // Revision 1 of a real DIG gives real bundles to point at.
    Probe::new(json!({"app": "probe", "allOf": [{"cluster": "edge01"}]})).apply(&hub, &bed, &ns).await?;
    let status = wait_dig(&hub, &ns, &ns, "deployed", Duration::from_secs(60), |s| s.deployed.is_some()).await?;
    let contexts = Api::<AppContext>::namespaced(hub.clone(), &ns);
    let made = contexts.get(status.app_context.as_deref().unwrap()).await?;
    // The same DIG's objects (so they are its own on edge01), and edge02 with no bundle.
    let mut spec = made.spec.clone();
    spec.apps[0].clusters.push(serde_json::from_value(json!({"cluster": "edge02"}))?);
    let mut by_hand = AppContext::new(&format!("{ns}-byhand"), spec);
    by_hand.metadata.finalizers = Some(vec![emco::rsync::FINALIZER.into()]);
    contexts.create(&Default::default(), &by_hand).await?;

    let failed = wait_for("the pair without a bundle to fail", Duration::from_secs(30), || async {
        let s = contexts.get(&format!("{ns}-byhand")).await?.status.unwrap_or_default();
        let edge02 = s.apps.iter().flat_map(|a| &a.clusters).find(|c| c.cluster == "edge02").cloned();
        let edge01 = s.apps.iter().flat_map(|a| &a.clusters).find(|c| c.cluster == "edge01").cloned();
        Ok(match (edge01, edge02) {
            (Some(one), Some(two)) if one.deployed == one.resources && !two.failed.is_empty() => Some((s.state, two)),
            _ => None,
        })
    })
    .await?;
    assert_eq!(failed.0, emco::api::rsync::ContextState::InstantiateFailed);
    assert!(failed.1.failed[0].contains("names no bundle"), "{:?}", failed.1.failed);

    contexts.delete(&format!("{ns}-byhand"), &Default::default()).await?;
    wait_for("the context to be terminated and gone", Duration::from_secs(30), || async {
        Ok(contexts.get_opt(&format!("{ns}-byhand")).await?.is_none().then_some(()))
    })
    .await?;
    Ok(())
}
