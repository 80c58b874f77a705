//! The operator: runs every controller against the hub cluster of the current kubeconfig or
//! in-cluster configuration. `EMCO_NAMESPACE` (default `emco-system`) holds the member kubeconfigs.

use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn")))
        .init();
    emco::install_crypto_provider();
    let namespace = std::env::var("EMCO_NAMESPACE").unwrap_or_else(|_| "emco-system".into());
    let hub = kube::Client::try_default().await?;
    tracing::info!(%namespace, "emco-operator starting");
    emco::controller::run(hub, namespace).await
}
