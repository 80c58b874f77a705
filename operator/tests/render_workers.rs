//! The render workers kept between renders (the operator binary as its own render worker). One
//! test, alone in its process: it counts the workers this process starts and kills them while
//! idle, which would disturb renders of other tests running beside it.

use emco::render::chart::Engine;
use emco::render::{Chart, RenderContext, Template, render_app, sandbox};
use serde_json::json;

fn chart(template: &str) -> Chart {
    Chart {
        name: "pool".into(),
        version: "0.1.0".into(),
        app_version: None,
        metadata: json!({"name": "pool", "version": "0.1.0"}),
        values: json!({}),
        templates: vec![Template { path: "templates/a.yaml".into(), source: template.into() }],
        engine: Engine::Tera,
        crds: Vec::new(),
        subcharts: Vec::new(),
        files: Vec::new(),
        schema: None,
    }
}

/// The name of the ConfigMap rendered for release `release`, or the error.
fn render(template: &str, release: &str) -> Result<String, String> {
    sandbox::enable(env!("CARGO_BIN_EXE_emco-operator").into());
    let ctx = RenderContext {
        release_name: release.into(),
        release_namespace: "ns".into(),
        revision: 1,
        kube_version: "v1.35.4".into(),
        api_versions: vec![],
    };
    let out = render_app(&chart(template), &json!({}), &ctx).map_err(|e| e.to_string())?;
    Ok(out[0]["metadata"]["name"].as_str().unwrap_or_default().to_string())
}

const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ Release.Name }}-cm\n";

/// Kills every child process of this one (the idle workers).
fn kill_workers() -> usize {
    let me = std::process::id().to_string();
    let mut killed = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let parent = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1));
        if parent == Some(me.as_str()) {
            let pid: i32 = entry.file_name().to_string_lossy().parse().unwrap();
            // SAFETY: kill only sends a signal, to a child of this process.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed += 1;
        }
    }
    killed
}

#[test]
fn workers_serve_render_after_render_and_are_replaced_when_lost() {
    // Each answer goes to its own job: every render names its own release.
    assert_eq!(render(CM, "first").unwrap(), "first-cm");
    let before = sandbox::workers_started();
    for i in 0..40 {
        assert_eq!(render(CM, &format!("r{i}")).unwrap(), format!("r{i}-cm"));
    }
    assert_eq!(sandbox::workers_started() - before, 0, "renders in a row reuse the worker");

    // A chart that exhausts the worker's memory fails alone; the next chart gets a new worker.
    let blowup = "{% set_global s = \"xxxxxxxxxxxxxxxx\" %}{% for i in range(end=40) %}{% set_global s = s ~ s %}{% endfor %}{{ s }}";
    let why = render(blowup, "bomb").unwrap_err();
    assert!(why.contains("memory") || why.contains("longer than"), "{why}");
    assert_eq!(render(CM, "after-crash").unwrap(), "after-crash-cm");

    // A worker killed while idle is not blamed on the next chart.
    assert!(kill_workers() >= 1, "an idle worker to kill");
    std::thread::sleep(std::time::Duration::from_millis(100));
    let started = sandbox::workers_started();
    assert_eq!(render(CM, "after-kill").unwrap(), "after-kill-cm");
    assert_eq!(sandbox::workers_started() - started, 1, "a fresh worker for the next render");
}
