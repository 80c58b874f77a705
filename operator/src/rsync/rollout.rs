//! Progressive rollout (pure): which clusters may take a revision now ([`admit`], before a
//! pass applies anything) and how the clusters that took it fare ([`observe`], after). The state
//! is the AppContext's `status.rollout`, so a restarted operator goes on where it was.
//!
//! A cluster takes the revision when its group's turn has come (every cluster of the groups
//! before is done) and fewer than the window's clusters are still in progress. It is done once
//! Ready for `minReadySeconds`; it fails when a resource is refused or a hook fails, or when it is
//! not Ready `progressDeadlineSeconds` after it started. A failure pauses the rollout (unless
//! `onFailure: Continue`) until the cluster recovers or a rollback replaces the revision.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::core::SelectorExt;

use crate::api::orchestrator::{OnFailure, Rollout};
use crate::api::rsync::{RolloutCluster, RolloutPhase, RolloutStatus};

/// A cluster of the revision, where the rollout puts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub cluster: String,
    pub group: Option<String>,
    /// The group's position; clusters in no group come after every group.
    pub rank: usize,
}

/// How a cluster that took the revision is doing in this pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Ready,
    Progressing,
    /// A resource refused or a hook failed: the first message.
    Failing(String),
}

impl Health {
    /// How bad: a cluster is as healthy as the worst of its apps.
    pub fn rank(&self) -> u8 {
        match self {
            Health::Ready => 0,
            Health::Progressing => 1,
            Health::Failing(_) => 2,
        }
    }
}

