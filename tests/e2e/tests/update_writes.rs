//! An update writes to a member only what changed: a chart of ten ConfigMaps, one value of the
//! profile changed (one ConfigMap), and the member's own request counter shows one server-side
//! apply of a ConfigMap, not ten. Removed fields still go (the object is applied again when what
//! was applied differs, not only when the member's copy does).

use std::time::Duration;

use anyhow::{Result, ensure};
use emco::api::orchestrator::DigState;
use emco_e2e::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use serde_json::json;

const CHART: &str = "apiVersion: v2\nname: probe\nversion: 0.1.0\n";
/// Ten ConfigMaps; only `cm-0` takes the value `v`, and `extra` is there while `v` is `one`.
const CMS: &str = r#"{{- range $i := until 10 }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: cm-{{ $i }}
data:
  {{- if eq $i 0 }}
  v: {{ $.Values.v | quote }}
  {{- if eq $.Values.v "one" }}
  extra: "only with one"
  {{- end }}
  {{- else }}
  v: "static"
  {{- end }}
{{- end }}
"#;

fn profile(ns: &str, v: &str) -> serde_json::Value {
    json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "CompositeProfile", "metadata": {"name": "profile", "namespace": ns},
           "spec": {"profiles": [{"app": "probe", "values": {"v": v}}]}})
}

/// Requests for ConfigMaps with `verb` the member has answered so far.
async fn configmap_requests(member: &kube::Client, verb: &str) -> Result<u64> {
    let counts = request_counts(member).await?;
    Ok(counts.iter().filter(|(v, r, _)| v == verb && r == "configmaps").map(|(_, _, n)| n).sum())
}

async fn configmap_applies(member: &kube::Client) -> Result<u64> {
    configmap_requests(member, "APPLY").await
}

#[tokio::test]
async fn an_update_writes_only_the_objects_whose_content_changed() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("writes-{}", unique_suffix());
    project(&hub, &ns).await?;
    let probe = Probe {
        chart: Some(vec![("Chart.yaml", CHART), ("templates/cms.yaml", CMS)]),
        profiles: Some(json!([{"app": "probe", "values": {"v": "one"}}])),
        ..Probe::new(json!({"app": "probe", "allOf": [{"cluster": "edge01"}]}))
    };
    let edge01 = bed.client("edge01").await;
    let gets_before = configmap_requests(&edge01, "GET").await?;
    probe.apply(&hub, &bed, &ns).await?;
    settled(&hub, &ns, 1).await?;
    // First delivery learns what exists from a list, not a read per object (the watch's own
    // traffic is no GET either; other DIGs on edge01 may read a few).
    let first_gets = configmap_requests(&edge01, "GET").await? - gets_before;
    println!("ConfigMap reads on edge01 for the first delivery of 10: {first_gets}");
    ensure!(first_gets < 5, "{first_gets} reads for 10 new ConfigMaps");
    // Quiet first: nothing else applies ConfigMaps to edge01 for two seconds.
    let gets = configmap_requests(&edge01, "GET").await?;
    let before = wait_for("edge01 quiet", Duration::from_secs(60), || async {
        let a = configmap_applies(&edge01).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok((configmap_applies(&edge01).await? == a).then_some(a))
    })
    .await?;

    apply(&hub, &profile(&ns, "two")).await?;
    settled(&hub, &ns, 2).await?;
    // Read before this test reads anything itself.
    let reads = configmap_requests(&edge01, "GET").await? - gets;
    println!("ConfigMap reads on edge01 for the update: {reads}");
    ensure!(reads == 0, "{reads} reads for an update (the watches know the objects)");
    let configmaps = Api::<ConfigMap>::namespaced(edge01.clone(), &ns);
    let cm0 = configmaps.get("cm-0").await?.data.unwrap_or_default();
    ensure!(cm0.get("v").map(String::as_str) == Some("two"), "{cm0:?}");
    ensure!(!cm0.contains_key("extra"), "a field the revision dropped is gone: {cm0:?}");
    let writes = configmap_applies(&edge01).await? - before;
    println!("ConfigMap applies on edge01 for the update: {writes} (10 ConfigMaps, 1 changed)");
    ensure!(writes == 1, "{writes} ConfigMap applies for one changed ConfigMap");

    for i in 1..10 {
        let data = configmaps.get(&format!("cm-{i}")).await?.data.unwrap_or_default();
        ensure!(data.get("v").map(String::as_str) == Some("static"), "cm-{i}: {data:?}");
    }
    set_dig_state(&hub, &ns, &ns, "Terminated").await?;
    wait_dig(&hub, &ns, &ns, "Terminated", Duration::from_secs(60), |s| s.state == DigState::Terminated).await?;
    Ok(())
}
