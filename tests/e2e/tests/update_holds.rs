//! An update holds: after revision 2 drops one object and changes another, the member keeps what
//! revision 2 says, checked every second for 90 s and across an operator restart (the replaced
//! revision must never act again). Terminate then leaves nothing re-created, and deleting the DIG
//! leaves nothing of any revision on any member.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use emco::api::orchestrator::DigState;
use emco::api::rsync::AppContext;
use emco_e2e::*;
use kube::Api;
use serde_json::json;

const CHART: &str = "apiVersion: v2\nname: probe\nversion: 0.1.0\n";
const VALUES: &str = "greeting: v1\nextra: true\n";
const CM: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\ndata:\n  greeting: {{ Values.greeting | quote }}\n";
const EXTRA: &str =
    "{% if Values.extra %}apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata:\n  k: v\n{% endif %}";

#[tokio::test]
async fn an_update_holds_for_90_seconds_and_across_a_restart() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("hold-{}", unique_suffix());
    project(&hub, &ns).await?;
    let probe = Probe {
        chart: Some(vec![
            ("Chart.yaml", CHART),
            ("values.yaml", VALUES),
            ("templates/cm.yaml", CM),
            ("templates/extra.yaml", EXTRA),
        ]),
        ..Probe::new(json!({"app": "probe", "allOf": [{"cluster": "edge01"}, {"cluster": "cloud01"}]}))
    };
    probe.apply(&hub, &bed, &ns).await?;
    let ready = |revision: u32| {
        move |s: &emco::api::orchestrator::DeploymentIntentGroupStatus| {
            s.revision == Some(revision)
                && matches!(s.state, DigState::Instantiated | DigState::Updated)
                && complete(&s.ready)
        }
    };
    wait_dig(&hub, &ns, &ns, "revision 1 ready", Duration::from_secs(60), ready(1)).await?;
    ensure!(configmaps_everywhere(&bed, &ns).await?.len() == 4, "extra and probe on two members");

    // Revision 2: `extra` dropped, `probe` changed.
    let overrides =
        Probe { overrides: json!([{"app": "probe", "values": {"greeting": "v2", "extra": false}}]), ..probe };
    overrides.apply(&hub, &bed, &ns).await?;
    wait_dig(&hub, &ns, &ns, "revision 2 ready", Duration::from_secs(60), ready(2)).await?;
    let expected: Vec<(String, String, String)> =
        ["cloud01", "edge01"].iter().map(|m| (m.to_string(), "probe".to_string(), "v2".to_string())).collect();
    let seen = || async {
        let found = configmaps_everywhere(&bed, &ns).await?;
        Ok::<_, anyhow::Error>(
            found
                .into_iter()
                .map(|(m, n, d)| (m, n, d.get("greeting").cloned().unwrap_or_default()))
                .collect::<Vec<_>>(),
        )
    };
    wait_until("revision 2 on the members", Duration::from_secs(30), || async {
        let now = seen().await?;
        Ok(if now == expected { Ok(()) } else { Err(format!("{now:?}")) })
    })
    .await?;

    // Held for 90 s, with a restart halfway: checked every second.
    let start = Instant::now();
    let mut restarted = false;
    while start.elapsed() < Duration::from_secs(90) {
        let now = seen().await?;
        ensure!(now == expected, "after {:?}{}: {now:?}", start.elapsed(), if restarted { " (restarted)" } else { "" });
        if !restarted && start.elapsed() > Duration::from_secs(40) {
            restart_operator()?;
            restarted = true;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let contexts = Api::<AppContext>::namespaced(hub.clone(), &ns);
    let old = contexts.get(&format!("{ns}-1")).await?;
    ensure!(old.spec.superseded_by.as_deref() == Some(format!("{ns}-2").as_str()), "revision 1 is marked superseded");

    // Terminate: nothing is left, and nothing comes back.
    set_dig_state(&hub, &ns, &ns, "Terminated").await?;
    wait_dig(&hub, &ns, &ns, "Terminated", Duration::from_secs(60), |s| s.state == DigState::Terminated).await?;
    for _ in 0..10 {
        let now = seen().await?;
        ensure!(now.is_empty(), "re-created after terminate: {now:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // Instantiate again, then delete the DIG: nothing of any revision on any member.
    set_dig_state(&hub, &ns, &ns, "Instantiated").await?;
    wait_until("deployed again", Duration::from_secs(60), || async {
        let now = seen().await?;
        Ok(if now == expected { Ok(()) } else { Err(format!("{now:?}")) })
    })
    .await?;
    Api::<emco::api::orchestrator::DeploymentIntentGroup>::namespaced(hub.clone(), &ns)
        .delete(&ns, &Default::default())
        .await?;
    wait_for("the DIG gone", Duration::from_secs(60), || async {
        Ok(dig(&hub, &ns, &ns).await.is_err().then_some(()))
    })
    .await?;
    for _ in 0..5 {
        let now = seen().await?;
        ensure!(now.is_empty(), "left on the members after the DIG was deleted: {now:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}
