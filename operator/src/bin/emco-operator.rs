//! The operator: runs every controller against the hub cluster of the current kubeconfig or
//! in-cluster configuration. `EMCO_NAMESPACE` (default `emco-system`) holds the member kubeconfigs.
//! `emco-operator agent ...` runs instead the agent of a GitOps member (`emco::gitops::agent`).

use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some(emco::render::sandbox::WORKER_ARG) {
        emco::render::sandbox::worker_main();
    }
    if std::env::args().nth(1).as_deref() == Some("agent") {
        let args: Vec<String> = std::env::args().skip(2).collect();
        return agent(emco::gitops::agent::Agent::from_args(&args)?);
    }
    emco::memory::limit_arenas();
    // /proc/self/exe still runs this binary after it is replaced on disk.
    let exe = std::path::PathBuf::from("/proc/self/exe");
    emco::render::sandbox::enable(if exe.exists() { exe } else { std::env::current_exe()? });
    operator()
}

/// The agent on a GitOps member (see `emco::gitops::agent`).
#[tokio::main]
async fn agent(agent: emco::gitops::agent::Agent) -> anyhow::Result<()> {
    logging();
    emco::install_crypto_provider();
    let client = kube::Client::try_default().await?;
    emco::gitops::agent::run(agent, client).await
}

fn logging() {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn")))
        .init();
}

#[tokio::main]
async fn operator() -> anyhow::Result<()> {
    logging();
    emco::install_crypto_provider();
    let namespace = std::env::var("EMCO_NAMESPACE").unwrap_or_else(|_| "emco-system".into());
    let config = kube::Config::infer().await?;
    let hub = kube::client::ClientBuilder::try_from(config)?
        .with_layer(&emco::metrics::counted("hub"))
        .with_layer(&emco::fault::FaultLayer)
        .build();
    tracing::info!(%namespace, "emco-operator starting");
    tokio::spawn(emco::memory::trim_forever());
    if let Ok(addr) = std::env::var("EMCO_HEALTH_ADDR") {
        tokio::spawn(emco::health::serve(addr));
    }
    emco::controllers::run(hub, namespace).await
}
