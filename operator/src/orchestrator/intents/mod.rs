//! The controller stage (pure): after generic placement, the controllers the DIG's `intents` name
//! run in priority order, each turning the placed resources into new placed resources. Only named
//! controllers run; a name that is no controller is refused earlier (resolve). A controller's
//! error fails the revision with its name; nothing is half-applied, as nothing is stored yet.

pub mod gac;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::api::gac::{FileRef, GenericActionIntent};

/// Controller names the DIG's `intents` may use, with their priority (lower runs first;
/// placement controllers before action controllers).
pub const BUILT_IN: [(&str, u32); 2] = [("genericPlacementIntent", 0), ("gac", 1000)];

/// The resources of every app on every cluster it was placed on: what controllers see and change.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Placed {
    pub apps: Vec<PlacedApp>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlacedApp {
    pub name: String,
    pub clusters: Vec<PlacedCluster>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlacedCluster {
    pub cluster: String,
    /// The Cluster's labels (EMCO cluster labels), for label-scoped intents.
    pub labels: BTreeMap<String, String>,
    pub resources: Vec<Value>,
}

/// The data of the ConfigMap and Secret keys an intent's files name.
pub type Files = BTreeMap<FileRef, Vec<u8>>;

/// An intent a DIG names, resolved.
#[derive(Debug, Clone)]
pub enum Intent {
    Gac { name: String, intent: Box<GenericActionIntent>, files: Files },
}

impl Intent {
    fn controller(&self) -> &'static str {
        match self {
            Intent::Gac { .. } => "gac",
        }
    }
}

/// A controller that failed, named.
#[derive(Debug, thiserror::Error)]
#[error("controller {controller} (intent {intent}): {message}")]
pub struct IntentError {
    pub controller: String,
    pub intent: String,
    pub message: String,
}

/// Runs the named controllers by priority; returns the placed resources and which ran, in order.
pub fn run(intents: &[Intent], mut placed: Placed) -> Result<(Placed, Vec<String>), IntentError> {
    let priority = |i: &Intent| BUILT_IN.iter().find(|(n, _)| *n == i.controller()).map_or(u32::MAX, |(_, p)| *p);
    let mut ordered: Vec<&Intent> = intents.iter().collect();
    ordered.sort_by_key(|i| priority(i));
    let mut ran = vec!["genericPlacementIntent".to_string()];
    for intent in ordered {
        placed = match intent {
            Intent::Gac { name, intent, files } => gac::apply(intent, files, placed)
                .map_err(|message| IntentError { controller: "gac".into(), intent: name.clone(), message })?,
        };
        ran.push(intent.controller().to_string());
    }
    Ok((placed, ran))
}
