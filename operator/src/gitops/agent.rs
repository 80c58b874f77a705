//! The agent on a GitOps member (`emco-operator agent`): every interval it fetches the cluster's
//! folder, applies its objects with server-side apply and removes what left the folder
//! (`--apply`, for members without Flux), then reports each object's content digest and
//! readiness to the status file, committing only when the report changed. It uses the member's
//! own credentials (`KUBECONFIG` or in-cluster) and the repository's from `EMCO_GIT_USERNAME` /
//! `EMCO_GIT_PASSWORD` (never flags: they would show in the process list).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{Scope, pinned_kind};
use serde_json::Value;

use super::layout::{self, Observed, Report};
use super::repo::{Change, Clones, Credentials, Remote};
use crate::rsync::{member::CONTENT_DIGEST, order, ready};

/// Field manager of the agent's applies.
const MANAGER: &str = "emco-agent";

/// What the agent works on.
#[derive(Debug, Clone)]
pub struct Agent {
    pub remote: Remote,
    pub path: String,
    pub status_file: String,
    /// Apply and prune (no Flux on the member); otherwise only report.
    pub apply: bool,
    pub interval: Duration,
}

const USAGE: &str = "usage: emco-operator agent --repository URL --path FOLDER [--branch main] \
[--status-path FOLDER] [--apply] [--interval-seconds N]";

impl Agent {
    /// From the command line after `agent`, and the environment.
    pub fn from_args(args: &[String]) -> anyhow::Result<Agent> {
        let mut flags: HashMap<&str, &str> = HashMap::new();
        let mut apply = false;
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            match flag.as_str() {
                "--apply" => apply = true,
                f if f.starts_with("--") => {
                    let value = it.next().ok_or_else(|| anyhow::anyhow!("{f} needs a value\n{USAGE}"))?;
                    flags.insert(f.trim_start_matches("--"), value.as_str());
                }
                other => anyhow::bail!("unexpected argument {other}\n{USAGE}"),
            }
        }
        let need =
            |k: &str| flags.get(k).map(|v| v.to_string()).ok_or_else(|| anyhow::anyhow!("--{k} is required\n{USAGE}"));
        let path = need("path")?;
        let repository = crate::api::clm::GitRepository {
            url: need("repository")?,
            branch: flags.get("branch").unwrap_or(&"main").to_string(),
            path: path.clone(),
            status_path: flags.get("status-path").map(|s| s.to_string()),
        };
        let credentials = std::env::var("EMCO_GIT_PASSWORD").ok().map(|password| Credentials {
            username: std::env::var("EMCO_GIT_USERNAME").unwrap_or_else(|_| "git".into()),
            password,
        });
        let seconds: f64 = flags.get("interval-seconds").map_or(Ok(5.0), |s| s.parse())?;
        Ok(Agent {
            remote: Remote { url: repository.url.clone(), branch: repository.branch.clone(), credentials },
            status_file: repository.status_file(),
            path,
            apply,
            interval: Duration::from_secs_f64(seconds.max(0.1)),
        })
    }
}

/// Runs the agent until SIGTERM or Ctrl-C.
pub async fn run(agent: Agent, client: kube::Client) -> anyhow::Result<()> {
    let clones = Clones::from_env();
    let mut kinds = Kinds { client: client.clone(), known: HashMap::new() };
    tracing::info!(url = %agent.remote.url, branch = %agent.remote.branch, path = %agent.path, apply = agent.apply, "agent starting");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        if let Err(e) = tick(&agent, &clones, &mut kinds).await {
            tracing::warn!(error = %e, "agent pass failed; trying again");
        }
        tokio::select! {
            _ = tokio::time::sleep(agent.interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
        }
    }
}

