//! Prune finds what no AppContext names any more: the replaced AppContext is deleted before its
//! successor could prune, and the object only it had is still removed from the member (selected
//! by the DIG's owner labels there).

use std::time::Duration;

use anyhow::Result;
use emco::api::orchestrator::DigState;
use emco::api::rsync::AppContext;
use emco_e2e::*;
use kube::Api;
use serde_json::json;

const CHART: &str = "apiVersion: v2\nname: probe\nversion: 0.1.0\n";
const VALUES: &str = "extra: true\nbad: false\n";
const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\n";
const EXTRA: &str = "{% if Values.extra %}apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n{% endif %}";
// A name the API server refuses: the revision that has it cannot finish, so it never prunes.
const BAD: &str =
    "{% if Values.bad %}apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Not_A_Valid_Name\n{% endif %}";

#[tokio::test]
async fn an_object_of_a_deleted_revision_is_pruned_by_its_labels() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("orphan-{}", unique_suffix());
    project(&hub, &ns).await?;
    let probe = |values: serde_json::Value| Probe {
        chart: Some(vec![
            ("Chart.yaml", CHART),
            ("values.yaml", VALUES),
            ("templates/cm.yaml", CM),
            ("templates/extra.yaml", EXTRA),
            ("templates/bad.yaml", BAD),
        ]),
        overrides: json!([{"app": "probe", "values": values}]),
        ..Probe::new(json!({"app": "probe", "allOf": [{"cluster": "edge01"}]}))
    };
    probe(json!({})).apply(&hub, &bed, &ns).await?;
    wait_dig(&hub, &ns, &ns, "revision 1 ready", Duration::from_secs(60), |s| {
        s.state == DigState::Instantiated && complete(&s.ready)
    })
    .await?;
    let edge01 = bed.client("edge01").await;
    assert_eq!(deployed_names(&edge01, "v1", "ConfigMap", "configmaps", &ns).await?, ["extra", "probe"]);

    // Revision 2 drops `extra` but cannot finish, so it does not prune.
    probe(json!({"extra": false, "bad": true})).apply(&hub, &bed, &ns).await?;
    wait_dig(&hub, &ns, &ns, "revision 2 failing", Duration::from_secs(60), |s| {
        s.revision == Some(2) && s.state == DigState::UpdateFailed
    })
    .await?;
    // Revision 1's AppContext is deleted by hand before anything pruned it.
    let contexts = Api::<AppContext>::namespaced(hub.clone(), &ns);
    contexts.delete(&format!("{ns}-1"), &Default::default()).await?;
    wait_for("revision 1's AppContext gone", Duration::from_secs(30), || async {
        Ok(contexts.get_opt(&format!("{ns}-1")).await?.is_none().then_some(()))
    })
    .await?;
    assert_eq!(
        deployed_names(&edge01, "v1", "ConfigMap", "configmaps", &ns).await?,
        ["extra", "probe"],
        "nothing pruned yet"
    );

    // Revision 3 finishes: `extra`, which no AppContext names any more, goes.
    probe(json!({"extra": false, "bad": false})).apply(&hub, &bed, &ns).await?;
    wait_dig(&hub, &ns, &ns, "revision 3 ready", Duration::from_secs(60), |s| {
        s.revision == Some(3) && s.state == DigState::Updated && complete(&s.ready)
    })
    .await?;
    wait_until("extra pruned from edge01", Duration::from_secs(30), || async {
        let names = deployed_names(&edge01, "v1", "ConfigMap", "configmaps", &ns).await?;
        Ok(if names == ["probe"] { Ok(()) } else { Err(format!("{names:?}")) })
    })
    .await?;
    Ok(())
}
