//! The controller stage: after generic placement, the controllers the DIG's `intents` name run in
//! two phases. Placement controllers narrow and reorder each app's candidate clusters
//! ([`Candidates`]); after rendering, action controllers change the resources of each app on each
//! cluster ([`Placed`]). Within a phase, lower priority runs first. Only named controllers run; a
//! name that is no controller is refused earlier (resolve). A controller's error fails the revision
//! with its name; nothing is half-applied, as nothing is stored yet. Built-in controllers are pure
//! functions; external ones are called over HTTP (`external`).

pub mod dtc;
pub mod external;
pub mod gac;
pub mod hpa;
pub mod ovnaction;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::clm::NodeInventory;
use crate::api::controller::{ControllerSpec, ControllerType};
use crate::api::gac::{FileRef, GenericActionIntent};
use crate::api::hpa::HpaIntent;

/// Built-in controller names the DIG's `intents` may use.
pub const BUILT_IN: [&str; 5] = ["genericPlacementIntent", "gac", "hpa", "ovnaction", "dtc"];
/// Priorities of the built-in steps (external controllers choose theirs).
const HPA_PLACEMENT: u32 = 100;
const GAC: u32 = 1000;
const HPA_ACTION: u32 = 1100;
const OVNACTION: u32 = 1200;
const DTC: u32 = 1300;

/// Where each app may go: what placement controllers see and return.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Candidates {
    pub apps: Vec<CandidateApp>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CandidateApp {
    pub name: String,
    pub slots: Vec<Slot>,
}

/// One placement criterion's clusters: each gets a copy (`all`, an `allOf` entry), or the first
/// gets the one copy (`one`, an `anyOf`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    pub pick: Pick,
    pub clusters: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Pick {
    All,
    One,
}

impl Candidates {
    /// The clusters each app goes to: every cluster of an `all` slot, the first of a `one` slot.
    pub fn choose(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.apps
            .iter()
            .map(|app| {
                let chosen = app.slots.iter().flat_map(|s| match s.pick {
                    Pick::All => s.clusters.iter().take(usize::MAX),
                    Pick::One => s.clusters.iter().take(1),
                });
                (app.name.clone(), chosen.cloned().collect())
            })
            .collect()
    }

    /// Why these candidates leave an app nowhere to go, if they do: an empty `one` slot, or no
    /// cluster at all.
    pub fn stranded(&self) -> Option<String> {
        let app = self.apps.iter().find(|app| app.stranded())?;
        Some(format!("app {}: no candidate cluster left (an anyOf is empty, or every slot is)", app.name))
    }
}

impl CandidateApp {
    /// Whether the app has nowhere to go: an empty `one` slot, or no cluster in any slot.
    pub fn stranded(&self) -> bool {
        self.slots.iter().any(|s| s.pick == Pick::One && s.clusters.is_empty())
            || self.slots.iter().all(|s| s.clusters.is_empty())
    }
}

/// What a placement controller may know of a cluster of the logical cloud.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterFacts {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    /// The node inventory of the cluster controller's last probe.
    #[serde(default)]
    pub nodes: Vec<NodeInventory>,
    /// The Cluster's kv pairs (EMCO cluster kv-pairs).
    #[serde(default)]
    pub kv: BTreeMap<String, String>,
    /// Its ClusterProvider.
    #[serde(default)]
    pub provider: String,
    /// The group/versions it serves (discovery), e.g. `security.istio.io/v1`.
    #[serde(default, skip_serializing)]
    pub api_versions: Vec<String>,
}

