//! Hostile charts against the render sandbox (the operator binary as its own render worker): each
//! fails with the limit it broke, and this process, like the operator, carries on.

use emco::render::chart::Engine;
use emco::render::{Chart, RenderContext, RenderError, Template, render_app, sandbox};
use serde_json::json;

fn chart(files: &[(&str, String)]) -> Chart {
    Chart {
        name: "hostile".into(),
        version: "0.1.0".into(),
        app_version: None,
        metadata: json!({"name": "hostile", "version": "0.1.0"}),
        values: json!({}),
        templates: files.iter().map(|(p, s)| Template { path: p.to_string(), source: s.clone() }).collect(),
        engine: Engine::Tera,
        crds: Vec::new(),
        subcharts: Vec::new(),
        files: Vec::new(),
        schema: None,
    }
}

fn render(files: &[(&str, String)]) -> Result<Vec<serde_json::Value>, RenderError> {
    render_with(chart(files))
}

/// A Go-template chart of `files`, rendered in the worker.
fn render_go(files: &[(&str, String)]) -> Result<Vec<serde_json::Value>, RenderError> {
    render_with(Chart { engine: Engine::Go, ..chart(files) })
}

fn render_with(chart: Chart) -> Result<Vec<serde_json::Value>, RenderError> {
    sandbox::enable(env!("CARGO_BIN_EXE_emco-operator").into());
    let ctx = RenderContext {
        release_name: "r".into(),
        release_namespace: "ns".into(),
        revision: 1,
        kube_version: "v1.35.4".into(),
        api_versions: vec![],
    };
    render_app(&chart, &json!({}), &ctx)
}

fn limit(result: Result<Vec<serde_json::Value>, RenderError>) -> String {
    match result {
        Err(RenderError::Limit { limit, .. }) => limit,
        other => panic!("expected a limit, got {other:?}"),
    }
}

#[test]
fn an_ordinary_chart_renders_in_the_worker() {
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ Release.Name }}-cm\n".to_string();
    let out = render(&[("templates/cm.yaml", cm)]).unwrap();
    assert_eq!(out[0]["metadata"]["name"], "r-cm");
}

#[test]
fn a_self_recursive_macro_is_refused_before_it_runs() {
    let t = "{% macro boom(n) %}{{ self::boom(n=n) }}{% endmacro boom %}{{ self::boom(n=1) }}".to_string();
    assert!(limit(render(&[("templates/a.yaml", t)])).contains("recursion is not allowed"));
}

#[test]
fn nested_loops_writing_a_gigabyte_stop_at_the_output_limit() {
    let t = "{% for i in range(end=10000) %}{% for j in range(end=10000) %}xxxxxxxxxx{% endfor %}{% endfor %}";
    assert!(limit(render(&[("templates/a.yaml", t.to_string())])).contains("rendered output over 16 MiB"));
}

#[test]
fn a_range_over_the_limit_is_refused() {
    let t = "{% for i in range(end=1000000000) %}x{% endfor %}".to_string();
    let e = render(&[("templates/a.yaml", t)]).unwrap_err().to_string();
    assert!(e.contains("over the limit of 10000"), "{e}");
}

#[test]
fn a_huge_indent_is_refused() {
    let t = "{{ \"a\" | indent(n=2147483648) }}".to_string();
    let e = render(&[("templates/a.yaml", t)]).unwrap_err().to_string();
    assert!(e.contains("not between 0 and 1024"), "{e}");
}

#[test]
fn a_string_that_doubles_until_memory_runs_out_kills_only_the_worker() {
    let t = "{% set_global s = \"xxxxxxxxxxxxxxxx\" %}{% for i in range(end=40) %}{% set_global s = s ~ s %}{% endfor %}{{ s | length }}";
    let why = limit(render(&[("templates/a.yaml", t.to_string())]));
    assert!(why.contains("memory") || why.contains("longer than"), "{why}");
}

#[test]
fn a_deeply_nested_expression_does_not_take_the_process_down() {
    let depth = 200_000;
    let t = format!("{{{{ {}1{} }}}}", "(".repeat(depth), ")".repeat(depth));
    // The parser either refuses it or exhausts the worker's stack; this process is fine either way.
    let e = render(&[("templates/a.yaml", t)]).unwrap_err();
    println!("{e}");
}

#[test]
fn go_templates_are_bounded_too() {
    let ok = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\n".to_string();
    assert_eq!(render_go(&[("templates/cm.yaml", ok)]).unwrap()[0]["metadata"]["name"], "r-cm");
    let recursive = r#"{{ define "r" }}{{ include "r" . }}{{ end }}{{ include "r" . }}"#.to_string();
    let e = render_go(&[("templates/a.yaml", recursive)]).unwrap_err().to_string();
    assert!(e.contains("nest deeper than 16"), "{e}");
    let huge = "{{ range 1000000000 }}x{{ end }}".to_string();
    let e = render_go(&[("templates/a.yaml", huge)]).unwrap_err().to_string();
    assert!(e.contains("10000"), "{e}");
    let gigabyte = "{{ range 10000 }}{{ range 10000 }}xxxxxxxxxx{{ end }}{{ end }}".to_string();
    let e = render_go(&[("templates/a.yaml", gigabyte)]).unwrap_err().to_string();
    assert!(e.contains("1000000") || e.contains("16777216"), "{e}");
    let indent = r#"{{ "a" | nindent 2147483648 }}"#.to_string();
    let e = render_go(&[("templates/a.yaml", indent)]).unwrap_err().to_string();
    assert!(e.contains("over 1024"), "{e}");
}
