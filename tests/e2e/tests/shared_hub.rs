//! A hub shared by tenants: Secret data never leaves a Secret, and a Standard logical cloud's user
//! cannot touch its own quota, RBAC or Namespace (and Pod Security holds). (Objects a member user
//! labels as the operator's: `tenant_objects.rs`, alone in its binary so that nothing else moves
//! the operator's memory meanwhile.)

use std::time::Duration;

use anyhow::{Result, bail, ensure};
use emco::api::orchestrator::DigState;
use emco_e2e::*;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ResourceQuota, Secret};
use k8s_openapi::api::rbac::v1::Role;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const READY: Duration = Duration::from_secs(60);

/// An intent putting Secret `vault`'s `token` into a new object of `kind`.
fn secret_into(kind: &str) -> Value {
    json!({"resources": [{"name": "creds", "app": "probe", "newObject": true,
        "gvk": {"apiVersion": "v1", "kind": kind, "name": "office-creds"},
        "customizations": [{"name": "everywhere", "files": [{"keyName": "token", "secretRef": {"name": "vault", "key": "token"}}]}]}]})
}

#[tokio::test]
async fn secret_data_lands_only_in_a_secret() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("secrets-{}", unique_suffix());
    project(&hub, &ns).await?;
    apply(
        &hub,
        &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "vault", "namespace": ns},
                "stringData": {"token": "s3cr3t-token"}}),
    )
    .await?;
    let intent = |spec: Value| {
        json!({"apiVersion": "gac.emco.io/v1alpha1", "kind": "GenericActionIntent",
               "metadata": {"name": "actions", "namespace": ns}, "spec": spec})
    };
    apply(&hub, &intent(secret_into("ConfigMap"))).await?;
    let probe = Probe::new(json!({"app": "probe", "allOf": [{"cluster": "edge01"}]}));
    probe.apply(&hub, &bed, &ns).await?;
    apply(&hub, &dig_manifest(&ns, json!({"genericPlacementIntent": "gpi", "gac": "actions"}))).await?;
    let refused = wait_dig(&hub, &ns, &ns, "refused", READY, |s| {
        s.conditions.iter().any(|c| c.message.contains("may only go into a v1 Secret"))
    })
    .await?;
    ensure!(refused.app_context.is_none(), "nothing deployed: {refused:?}");
    let reason = refused.conditions.iter().find(|c| c.message.contains("v1 Secret")).map(|c| c.reason.clone());
    ensure!(reason.as_deref() == Some("ControllerFailed"), "{refused:?}");
    let edge01 = bed.client("edge01").await;
    ensure!(deployed_names(&edge01, "v1", "ConfigMap", "configmaps", &ns).await?.is_empty(), "nothing on edge01");
    ensure!(!serde_json::to_string(&refused)?.contains("s3cr3t"), "no secret in the status");

    // Into a Secret it works.
    apply(&hub, &intent(secret_into("Secret"))).await?;
    wait_dig(&hub, &ns, &ns, "Instantiated", READY, |s| s.state == DigState::Instantiated && complete(&s.ready))
        .await?;
    let secret = Api::<Secret>::namespaced(edge01.clone(), &ns).get("office-creds").await?;
    ensure!(secret.data.and_then(|d| d.get("token").cloned()).is_some_and(|t| t.0 == b"s3cr3t-token"));

    // The operator's own credentials cannot be named at all.
    let lc_secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "emco.io/logical-cloud-user",
        "metadata": {"name": "emco-lc-x-edge01", "namespace": ns}, "stringData": {"token": "kubeconfig"}});
    apply(&hub, &lc_secret).await?;
    let mut spec = secret_into("Secret");
    spec["resources"][0]["customizations"][0]["files"][0]["secretRef"] =
        json!({"name": "emco-lc-x-edge01", "key": "token"});
    apply(&hub, &intent(spec)).await?;
    wait_dig(&hub, &ns, &ns, "refused the operator's Secret", READY, |s| {
        s.conditions.iter().any(|c| c.reason == "SecretRefused")
    })
    .await?;
    set_dig_state(&hub, &ns, &ns, "Terminated").await?;
    wait_dig(&hub, &ns, &ns, "Terminated", READY, |s| s.state == DigState::Terminated).await?;
    Ok(())
}

/// Whether `result` is a refusal with HTTP `code` whose message contains `words`.
fn refused<T: std::fmt::Debug>(result: kube::Result<T>, code: u16, words: &str) -> Result<()> {
    match result {
        Err(kube::Error::Api(e)) if e.code == code && e.message.contains(words) => Ok(()),
        other => bail!("expected {code} ({words}), got {other:?}"),
    }
}

