//! EMCO update: a change to what an instantiated DIG names (its profile, its chart's content) makes
//! a new revision; changed resources are applied and removed ones deleted from the members.

use std::time::Duration;

use anyhow::Result;
use emco_e2e::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use serde_json::json;

const CHART: &str = "apiVersion: v2\nname: probe\nversion: 0.1.0\n";
const CM: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\ndata:\n  greeting: {{ Values.greeting | quote }}\n";
const EXTRA: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n";

fn profile(ns: &str, greeting: &str) -> serde_json::Value {
    json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "CompositeProfile", "metadata": {"name": "profile", "namespace": ns},
           "spec": {"profiles": [{"app": "probe", "values": {"greeting": greeting}}]}})
}

#[tokio::test]
async fn changing_the_profile_or_the_chart_makes_a_new_revision_and_prunes() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("update-{}", unique_suffix());
    project(&hub, &ns).await?;
    let probe = Probe {
        chart: Some(vec![("Chart.yaml", CHART), ("templates/cm.yaml", CM), ("templates/extra.yaml", EXTRA)]),
        profiles: Some(json!([{"app": "probe", "values": {"greeting": "v1"}}])),
        ..Probe::new(json!({"app": "probe", "allOf": [{"cluster": "edge01"}]}))
    };
    probe.apply(&hub, &bed, &ns).await?;
    settled(&hub, &ns, 1).await?;
    let edge01 = bed.client("edge01").await;
    let configmaps = Api::<ConfigMap>::namespaced(edge01.clone(), &ns);
    let greeting = |cm: ConfigMap| cm.data.unwrap_or_default().remove("greeting").unwrap_or_default();
    assert_eq!(greeting(configmaps.get("probe").await?), "v1");

    // The profile changes: revision 2 carries the new value to the member.
    apply(&hub, &profile(&ns, "v2")).await?;
    settled(&hub, &ns, 2).await?;
    assert_eq!(greeting(configmaps.get("probe").await?), "v2");
    assert_eq!(deployed_names(&edge01, "v1", "ConfigMap", "configmaps", &ns).await?, ["extra", "probe"]);

    // The chart drops a template: revision 3, and what it rendered is deleted from the member.
    let smaller = chart_tgz("probe", &[("Chart.yaml", CHART), ("templates/cm.yaml", CM)]);
    apply(&hub, &chart_configmap(&ns, "probe-chart", &smaller)).await?;
    settled(&hub, &ns, 3).await?;
    wait_until("extra pruned from edge01", Duration::from_secs(30), || async {
        let names = deployed_names(&edge01, "v1", "ConfigMap", "configmaps", &ns).await?;
        Ok(if names == ["probe"] { Ok(()) } else { Err(format!("{names:?}")) })
    })
    .await?;
    assert_eq!(greeting(configmaps.get("probe").await?), "v2");

    // Nothing changed: no new revision.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(dig(&hub, &ns, &ns).await?.status.unwrap_or_default().revision, Some(3));
    Ok(())
}

#[tokio::test]
async fn only_the_last_ten_revisions_are_kept() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("history-{}", unique_suffix());
    project(&hub, &ns).await?;
    let placement = json!({"app": "probe", "allOf": [{"cluster": "cloud01"}]});
    for revision in 1..=12u32 {
        let overrides = json!([{"app": "probe", "values": {"greeting": format!("v{revision}")}}]);
        Probe { overrides, ..Probe::new(placement.clone()) }.apply(&hub, &bed, &ns).await?;
        settled(&hub, &ns, revision).await?;
    }
    let status = dig(&hub, &ns, &ns).await?.status.unwrap_or_default();
    let kept: Vec<u32> = status.history.iter().map(|h| h.revision).collect();
    assert_eq!(kept, (3..=12).collect::<Vec<_>>());
    let contexts = Api::<emco::api::rsync::AppContext>::namespaced(hub.clone(), &ns);
    wait_until("AppContexts of revisions 1 and 2 deleted", Duration::from_secs(30), || async {
        let mut names: Vec<String> =
            contexts.list(&Default::default()).await?.items.into_iter().filter_map(|c| c.metadata.name).collect();
        names.sort();
        Ok(if names.len() == 10 && !names.contains(&format!("{ns}-1")) { Ok(()) } else { Err(format!("{names:?}")) })
    })
    .await?;
    let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(hub.clone(), &ns);
    let selector = format!("{}=1", emco::api::labels::REVISION);
    let old_bundles = secrets.list(&kube::api::ListParams::default().labels(&selector)).await?;
    assert!(old_bundles.items.is_empty(), "bundles of revision 1 left: {}", old_bundles.items.len());
    let greeting = Api::<ConfigMap>::namespaced(bed.client("cloud01").await, &ns).get("probe").await?;
    assert_eq!(greeting.data.unwrap_or_default().remove("greeting").as_deref(), Some("v12"));
    Ok(())
}

#[tokio::test]
async fn rollback_to_an_earlier_revision_and_back_to_the_inputs() -> Result<()> {
    use emco::api::orchestrator::DeploymentIntentGroup;
    use kube::api::{Patch, PatchParams};
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("rollback-{}", unique_suffix());
    project(&hub, &ns).await?;
    let placement = json!({"app": "probe", "allOf": [{"cluster": "edge02"}]});
    for (revision, greeting) in [(1, "v1"), (2, "v2")] {
        let overrides = json!([{"app": "probe", "values": {"greeting": greeting}}]);
        Probe { overrides, ..Probe::new(placement.clone()) }.apply(&hub, &bed, &ns).await?;
        settled(&hub, &ns, revision).await?;
    }
    let configmaps = Api::<ConfigMap>::namespaced(bed.client("edge02").await, &ns);
    let greeting = || async {
        Ok::<_, anyhow::Error>(
            configmaps.get("probe").await?.data.unwrap_or_default().remove("greeting").unwrap_or_default(),
        )
    };
    assert_eq!(greeting().await?, "v2");

    let digs = Api::<DeploymentIntentGroup>::namespaced(hub.clone(), &ns);
    let set = |rollback: serde_json::Value| json!({"spec": {"rollbackTo": rollback}});
    digs.patch(&ns, &PatchParams::default(), &Patch::Merge(set(json!(1)))).await?;
    settled(&hub, &ns, 3).await?;
    assert_eq!(greeting().await?, "v1", "revision 3 is revision 1 again");

    // A revision not in the history is refused; what is deployed stays.
    digs.patch(&ns, &PatchParams::default(), &Patch::Merge(set(json!(99)))).await?;
    wait_dig(&hub, &ns, &ns, "refused with RevisionNotFound", Duration::from_secs(30), |s| {
        emco::api::condition::get(&s.conditions, "Ready").is_some_and(|c| c.reason == "RevisionNotFound")
    })
    .await?;
    assert_eq!(greeting().await?, "v1");

    // Without rollbackTo the inputs rule again: revision 4 deploys v2.
    digs.patch(&ns, &PatchParams::default(), &Patch::Merge(set(json!(null)))).await?;
    settled(&hub, &ns, 4).await?;
    assert_eq!(greeting().await?, "v2");
    Ok(())
}
