//! Stage 3, place (pure, given the clusters of the logical cloud): EMCO's generic placement.
//! Each `allOf` entry gives a copy to every cluster it matches (a nested `anyOf` gives one copy to
//! the first cluster it matches); a top-level `anyOf` gives exactly one copy, to the first match.
//! Clusters outside the DIG's logical cloud are never candidates. Placement controllers narrow and
//! reorder the candidates before the choice is made (`Candidates::choose`).

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;
use kube::core::SelectorExt;

use super::intents::{CandidateApp, Candidates, Pick, Slot};
use crate::api::clm::Cluster;
use crate::api::orchestrator::{AppIntent, ClusterMatchFields, GenericPlacementIntent};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlaceError {
    #[error("app {app}: {criterion} matches no cluster of logical cloud {logical_cloud}")]
    NoClusterMatched { app: String, criterion: String, logical_cloud: String },
    #[error("app {app}: cluster selector {criterion} is invalid: {message}")]
    InvalidSelector { app: String, criterion: String, message: String },
}

impl PlaceError {
    pub fn reason(&self) -> &'static str {
        match self {
            PlaceError::NoClusterMatched { .. } => "NoClusterMatched",
            PlaceError::InvalidSelector { .. } => "InvalidClusterSelector",
        }
    }
}

/// The clusters each app goes to, by app name (cluster names sorted).
pub type Placement = BTreeMap<String, BTreeSet<String>>;

/// The candidate clusters of every app named in `intent` among `clusters` (the logical cloud's):
/// one slot per `allOf` entry (a nested `anyOf` makes it a pick-one slot) and one pick-one slot for
/// a top-level `anyOf`, candidates in the order the criteria list them.
pub fn place(
    intent: &GenericPlacementIntent,
    clusters: &[Cluster],
    logical_cloud: &str,
) -> Result<Candidates, PlaceError> {
    let mut sorted: Vec<&Cluster> = clusters.iter().collect();
    sorted.sort_by_key(|c| c.name_any());
    let mut candidates = Candidates::default();
    for app_intent in &intent.spec.app_intents {
        let slots = slots(app_intent, &sorted, logical_cloud)?;
        match candidates.apps.iter_mut().find(|a| a.name == app_intent.app) {
            Some(app) => app.slots.extend(slots),
            None => candidates.apps.push(CandidateApp { name: app_intent.app.clone(), slots }),
        }
    }
    Ok(candidates)
}

fn slots(intent: &AppIntent, clusters: &[&Cluster], lc: &str) -> Result<Vec<Slot>, PlaceError> {
    let mut slots = Vec::new();
    for entry in &intent.all_of {
        slots.push(if entry.any_of.is_empty() {
            Slot { pick: Pick::All, clusters: matching(&intent.app, &entry.matcher, clusters, lc)? }
        } else {
            Slot {
                pick: Pick::One,
                clusters: any_of(&intent.app, entry.any_of.iter().map(|m| &m.matcher), clusters, lc)?,
            }
        });
    }
    if !intent.any_of.is_empty() {
        let clusters = any_of(&intent.app, intent.any_of.iter().map(|m| &m.matcher), clusters, lc)?;
        slots.push(Slot { pick: Pick::One, clusters });
    }
    Ok(slots)
}