#[tokio::test]
async fn a_standard_cloud_user_cannot_widen_its_own_limits() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("boundary-{}", unique_suffix());
    let apps = format!("{ns}-apps");
    project(&hub, &ns).await?;
    apply(
        &hub,
        &json!({"apiVersion": "dcm.emco.io/v1alpha1", "kind": "LogicalCloud", "metadata": {"name": "lc", "namespace": ns},
            "spec": {"type": "Standard", "namespace": apps, "user": {"name": "u"}, "quotas": {"pods": "5"},
                     "clusters": [{"cluster": "edge01"}]}}),
    )
    .await?;
    wait_lc(&hub, &ns, "lc", "Instantiated", READY, |s| {
        s.state == Some(emco::api::dcm::LogicalCloudState::Instantiated)
    })
    .await?;
    let user = logical_cloud_user(&hub, &ns, "lc", "edge01").await?;

    // `*` still gives the namespace's ordinary resources.
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "mine"}, "data": {"a": "1"}}))?;
    Api::<ConfigMap>::namespaced(user.clone(), &apps).create(&PostParams::default(), &cm).await?;
    // Not its quota, its Role, or its Namespace.
    let quota = Api::<ResourceQuota>::namespaced(user.clone(), &apps);
    refused(quota.delete("emco-lc-lc", &DeleteParams::default()).await, 403, "forbidden")?;
    let role = Api::<Role>::namespaced(user.clone(), &apps);
    let widen = json!({"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]});
    refused(role.patch("emco-lc-lc", &PatchParams::default(), &Patch::Merge(&widen)).await, 403, "forbidden")?;
    let namespaces = Api::<Namespace>::all(user.clone());
    let relabel = json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "privileged"}}});
    refused(namespaces.patch(&apps, &PatchParams::default(), &Patch::Merge(&relabel)).await, 403, "forbidden")?;
    // Pod Security (baseline by default) refuses a privileged pod; an ordinary one is admitted.
    let pod = |name: &str, privileged: bool| -> Result<Pod> {
        Ok(serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c",
            "image": "registry.example/c:1", "securityContext": {"privileged": privileged}}]}}))?)
    };
    let pods = Api::<Pod>::namespaced(user.clone(), &apps);
    refused(pods.create(&PostParams::default(), &pod("root", true)?).await, 403, "violates PodSecurity")?;
    pods.create(&PostParams::default(), &pod("plain", false)?).await?;
    // The member still holds what dcm made, unchanged.
    let edge01 = bed.client("edge01").await;
    let labels = Api::<Namespace>::all(edge01.clone()).get(&apps).await?.metadata.labels.unwrap_or_default();
    ensure!(labels.get("pod-security.kubernetes.io/enforce").map(String::as_str) == Some("baseline"), "{labels:?}");
    Api::<ResourceQuota>::namespaced(edge01.clone(), &apps).get("emco-lc-lc").await?;

    // Asking for privileged needs a grant that allows it.
    let privileged = json!({"apiVersion": "dcm.emco.io/v1alpha1", "kind": "LogicalCloud", "metadata": {"name": "lax", "namespace": ns},
        "spec": {"type": "Standard", "namespace": format!("{apps}-lax"), "user": {"name": "u2"}, "podSecurity": "privileged",
                 "clusters": [{"cluster": "edge01"}]}});
    apply(&hub, &privileged).await?;
    let status = wait_lc(&hub, &ns, "lax", "not granted", READY, |s| {
        s.conditions.iter().any(|c| c.reason == "ClusterNotGranted" && c.message.contains("maxPodSecurity: privileged"))
    })
    .await?;
    ensure!(status.clusters[0].state == emco::api::dcm::LogicalCloudClusterState::NotGranted);
    grant(&hub, &ns, json!({"maxPodSecurity": "privileged"})).await?;
    wait_lc(&hub, &ns, "lax", "Instantiated once granted", READY, |s| {
        s.state == Some(emco::api::dcm::LogicalCloudState::Instantiated)
    })
    .await?;
    let lax = Api::<Namespace>::all(edge01.clone()).get(&format!("{apps}-lax")).await?;
    ensure!(
        lax.metadata.labels.unwrap_or_default().get("pod-security.kubernetes.io/enforce").map(String::as_str)
            == Some("privileged")
    );

    // Naming the protected resources is refused at apply.
    let explicit = json!({"apiVersion": "dcm.emco.io/v1alpha1", "kind": "LogicalCloud", "metadata": {"name": "bad", "namespace": ns},
        "spec": {"type": "Standard", "namespace": format!("{apps}-bad"), "user": {"name": "u3"}, "clusters": [{"cluster": "edge01"}],
                 "permissions": [{"apiGroups": [""], "resources": ["resourcequotas"], "verbs": ["delete"]}]}});
    let err = apply(&hub, &explicit).await.err().map(|e| format!("{e:#}")).unwrap_or_default();
    ensure!(err.contains("may not be given its ResourceQuota"), "{err}");
    hub_kubectl(&["delete", "project.orchestrator.emco.io", &ns, "--wait=false"])?;
    Ok(())
}
