//! The test bed itself: every member runs workloads to Available, and what is applied to one
//! member exists there only.

use std::time::Duration;

use anyhow::Result;
use emco_e2e::{Bed, TestNamespace, wait_until};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams};

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "web", "image": "nginx"}]}}
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn deployment_on_each_member_is_available_there_and_absent_elsewhere() -> Result<()> {
    let bed = Bed::get();
    assert!(bed.members.len() >= 2, "the bed needs at least two members, has {:?}", bed.members);
    let mut clients = Vec::new();
    for m in &bed.members {
        clients.push(bed.client(m).await);
    }
    let refs: Vec<_> = clients.iter().collect();
    let ns = TestNamespace::create("bed", &refs).await;

    for (member, client) in bed.members.iter().zip(&clients) {
        let name = format!("web-{member}");
        Api::<Deployment>::namespaced(client.clone(), &ns.name)
            .patch(&name, &PatchParams::apply("e2e").force(), &Patch::Apply(deployment(&name, 2)))
            .await?;
    }
    for (member, client) in bed.members.iter().zip(&clients) {
        let api = Api::<Deployment>::namespaced(client.clone(), &ns.name);
        let name = format!("web-{member}");
        wait_until(&format!("{name} Available on {member}"), Duration::from_secs(60), || async {
            let d = api.get(&name).await?;
            let available = d.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0);
            Ok(if available == 2 { Ok(()) } else { Err(format!("{available}/2 available: {:?}", d.status)) })
        })
        .await?;
        for (other, other_client) in bed.members.iter().zip(&clients).filter(|(o, _)| *o != member) {
            let found = Api::<Deployment>::namespaced(other_client.clone(), &ns.name).get_opt(&name).await?;
            assert!(found.is_none(), "{name} was applied to {member} but also exists on {other}");
        }
    }
    ns.delete(&refs).await;
    Ok(())
}