/// One pass: read the folder, apply and prune (with `--apply`), report.
async fn tick(agent: &Agent, clones: &Clones, kinds: &mut Kinds) -> anyhow::Result<()> {
    let (files, previous, head) = clones.snapshot(&agent.remote, &agent.path, &agent.status_file).await?;
    if head.is_none() {
        return Ok(()); // an empty repository: nothing to do yet
    }
    let previous = previous.and_then(|b| Report::parse(&b)).unwrap_or_default();
    let mut objects: Vec<Value> = files
        .iter()
        .filter(|(name, _)| name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json"))
        .filter_map(|(_, bytes)| serde_saphyr::from_str::<Value>(std::str::from_utf8(bytes).ok()?).ok())
        .filter(|o| o["kind"].is_string() && o["metadata"]["name"].is_string())
        .collect();
    objects.sort_by_key(|o| order::rank(o["kind"].as_str().unwrap_or_default()));
    let mut report = Report::default();
    for obj in &objects {
        let applied = if agent.apply { kinds.apply(obj).await } else { Ok(()) };
        report.objects.push(kinds.observe(obj, applied.err()).await);
    }
    if agent.apply {
        let current: BTreeSet<String> = objects.iter().map(layout::id).collect();
        let gone = previous.objects.iter().filter(|o| !current.contains(&o.id) && !o.id.contains("/Namespace/"));
        for old in gone.collect::<Vec<_>>().into_iter().rev() {
            if let Some(left) = kinds.prune(old).await {
                report.objects.push(left);
            }
        }
    }
    if report == previous {
        return Ok(());
    }
    let (folder, file) = agent.status_file.rsplit_once('/').unwrap_or(("", agent.status_file.as_str()));
    let files = BTreeMap::from([(file.to_string(), report.to_bytes())]);
    let change =
        Change { folder: folder.to_string(), files: Some(files), message: format!("status of {}", agent.path) };
    let done = clones.exchange(&agent.remote, Some(change), None).await?;
    tracing::info!(objects = report.objects.len(), commit = ?done.committed, "reported");
    Ok(())
}

/// The member's kinds, asked once each.
struct Kinds {
    client: kube::Client,
    known: HashMap<(String, String), (ApiResource, bool)>,
}

impl Kinds {
    /// Where `obj` lives on the member.
    async fn api(&mut self, api_version: &str, kind: &str, namespace: &str) -> anyhow::Result<Api<DynamicObject>> {
        let key = (api_version.to_string(), kind.to_string());
        if !self.known.contains_key(&key) {
            let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
            let (resource, caps) = pinned_kind(&self.client, &GroupVersionKind::gvk(group, version, kind)).await?;
            self.known.insert(key.clone(), (resource, caps.scope == Scope::Namespaced));
        }
        let (resource, namespaced) = &self.known[&key];
        Ok(match namespaced {
            true => Api::namespaced_with(self.client.clone(), namespace, resource),
            false => Api::all_with(self.client.clone(), resource),
        })
    }

    async fn api_of(&mut self, obj: &Value) -> anyhow::Result<Api<DynamicObject>> {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        self.api(&text(&obj["apiVersion"]), &text(&obj["kind"]), &text(&obj["metadata"]["namespace"])).await
    }

    async fn apply(&mut self, obj: &Value) -> anyhow::Result<()> {
        let api = self.api_of(obj).await?;
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        api.patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(obj)).await?;
        Ok(())
    }

    /// What the member holds of `obj`; `failed` is why applying it failed.
    async fn observe(&mut self, obj: &Value, failed: Option<anyhow::Error>) -> Observed {
        let mut seen = Observed {
            id: layout::id(obj),
            api_version: obj["apiVersion"].as_str().unwrap_or_default().to_string(),
            ..Default::default()
        };
        if let Some(e) = failed {
            seen.error = Some(format!("apply failed: {e}"));
            return seen;
        }
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let live = match self.api_of(obj).await {
            Ok(api) => api.get_opt(name).await.map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        match live {
            Ok(Some(live)) => {
                let mut live = serde_json::to_value(live).unwrap_or_default();
                live["kind"] = obj["kind"].clone();
                seen.digest = live["metadata"]["annotations"][CONTENT_DIGEST].as_str().map(str::to_string);
                seen.ready = ready::is_ready(&live);
                seen.message = ready::why_not(&live);
            }
            Ok(None) => seen.message = Some("not on the member".into()),
            Err(e) => seen.message = Some(format!("reading it failed: {e}")),
        }
        seen
    }

    /// Deletes an object that left the folder; what is left of it, if anything.
    async fn prune(&mut self, old: &Observed) -> Option<Observed> {
        let mut parts = old.id.splitn(4, '/');
        let (_, kind, namespace, name) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let api = match self.api(&old.api_version, kind, namespace).await {
            Ok(api) => api,
            Err(e) => return Some(Observed { error: Some(format!("prune failed: {e}")), ..old.clone() }),
        };
        match api.delete(name, &DeleteParams::background()).await {
            Err(kube::Error::Api(s)) if s.code == 404 => None,
            Err(e) => Some(Observed { error: Some(format!("prune failed: {e}")), ..old.clone() }),
            Ok(_) => match api.get_opt(name).await {
                Ok(None) => None,
                _ => Some(Observed { ready: false, message: Some("being deleted".into()), ..old.clone() }),
            },
        }
    }
}
