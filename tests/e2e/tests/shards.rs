//! Sharded rsync: two replicas split the bed's members between them. Both apply, each only to
//! its own clusters; an update is pruned on every cluster before `Pruned` is set; when one replica
//! dies, the other takes its clusters over (and repairs drift there).

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use emco::api::rsync::AppContext;
use emco::rsync::shard::{CLUSTERS, LABEL, lease_name, owner};
use emco_e2e::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde_json::json;

const LOG_FILTER: &str = "info,kube=warn,emco::rsync=debug";

/// Two replica names that split the bed's members with at least one each.
fn two_replicas(members: &[String]) -> (String, String) {
    (0..)
        .map(|i| (format!("shard-a-{i}"), format!("shard-b-{i}")))
        .find(|(a, b)| {
            let shards = [lease_name(a), lease_name(b)];
            let of_a = members.iter().filter(|m| owner(&shards, m) == Some(shards[0].as_str())).count();
            of_a > 0 && of_a < members.len()
        })
        .expect("some pair splits the members")
}

/// The clusters each shard Lease says it works on, by Lease name.
async fn shard_clusters(leases: &Api<Lease>) -> Result<Vec<(String, BTreeSet<String>)>> {
    let list = leases.list(&ListParams::default().labels(LABEL)).await?;
    Ok(list
        .items
        .iter()
        .map(|l| {
            let clusters = l.annotations().get(CLUSTERS).map(String::as_str).unwrap_or_default();
            (l.name_any(), clusters.split(',').filter(|c| !c.is_empty()).map(String::from).collect())
        })
        .collect())
}

/// Clusters named in `cluster=` fields of "applied" lines of a replica's log for the contexts
/// of DIG `dig`.
fn applied_to(log: &str, dig: &str) -> BTreeSet<String> {
    log.lines()
        .filter(|l| l.contains(" applied") && l.contains("DEBUG") && l.contains(&format!("appcontext={dig}-")))
        // The event's own field, the last one (a span before it may name the cluster too).
        .filter_map(|l| l.rsplit("cluster=").next()?.split_whitespace().next())
        .map(|c| c.trim_end_matches(['}', ':']).to_string())
        .collect()
}

fn probe_with_extra(extra: bool, greeting: &str) -> Probe {
    let mut files = probe_chart_files().to_vec();
    files.push((
        "templates/extra.yaml",
        "{% if Values.extra %}apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata: {}\n{% endif %}\n",
    ));
    let overrides = json!([{"app": "probe", "values": {"greeting": greeting, "extra": extra}}]);
    Probe { overrides, chart: Some(files), ..Probe::new(json!({"app": "probe", "allOf": everywhere()})) }
}

fn everywhere() -> serde_json::Value {
    json!(Bed::get().members.iter().map(|m| json!({"cluster": m})).collect::<Vec<_>>())
}

#[tokio::test]
async fn two_replicas_apply_to_disjoint_clusters_and_one_takes_over_when_the_other_dies() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let leases = Api::<Lease>::namespaced(hub.clone(), "emco-system");
    let (a, b) = two_replicas(&bed.members);
    let (lease_a, lease_b) = (lease_name(&a), lease_name(&b));
    let shards = [lease_a.clone(), lease_b.clone()];
    let of = |shard: &str| -> BTreeSet<String> {
        bed.members.iter().filter(|m| owner(&shards, m) == Some(shard)).cloned().collect()
    };
    let (clusters_a, clusters_b) = (of(&lease_a), of(&lease_b));

    let log_a = bed.dir.join("operator.log");
    let skip_a = std::fs::metadata(&log_a).map(|m| m.len() as usize).unwrap_or(0);
    restart_operator_with(&[("EMCO_RSYNC_SHARDED", "true"), ("POD_NAME", &a), ("RUST_LOG", LOG_FILTER)])?;
    let log_b = bed.dir.join(format!("operator-{b}.log"));
    let mut replica_b = tokio::process::Command::new(repo_root().join("target/debug/emco-operator"))
        .env("KUBECONFIG", bed.dir.join("operator.kubeconfig"))
        .env("EMCO_NAMESPACE", "emco-system")
        .env("EMCO_REPOSITORY_ADDRESSES", "127.0.0.2")
        .env("EMCO_RSYNC_SHARDED", "true")
        .env("POD_NAME", &b)
        .env("RUST_LOG", LOG_FILTER)
        .stdout(Stdio::from(std::fs::File::create(&log_b)?))
        .stderr(Stdio::from(std::fs::File::create(log_b.with_extension("err"))?))
        .kill_on_drop(true)
        .spawn()?;
    let replicas = [(lease_a.as_str(), &clusters_a, log_a, skip_a), (lease_b.as_str(), &clusters_b, log_b.clone(), 0)];
    let result = scenario(&bed, &hub, &leases, replicas, &mut replica_b).await;
    replica_b.start_kill().ok();
    replica_b.wait().await.ok();
    leases.delete(&lease_b, &Default::default()).await.ok();
    restart_operator()?;
    let _ = leases.delete(&lease_a, &Default::default()).await;
    println!("replica B's log: {}", log_b.display());
    result
}

