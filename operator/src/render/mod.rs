//! Chart rendering: Helm charts whose templates are Go templates (`gotmpl`, ordinary Helm
//! charts) or tera 1 templates (`engine`, charts written for this project).
//!
//! [`chart::load_chart`] reads a packaged chart, [`repository::fetch_chart`] downloads one from a
//! Helm HTTP repository, [`values::merge`] layers values Helm style and [`render_app`] turns a
//! chart and its values into manifests. The template language for chart authors is described in
//! the `engine` module's documentation.

pub mod chart;
mod engine;
pub mod fence;
mod filters;
mod gotmpl;
pub mod limits;
pub mod repository;
pub mod sandbox;
pub mod values;

pub use chart::{Chart, ChartError, Template, load_chart};
pub use engine::{RenderContext, RenderError};
pub use repository::{RepositoryError, fetch_chart};
pub use values::{ValuesError, merge, parse_values_yaml};

/// Renders `chart` for one release and returns its manifests (JSON objects, each with
/// `apiVersion`, `kind` and `metadata.name`), file by file in template path order.
///
/// `values` are the final values, used as they are: callers start from `chart.values` and
/// [`merge`] profile and override values over it. Values and rendered text are never logged.
pub fn render_app(
    chart: &Chart,
    values: &serde_json::Value,
    ctx: &RenderContext,
) -> Result<Vec<serde_json::Value>, RenderError> {
    let started = std::time::Instant::now();
    let rendered = sandbox::render(chart, values, ctx);
    let refusal = match &rendered {
        Ok(_) => None,
        Err(RenderError::Limit { .. }) => Some("RenderLimitExceeded"),
        Err(RenderError::Values { .. }) => Some("InvalidValues"),
        Err(_) => Some("TemplateError"),
    };
    crate::metrics::rendered(started, refusal);
    rendered
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const CHART_YAML: &str = "apiVersion: v2\nname: smtc-edge\nversion: 0.4.0\nappVersion: \"2.1\"\n";

    const VALUES_YAML: &str = "\
replicaCount: 1
image:
  repository: registry.example/smtc
  tag: null  # Chart.AppVersion
labels:
  tier: edge
service:
  enabled: true
  ports:
  - name: http
    port: 80
  - name: metrics
    port: 9090
config:
  LOG_LEVEL: info
  MODE: chart
";

    const HELPERS: &str = r#"{% macro labels(release, chart) -%}
app.kubernetes.io/name: {{ chart.Name }}
app.kubernetes.io/instance: {{ release.Name }}
app.kubernetes.io/managed-by: {{ release.Service }}
{%- endmacro labels %}
{% macro fullname(release, chart) -%}
{{ release.Name }}-{{ chart.Name | trunc(n=40) | trimSuffix(s="-") }}
{%- endmacro fullname %}
"#;

    const DEPLOYMENT: &str = r#"{% import "templates/_helpers.tera" as helpers -%}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ helpers::fullname(release=Release, chart=Chart) }}
  namespace: {{ Release.Namespace }}
  labels:
    {{- helpers::labels(release=Release, chart=Chart) | nindent(n=4) }}
    {{- Values.labels | toYaml | nindent(n=4) }}
spec:
  replicas: {{ Values.replicaCount | default(value=1) }}
  selector:
    matchLabels:
      app.kubernetes.io/instance: {{ Release.Name }}
  template:
    metadata:
      labels:
        app.kubernetes.io/instance: {{ Release.Name }}
    spec:
      containers:
      - name: app
        image: "{{ Values.image.repository | required(msg="image.repository is required") }}:{{ Values.image.tag | default(value=Chart.AppVersion) }}"
        ports:
        {%- for port in Values.service.ports %}
        - name: {{ port.name }}
          containerPort: {{ port.port }}
        {%- endfor %}
        {%- if Capabilities.KubeVersion.Minor | int >= 33 %}
        resizePolicy:
        - resourceName: cpu
          restartPolicy: NotRequired
        {%- endif %}
"#;

    const SERVICE: &str = r#"{% import "templates/_helpers.tera" as helpers -%}
{% if Values.service.enabled -%}
apiVersion: v1
kind: Service
metadata:
  name: {{ helpers::fullname(release=Release, chart=Chart) }}
spec:
  selector:
    app.kubernetes.io/instance: {{ Release.Name }}
  ports:
  {%- for port in Values.service.ports %}
  - name: {{ port.name }}
    port: {{ port.port }}
  {%- endfor %}
{% endif -%}
"#;

    const CONFIGMAP: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ Release.Name }}-config
