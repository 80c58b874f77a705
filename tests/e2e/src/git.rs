//! Git for the GitOps tests: the bed's Git server (`bed/git-server.py`, Git's own smart-HTTP
//! backend), a repository, GitOps Clusters, and the agent on edge02.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use emco::api::clm::Cluster;
use emco::api::orchestrator::DigState;
use kube::Api;
use serde_json::json;

use crate::*;

/// The bed's Git server on a port of its own, stopped when dropped.
pub struct GitServer {
    pub root: PathBuf,
    pub port: u16,
    child: Option<std::process::Child>,
}

impl GitServer {
    pub fn start(root: &Path, port: u16) -> Result<GitServer> {
        let mut server = GitServer { root: root.to_path_buf(), port, child: None };
        server.resume()?;
        Ok(server)
    }

    pub fn resume(&mut self) -> Result<()> {
        let script = repo_root().join("tests/e2e/bed/git-server.py");
        let log = std::fs::File::options().create(true).append(true).open(self.root.join("server.log"))?;
        let child = Command::new("python3")
            .arg(script)
            .arg(self.port.to_string())
            .arg(&self.root)
            .arg("writer:s3cret-w:rw,reader:s3cret-r:ro")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.port);
        for _ in 0..40 {
            if std::net::TcpStream::connect(&addr).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        anyhow::bail!("the Git server did not start on {addr}")
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/fleet.git", self.port)
    }

    /// `git` in the bare repository.
    pub fn git(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("git").arg("-C").arg(self.root.join("fleet.git")).args(args).output()?;
        ensure!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8(out.stdout)?)
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free port on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A bare repository `fleet.git` under `root` with one commit on `main`.
pub fn init_repository(root: &Path) -> Result<()> {
    let run = |dir: &Path, args: &[&str]| -> Result<()> {
        let out = Command::new("git").arg("-C").arg(dir).args(args).output()?;
        ensure!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    };
    std::fs::create_dir_all(root)?;
    let bare = root.join("fleet.git");
    run(root, &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()])?;
    let seed = root.join("seed");
    run(root, &["init", "-q", "-b", "main", seed.to_str().unwrap()])?;
    std::fs::write(seed.join("README.md"), "The fleet: one folder per cluster.\n")?;
    run(&seed, &["add", "README.md"])?;
    run(&seed, &["-c", "user.name=platform", "-c", "user.email=platform@example", "commit", "-qm", "start"])?;
    run(&seed, &["push", "-q", bare.to_str().unwrap(), "main"])
}

pub fn git_cluster(name: &str, url: &str, secret: &str) -> serde_json::Value {
    json!({"apiVersion": "clm.emco.io/v1alpha1", "kind": "Cluster",
        "metadata": {"name": name, "labels": {"LabelSmartCityEdge": ""}},
        "spec": {"provider": "smartcity", "gitOps": {"tool": "agent",
            "repository": {"url": url, "branch": "main", "path": "clusters/edge02"},
            "credentials": {"secretRef": {"namespace": "emco-system", "name": secret}}}}})
}

pub fn git_secret(name: &str, user: &str, password: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "emco-system"},
        "stringData": {"username": user, "password": password}})
}

/// Waits until Cluster `name`'s Ready condition has `status` and `reason`.
pub async fn cluster_ready(hub: &kube::Client, name: &str, status: &str, reason: &str) -> Result<()> {
    let api = Api::<Cluster>::all(hub.clone());
    wait_until(&format!("Cluster {name} Ready={status} ({reason})"), Duration::from_secs(60), || async {
        let c = api.get(name).await?;
        let conditions = c.status.map(|s| s.conditions).unwrap_or_default();
        let ready = conditions.iter().find(|c| c.type_ == "Ready");
        Ok(match ready {
            Some(r) if r.status == status && r.reason == reason => Ok(()),
            other => Err(format!("{other:?}")),
        })
    })
    .await
}

/// Commits on `main` whose message names `needle`.
pub fn commits_naming(server: &GitServer, needle: &str) -> Result<usize> {
    Ok(server.git(&["log", "--format=%s", "main"])?.lines().filter(|l| l.contains(needle)).count())
}

/// Registers `cluster` as edge02 reached through `server`'s repository, waits until it is Ready,
/// and starts the agent on edge02 (stopped when dropped).
pub async fn through_git(
    tool: &str,
    bed: &Bed,
    hub: &kube::Client,
    server: &GitServer,
    cluster: &str,
    secret: &str,
    root: &Path,
) -> Result<tokio::process::Child> {
    apply(hub, &git_secret(secret, "writer", "s3cret-w")).await?;
    let mut registration = git_cluster(cluster, &server.url(), secret);
    registration["spec"]["gitOps"]["tool"] = json!(tool);
    apply(hub, &registration).await?;
    cluster_ready(hub, cluster, "True", "Ready").await?;
    let url = server.url();
    let mut args = vec!["agent", "--repository", url.as_str(), "--path", "clusters/edge02", "--interval-seconds", "1"];
    // With Flux on the member, the agent only reports.
    if tool == "agent" {
        args.push("--apply");
    }
    let agent_log = bed.dir.join(format!("agent-{cluster}.log"));
    Ok(tokio::process::Command::new(repo_root().join("target/debug/emco-operator"))
        .args(&args)
        .env("KUBECONFIG", bed.kubeconfig("edge02"))
        .env("EMCO_GIT_USERNAME", "writer")
        .env("EMCO_GIT_PASSWORD", "s3cret-w")
        .env("EMCO_GIT_DIR", root.join("agent-clones"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&agent_log)?)
        .kill_on_drop(true)
        .spawn()?)
}

/// Applies SmartCity in project `ns` (edge02 replaced by `git_edge` when given) and waits until
/// it is Instantiated and ready; its status and the time from the apply.
pub async fn smartcity(
    hub: &kube::Client,
    ns: &str,
    git_edge: Option<&str>,
) -> Result<(emco::api::orchestrator::DeploymentIntentGroupStatus, Duration)> {
    project(hub, ns).await?;
    let started = Instant::now();
    let via_git = git_edge.map(str::to_string);
    apply_sample_edited(hub, ns, ns, move |doc| {
        if let (Some(c), "LogicalCloud") = (&via_git, doc["kind"].as_str().unwrap_or_default()) {
            doc["spec"]["clusters"][1]["cluster"] = json!(c);
        }
    })
    .await?;
    let ready = wait_dig(hub, ns, ns, "Instantiated and ready", Duration::from_secs(120), |s| {
        s.state == DigState::Instantiated && complete(&s.ready) && complete(&s.deployed)
    })
    .await?;
    Ok((ready, started.elapsed()))
}
