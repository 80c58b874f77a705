//! External controllers, served by the workspace's example controller on loopback: a placement
//! controller that drops a cluster and two action controllers that set one label run in priority
//! order (swapping the priorities swaps the outcome); one that times out refuses the revision with
//! nothing on any member; an endpoint that is neither HTTPS nor loopback is refused at apply.

use std::io::BufRead;
use std::time::Duration;

use anyhow::{Context, Result};
use emco::api::orchestrator::DigState;
use emco_e2e::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use serde_json::json;

/// The example controller, stopped when dropped.
struct Example {
    child: std::process::Child,
    addr: String,
}

impl Example {
    fn start() -> Result<Example> {
        let target = std::env::var("CARGO_TARGET_DIR").map_or_else(|_| repo_root().join("target"), Into::into);
        let binary = target.join("debug/emco-example-controller");
        let mut child = std::process::Command::new(&binary)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} (hub.sh start builds it)", binary.display()))?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let addr = line.trim().strip_prefix("listening on ").context("the address line")?.to_string();
        Ok(Example { child, addr })
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn controller(name: &str, type_: &str, priority: u32, url: &str, timeout: u32) -> serde_json::Value {
    json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "Controller", "metadata": {"name": name},
           "spec": {"type": type_, "priority": priority, "endpoint": {"url": url}, "timeoutSeconds": timeout}})
}

#[tokio::test]
async fn external_controllers_run_in_priority_order_and_fail_cleanly() -> Result<()> {
    let example = Example::start()?;
    let bed = Bed::get();
    let hub = bed.hub().await;
    let sfx = unique_suffix();
    let (drop, blue, red, slow) =
        (format!("drop-{sfx}"), format!("blue-{sfx}"), format!("red-{sfx}"), format!("slow-{sfx}"));
    let url = |query: &str| format!("http://{}/?{query}", example.addr);
    apply(&hub, &controller(&drop, "placement", 10, &url("drop=edge02"), 5)).await?;
    apply(&hub, &controller(&blue, "action", 2000, &url("label=team=blue"), 5)).await?;
    apply(&hub, &controller(&red, "action", 3000, &url("label=team=red"), 5)).await?;
    apply(&hub, &controller(&slow, "action", 2500, &url("sleep=5"), 1)).await?;

    let ns = format!("ext-{sfx}");
    project(&hub, &ns).await?;
    Probe::new(json!({"app": "probe", "allOf": [{"cluster": "edge01"}, {"cluster": "edge02"}]}))
        .apply(&hub, &bed, &ns)
        .await?;
    let intents =
        json!({"genericPlacementIntent": "gpi", drop.clone(): "maintenance", blue.clone(): "b", red.clone(): "r"});
    apply(&hub, &dig_manifest(&ns, intents)).await?;
    let status = wait_dig(&hub, &ns, &ns, "Instantiated", Duration::from_secs(60), |s| {
        s.state == DigState::Instantiated && complete(&s.deployed)
    })
    .await?;
    assert_eq!(status.controllers, ["genericPlacementIntent".to_string(), drop.clone(), blue.clone(), red.clone()]);
    let on = |member: &'static str| {
        let ns = ns.clone();
        let bed = &bed;
        async move { Api::<ConfigMap>::namespaced(bed.client(member).await, &ns).get_opt("probe").await }
    };
    assert!(on("edge02").await?.is_none(), "the placement controller dropped edge02");
    let cm = on("edge01").await?.context("probe on edge01")?;
    assert_eq!(cm.metadata.labels.unwrap_or_default().get("team").map(String::as_str), Some("red"), "red runs last");

    // Swap the priorities: blue now runs last.
    apply(&hub, &controller(&blue, "action", 3500, &url("label=team=blue"), 5)).await?;
    let intents =
        json!({"genericPlacementIntent": "gpi", drop.clone(): "maintenance-2", blue.clone(): "b", red.clone(): "r"});
    apply(&hub, &dig_manifest(&ns, intents)).await?;
    // The Controller's change is an input too, so a revision may come from it before the DIG's.
    let generation = dig(&hub, &ns, &ns).await?.metadata.generation.unwrap_or(0);
    let updated = wait_dig(&hub, &ns, &ns, "a revision of the new generation deployed", Duration::from_secs(60), |s| {
        s.history.last().is_some_and(|h| h.generation == generation)
            && s.state == DigState::Updated
            && complete(&s.deployed)
    })
    .await?;
    wait_for("team=blue on edge01", Duration::from_secs(30), || async {
        let cm = on("edge01").await?;
        Ok(cm.and_then(|c| c.metadata.labels?.get("team").cloned()).filter(|t| t == "blue"))
    })
    .await?;

    // A controller that answers too late refuses the revision; revision 2 stays as it was.
    let intents =
        json!({"genericPlacementIntent": "gpi", drop.clone(): "maintenance-2", blue.clone(): "b", slow.clone(): "s"});
    apply(&hub, &dig_manifest(&ns, intents)).await?;
    let status = wait_dig(&hub, &ns, &ns, "refused", Duration::from_secs(30), |s| {
        s.conditions.iter().any(|c| c.type_ == "Placed" && c.reason == "ControllerFailed")
    })
    .await?;
    let placed = status.conditions.iter().find(|c| c.type_ == "Placed").unwrap();
    assert!(placed.message.contains(&slow) && placed.message.contains("no answer within 1 s"), "{}", placed.message);
    assert_eq!(status.revision, updated.revision, "no revision is made");

    // A fresh DIG whose only action controller times out: nothing reaches any member, for a while.
    let fresh = format!("ext2-{sfx}");
    project(&hub, &fresh).await?;
    Probe::new(json!({"app": "probe", "allOf": [{"cluster": "edge01"}, {"cluster": "cloud01"}]}))
        .apply(&hub, &bed, &fresh)
        .await?;
    apply(&hub, &dig_manifest(&fresh, json!({"genericPlacementIntent": "gpi", slow.clone(): "s"}))).await?;
    wait_dig(&hub, &fresh, &fresh, "refused", Duration::from_secs(30), |s| {
        s.conditions.iter().any(|c| c.type_ == "Placed" && c.reason == "ControllerFailed")
    })
    .await?;
    for _ in 0..5 {
        assert!(configmaps_everywhere(&bed, &fresh).await?.is_empty(), "nothing of a refused revision on a member");
        assert_eq!(dig(&hub, &fresh, &fresh).await?.status.unwrap_or_default().revision, None);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // An endpoint that is neither HTTPS nor loopback HTTP is refused at apply.
    let err = apply(&hub, &controller(&format!("far-{sfx}"), "action", 1, "http://controller.example:80/", 5))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("https://, or http:// on the loopback address"), "{err:#}");

    let controllers: Api<kube::api::DynamicObject> = Api::all_with(
        hub.clone(),
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "orchestrator.emco.io",
            "v1alpha1",
            "Controller",
        )),
    );
    for name in [&drop, &blue, &red, &slow] {
        controllers.delete(name, &Default::default()).await?;
    }
    Ok(())
}