data:
  {%- for key, value in Values.config %}
  {{ key }}: {{ value | quote }}
  {%- endfor %}
  values.json: {{ Values.config | toJson | squote }}
"#;

    fn chart() -> Chart {
        load_chart(&chart::tests::tgz(&[
            ("smtc-edge/Chart.yaml", CHART_YAML),
            ("smtc-edge/values.yaml", VALUES_YAML),
            ("smtc-edge/templates/_helpers.tera", HELPERS),
            ("smtc-edge/templates/deployment.yaml", DEPLOYMENT),
            ("smtc-edge/templates/service.yaml", SERVICE),
            ("smtc-edge/templates/configmap.yaml", CONFIGMAP),
            ("smtc-edge/templates/NOTES.txt", "Installed {{ .Release.Name }}."),
        ]))
        .unwrap()
    }

    fn ctx(kube_version: &str) -> RenderContext {
        RenderContext {
            release_name: "cam".to_owned(),
            release_namespace: "edge".to_owned(),
            revision: 1,
            kube_version: kube_version.to_owned(),
            api_versions: vec!["v1".to_owned(), "apps/v1".to_owned()],
        }
    }

    fn by_kind<'a>(manifests: &'a [Value], kind: &str) -> &'a Value {
        manifests.iter().find(|m| m["kind"] == kind).unwrap()
    }

    #[test]
    fn renders_a_realistic_chart() {
        let chart = chart();
        let manifests = render_app(&chart, &chart.values, &ctx("v1.35.4")).unwrap();
        let kinds: Vec<_> = manifests.iter().map(|m| m["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["ConfigMap", "Deployment", "Service"]);

        let deployment = by_kind(&manifests, "Deployment");
        assert_eq!(deployment["metadata"]["name"], "cam-smtc-edge");
        assert_eq!(
            deployment["metadata"]["labels"],
            json!({"app.kubernetes.io/name": "smtc-edge", "app.kubernetes.io/instance": "cam",
                   "app.kubernetes.io/managed-by": "emco", "tier": "edge"})
        );
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["image"], "registry.example/smtc:2.1");
        assert_eq!(
            container["ports"],
            json!([{"name": "http", "containerPort": 80}, {"name": "metrics", "containerPort": 9090}])
        );
        assert_eq!(container["resizePolicy"][0]["resourceName"], "cpu");

        let service = by_kind(&manifests, "Service");
        assert_eq!(service["spec"]["ports"][1], json!({"name": "metrics", "port": 9090}));

        let config = by_kind(&manifests, "ConfigMap");
        assert_eq!(
            config["data"],
            json!({"LOG_LEVEL": "info", "MODE": "chart",
                   "values.json": r#"{"LOG_LEVEL":"info","MODE":"chart"}"#})
        );
    }

    #[test]
    fn values_merge_chart_then_profile_then_override() {
        let chart = chart();
        let mut values = chart.values.clone();
        let profile = json!({"replicaCount": 3, "image": {"tag": "profile"}, "config": {"MODE": "profile"}});
        merge(&mut values, &profile);
        merge(&mut values, &json!({"image": {"tag": "override"}, "service": {"enabled": false}}));
        let manifests = render_app(&chart, &values, &ctx("v1.35.4")).unwrap();
        let kinds: Vec<_> = manifests.iter().map(|m| m["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["ConfigMap", "Deployment"]);
        let deployment = by_kind(&manifests, "Deployment");
        assert_eq!(deployment["spec"]["replicas"], 3);
        let image = &deployment["spec"]["template"]["spec"]["containers"][0]["image"];
        assert_eq!(image, "registry.example/smtc:override");
        let config = &by_kind(&manifests, "ConfigMap")["data"];
        assert_eq!((&config["LOG_LEVEL"], &config["MODE"]), (&json!("info"), &json!("profile")));
    }

    #[test]
    fn capabilities_kube_version_minor_drives_conditionals() {
        let chart = chart();
        let manifests = render_app(&chart, &chart.values, &ctx("v1.30.2")).unwrap();
        let container = &by_kind(&manifests, "Deployment")["spec"]["template"]["spec"]["containers"][0];
        assert!(container.get("resizePolicy").is_none(), "{container}");
    }

    #[test]
    fn required_value_error_names_chart_file_and_line() {
        let chart = chart();
        let mut values = chart.values.clone();
        merge(&mut values, &json!({"image": {"repository": ""}}));
        let err = render_app(&chart, &values, &ctx("v1.35.4")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "chart smtc-edge, templates/deployment.yaml line 22: \
             Filter call 'required' failed: image.repository is required"
        );
    }
}
