//! No internal reach for tenants: a Helm repository on 127.0.0.1 or `localhost` is refused with one
//! generic reason, and works once a platform admin allow-lists the address (the operator restarted
//! with the chart value's variable). Private, link-local and Service-range literals are refused by
//! the address rule in unit tests (`render::fence`, `render::repository`), with no connection made.

use std::time::Duration;

use anyhow::{Result, ensure};
use emco::api::orchestrator::DigState;
use emco_e2e::*;
use serde_json::json;

#[tokio::test]
async fn repositories_on_internal_addresses_are_refused_unless_allow_listed() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let tgz = chart_tgz("probe", &probe_chart_files());
    let index =
        "apiVersion: v1\nentries:\n  probe:\n  - name: probe\n    version: 0.1.0\n    urls: [charts/probe-0.1.0.tgz]\n";
    let repo = HelmRepository::serve_on(
        "127.0.0.1",
        vec![("index.yaml".into(), index.as_bytes().to_vec()), ("charts/probe-0.1.0.tgz".into(), tgz)],
    )
    .await;
    let suffix = unique_suffix();
    let mut messages = Vec::new();
    let mut projects = Vec::new();
    for (name, url) in [("fence-ip", repo.url.clone()), ("fence-name", repo.url.replace("127.0.0.1", "localhost"))] {
        let ns = format!("{name}-{suffix}");
        project(&hub, &ns).await?;
        let probe = Probe {
            repository: Some(json!({"url": url, "chart": "probe", "version": "0.1.0"})),
            ..Probe::new(json!({"app": "probe", "allOf": [{"cluster": "edge01"}]}))
        };
        probe.apply(&hub, &bed, &ns).await?;
        let status = wait_dig(&hub, &ns, &ns, "refused", Duration::from_secs(60), |s| {
            s.conditions.iter().any(|c| c.reason == "RepositoryRefused")
        })
        .await?;
        ensure!(status.app_context.is_none(), "nothing deployed: {status:?}");
        let message = status.conditions.iter().find(|c| c.reason == "RepositoryRefused").unwrap().message.clone();
        // One reason, whatever listens there: only the URL differs.
        messages.push(message.replace(&url, "URL").replace(&format!("{url}/index.yaml"), "URL"));
        projects.push(ns);
    }
    ensure!(messages[0] == messages[1], "{messages:?}");
    ensure!(!messages[0].contains("404") && !messages[0].contains("0.1.0"), "{messages:?}");
    ensure!(holders(&bed, &projects[0]).await?.is_empty(), "nothing on any member");

    // A platform admin allow-lists the loopback addresses: both deploy.
    restart_operator_with(&[("EMCO_REPOSITORY_ADDRESSES", "127.0.0.1,::1,127.0.0.2")])?;
    let outcome = async {
        for ns in &projects {
            wait_dig(&hub, ns, ns, "Instantiated once allow-listed", Duration::from_secs(90), |s| {
                s.state == DigState::Instantiated && complete(&s.ready)
            })
            .await?;
            ensure!(holders(&bed, ns).await? == ["edge01"], "{ns} on edge01 only");
        }
        for ns in &projects {
            set_dig_state(&hub, ns, ns, "Terminated").await?;
            wait_dig(&hub, ns, ns, "Terminated", Duration::from_secs(60), |s| s.state == DigState::Terminated).await?;
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    // The suite's own allow-list again, whatever happened.
    restart_operator()?;
    outcome
}
