//! Kubeconfigs hold data, never commands or files: a Cluster whose kubeconfig has `exec`,
//! `auth-provider` or `tokenFile` is not Ready, with the refused field named, and the command is
//! never run.

use std::time::Duration;

use anyhow::{Result, ensure};
use emco::api::condition;
use emco_e2e::*;
use kube::Api;
use serde_json::json;

fn kubeconfig(user: serde_json::Value) -> String {
    json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": user}],
    })
    .to_string()
}

#[tokio::test]
async fn kubeconfigs_with_commands_or_files_are_refused_and_never_run() -> Result<()> {
    let hub = Bed::get().hub().await;
    let suffix = unique_suffix();
    let marker = std::env::temp_dir().join(format!("emco-exec-marker-{suffix}"));
    let cases = [
        (
            "exec",
            json!({"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "touch",
                            "args": [marker.display().to_string()], "interactiveMode": "Never"}}),
            "users[0].user.exec",
        ),
        (
            "provider",
            json!({"auth-provider": {"name": "oidc", "config": {"cmd-path": "touch"}}}),
            "users[0].user.auth-provider",
        ),
        (
            "tokenfile",
            json!({"tokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token"}),
            "users[0].user.tokenFile",
        ),
    ];
    let clusters = Api::<emco::api::clm::Cluster>::all(hub.clone());
    for (name, user, field) in &cases {
        let (cluster, secret) = (format!("kc-{name}-{suffix}"), format!("kc-{name}-{suffix}"));
        apply(
            &hub,
            &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret, "namespace": "emco-system"},
                    "stringData": {"kubeconfig": kubeconfig(user.clone())}}),
        )
        .await?;
        apply(&hub, &json!({"apiVersion": "clm.emco.io/v1alpha1", "kind": "Cluster", "metadata": {"name": cluster},
            "spec": {"provider": "smartcity", "kubeconfig": {"secretRef": {"namespace": "emco-system", "name": secret}}}}))
        .await?;
        let ready = wait_until(&format!("{cluster} refused"), Duration::from_secs(30), || async {
            let c = clusters.get(&cluster).await?;
            let conditions = c.status.map(|s| s.conditions).unwrap_or_default();
            Ok(match condition::get(&conditions, "Ready") {
                Some(r) if r.status == "False" && r.reason == "KubeconfigFieldRefused" => Ok(r.clone()),
                other => Err(format!("{other:?}")),
            })
        })
        .await?;
        ensure!(ready.message.contains(field), "{name}: {}", ready.message);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(!marker.exists(), "the exec command ran: {} exists", marker.display());
    for (name, _, _) in &cases {
        clusters.delete(&format!("kc-{name}-{suffix}"), &Default::default()).await?;
        Api::<k8s_openapi::api::core::v1::Secret>::namespaced(hub.clone(), "emco-system")
            .delete(&format!("kc-{name}-{suffix}"), &Default::default())
            .await?;
    }
    Ok(())
}
