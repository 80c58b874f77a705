//! Leader election: with the operator of the test bed running, a second replica waits for the
//! Lease and runs no controllers.

use std::process::Stdio;
use std::time::Duration;

use anyhow::Result;
use emco_e2e::*;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn a_second_replica_waits_while_the_first_holds_the_lease() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let leases = Api::<Lease>::namespaced(hub.clone(), "emco-system");
    let holder = |l: Lease| l.spec.and_then(|s| s.holder_identity).unwrap_or_default();
    let first = holder(leases.get(emco::leader::LEASE).await?);
    assert!(!first.is_empty(), "the running operator holds the Lease");

    let second = format!("second-{}", unique_suffix());
    let mut child = tokio::process::Command::new(repo_root().join("target/debug/emco-operator"))
        .env("KUBECONFIG", bed.dir.join("operator.kubeconfig"))
        .env("EMCO_NAMESPACE", "emco-system")
        .env("POD_NAME", &second)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(holder(leases.get(emco::leader::LEASE).await?), first, "the Lease must stay with the first replica");
    child.start_kill()?;
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).await?;
    child.wait().await?;
    assert!(out.contains("waiting for leadership"), "the second replica's log: {out}");
    assert!(!out.contains("starting controllers"), "the second replica started controllers: {out}");
    Ok(())
}
