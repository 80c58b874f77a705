//! Health that means something: `/readyz` answers 503 (with the reason) until a replica can act,
//! and 200 for the bed's synced operator and for a standby waiting for the leader Lease;
//! `/healthz` stays 200 while every controller loop runs.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use emco_e2e::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// (status code, body) of `GET path` on `addr`.
async fn probe(addr: &str, path: &str) -> Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes()).await?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await?;
    let code = reply.split_whitespace().nth(1).context("a status line")?.parse()?;
    Ok((code, reply.split("\r\n\r\n").nth(1).unwrap_or_default().to_string()))
}

fn free_address() -> Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.to_string())
}

/// An operator process with `kubeconfig`, serving its probes on the returned address.
fn replica(kubeconfig: &std::path::Path, name: &str) -> Result<(tokio::process::Child, String)> {
    let addr = free_address()?;
    let child = tokio::process::Command::new(repo_root().join("target/debug/emco-operator"))
        .env("KUBECONFIG", kubeconfig)
        .env("EMCO_NAMESPACE", "emco-system")
        .env("EMCO_HEALTH_ADDR", &addr)
        .env("POD_NAME", name)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    Ok((child, addr))
}

async fn wait_probe(addr: &str, path: &str, code: u16) -> Result<String> {
    wait_until(&format!("{path} on {addr} answering {code}"), Duration::from_secs(30), || async {
        Ok(match probe(addr, path).await {
            Ok((c, body)) if c == code => Ok(body),
            Ok((c, body)) => Err(format!("{c} {body}")),
            Err(e) => Err(e.to_string()),
        })
    })
    .await
}

#[tokio::test]
async fn readyz_waits_until_the_replica_can_act_and_healthz_stays_up() -> Result<()> {
    let bed = Bed::get();
    // The bed's operator: caches synced, controllers running.
    assert_eq!(probe("127.0.0.1:18080", "/readyz").await?.0, 200, "the bed's operator is ready");
    assert_eq!(probe("127.0.0.1:18080", "/healthz").await?.0, 200, "the bed's operator is healthy");

    // A replica whose hub does not answer: alive, and not ready for as long as that lasts.
    let dir = bed.dir.join(format!("health-{}", unique_suffix()));
    std::fs::create_dir_all(&dir)?;
    let nowhere = dir.join("nowhere.kubeconfig");
    std::fs::write(
        &nowhere,
        "apiVersion: v1\nkind: Config\nclusters: [{name: hub, cluster: {server: \"https://127.0.0.1:1\", insecure-skip-tls-verify: true}}]\n\
         users: [{name: u, user: {token: \"x\"}}]\ncontexts: [{name: c, context: {cluster: hub, user: u}}]\ncurrent-context: c\n",
    )?;
    let (mut cut_off, addr) = replica(&nowhere, &format!("cut-off-{}", unique_suffix()))?;
    wait_probe(&addr, "/healthz", 200).await?;
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let (code, body) = probe(&addr, "/readyz").await?;
        assert_eq!(code, 503, "a replica that cannot reach its hub is not ready: {body}");
        assert!(body.starts_with("not ready: "), "the reason: {body}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    cut_off.start_kill()?;
    cut_off.wait().await?;

    // A standby (the bed's operator holds the leader Lease) reaches the hub: ready, and healthy.
    let (mut standby, addr) = replica(&bed.dir.join("operator.kubeconfig"), &format!("standby-{}", unique_suffix()))?;
    wait_probe(&addr, "/readyz", 200).await?;
    assert_eq!(probe(&addr, "/healthz").await?.0, 200);
    standby.start_kill()?;
    standby.wait().await?;
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
