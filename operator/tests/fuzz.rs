//! Property tests: generated templates, values, CR bodies, bundles, charts and kubeconfigs thrown
//! at the renderer and the decoders. Nothing may panic; every input gets a value or an error.
//! Each property prints how many cases it ran.

use std::sync::atomic::{AtomicUsize, Ordering};

use emco::api::clm::Cluster;
use emco::api::orchestrator::{CompositeApp, DeploymentIntentGroup, Project};
use emco::api::rsync::AppContext;
use emco::render::{Chart, RenderContext, Template, load_chart, parse_values_yaml, render_app};
use emco::rsync::bundle;
use proptest::prelude::*;
use serde_json::{Value, json};

const CASES: u32 = 4000;

fn config() -> ProptestConfig {
    ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() }
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "[a-z{}%|\\-: ]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Pieces of chart templates, valid and not, put together at random.
fn template() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n".to_string()),
        Just("---\n".to_string()),
        Just("{{ Values.a }}".to_string()),
        Just("{{ Values.a | toYaml | nindent(n=2) }}".to_string()),
        Just("{{ Values | toJson | quote }}".to_string()),
        Just("{{ Values.a | default(value=1) | int }}".to_string()),
        Just("{% if Values.b %}".to_string()),
        Just("{% endif %}".to_string()),
        Just("{% for k, v in Values %}{{ k }}: {{ v | toString | squote }}\n{% endfor %}".to_string()),
        Just("{% for i in range(end=Values.n | default(value=3)) %}-{{ i }}{% endfor %}".to_string()),
        Just("{{ Values.s | b64enc | b64dec | trunc(n=-3) }}".to_string()),
        Just("{{ Values.s | indent(n=Values.n | default(value=2)) }}".to_string()),
        Just("{{ Values.s | fromYaml | toYaml }}".to_string()),
        Just("{{ Values.s | required(msg=\"s\") | sha256sum }}".to_string()),
        "[ -~\n]{0,24}",
    ];
    prop::collection::vec(piece, 0..10).prop_map(|p| p.concat())
}

fn chart(source: String) -> Chart {
    Chart {
        name: "fuzz".into(),
        version: "0.1.0".into(),
        app_version: None,
        metadata: json!({"name": "fuzz"}),
        values: json!({}),
        templates: vec![Template { path: "templates/a.yaml".into(), source }],
        engine: emco::render::chart::Engine::Tera,
        ..Default::default()
    }
}

fn ctx() -> RenderContext {
    RenderContext {
        release_name: "r".into(),
        release_namespace: "ns".into(),
        revision: 1,
        kube_version: "v1.35.4".into(),
        api_versions: vec![],
    }
}

/// Runs `property` on `CASES` generated inputs and prints how many ran.
fn check<S: Strategy>(name: &str, strategy: S, property: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let ran = AtomicUsize::new(0);
    let mut runner = proptest::test_runner::TestRunner::new(config());
    let result = runner.run(&strategy, |input| {
        ran.fetch_add(1, Ordering::Relaxed);
        property(input)
    });
    println!("{name}: {} generated cases ran", ran.load(Ordering::Relaxed));
    result.unwrap();
}

#[test]
fn the_renderer_never_panics() {
    check("renderer", (template(), json_value()), |(source, values)| {
        let _ = render_app(&chart(source), &values, &ctx());
        Ok(())
    });
}

#[test]
fn decoders_never_panic() {
    let input = (prop::collection::vec(any::<u8>(), 0..512), "[ -~\n\t]{0,200}");
    check("decoders", input, |(bytes, text)| {
        let _ = bundle::decode("b", std::slice::from_ref(&bytes));
        let _ = load_chart(&bytes);
        let _ = parse_values_yaml(&text, "fuzz");
        if let Ok(kubeconfig) = kube::config::Kubeconfig::from_yaml(&text) {
            let _ = emco::members::refused_field(&kubeconfig);
        }
        Ok(())
    });
}

#[test]
fn custom_resource_bodies_never_panic() {
    check("CR bodies", (json_value(), json_value()), |(spec, status)| {
        let body = |kind: &str| json!({"apiVersion": "x/v1", "kind": kind, "metadata": {"name": "n", "namespace": "p"}, "spec": spec, "status": status});
        let _ = serde_json::from_value::<DeploymentIntentGroup>(body("DeploymentIntentGroup"));
        let _ = serde_json::from_value::<AppContext>(body("AppContext"));
        let _ = serde_json::from_value::<Cluster>(body("Cluster"));
        let _ = serde_json::from_value::<Project>(body("Project"));
        let _ = serde_json::from_value::<CompositeApp>(body("CompositeApp"));
        let guarded = serde_json::from_value::<kube::core::DeserializeGuard<DeploymentIntentGroup>>(body(
            "DeploymentIntentGroup",
        ));
        prop_assert!(guarded.is_ok(), "a guard always reads the object: {:?}", guarded.err());
        Ok(())
    });
}