/// The resources of every app on every cluster it was placed on: what action controllers see and
/// return.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Placed {
    pub apps: Vec<PlacedApp>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PlacedApp {
    pub name: String,
    pub clusters: Vec<PlacedCluster>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PlacedCluster {
    pub cluster: String,
    /// The Cluster's labels (EMCO cluster labels), for label-scoped intents.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The Cluster's kv pairs (EMCO cluster kv-pairs).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kv: BTreeMap<String, String>,
    /// Shared by the clusters that render alike until a controller changes one's
    /// (`Arc::make_mut`): a big chart's output is held once, not once per cluster.
    pub resources: std::sync::Arc<Vec<Value>>,
}

/// The data of the ConfigMap and Secret keys an intent's files name.
pub type Files = BTreeMap<FileRef, Vec<u8>>;

/// An intent a DIG names, resolved.
#[derive(Debug, Clone)]
pub enum Intent {
    Gac {
        name: String,
        intent: Box<GenericActionIntent>,
        files: Files,
    },
    Hpa {
        name: String,
        intent: Box<HpaIntent>,
    },
    Ovn {
        name: String,
        intent: Box<crate::api::ovnaction::NetworkIntent>,
        /// The networks defined for each cluster (ncm).
        networks: ovnaction::Networks,
    },
    Dtc {
        name: String,
        intent: Box<crate::api::dtc::TrafficIntent>,
    },
    /// An intent for a registered external controller, which reads it itself.
    External {
        controller: String,
        intent: String,
        spec: ControllerSpec,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Placement,
    Action,
}

impl Intent {
    pub fn controller(&self) -> &str {
        match self {
            Intent::Gac { .. } => "gac",
            Intent::Hpa { .. } => "hpa",
            Intent::Ovn { .. } => "ovnaction",
            Intent::Dtc { .. } => "dtc",
            Intent::External { controller, .. } => controller,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Intent::Gac { name, .. }
            | Intent::Hpa { name, .. }
            | Intent::Ovn { name, .. }
            | Intent::Dtc { name, .. } => name,
            Intent::External { intent, .. } => intent,
        }
    }

    /// Its priority in `phase`, when it has a step there.
    fn priority(&self, phase: Phase) -> Option<u32> {
        match (self, phase) {
            (Intent::Hpa { .. }, Phase::Placement) => Some(HPA_PLACEMENT),
            (Intent::Hpa { .. }, Phase::Action) => Some(HPA_ACTION),
            (Intent::Gac { .. }, Phase::Action) => Some(GAC),
            (Intent::Ovn { .. }, Phase::Action) => Some(OVNACTION),
            (Intent::Dtc { .. }, Phase::Action) => Some(DTC),
            (Intent::Gac { .. } | Intent::Ovn { .. } | Intent::Dtc { .. }, Phase::Placement) => None,
            (Intent::External { spec, .. }, _) => {
                let type_ = match phase {
                    Phase::Placement => ControllerType::Placement,
                    Phase::Action => ControllerType::Action,
                };
                (spec.type_ == type_).then_some(spec.priority)
            }
        }
    }
}

/// A controller that failed, named.
#[derive(Debug, thiserror::Error)]
#[error("controller {controller} (intent {intent}): {message}")]
pub struct IntentError {
    pub controller: String,
    pub intent: String,
    /// The condition reason.
    pub reason: &'static str,
    pub message: String,
}

impl IntentError {
    fn new(intent: &Intent, reason: &'static str, message: String) -> IntentError {
        IntentError { controller: intent.controller().into(), intent: intent.name().into(), reason, message }
    }
}

/// The controller stage of one revision: the DIG's intents and what external controllers are told.
pub struct Stage<'a> {
    pub intents: &'a [Intent],
    pub about: external::About,
    pub clusters: Vec<ClusterFacts>,
    /// The namespace the apps run in on the members.
    pub namespace: String,
}

impl Stage<'_> {
    /// The intents with a step in `phase`, in the order they run.
    fn steps(&self, phase: Phase) -> Vec<&Intent> {
        let mut steps: Vec<(u32, &Intent)> =
            self.intents.iter().filter_map(|i| Some((i.priority(phase)?, i))).collect();
        steps.sort_by(|a, b| (a.0, a.1.controller()).cmp(&(b.0, b.1.controller())));
        steps.into_iter().map(|(_, i)| i).collect()
    }

    /// Runs the placement controllers; `ran` gets their names.
    pub async fn place(&self, mut candidates: Candidates, ran: &mut Vec<String>) -> Result<Candidates, IntentError> {
        for intent in self.steps(Phase::Placement) {
            candidates = match intent {
                Intent::Hpa { intent: hpa, .. } => hpa::place(hpa, candidates, &self.clusters)
                    .map_err(|m| IntentError::new(intent, "NoClusterFits", m))?,
                Intent::External { spec, .. } => {
                    let about = self.about.of(intent, "PlacementRequest");
                    external::place(spec, about, &self.clusters, candidates)
                        .await
                        .map_err(|m| IntentError::new(intent, "ControllerFailed", m))?
                }
                Intent::Gac { .. } | Intent::Ovn { .. } | Intent::Dtc { .. } => candidates,
            };
            if let Some(message) = candidates.stranded() {
                return Err(IntentError::new(intent, "NoClusterFits", message));
            }
            ran.push(intent.controller().to_string());
        }
        Ok(candidates)
    }

    /// Runs the action controllers; `ran` gets their names.
    pub async fn act(&self, mut placed: Placed, ran: &mut Vec<String>) -> Result<Placed, IntentError> {
        for intent in self.steps(Phase::Action) {
            let failed = |m| IntentError::new(intent, "ControllerFailed", m);
            placed = match intent {
                Intent::Gac { intent: gac, files, .. } => gac::apply(gac, files, placed).map_err(failed)?,
                Intent::Hpa { intent: hpa, .. } => hpa::act(hpa, placed).map_err(failed)?,
                Intent::Ovn { intent: ovn, networks, .. } => ovnaction::apply(ovn, networks, placed)
                    .map_err(|(reason, m)| IntentError::new(intent, reason, m))?,
                Intent::Dtc { intent: dtc, .. } => dtc::apply(dtc, &self.clusters, &self.namespace, placed)
                    .map_err(|(reason, m)| IntentError::new(intent, reason, m))?,
                Intent::External { spec, .. } => {
                    let about = self.about.of(intent, "ActionRequest");
                    external::act(spec, about, placed).await.map_err(failed)?
                }
            };
            ran.push(intent.controller().to_string());
        }
        Ok(placed)
    }
}
