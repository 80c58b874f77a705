//! A first delivery of many objects to a member pauses the operator's watches there: the member
//! does not send each object back as an event, the watches list once afterwards, and what changed
//! on the member meanwhile (an object of another DIG deleted) is still seen and repaired.

use std::time::{Duration, Instant};

use anyhow::Result;
use emco::api::orchestrator::DigState;
use emco_e2e::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use serde_json::json;

/// Objects of the big app: far more than the watches of edge01 hold from the other tests.
const OBJECTS: usize = 200;

fn watched(metrics: &std::collections::BTreeMap<String, f64>, via: &str) -> f64 {
    metrics.get(&format!("emco_rsync_member_watch_objects_total{{via=\"{via}\"}}")).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn a_first_delivery_is_not_sent_back_and_what_went_meanwhile_comes_back() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let member = bed.client("edge01").await;

    // A small DIG on edge01: the operator watches ConfigMaps there from now on.
    let small = format!("pause-a-{}", unique_suffix());
    project(&hub, &small).await?;
    Probe::new(json!({"app": "probe", "allOf": [{"cluster": "edge01"}]})).apply(&hub, &bed, &small).await?;
    wait_dig(&hub, &small, &small, "Instantiated", Duration::from_secs(60), |s| {
        s.state == DigState::Instantiated && complete(&s.ready)
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = scrape().await?;

    // A big DIG on edge01; while it is delivered, the small DIG's ConfigMap is deleted.
    let big = format!("pause-b-{}", unique_suffix());
    project(&hub, &big).await?;
    let template = format!(
        "{{% for i in range(end={OBJECTS}) %}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{{{{ i }}}}\ndata:\n  value: \"{{{{ i }}}}\"\n{{% endfor %}}\n"
    );
    let chart = vec![
        ("Chart.yaml", "apiVersion: v2\nname: probe\nversion: 0.1.0\n"),
        ("templates/many.yaml", &*Box::leak(template.into_boxed_str())),
    ];
    Probe { chart: Some(chart), ..Probe::new(json!({"app": "probe", "allOf": [{"cluster": "edge01"}]})) }
        .apply(&hub, &bed, &big)
        .await?;
    let (small_cms, big_cms) =
        (Api::<ConfigMap>::namespaced(member.clone(), &small), Api::<ConfigMap>::namespaced(member.clone(), &big));
    wait_for("the big DIG's first ConfigMap on edge01", Duration::from_secs(60), || async {
        Ok(big_cms.get_opt("cm-0").await?)
    })
    .await?;
    let uid = small_cms.get("probe").await?.metadata.uid;
    small_cms.delete("probe", &Default::default()).await?;
    let deleted = Instant::now();
    let delivered_then = big_cms.list_metadata(&Default::default()).await?.items.len().saturating_sub(1);
    println!("the small DIG's ConfigMap deleted when {delivered_then} of {OBJECTS} big ones were on edge01");

    let expect = format!("{OBJECTS}/{OBJECTS}");
    wait_dig(&hub, &big, &big, "big DIG ready", Duration::from_secs(120), |s| s.ready.as_deref() == Some(&expect))
        .await?;
    wait_for("the small DIG's ConfigMap applied again", Duration::from_secs(20), || async {
        Ok(small_cms.get_opt("probe").await?.and_then(|c| c.metadata.uid).filter(|u| Some(u) != uid.as_ref()))
    })
    .await?;
    println!("repaired {:?} after the delete", deleted.elapsed());

    // The big DIG's objects reached the operator once, in the watches' list, not as events.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = scrape().await?;
    let (events, listed) =
        (watched(&after, "event") - watched(&before, "event"), watched(&after, "list") - watched(&before, "list"));
    println!("member watch objects while {OBJECTS} were delivered: {events} events, {listed} listed");
    assert!(listed >= OBJECTS as f64, "the watches list the delivered objects once: {listed}");
    assert!(events < (OBJECTS / 4) as f64, "the delivered objects come back as events: {events}");

    // It holds: the small DIG stays repaired, the big one complete, across an operator restart.
    restart_operator()?;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(small_cms.get_opt("probe").await?.is_some(), "the small DIG's ConfigMap went again");
        let names = big_cms.list_metadata(&Default::default()).await?.items;
        assert_eq!(
            names.iter().filter(|c| c.metadata.name.as_ref().is_some_and(|n| n.starts_with("cm-"))).count(),
            OBJECTS
        );
    }
    wait_dig(&hub, &big, &big, "big DIG ready after the restart", Duration::from_secs(60), |s| {
        s.ready.as_deref() == Some(&expect)
    })
    .await?;
    Ok(())
}
