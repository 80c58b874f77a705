//! Two replicas: the leader is killed (SIGKILL) in the middle of an instantiate, and the standby
//! takes the Lease once it expires and finishes the job. The takeover time is measured; the two
//! never act at once (the standby starts its controllers only after the leader is dead).

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Result;
use emco::api::orchestrator::DigState;
use emco::api::rsync::AppContext;
use emco_e2e::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use serde_json::json;

const DB: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: db\ndata:\n  role: db\n";
const WEB: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  db: db\n";

/// Restores the bed's operator however the test ends; stops the standby gracefully first, so
/// that it gives the Lease back.
struct Restore(Option<tokio::process::Child>);

impl Drop for Restore {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
            }
            std::thread::sleep(Duration::from_secs(2));
            let _ = child.start_kill();
        }
        let _ = restart_operator();
    }
}

#[tokio::test]
async fn the_standby_finishes_an_instantiate_when_the_leader_dies() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("ha-{}", unique_suffix());
    project(&hub, &ns).await?;
    let leases = Api::<Lease>::namespaced(hub.clone(), "emco-system");
    let holder = || async {
        let lease = leases.get(emco::leader::LEASE).await?;
        let spec = lease.spec.unwrap_or_default();
        Ok::<_, anyhow::Error>((spec.holder_identity.unwrap_or_default(), spec.lease_transitions.unwrap_or(0)))
    };
    let (leader, transitions) = holder().await?;
    assert!(!leader.is_empty(), "the bed's operator leads");

    // The standby: waits for the Lease.
    let standby = format!("standby-{}", unique_suffix());
    let log_path = bed.dir.join(format!("{standby}.log"));
    let child = tokio::process::Command::new(repo_root().join("target/debug/emco-operator"))
        .env("KUBECONFIG", bed.dir.join("operator.kubeconfig"))
        .env("EMCO_NAMESPACE", "emco-system")
        .env("EMCO_REPOSITORY_ADDRESSES", "127.0.0.2")
        .env("POD_NAME", &standby)
        .env("RUST_LOG", "info,kube=warn")
        .stdout(Stdio::from(std::fs::File::create(&log_path)?))
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let _restore = Restore(Some(child));
    wait_until("the standby waiting for the Lease", Duration::from_secs(20), || async {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        Ok(if log.contains("waiting for leadership") { Ok(()) } else { Err(log) })
    })
    .await?;

    // An instantiate that takes a while: web waits 20 s after db is ready.
    for (app, template) in [("db", DB), ("web", WEB)] {
        let files = [
            ("Chart.yaml", format!("apiVersion: v2\nname: {app}\nversion: 0.1.0\n")),
            ("templates/t.yaml", template.into()),
        ];
        let files: Vec<(&str, &str)> = files.iter().map(|(k, v)| (*k, v.as_str())).collect();
        apply(&hub, &chart_configmap(&ns, &format!("{app}-chart"), &chart_tgz(app, &files))).await?;
    }
    for doc in [
        json!({"apiVersion": "dcm.emco.io/v1alpha1", "kind": "LogicalCloud", "metadata": {"name": "lc", "namespace": ns},
               "spec": {"namespace": ns, "clusters": [{"cluster": "edge01"}, {"cluster": "edge02"}]}}),
        json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "CompositeApp", "metadata": {"name": "ca", "namespace": ns},
               "spec": {"apps": [
                   {"name": "web", "chart": {"configMap": {"name": "web-chart"}}, "dependsOn": [{"app": "db", "opStatus": "Ready", "waitSeconds": 20}]},
                   {"name": "db", "chart": {"configMap": {"name": "db-chart"}}}]}}),
        json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "GenericPlacementIntent", "metadata": {"name": "gpi", "namespace": ns},
               "spec": {"appIntents": [{"app": "db", "allOf": [{"cluster": "edge01"}, {"cluster": "edge02"}]},
                                       {"app": "web", "allOf": [{"cluster": "edge01"}, {"cluster": "edge02"}]}]}}),
        json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "DeploymentIntentGroup", "metadata": {"name": ns, "namespace": ns},
               "spec": {"compositeApp": "ca", "logicalCloud": "lc", "intents": {"genericPlacementIntent": "gpi"}, "approved": true}}),
    ] {
        apply(&hub, &doc).await?;
    }
    // Mid-instantiate: db applied everywhere, web not yet.
    let contexts = Api::<AppContext>::namespaced(hub.clone(), &ns);
    wait_until("db applied, web waiting", Duration::from_secs(30), || async {
        let status = contexts.get_opt(&format!("{ns}-1")).await?.and_then(|c| c.status).unwrap_or_default();
        let deployed = |app: &str| {
            status.apps.iter().find(|a| a.name == app).map(|a| a.clusters.iter().map(|c| c.deployed).sum::<u32>())
        };
        Ok(if deployed("db") == Some(2) && deployed("web").unwrap_or(0) == 0 {
            Ok(())
        } else {
            Err(format!("{status:?}"))
        })
    })
    .await?;
    let state = dig(&hub, &ns, &ns).await?.status.unwrap_or_default().state;
    assert_eq!(state, DigState::Instantiating);
    assert_eq!(holder().await?.0, leader, "the leader still holds the Lease");

    let killed = Instant::now();
    let killed_at = k8s_openapi::jiff::Timestamp::now();
    std::process::Command::new("kill").arg("-KILL").arg(operator_pid()?.to_string()).status()?;
    let (took_over, transitions_after) =
        wait_until("the standby holding the Lease", Duration::from_secs(40), || async {
            let (now, n) = holder().await?;
            Ok(if now == standby { Ok((killed.elapsed(), n)) } else { Err(now) })
        })
        .await?;
    wait_dig(&hub, &ns, &ns, "Instantiated by the standby", Duration::from_secs(60), |s| {
        s.state == DigState::Instantiated && complete(&s.ready)
    })
    .await?;
    let finished = killed.elapsed();
    println!(
        "leader killed mid-instantiate: standby took the Lease after {took_over:?}, instantiate finished {finished:?} after the kill"
    );
    assert_eq!(transitions_after, transitions + 1, "one change of leader");

    // The standby applied web (after the kill), and started its controllers only once it led.
    for member in ["edge01", "edge02"] {
        let web = Api::<ConfigMap>::namespaced(bed.client(member).await, &ns).get("web").await?;
        let created = web.metadata.creation_timestamp.expect("a creation time").0;
        // creationTimestamp has whole seconds.
        assert!(
            created.as_second() >= killed_at.as_second(),
            "web on {member} created {created}, before the kill at {killed_at}"
        );
    }
    let log = std::fs::read_to_string(&log_path)?;
    let acquired = log.find("acquired the leader Lease").expect("the standby acquired the Lease");
    let started = log.find("starting controllers").expect("the standby started its controllers");
    assert!(acquired < started, "controllers only after the Lease: {log}");
    assert!(took_over < Duration::from_secs(30), "takeover within the Lease (15 s) and a retry: {took_over:?}");

    Api::<emco::api::orchestrator::Project>::all(hub.clone()).delete(&ns, &Default::default()).await?;
    Ok(())
}
