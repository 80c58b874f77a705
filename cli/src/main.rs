//! `kubectl emco`: EMCO's status query and lifecycle operations (emcoctl's day-to-day verbs) for
//! DeploymentIntentGroups on an emco-operator hub. Everything it reads, `kubectl get` could read;
//! every operation is a change to the DIG's spec, as a GitOps repository would make it.

mod query;

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use emco::api::orchestrator::{DeploymentIntentGroup, DesiredState, DigState};
use emco::api::rsync::AppContext;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "kubectl-emco",
    version,
    about = "EMCO's status query and lifecycle operations for DeploymentIntentGroups"
)]
struct Cli {
    /// Namespace of the DIG (the project's); the kubeconfig context's when left out.
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Tree,
    Json,
    Yaml,
}

#[derive(Subcommand)]
enum Command {
    /// Where a DIG stands: apps, the clusters each is on, and (with --detail) each resource.
    Status {
        dig: String,
        #[arg(long)]
        app: Option<String>,
        #[arg(long)]
        cluster: Option<String>,
        /// `Kind/name` or `name`.
        #[arg(long)]
        resource: Option<String>,
        /// The DIG and one line per app.
        #[arg(long, conflicts_with = "detail")]
        summary: bool,
        /// Every resource on every cluster.
        #[arg(long)]
        detail: bool,
        #[arg(short, long, value_enum, default_value = "tree")]
        output: Output,
    },
    /// EMCO approve: `spec.approved: true`.
    Approve { dig: String },
    /// EMCO instantiate: `spec.state: Instantiated` (deploys once approved).
    Instantiate { dig: String },
    /// EMCO terminate: `spec.state: Terminated`.
    Terminate { dig: String },
    /// EMCO stop: `spec.stop: true` (give up retrying the running operation); `--clear` undoes it.
    Stop {
        dig: String,
        #[arg(long)]
        clear: bool,
    },
    /// EMCO rollback: `spec.rollbackTo: N`, a revision in the DIG's history; `--clear` follows the
    /// inputs again.
    Rollback {
        dig: String,
        #[arg(required_unless_present = "clear")]
        revision: Option<u32>,
        #[arg(long)]
        clear: bool,
    },
    /// The DIG's revisions, newest last.
    History { dig: String },
    /// Follows the DIG until it settles, with counts that move; exits 0 when it is done (ready,
    /// or terminated), 1 when it failed or was stopped, 2 on timeout.
    Watch {
        dig: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

async fn run(cli: Cli) -> Result<i32> {
    let client = Client::try_default().await.context("connecting to the hub (KUBECONFIG)")?;
    let ns = cli.namespace.unwrap_or_else(|| client.default_namespace().to_string());
    let digs = Api::<DeploymentIntentGroup>::namespaced(client.clone(), &ns);
    let contexts = Api::<AppContext>::namespaced(client, &ns);
    match cli.command {
        Command::Status { dig, app, cluster, resource, summary, detail, output } => {
            let filter = query::Filter { app, cluster, resource, detail };
            let (d, actx) = read(&digs, &contexts, &dig).await?;
            let report = query::report(&d, actx.as_ref(), &filter);
            match output {
                Output::Tree => print!("{}", query::tree(&report, summary)),
                Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Output::Yaml => print!("{}", serde_saphyr::to_string(&report)?),
            }
        }
        Command::Approve { dig } => set(&digs, &dig, json!({"approved": true}), "approved").await?,
        Command::Instantiate { dig } => {
            set(&digs, &dig, json!({"state": "Instantiated"}), "to be instantiated").await?;
            if !digs.get(&dig).await?.spec.approved {
                eprintln!("note: {dig} is not approved yet; `kubectl emco approve {dig}` deploys it");
            }
        }
        Command::Terminate { dig } => set(&digs, &dig, json!({"state": "Terminated"}), "to be terminated").await?,
        Command::Stop { dig, clear } => {
            set(&digs, &dig, json!({"stop": !clear}), if clear { "no longer stopped" } else { "stopped" }).await?
        }
        Command::Rollback { dig, revision, clear } => rollback(&digs, &dig, revision.filter(|_| !clear)).await?,
        Command::History { dig } => history(&digs.get(&dig).await.with_context(|| format!("reading DIG {dig}"))?),
        Command::Watch { dig, timeout } => return watch(&digs, &contexts, &dig, Duration::from_secs(timeout)).await,
    }
    Ok(0)
}

/// The DIG and its current AppContext, if it has one yet.
async fn read(
    digs: &Api<DeploymentIntentGroup>,
    contexts: &Api<AppContext>,
    name: &str,
) -> Result<(DeploymentIntentGroup, Option<AppContext>)> {
    let dig = digs.get_opt(name).await?.with_context(|| format!("no DeploymentIntentGroup {name}"))?;
    let actx = match dig.status.as_ref().and_then(|s| s.app_context.clone()) {
        Some(a) => contexts.get_opt(&a).await?,
        None => None,
    };
    Ok((dig, actx))
}

/// Merges `spec` into the DIG's spec.
async fn set(digs: &Api<DeploymentIntentGroup>, name: &str, spec: serde_json::Value, what: &str) -> Result<()> {
    let patch = Patch::Merge(json!({ "spec": spec }));
    digs.patch(name, &PatchParams::default(), &patch).await.with_context(|| format!("patching DIG {name}"))?;
    println!("deploymentintentgroup.orchestrator.emco.io/{name} {what}");
    Ok(())
}

async fn rollback(digs: &Api<DeploymentIntentGroup>, name: &str, revision: Option<u32>) -> Result<()> {
    let Some(revision) = revision else {
        return set(digs, name, json!({"rollbackTo": null}), "follows its inputs again").await;
    };
    let dig = digs.get(name).await.with_context(|| format!("reading DIG {name}"))?;
    let history = dig.status.map(|s| s.history).unwrap_or_default();
    if !history.iter().any(|h| h.revision == revision) {
        let known: Vec<String> = history.iter().map(|h| h.revision.to_string()).collect();
        bail!("revision {revision} is not in the history of {name} (known: {})", known.join(", "));
    }
    set(digs, name, json!({"rollbackTo": revision}), &format!("rolling back to revision {revision}")).await
}

fn history(dig: &DeploymentIntentGroup) {
    let status = dig.status.clone().unwrap_or_default();
    println!("{:<10} {:<40} {:<11} TIME", "REVISION", "APPCONTEXT", "GENERATION");
    for h in &status.history {
        let current = if Some(h.revision) == status.revision { "  (current)" } else { "" };
        println!("{:<10} {:<40} {:<11} {}{current}", h.revision, h.app_context, h.generation, h.time.0);
    }
}

/// Whether the DIG has settled where its spec asks: `Some(exit code)`. A state left from before
/// the last change (the orchestrator may record the new generation before the new state) does
/// not count.
fn settled(dig: &DeploymentIntentGroup) -> Option<i32> {
    let status = dig.status.as_ref()?;
    let complete =
        |f: &Option<String>| f.as_deref().and_then(|f| f.split_once('/')).is_some_and(|(a, b)| a == b && b != "0");
    let current = status.observed_generation == dig.metadata.generation;
    let terminate = dig.spec.state == DesiredState::Terminated;
    match status.state {
        DigState::Instantiated | DigState::Updated if !terminate && current && complete(&status.ready) => Some(0),
        DigState::Terminated if terminate && current => Some(0),
        DigState::InstantiateFailed | DigState::UpdateFailed if !terminate && current => Some(1),
        DigState::TerminateFailed if terminate && current => Some(1),
        DigState::InstantiateStopped | DigState::TerminateStopped if current => Some(1),
        _ => None,
    }
}

async fn watch(
    digs: &Api<DeploymentIntentGroup>,
    contexts: &Api<AppContext>,
    name: &str,
    timeout: Duration,
) -> Result<i32> {
    let (start, terminal) = (Instant::now(), std::io::stdout().is_terminal());
    let mut last = String::new();
    loop {
        let (dig, actx) = read(digs, contexts, name).await?;
        let report = query::report(&dig, actx.as_ref(), &query::Filter::default());
        let line = progress(&report);
        if line != last {
            if terminal {
                print!("\r\x1b[2K{line}");
                use std::io::Write;
                std::io::stdout().flush().ok();
            } else {
                println!("{line}");
            }
            last = line;
        }
        if let Some(code) = settled(&dig) {
            if terminal {
                println!();
            }
            println!("{name}: {} after {:.1}s", report.state, start.elapsed().as_secs_f64());
            return Ok(code);
        }
        if start.elapsed() > timeout {
            println!("\n{name}: still {} after {}s", report.state, timeout.as_secs());
            return Ok(2);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `[#####-----] State deployed a/b ready c/d, clusters`.
fn progress(report: &query::Report) -> String {
    let fraction = |f: &str| {
        let (a, b) = f.split_once('/').unwrap_or(("0", "0"));
        (a.parse::<u32>().unwrap_or(0), b.parse::<u32>().unwrap_or(0))
    };
    let (ready, total) = fraction(&report.ready);
    let filled = (ready * 20).checked_div(total).unwrap_or(0).min(20) as usize;
    let bar = format!("{}{}", "#".repeat(filled), "-".repeat(20 - filled));
    let retrying = report.apps.iter().flat_map(|a| &a.clusters).filter(|c| c.connectivity == "Retrying").count();
    let retrying = if retrying > 0 { format!(", {retrying} retrying") } else { String::new() };
    format!(
        "[{bar}] {} revision {} deployed {} ready {}{retrying}",
        report.state,
        report.revision.unwrap_or(0),
        report.deployed,
        report.ready
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dig(desired: &str, state: &str, ready: &str) -> DeploymentIntentGroup {
        serde_json::from_value(json!({
            "apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "DeploymentIntentGroup",
            "metadata": {"name": "d", "namespace": "p", "generation": 2},
            "spec": {"compositeApp": "c", "logicalCloud": "l", "intents": {}, "approved": true, "state": desired},
            "status": {"state": state, "observedGeneration": 2, "ready": ready}}))
        .unwrap()
    }

    #[test]
    fn settled_only_where_the_spec_asks() {
        assert_eq!(settled(&dig("Terminated", "Instantiated", "3/3")), None, "the state before a terminate");
        assert_eq!(settled(&dig("Terminated", "Terminated", "0/3")), Some(0));
        assert_eq!(settled(&dig("Instantiated", "Terminated", "0/3")), None, "the state before an instantiate");
        assert_eq!(settled(&dig("Instantiated", "Instantiated", "2/3")), None, "not ready yet");
        assert_eq!(settled(&dig("Instantiated", "Updated", "3/3")), Some(0));
        assert_eq!(settled(&dig("Instantiated", "InstantiateFailed", "0/3")), Some(1));
    }
}