/// The clusters the criteria match, criterion by criterion; at least one.
fn any_of<'a>(
    app: &str,
    criteria: impl Iterator<Item = &'a ClusterMatchFields> + Clone,
    clusters: &[&Cluster],
    lc: &str,
) -> Result<Vec<String>, PlaceError> {
    let mut found: Vec<String> = Vec::new();
    for criterion in criteria.clone() {
        match matching(app, criterion, clusters, lc) {
            Ok(matched) => found.extend(matched.into_iter().filter(|c| !found.contains(c)).collect::<Vec<_>>()),
            Err(PlaceError::NoClusterMatched { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    if found.is_empty() {
        let all: Vec<String> = criteria.map(describe).collect();
        return Err(PlaceError::NoClusterMatched {
            app: app.into(),
            criterion: format!("anyOf [{}]", all.join(", ")),
            logical_cloud: lc.into(),
        });
    }
    Ok(found)
}

/// Clusters matching one criterion; never empty on success.
fn matching(app: &str, m: &ClusterMatchFields, clusters: &[&Cluster], lc: &str) -> Result<Vec<String>, PlaceError> {
    let selector = match &m.cluster_selector {
        Some(s) => Some(kube::core::Selector::try_from(s.clone()).map_err(|e| PlaceError::InvalidSelector {
            app: app.into(),
            criterion: describe(m),
            message: e.to_string(),
        })?),
        None => None,
    };
    let found: Vec<String> = clusters
        .iter()
        .filter(|c| m.cluster_provider.as_ref().is_none_or(|p| p == &c.spec.provider))
        .filter(|c| m.cluster.as_ref().is_none_or(|n| n == &c.name_any()))
        .filter(|c| m.cluster_label.as_ref().is_none_or(|l| c.labels().contains_key(l)))
        .filter(|c| selector.as_ref().is_none_or(|s| s.matches(c.labels())))
        .map(|c| c.name_any())
        .collect();
    if found.is_empty() {
        return Err(PlaceError::NoClusterMatched { app: app.into(), criterion: describe(m), logical_cloud: lc.into() });
    }
    Ok(found)
}

fn describe(m: &ClusterMatchFields) -> String {
    let what = if let Some(c) = &m.cluster {
        format!("cluster {c}")
    } else if let Some(l) = &m.cluster_label {
        format!("clusterLabel {l}")
    } else {
        format!("clusterSelector {}", serde_json::to_string(&m.cluster_selector).unwrap_or_default())
    };
    match &m.cluster_provider {
        Some(p) => format!("{what} of provider {p}"),
        None => what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(name: &str, labels: &[&str]) -> Cluster {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "clm.emco.io/v1alpha1", "kind": "Cluster",
            "metadata": {"name": name, "labels": labels.iter().map(|l| (l.to_string(), "")).collect::<BTreeMap<_, _>>()},
            "spec": {"provider": "p", "kubeconfig": {"secretRef": {"namespace": "emco-system", "name": name}}}
        }))
        .unwrap()
    }

    fn intent(yaml: &str) -> GenericPlacementIntent {
        let spec: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
        serde_json::from_value(serde_json::json!({
            "apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "GenericPlacementIntent",
            "metadata": {"name": "gpi", "namespace": "p"}, "spec": spec
        }))
        .unwrap()
    }

    fn clusters() -> Vec<Cluster> {
        vec![
            cluster("edge02", &["edge"]),
            cluster("edge01", &["edge"]),
            cluster("cloud01", &["cloud"]),
            cluster("cloud02", &["cloud"]),
        ]
    }

    fn names(p: &Candidates, app: &str) -> Vec<String> {
        p.choose()[app].iter().cloned().collect()
    }

    #[test]
    fn all_of_by_label_copies_to_every_match() {
        let p = place(
            &intent("appIntents: [{app: e, allOf: [{clusterProvider: p, clusterLabel: edge}]}]"),
            &clusters(),
            "lc",
        )
        .unwrap();
        assert_eq!(names(&p, "e"), ["edge01", "edge02"]);
    }

    #[test]
    fn any_of_picks_exactly_one_the_first_that_matches() {
        let p = place(
            &intent("appIntents: [{app: c, anyOf: [{cluster: nowhere}, {clusterLabel: cloud}, {cluster: edge01}]}]"),
            &clusters(),
            "lc",
        )
        .unwrap();
        assert_eq!(names(&p, "c"), ["cloud01"]);
    }

    #[test]
    fn nested_any_of_in_all_of_and_selectors() {
        let y = "appIntents: [{app: a, allOf: [{cluster: edge02}, {anyOf: [{clusterLabel: cloud}]}, {clusterSelector: {matchExpressions: [{key: edge, operator: Exists}]}}]}]";
        let p = place(&intent(y), &clusters(), "lc").unwrap();
        assert_eq!(names(&p, "a"), ["cloud01", "edge01", "edge02"]);
    }

    #[test]
    fn a_cluster_outside_the_logical_cloud_or_of_another_provider_never_matches() {
        let e = place(&intent("appIntents: [{app: a, allOf: [{cluster: far01}]}]"), &clusters(), "lc").unwrap_err();
        assert_eq!(e.reason(), "NoClusterMatched");
        let e = place(
            &intent("appIntents: [{app: a, allOf: [{clusterProvider: q, clusterLabel: edge}]}]"),
            &clusters(),
            "lc",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("clusterLabel edge of provider q matches no cluster of logical cloud lc"),
            "{e}"
        );
    }
}
