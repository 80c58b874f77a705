//! The controller stage with the generic action controller: a new ConfigMap only on the cluster an
//! allow rule names, with file data; a JSON patch on one label's clusters only; a strategic merge
//! that adds an env var and keeps the chart's; the controllers that ran on the DIG. An unknown
//! controller name or a missing intent refuses the revision with its name.

use std::time::Duration;

use anyhow::Result;
use emco::api::orchestrator::DigState;
use emco_e2e::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use serde_json::json;

#[tokio::test]
async fn generic_action_intents_add_and_patch_per_cluster() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("gac-{}", unique_suffix());
    project(&hub, &ns).await?;
    apply(
        &hub,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "gac-files", "namespace": ns},
                        "data": {"settings.ini": "[office]\nname=edge\n"}}),
    )
    .await?;
    apply(
        &hub,
        &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "gac-secret", "namespace": ns},
                        "stringData": {"token": "s3cr3t"}}),
    )
    .await?;
    apply(&hub, &json!({"apiVersion": "gac.emco.io/v1alpha1", "kind": "GenericActionIntent", "metadata": {"name": "actions", "namespace": ns},
        "spec": {"resources": [
            {"name": "creds", "app": "probe", "newObject": true, "gvk": {"apiVersion": "v1", "kind": "Secret", "name": "office-creds"},
             "customizations": [{"name": "everywhere", "files": [{"keyName": "token", "secretRef": {"name": "gac-secret"}}]}]},
            {"name": "office-config", "app": "probe", "newObject": true, "gvk": {"apiVersion": "v1", "kind": "ConfigMap", "name": "office-config"},
             "template": {"data": {"mode": "edge"}},
             "customizations": [{"name": "edge01-only", "clusterInfo": {"scope": "name", "cluster": "edge01", "mode": "allow"},
                                 "files": [{"keyName": "settings.ini", "configMapRef": {"name": "gac-files"}}, {"keyName": "note", "content": "hello"}]}]},
            {"name": "web", "app": "probe", "gvk": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
             "customizations": [
                {"name": "edge-replicas", "clusterInfo": {"scope": "label", "clusterLabel": "LabelSmartCityEdge", "mode": "allow"},
                 "patchType": "json", "patch": [{"op": "replace", "path": "/spec/replicas", "value": 3}]},
                {"name": "env", "patchType": "strategic",
                 "patch": {"spec": {"template": {"spec": {"containers": [{"name": "web", "env": [{"name": "B", "value": "2"}]}]}}}}}]}]}}))
    .await?;
    let probe = Probe {
        chart: Some(web_chart_files()),
        ..Probe::new(
            json!({"app": "probe", "allOf": [{"cluster": "edge01"}, {"cluster": "edge02"}, {"cluster": "cloud01"}]}),
        )
    };
    probe.apply(&hub, &bed, &ns).await?;
    apply(&hub, &dig_manifest(&ns, json!({"genericPlacementIntent": "gpi", "gac": "actions"}))).await?;
    let status = wait_dig(&hub, &ns, &ns, "Instantiated with the gac", Duration::from_secs(60), |s| {
        s.state == DigState::Instantiated && complete(&s.deployed) && s.controllers.iter().any(|c| c == "gac")
    })
    .await?;
    assert_eq!(status.controllers, ["genericPlacementIntent", "gac"]);

    for (member, replicas, config) in [("edge01", 3, true), ("edge02", 3, false), ("cloud01", 1, false)] {
        let client = bed.client(member).await;
        let web = Api::<Deployment>::namespaced(client.clone(), &ns).get("web").await?;
        let spec = web.spec.unwrap_or_default();
        assert_eq!(spec.replicas, Some(replicas), "replicas on {member}");
        let container = &spec.template.spec.unwrap_or_default().containers[0];
        let env: Vec<(String, String)> = container
            .env
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.name, e.value.unwrap_or_default()))
            .collect();
        assert_eq!(env, [("A".to_string(), "1".to_string()), ("B".to_string(), "2".to_string())], "env on {member}");
        let creds =
            Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns).get("office-creds").await?;
        let token = creds.data.unwrap_or_default().remove("token").map(|b| b.0);
        assert_eq!(token.as_deref(), Some(&b"s3cr3t"[..]), "secret data on {member}");
        let cm = Api::<ConfigMap>::namespaced(client, &ns).get_opt("office-config").await?;
        assert_eq!(cm.is_some(), config, "office-config on {member}");
        if let Some(cm) = cm {
            let data = cm.data.unwrap_or_default();
            assert_eq!(data.get("settings.ini").map(String::as_str), Some("[office]\nname=edge\n"));
            assert_eq!(data.get("note").map(String::as_str), Some("hello"));
            assert_eq!(data.get("mode").map(String::as_str), Some("edge"));
        }
    }

    // A controller name that is neither built in nor registered, then an intent that does not exist.
    for (intents, reason, named) in [
        (json!({"genericPlacementIntent": "gpi", "nosuch": "x"}), "UnknownController", "nosuch"),
        (json!({"genericPlacementIntent": "gpi", "gac": "missing"}), "IntentNotFound", "missing"),
    ] {
        apply(&hub, &dig_manifest(&ns, intents)).await?;
        let status = wait_dig(&hub, &ns, &ns, reason, Duration::from_secs(30), |s| {
            s.conditions.iter().any(|c| c.type_ == "Placed" && c.reason == reason)
        })
        .await?;
        let placed = status.conditions.iter().find(|c| c.type_ == "Placed").unwrap();
        assert!(placed.message.contains(named), "{}", placed.message);
        assert_eq!(status.revision, Some(1), "a refused revision is not made");
    }

    // A file with two sources is refused at apply.
    let err = apply(&hub, &json!({"apiVersion": "gac.emco.io/v1alpha1", "kind": "GenericActionIntent", "metadata": {"name": "two", "namespace": ns},
        "spec": {"resources": [{"name": "r", "app": "probe", "newObject": true, "gvk": {"apiVersion": "v1", "kind": "ConfigMap", "name": "x"},
            "customizations": [{"name": "c", "files": [{"keyName": "k", "content": "a", "secretRef": {"name": "gac-secret"}}]}]}]}}))
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("exactly one of content, configMapRef or secretRef"), "{err:#}");
    Ok(())
}