async fn scenario(
    bed: &Bed,
    hub: &kube::Client,
    leases: &Api<Lease>,
    [(lease_a, clusters_a, log_a, skip_a), (lease_b, clusters_b, log_b, _)]: [(&str, &BTreeSet<String>, std::path::PathBuf, usize);
        2],
    replica_b: &mut tokio::process::Child,
) -> Result<()> {
    let members: BTreeSet<String> = bed.members.iter().cloned().collect();
    // Both shards are live and say which clusters they work on: disjoint, covering the members.
    wait_until("both shard Leases split the members", Duration::from_secs(60), || async {
        let found = shard_clusters(leases).await?;
        let get = |name: &str| found.iter().find(|(n, _)| n == name).map(|(_, c)| c.intersection(&members).cloned());
        let (Some(a), Some(b)) = (get(lease_a), get(lease_b)) else { return Ok(Err(format!("{found:?}"))) };
        let (a, b): (BTreeSet<String>, BTreeSet<String>) = (a.collect(), b.collect());
        Ok(if a == *clusters_a && b == *clusters_b { Ok(()) } else { Err(format!("{found:?}")) })
    })
    .await?;

    let ns = format!("shards-{}", unique_suffix());
    project(hub, &ns).await?;
    probe_with_extra(true, "one").apply(hub, bed, &ns).await?;
    settled(hub, &ns, 1).await?;
    for m in &bed.members {
        let cms = Api::<ConfigMap>::namespaced(bed.client(m).await, &ns);
        assert!(cms.get_opt("extra").await?.is_some(), "extra on {m}");
    }
    let log = |path: &std::path::Path, skip: usize| -> Result<String> {
        let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
        Ok(text.get(skip..).unwrap_or_default().to_string())
    };
    let (seen_a, seen_b) = (applied_to(&log(&log_a, skip_a)?, &ns), applied_to(&log(&log_b, 0)?, &ns));
    assert_eq!(seen_a, *clusters_a, "replica A applied to");
    assert_eq!(seen_b, *clusters_b, "replica B applied to");

    // An update that drops `extra`: pruned on every cluster, by the shard that has it, and only
    // then is the revision Pruned and the replaced one let go.
    probe_with_extra(false, "two").apply(hub, bed, &ns).await?;
    settled(hub, &ns, 2).await?;
    let contexts = Api::<AppContext>::namespaced(hub.clone(), &ns);
    wait_until("revision 2 pruned on every cluster", Duration::from_secs(60), || async {
        let list = contexts.list(&ListParams::default()).await?;
        let Some(two) = list.items.iter().find(|c| c.spec.revision == 2) else {
            return Ok(Err("no revision 2".into()));
        };
        let status = two.status.clone().unwrap_or_default();
        let pruned = emco::api::condition::is_true(&status.conditions, emco::api::condition::ConditionType::Pruned);
        let pruned_on: BTreeSet<String> = status.pruned_on.iter().cloned().collect();
        Ok(if pruned && pruned_on.is_superset(&members) { Ok(()) } else { Err(format!("{status:?}")) })
    })
    .await?;
    for m in &bed.members {
        let cms = Api::<ConfigMap>::namespaced(bed.client(m).await, &ns);
        assert!(cms.get_opt("extra").await?.is_none(), "extra still on {m}");
        let greeting = cms.get("probe").await?.data.unwrap_or_default().remove("greeting");
        assert_eq!(greeting.as_deref(), Some("two"), "greeting on {m}");
    }

    // Replica B dies without a word: A takes B's clusters when B's Lease expires.
    replica_b.start_kill()?;
    replica_b.wait().await?;
    let died = Instant::now();
    wait_until("replica A works on every member", Duration::from_secs(60), || async {
        let found = shard_clusters(leases).await?;
        let a = found.iter().find(|(n, _)| n == lease_a).map(|(_, c)| c.clone()).unwrap_or_default();
        Ok(if a.is_superset(&members) { Ok(()) } else { Err(format!("{found:?}")) })
    })
    .await?;
    println!("takeover after {:?} (shard Leases last 15 s)", died.elapsed());
    let taken = clusters_b.iter().next().expect("B had a cluster");
    let cms = Api::<ConfigMap>::namespaced(bed.client(taken).await, &ns);
    let before = cms.get("probe").await?.metadata.uid;
    cms.delete("probe", &Default::default()).await?;
    wait_for(&format!("probe applied again on {taken} by replica A"), Duration::from_secs(60), || async {
        Ok(cms.get_opt("probe").await?.and_then(|c| c.metadata.uid).filter(|uid| Some(uid) != before.as_ref()))
    })
    .await?;
    // And it stays there, applied by A, also a while later.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(cms.get_opt("probe").await?.is_some(), "probe gone again from {taken}");
    assert!(applied_to(&log(&log_a, skip_a)?, &ns).contains(taken), "replica A's log shows no apply to {taken}");
    Ok(())
}
