//! The pod's memory budget holds for the operator and its render workers together: run inside a
//! cgroup v1 memory group limited to the chart's container limit (as a pod would be), three DIGs
//! whose charts each carry an 18 MiB `files/` blob and one that renders about 9 MiB for three
//! clusters, applied at once, each deploy or fail with `RenderLimitExceeded`; the operator keeps
//! its process id, the cgroup's OOM killer never fires, and the sampled sum of the operator's and
//! its workers' RSS stays under the limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Result, ensure};
use emco::api::orchestrator::DigState;
use emco_e2e::*;
use serde_json::json;

const CGROUP_ROOT: &str = "/sys/fs/cgroup/memory";

/// A chart whose `files/blob.txt` is 18 MiB of text (a few KiB gzipped); its template reads the
/// blob (a value over the renderer's limit) or only a small file beside it.
fn blob_chart(read_blob: bool) -> Vec<u8> {
    let blob = "0123456789abcdef".repeat(18 * 1024 * 1024 / 16);
    let file = if read_blob { "files/blob.txt" } else { "files/small.txt" };
    let template = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: blob\ndata:\n  size: {{{{ .Files.Get \"{file}\" | len | quote }}}}\n"
    );
    chart_tgz(
        "blob",
        &[
            ("Chart.yaml", "apiVersion: v2\nname: blob\nversion: 0.1.0\n"),
            ("templates/cm.yaml", &template),
            ("files/blob.txt", &blob),
            ("files/small.txt", "small"),
        ],
    )
}

/// A chart rendering ten ConfigMaps of 900 KiB each from one value.
fn big_render_chart() -> Vec<u8> {
    let values = format!("blob: {}\n", "x".repeat(900 * 1024));
    let template = "{{- range $i := until 10 }}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big-{{ $i }}\ndata:\n  blob: {{ $.Values.blob | quote }}\n{{- end }}\n";
    chart_tgz(
        "big",
        &[
            ("Chart.yaml", "apiVersion: v2\nname: big\nversion: 0.1.0\n"),
            ("values.yaml", &values),
            ("templates/cms.yaml", template),
        ],
    )
}

#[tokio::test]
async fn heavy_charts_at_once_stay_within_the_pods_memory_limit() -> Result<()> {
    if std::fs::metadata(format!("{CGROUP_ROOT}/memory.limit_in_bytes")).is_err() {
        println!("SKIPPED: no cgroup v1 memory controller at {CGROUP_ROOT}; the budget is not checked here");
        return Ok(());
    }
    let bed = Bed::get();
    let hub = bed.hub().await;
    let limit = chart_memory_limit();
    let suffix = unique_suffix();
    let cgroup = format!("{CGROUP_ROOT}/emco-e2e-{suffix}");
    let pid = restart_operator_with(&[("EMCO_MEMORY_CGROUP", &cgroup), ("EMCO_MEMORY_LIMIT", &limit.to_string())])?;
    let outcome = run(&bed, &hub, pid, limit, &cgroup, &suffix).await;
    // The suite's operator again, outside the group, whatever happened.
    restart_operator()?;
    let _ = std::fs::remove_dir(&cgroup);
    outcome
}

async fn run(bed: &Bed, hub: &kube::Client, pid: u32, limit: u64, cgroup: &str, suffix: &str) -> Result<()> {
    wait_for(&format!("operator {pid} in {cgroup}"), Duration::from_secs(10), || async {
        let procs = std::fs::read_to_string(format!("{cgroup}/cgroup.procs"))?;
        Ok(procs.lines().any(|p| p == pid.to_string()).then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let at_rest = rss_bytes(pid);
    // Sample the operator plus its workers every 50 ms until told to stop.
    let (peak, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut most_workers, mut operator_peak, mut worker_peak) = (0, 0, 0);
            while !stop.load(Ordering::Relaxed) {
                let workers = children_of(pid);
                most_workers = most_workers.max(workers.len());
                let (operator, each): (u64, Vec<u64>) =
                    (rss_bytes(pid), workers.iter().map(|w| rss_bytes(*w)).collect());
                operator_peak = operator_peak.max(operator);
                worker_peak = worker_peak.max(each.iter().copied().max().unwrap_or(0));
                peak.fetch_max(operator + each.iter().sum::<u64>(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
            (most_workers, operator_peak, worker_peak)
        })
    };
    let mut names = Vec::new();
    for (i, (tgz, placement)) in [
        (blob_chart(false), json!({"app": "probe", "allOf": [{"cluster": "edge01"}]})),
        (blob_chart(false), json!({"app": "probe", "allOf": [{"cluster": "edge02"}]})),
        (blob_chart(true), json!({"app": "probe", "allOf": [{"cluster": "cloud01"}]})),
        (
            big_render_chart(),
            json!({"app": "probe", "allOf": [{"cluster": "edge01"}, {"cluster": "edge02"}, {"cluster": "cloud01"}]}),
        ),
    ]
    .into_iter()
    .enumerate()
    .filter(|(i, _)| std::env::var("HEAVY_ONLY").map_or(true, |only| only.contains(&i.to_string())))
    {
        let ns = format!("heavy{i}-{suffix}");
        project(hub, &ns).await?;
        apply(hub, &chart_configmap(&ns, "heavy-chart", &tgz)).await?;
        let probe = Probe { chart_configmap: "heavy-chart", ..Probe::new(placement) };
        probe.apply(hub, bed, &ns).await?;
        names.push(ns);
    }
    let mut outcomes = Vec::new();
    for ns in &names {
        let status = wait_dig(hub, ns, ns, "deployed or refused", Duration::from_secs(240), |s| {
            (s.state == DigState::Instantiated && complete(&s.ready))
                || s.conditions.iter().any(|c| c.reason == "RenderLimitExceeded")
        })
        .await?;
        outcomes.push(format!(
            "{ns}: {:?} {:?}",
            status.state,
            status.conditions.iter().map(|c| &c.reason).collect::<Vec<_>>()
        ));
    }
    stop.store(true, Ordering::Relaxed);
    let (most_workers, operator_peak, worker_peak) = sampler.join().unwrap_or((0, 0, 0));
    let peak = peak.load(Ordering::Relaxed);
    let cgroup_peak: u64 = std::fs::read_to_string(format!("{cgroup}/memory.max_usage_in_bytes"))?.trim().parse()?;
    let oom_control = std::fs::read_to_string(format!("{cgroup}/memory.oom_control"))?;
    println!(
        "limit {} MiB; operator at rest {} MiB; operator + workers peak RSS {} MiB (operator alone {} MiB, one worker at most {} MiB, \
         at most {most_workers} workers at once); cgroup peak {} MiB\n{}",
        limit >> 20,
        at_rest >> 20,
        peak >> 20,
        operator_peak >> 20,
        worker_peak >> 20,
        cgroup_peak >> 20,
        outcomes.join("\n")
    );
    ensure!(operator_pid()? == pid && std::fs::metadata(format!("/proc/{pid}")).is_ok(), "the operator died");
    ensure!(oom_control.contains("oom_kill 0"), "the cgroup's OOM killer fired: {oom_control}");
    ensure!(peak < limit, "operator + workers peaked at {peak} bytes, over the limit {limit}");
    ensure!(most_workers <= emco::render::limits::WORKERS, "{most_workers} workers at once");
    for ns in &names {
        set_dig_state(hub, ns, ns, "Terminated").await?;
    }
    for ns in &names {
        wait_dig(hub, ns, ns, "Terminated", Duration::from_secs(120), |s| {
            s.state == DigState::Terminated || s.app_context.is_none()
        })
        .await?;
    }
    Ok(())
}