/// The revision's clusters (with their labels) in rollout order.
pub fn order(rollout: &Rollout, clusters: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<Placed> {
    let selectors: Vec<Option<kube::core::Selector>> =
        rollout.groups.iter().map(|g| kube::core::Selector::try_from(g.cluster_selector.clone()).ok()).collect();
    let mut placed: Vec<Placed> = clusters
        .iter()
        .map(|(cluster, labels)| {
            let rank = selectors.iter().position(|s| s.as_ref().is_some_and(|s| s.matches(labels)));
            Placed {
                cluster: cluster.clone(),
                group: rank.map(|r| rollout.groups[r].name.clone()),
                rank: rank.unwrap_or(rollout.groups.len()),
            }
        })
        .collect();
    placed.sort_by(|a, b| (a.rank, &a.cluster).cmp(&(b.rank, &b.cluster)));
    placed
}

/// The rollout with this pass's new clusters added: those whose turn has come. `applied` are
/// clusters that hold the revision already without a rollout entry (the rollout was set during
/// the operation): they count as started now.
pub fn admit(
    rollout: &Rollout,
    order: &[Placed],
    previous: Option<&RolloutStatus>,
    applied: &BTreeSet<String>,
    now: Timestamp,
) -> RolloutStatus {
    let mut status = previous.cloned().unwrap_or_default();
    status.clusters.retain(|c| order.iter().any(|p| p.cluster == c.cluster));
    for p in order.iter().filter(|p| applied.contains(&p.cluster)) {
        if !status.clusters.iter().any(|c| c.cluster == p.cluster) {
            status.clusters.push(started(p, now));
        }
    }
    if !halted(rollout, &status) {
        let done = |cluster: &str| status.clusters.iter().any(|c| c.cluster == cluster && finished(rollout, c));
        let turn = order.iter().find(|p| !done(&p.cluster)).map_or(usize::MAX, |p| p.rank);
        let running = status.clusters.iter().filter(|c| !finished(rollout, c)).count();
        let room = window(rollout, order.len()).saturating_sub(running);
        let next: Vec<RolloutCluster> = order
            .iter()
            .filter(|p| !status.clusters.iter().any(|c| c.cluster == p.cluster))
            .take_while(|p| p.rank <= turn)
            .take(room)
            .map(|p| started(p, now))
            .collect();
        status.clusters.extend(next);
    }
    tally(rollout, order, &mut status);
    status
}

/// Records this pass's `health` of the clusters that took the revision; when to look again: at
/// once when a cluster became done with clusters waiting, else when one will be done or fail.
pub fn observe(
    rollout: &Rollout,
    order: &[Placed],
    status: &mut RolloutStatus,
    health: &BTreeMap<String, Health>,
    now: Timestamp,
) -> Option<Duration> {
    let min_ready = SignedDuration::from_secs(rollout.min_ready_seconds.into());
    let deadline = SignedDuration::from_secs(rollout.progress_deadline_seconds.into());
    let finished_before = status.clusters.iter().filter(|c| finished(rollout, c)).count();
    let mut wake: Option<Timestamp> = None;
    let mut at = |t: Timestamp| wake = Some(wake.map_or(t, |w| w.min(t)));
    for c in status.clusters.iter_mut().filter(|c| c.phase != RolloutPhase::Done) {
        match health.get(&c.cluster).unwrap_or(&Health::Progressing) {
            Health::Ready => {
                let since = c.ready_since.get_or_insert(Time(now)).0;
                if now >= since + min_ready {
                    (c.phase, c.message) = (RolloutPhase::Done, None);
                } else {
                    (c.phase, c.message) = (RolloutPhase::Progressing, None);
                    at(since + min_ready);
                }
            }
            Health::Failing(message) => {
                (c.phase, c.message, c.ready_since) = (RolloutPhase::Failed, Some(message.clone()), None);
            }
            Health::Progressing => {
                c.ready_since = None;
                if now >= c.started.0 + deadline {
                    let late = format!("not Ready {}s after it took the revision", rollout.progress_deadline_seconds);
                    (c.phase, c.message) = (RolloutPhase::Failed, Some(late));
                } else if c.phase == RolloutPhase::Progressing {
                    at(c.started.0 + deadline);
                }
            }
        }
    }
    tally(rollout, order, status);
    // A cluster just done makes room: the next pass admits the next one at once.
    if status.clusters.iter().filter(|c| finished(rollout, c)).count() > finished_before && !status.waiting.is_empty() {
        wake = Some(now);
    }
    wake.map(|w| Duration::try_from(w.duration_since(now)).unwrap_or_default().max(Duration::from_millis(100)))
}

/// Whether the rollout has reached every cluster and each is done.
pub fn complete(status: &RolloutStatus, rollout: &Rollout) -> bool {
    status.waiting.is_empty() && status.clusters.iter().all(|c| finished(rollout, c))
}

fn started(p: &Placed, now: Timestamp) -> RolloutCluster {
    RolloutCluster {
        cluster: p.cluster.clone(),
        group: p.group.clone(),
        phase: RolloutPhase::Progressing,
        started: Time(now),
        ready_since: None,
        message: None,
    }
}

/// Done, or failed with `onFailure: Continue`: it no longer holds the rollout.
fn finished(rollout: &Rollout, c: &RolloutCluster) -> bool {
    c.phase == RolloutPhase::Done || (c.phase == RolloutPhase::Failed && rollout.on_failure == OnFailure::Continue)
}

fn halted(rollout: &Rollout, status: &RolloutStatus) -> bool {
    rollout.paused
        || (rollout.on_failure == OnFailure::Pause && status.clusters.iter().any(|c| c.phase == RolloutPhase::Failed))
}

/// How many clusters may be in progress at once.
fn window(rollout: &Rollout, total: usize) -> usize {
    let unavailable = rollout.max_unavailable.as_ref().map(|m| match m {
        IntOrString::Int(n) => (*n).max(1) as usize,
        IntOrString::String(s) => {
            let percent = s.trim_end_matches('%').trim().parse::<usize>().unwrap_or(100);
            (total * percent / 100).max(1)
        }
    });
    let concurrent = rollout.max_concurrent_clusters.map(|n| n.max(1) as usize);
    [unavailable, concurrent].into_iter().flatten().min().unwrap_or(usize::MAX)
}

/// Progress, the waiting clusters, whether it is paused and why.
fn tally(rollout: &Rollout, order: &[Placed], status: &mut RolloutStatus) {
    let done = status.clusters.iter().filter(|c| c.phase == RolloutPhase::Done).count();
    status.progress = format!("{done}/{}", order.len());
    status.waiting = order
        .iter()
        .filter(|p| !status.clusters.iter().any(|c| c.cluster == p.cluster))
        .map(|p| p.cluster.clone())
        .collect();
    status.paused = halted(rollout, status) && !status.waiting.is_empty();
    let failed = status.clusters.iter().find(|c| c.phase == RolloutPhase::Failed);
    status.message = match failed {
        Some(c) if rollout.on_failure == OnFailure::Pause => Some(format!(
            "paused: {} failed ({}); {} cluster(s) keep the previous revision",
            c.cluster,
            c.message.as_deref().unwrap_or("failed"),
            status.waiting.len()
        )),
        _ if rollout.paused && !status.waiting.is_empty() => Some(format!(
            "paused by spec.rollout.paused; {} cluster(s) keep the previous revision",
            status.waiting.len()
        )),
        _ => None,
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::orchestrator::RolloutGroup;

    fn rollout(concurrent: u32) -> Rollout {
        let edge = serde_json::from_value(serde_json::json!({"matchLabels": {"tier": "edge"}})).unwrap();
        Rollout {
            max_concurrent_clusters: Some(concurrent),
            groups: vec![RolloutGroup { name: "edge".into(), cluster_selector: edge }],
            min_ready_seconds: 5,
            progress_deadline_seconds: 60,
            ..Default::default()
        }
    }

    fn fleet() -> Vec<Placed> {
        let labels = |tier: &str| BTreeMap::from([("tier".to_string(), tier.to_string())]);
        let clusters = BTreeMap::from([
            ("cloud01".to_string(), labels("cloud")),
            ("edge02".to_string(), labels("edge")),
            ("edge01".to_string(), labels("edge")),
        ]);
        order(&rollout(1), &clusters)
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn names(s: &RolloutStatus) -> Vec<&str> {
        s.clusters.iter().map(|c| c.cluster.as_str()).collect()
    }

    #[test]
    fn groups_go_in_order_and_names_within_a_group() {
        let o = fleet();
        let got: Vec<(&str, usize)> = o.iter().map(|p| (p.cluster.as_str(), p.rank)).collect();
        assert_eq!(got, [("edge01", 0), ("edge02", 0), ("cloud01", 1)]);
    }

    #[test]
    fn one_cluster_at_a_time_each_ready_for_min_ready_seconds() {
        let (r, o) = (rollout(1), fleet());
        let mut s = admit(&r, &o, None, &BTreeSet::new(), at(0));
        assert_eq!((names(&s), s.waiting.len()), (vec!["edge01"], 2));
        let ready = |c: &str| BTreeMap::from([(c.to_string(), Health::Ready)]);
        let wake = observe(&r, &o, &mut s, &ready("edge01"), at(1));
        assert_eq!(wake, Some(Duration::from_secs(5)), "wakes when minReadySeconds are over");
        assert_eq!(names(&admit(&r, &o, Some(&s), &BTreeSet::new(), at(2))), ["edge01"], "not done yet");
        observe(&r, &o, &mut s, &ready("edge01"), at(6));
        let s = admit(&r, &o, Some(&s), &BTreeSet::new(), at(6));
        assert_eq!((names(&s), s.progress.as_str()), (vec!["edge01", "edge02"], "1/3"));
    }

    #[test]
    fn a_group_waits_for_the_group_before_even_with_room() {
        let (r, o) = (rollout(5), fleet());
        let mut s = admit(&r, &o, None, &BTreeSet::new(), at(0));
        assert_eq!(names(&s), ["edge01", "edge02"]);
        let health = BTreeMap::from([("edge01".to_string(), Health::Ready), ("edge02".into(), Health::Progressing)]);
        observe(&r, &o, &mut s, &health, at(10));
        observe(&r, &o, &mut s, &health, at(20));
        assert_eq!(names(&admit(&r, &o, Some(&s), &BTreeSet::new(), at(20))), ["edge01", "edge02"]);
    }

    #[test]
    fn a_failure_pauses_until_it_recovers_and_continue_goes_on() {
        let (mut r, o) = (rollout(1), fleet());
        let mut s = admit(&r, &o, None, &BTreeSet::new(), at(0));
        observe(&r, &o, &mut s, &BTreeMap::new(), at(61));
        assert_eq!(s.clusters[0].phase, RolloutPhase::Failed, "not Ready by the deadline");
        let held = admit(&r, &o, Some(&s), &BTreeSet::new(), at(62));
        assert!(held.paused && names(&held) == ["edge01"], "{held:?}");
        assert!(held.message.unwrap().contains("edge01 failed (not Ready 60s"));
        r.on_failure = OnFailure::Continue;
        assert_eq!(names(&admit(&r, &o, Some(&s), &BTreeSet::new(), at(62))), ["edge01", "edge02"]);
        r.on_failure = OnFailure::Pause;
        observe(&r, &o, &mut s, &BTreeMap::from([("edge01".to_string(), Health::Ready)]), at(70));
        observe(&r, &o, &mut s, &BTreeMap::from([("edge01".to_string(), Health::Ready)]), at(75));
        assert_eq!(names(&admit(&r, &o, Some(&s), &BTreeSet::new(), at(75))), ["edge01", "edge02"], "recovered");
    }

    #[test]
    fn paused_holds_and_percentages_round_down_but_never_to_zero() {
        let (mut r, o) = (rollout(1), fleet());
        r.paused = true;
        let s = admit(&r, &o, None, &BTreeSet::from(["edge02".to_string()]), at(0));
        assert_eq!((names(&s), s.paused), (vec!["edge02"], true), "what holds the revision already counts");
        r.max_concurrent_clusters = None;
        r.max_unavailable = Some(IntOrString::String("50%".into()));
        assert_eq!(window(&r, 3), 1);
        assert_eq!(window(&r, 10), 5);
        r.max_unavailable = Some(IntOrString::String("10%".into()));
        assert_eq!(window(&r, 3), 1);
    }
}
