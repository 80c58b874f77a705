//! EMCO operator: EMCO's resources as CRDs on a hub cluster, reconciled by controllers that act as
//! EMCO's microservices: `clm` (cluster registration), `dcm` (logical clouds), `orchestrator` (the
//! distributed application scheduler with its placement and action stages) and `rsync` (applies
//! AppContexts to member clusters and reports status back).

// kube-derive's repeated `printcolumn(type_ = ...)` looks like a duplicated attribute to clippy.
#![allow(clippy::duplicated_attributes)]

pub mod api;
pub mod clm;
pub mod controllers;
pub mod dcm;
pub mod fault;
pub mod finalizer;
pub mod gitops;
pub mod graph;
pub mod health;
pub mod hex;
pub mod inputs;
pub mod leader;
pub mod members;
pub mod memory;
pub mod metrics;
pub mod ncm;
pub mod orchestrator;
pub mod reconcile;
pub mod render;
pub mod rsync;

/// Installs rustls' ring provider as the process default (kube and the chart fetcher share it).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
