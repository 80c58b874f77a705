//! Charts cannot take the operator down: a recursive macro, loops writing a gigabyte, a huge
//! indent, a string doubling until memory runs out and a deeply nested expression each fail their
//! own DIG with a reason, while the operator keeps its process id, stays under the chart's memory
//! limit, and deploys an ordinary DIG meanwhile.

use std::time::Duration;

use anyhow::{Result, ensure};
use emco::api::orchestrator::DigState;
use emco_e2e::*;
use serde_json::json;

const CHART: &str = "apiVersion: v2\nname: probe\nversion: 0.1.0\n";

fn peak_rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Ok(kib * 1024)
}

#[tokio::test]
async fn hostile_charts_fail_their_own_dig_and_nothing_else() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let pid = operator_pid()?;
    let nested: &'static str =
        Box::leak(format!("{{{{ {}1{} }}}}", "(".repeat(100_000), ")".repeat(100_000)).into_boxed_str());
    let cases: Vec<(&str, &'static str, &[&str])> = vec![
        (
            "recursion",
            "{% macro boom(n) %}{{ self::boom(n=n) }}{% endmacro boom %}{{ self::boom(n=1) }}",
            &["RenderLimitExceeded"],
        ),
        (
            "gigabyte",
            "{% for i in range(end=10000) %}{% for j in range(end=10000) %}xxxxxxxxxx{% endfor %}{% endfor %}",
            &["RenderLimitExceeded"],
        ),
        ("indent", "{{ \"a\" | indent(n=2147483648) }}", &["TemplateError"]),
        (
            "memory",
            "{% set_global s = \"xxxxxxxxxxxxxxxx\" %}{% for i in range(end=40) %}{% set_global s = s ~ s %}{% endfor %}{{ s | length }}",
            &["RenderLimitExceeded"],
        ),
        ("nested", nested, &["RenderLimitExceeded", "TemplateError"]),
    ];
    let suffix = unique_suffix();
    for (name, template, _) in &cases {
        let ns = format!("hostile-{name}-{suffix}");
        project(&hub, &ns).await?;
        let probe = Probe {
            chart: Some(vec![("Chart.yaml", CHART), ("templates/cm.yaml", template)]),
            ..Probe::new(json!({"app": "probe", "allOf": [{"cluster": "edge01"}]}))
        };
        probe.apply(&hub, &bed, &ns).await?;
    }
    // Meanwhile an ordinary DIG deploys.
    let ordinary = format!("ordinary-{suffix}");
    project(&hub, &ordinary).await?;
    Probe::new(json!({"app": "probe", "allOf": [{"cluster": "edge02"}]})).apply(&hub, &bed, &ordinary).await?;

    for (name, _, reasons) in &cases {
        let ns = format!("hostile-{name}-{suffix}");
        let status =
            wait_dig(&hub, &ns, &ns, "refused", Duration::from_secs(90), |s| s.state == DigState::InstantiateFailed)
                .await?;
        let ready = emco::api::condition::get(&status.conditions, "Ready").cloned().expect("a Ready condition");
        println!("{name}: {} {}", ready.reason, ready.message);
        ensure!(reasons.contains(&ready.reason.as_str()), "{name}: reason {} ({})", ready.reason, ready.message);
        ensure!(status.app_context.is_none(), "{name}: nothing may reach a member");
    }
    wait_dig(&hub, &ordinary, &ordinary, "Instantiated", Duration::from_secs(60), |s| {
        s.state == DigState::Instantiated && complete(&s.ready)
    })
    .await?;
    ensure!(operator_pid()? == pid, "the operator was restarted");
    ensure!(std::fs::metadata(format!("/proc/{pid}")).is_ok(), "the operator process {pid} is gone");
    let peak = peak_rss(pid)?;
    println!("operator peak RSS {} MiB", peak / (1024 * 1024));
    ensure!(peak < chart_memory_limit(), "operator peak RSS {peak} bytes is over the chart's limit");
    Ok(())
}
