//! The tera engine: turns a [`Chart`] and its final values into Kubernetes manifests.
//!
//! # For chart authors
//!
//! Charts keep Helm's layout, but templates are [tera 1](https://keats.github.io/tera/docs/)
//! templates, not Go templates. Every file under `templates/` is a tera template named by its
//! path (`templates/_helpers.tera`). Files whose name starts with `_` are only for
//! `{% import %}` / `{% include %}`; the others ending in `.yaml`, `.yml`, `.json` or `.tpl` are
//! rendered; `NOTES.txt` is never rendered (nor parsed). Output is not HTML-escaped.
//!
//! Top-level variables, as in Helm but without the leading dot: `Values`, `Release` (`Name`,
//! `Namespace`, `Revision`, `Service` = `"emco"`, `IsInstall`, `IsUpgrade`), `Chart`
//! (`Chart.yaml` keys with the first letter uppercased: `Name`, `Version`, `AppVersion`, ...),
//! `Capabilities` (`KubeVersion.{Version, GitVersion, Major, Minor}`, `APIVersions`) and
//! `Template` (`Name`, `BasePath`).
//!
//! Filters take keyword arguments, so Helm's `{{ toYaml .Values.labels | nindent 4 }}` is
//! `{{ Values.labels | toYaml | nindent(n=4) }}`. Besides tera's own (`default(value=..)`,
//! `upper`, `lower`, `replace`, `trim`, `join`, `length`, ...) there are `toYaml`, `toJson`,
//! `fromYaml`, `indent(n=..)`, `nindent(n=..)`, `quote`, `squote`, `b64enc`, `b64dec`,
//! `required(msg=..)`, `trunc(n=..)`, `trimSuffix(s=..)`, `trimPrefix(s=..)`, `toString`,
//! `int` and `sha256sum`. Unlike Helm's, tera's `default` replaces only a missing or `null`
//! value (not `""`, `0` or `false`), and only as the first filter of an expression:
//! `{{ Values.image.tag | default(value=Chart.AppVersion) }}` with `tag: null` in `values.yaml`.
//! A missing key is an error before any other filter runs, so `required` on a key that may be
//! absent reads `{{ Values.host | default(value="") | required(msg="host is required") }}`.
//!
//! Macros see only their arguments, not the template's variables: import helpers at the top
//! of the file with `{% import "templates/_helpers.tera" as helpers %}` and pass what they need,
//! `{{ helpers::labels(release=Release, chart=Chart) }}`. `get_env` is disabled.
//!
//! Each rendered file is split into YAML documents on `---` lines; empty and comment-only
//! documents are dropped, a `kind: List` is flattened into its `items`, and every manifest
//! needs a string `apiVersion`, `kind` and `metadata.name`.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::{Map, Value, json};
use tera::{Context, Tera};

use super::chart::{Chart, Template};
use super::filters;
use super::limits::{self, Budget};
use super::values::{from_yaml, type_name};

/// Release and cluster facts a chart renders against.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RenderContext {
    /// `Release.Name`.
    pub release_name: String,
    /// `Release.Namespace`.
    pub release_namespace: String,
    /// `Release.Revision`.
    pub revision: u32,
    /// The target cluster's version, e.g. `"v1.35.4"`.
    pub kube_version: String,
    /// `Capabilities.APIVersions`, e.g. `["apps/v1", "v1"]`.
    pub api_versions: Vec<String>,
}

/// A chart that does not render to valid manifests. Never contains values or rendered text
/// beyond what tera itself puts in its messages.
#[derive(Debug, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum RenderError {
    /// The chart broke one of the rendering limits ([`super::limits`]).
    #[error("chart {chart}: {limit}")]
    Limit {
        /// Chart name.
        chart: String,
        /// Which limit, in words.
        limit: String,
    },
    /// The values do not meet the chart's `values.schema.json`.
    #[error("chart {chart}: {message}")]
    Values {
        /// Chart name (the subchart's, for a subchart).
        chart: String,
        /// The failing paths and why.
        message: String,
    },
    /// tera could not parse or render a template.
    #[error("chart {chart}, {file}{}: {message}", line_suffix(.line))]
    Template {
        /// Chart name.
        chart: String,
        /// Template path, e.g. `templates/deployment.yaml`.
        file: String,
        /// 1-based line in the template source, when known or guessed.
        line: Option<usize>,
        /// tera's whole error chain.
        message: String,
    },
    /// A rendered document is not a valid manifest.
    #[error("chart {chart}, {file} document {document} (rendered line {line}): {message}")]
    Manifest {
        /// Chart name.
        chart: String,
        /// Template path.
        file: String,
        /// 1-based index of the document among the file's `---`-separated documents.
        document: usize,
        /// 1-based line of the rendered output where the document starts.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
}

fn line_suffix(line: &Option<usize>) -> String {
    line.map(|l| format!(" line {l}")).unwrap_or_default()
}

/// Renders every renderable template of `chart` with `values` (already merged) and returns
/// the manifests, file by file in path order.
pub(super) fn render_templates(chart: &Chart, values: &Value, ctx: &RenderContext) -> Result<Vec<Value>, RenderError> {
    if chart.engine == super::chart::Engine::Go {
        return super::gotmpl::render(chart, values, ctx);
    }
    if let Some(message) = chart.schema.as_ref().and_then(|s| super::values::schema_violations(s, values)) {
        return Err(RenderError::Values { chart: chart.name.clone(), message });
    }
    tracing::debug!(chart = %chart.name, templates = chart.templates.len(), "rendering chart");
    let limit = |limit: String| RenderError::Limit { chart: chart.name.clone(), limit };
    limits::check_cycles(chart).map_err(limit)?;
    let mut budget = Budget::new();
    let tera = build_tera(chart, budget.deadline)?;
    let mut context = base_context(chart, values, ctx);
    let mut manifests = Vec::new();
    for template in chart.templates.iter().filter(|t| is_rendered(&t.path)) {
        context.insert("Template", &json!({"Name": template.path, "BasePath": "templates"}));
        if let Err(e) = tera.render_to(&template.path, &context, &mut budget) {
            return Err(match budget.broken.take() {
                Some(broken) => limit(broken),
                None => template_error(chart, Some(template), &e),
            });
        }
        manifests.extend(parse_manifests(&chart.name, &template.path, &budget.take())?);
    }
    Ok(manifests)
}

fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn is_rendered(path: &str) -> bool {
    let name = base_name(path);
    let extension = name.rsplit_once('.').map_or("", |(_, ext)| ext);
    !name.starts_with('_') && matches!(extension, "yaml" | "yml" | "json" | "tpl")
}

fn build_tera(chart: &Chart, deadline: Instant) -> Result<Tera, RenderError> {
    let mut tera = Tera::default();
    tera.autoescape_on(vec![]);
    filters::register(&mut tera);
    tera.register_function("get_env", get_env_disabled);
    tera.register_function("range", move |args: &HashMap<String, Value>| bounded_range(args, deadline));
    let sources = chart
        .templates
        .iter()
        .filter(|t| base_name(&t.path) != "NOTES.txt")
        .map(|t| (t.path.as_str(), t.source.as_str()));
    tera.add_raw_templates(sources).map_err(|e| {
        let chain = error_chain(&e).join(": ");
        template_error(chart, mentioned_template(chart, &chain), &e)
    })?;
    Ok(tera)
}

/// tera's `range` (`start`, `end`, `step_by`), at most [`limits::RANGE_ITEMS`] items, and only
/// before the render's deadline: nested loops cannot run for ever.
fn bounded_range(args: &HashMap<String, Value>, deadline: Instant) -> tera::Result<Value> {
    if Instant::now() > deadline {
        return Err(tera::Error::msg(format!("rendering took longer than {} s", limits::DEADLINE.as_secs())));
    }
    let arg = |name: &str, default: Option<u64>| match args.get(name) {
        Some(v) => v.as_u64().ok_or_else(|| tera::Error::msg(format!("`range`: `{name}` must be a whole number"))),
        None => default.ok_or_else(|| tera::Error::msg(format!("`range` needs `{name}`"))),
    };
    let (start, end, step) = (arg("start", Some(0))?, arg("end", None)?, arg("step_by", Some(1))?.max(1));
    let items = end.saturating_sub(start).div_ceil(step);
    if items > limits::RANGE_ITEMS as u64 {
        return Err(tera::Error::msg(format!("`range` of {items} items is over the limit of {}", limits::RANGE_ITEMS)));
    }
    Ok(Value::Array((start..end).step_by(step as usize).map(Value::from).collect()))
}

/// Charts must not read the operator's environment (it may hold credentials).
fn get_env_disabled(_: &HashMap<String, Value>) -> tera::Result<Value> {
    Err(tera::Error::msg("get_env is disabled in charts"))
}

fn base_context(chart: &Chart, values: &Value, ctx: &RenderContext) -> Context {
    let mut context = Context::new();
    context.insert("Values", values);
    context.insert(
        "Release",
        &json!({
            "Name": ctx.release_name,
            "Namespace": ctx.release_namespace,
            "Revision": ctx.revision,
            "Service": "emco",
            "IsInstall": true,
            "IsUpgrade": false,
        }),
    );
    context.insert("Chart", &chart_context(&chart.metadata));
    context.insert("Capabilities", &capabilities(ctx));
    context
}

/// `Chart.yaml` with each top-level key's first letter uppercased.
fn chart_context(metadata: &Value) -> Value {
    let map: Map<String, Value> =
        metadata.as_object().into_iter().flatten().map(|(key, value)| (capitalize(key), value.clone())).collect();
    Value::Object(map)
}

fn capitalize(key: &str) -> String {
    let mut chars = key.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

fn capabilities(ctx: &RenderContext) -> Value {
    let mut parts = ctx.kube_version.trim_start_matches('v').split('.');
    let major = parts.next().unwrap_or_default();
    let minor = parts.next().unwrap_or_default();
    json!({
        "KubeVersion": {
            "Version": ctx.kube_version,
            "GitVersion": ctx.kube_version,
            "Major": major,
            "Minor": minor,
        },
        "APIVersions": ctx.api_versions,
    })
}

/// The messages of `err` and all its sources, outermost first.
fn error_chain(err: &tera::Error) -> Vec<String> {
    let mut chain = vec![err.to_string()];
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        chain.push(inner.to_string());
        source = inner.source();
    }
    chain
}

/// The template named (quoted) earliest in an error message.
fn mentioned_template<'a>(chart: &'a Chart, message: &str) -> Option<&'a Template> {
    let position = |path: &str| ["'", "`"].iter().filter_map(|q| message.find(&format!("{q}{path}{q}"))).min();
    chart
        .templates
        .iter()
        .filter_map(|t| position(&t.path).map(|pos| (pos, t)))
        .min_by_key(|(pos, _)| *pos)
        .map(|(_, t)| t)
}

fn template_error(chart: &Chart, template: Option<&Template>, err: &tera::Error) -> RenderError {
    let chain = error_chain(err);
    let file = template.map_or("templates/", |t| t.path.as_str());
    let line = chain
        .iter()
        .find_map(|part| parse_error_line(part))
        .or_else(|| template.and_then(|t| guess_line(&t.source, &line_candidates(chart, &chain))));
    RenderError::Template {
        chart: chart.name.clone(),
        file: file.to_owned(),
        line,
        message: clean_message(&chain, file),
    }
}

/// The line of a tera parse error, which reads ` --> LINE:COLUMN`.
fn parse_error_line(message: &str) -> Option<usize> {
    let (_, rest) = message.split_once("--> ")?;
    let (line, _) = rest.split_once(':')?;
    line.trim().parse().ok()
}

/// What to look for in the source when tera gives no line: the innermost message (e.g. a
/// `required` message), then backticked names, then single-quoted ones, but no file names.
fn line_candidates<'a>(chart: &Chart, chain: &'a [String]) -> Vec<&'a str> {
    let innermost = chain.last().map(String::as_str).into_iter();
    let quoted = |delimiter| chain.iter().flat_map(move |part| delimited(part, delimiter));
    innermost
        .chain(quoted('`'))
        .chain(quoted('\''))
        .filter(|c| !c.is_empty() && !chart.templates.iter().any(|t| t.path == *c))
        .collect()
}

/// The pieces of `text` between pairs of `delimiter`.
fn delimited(text: &str, delimiter: char) -> impl Iterator<Item = &str> {
    text.split(delimiter).skip(1).step_by(2)
}

fn guess_line(source: &str, candidates: &[&str]) -> Option<usize> {
    candidates
        .iter()
        .find_map(|candidate| source.lines().position(|line| contains_word(line, candidate)).map(|index| index + 1))
}

/// Whether `line` contains `needle` not glued to a longer name (`Values.a` is not in `Values.ab`).
fn contains_word(line: &str, needle: &str) -> bool {
    let is_name_char = |c: char| c.is_alphanumeric() || c == '_' || c == '.';
    line.match_indices(needle).any(|(start, _)| {
        let before = line[..start].chars().next_back();
        let after = line[start + needle.len()..].chars().next();
        !before.is_some_and(is_name_char) && !after.is_some_and(is_name_char)
    })
}

/// The chain joined with `: `, without tera's "Failed to render 'file'" wrapper, its
/// "while rendering 'file'" tail and the source snippet of parse errors.
fn clean_message(chain: &[String], file: &str) -> String {
    let wrappers = [format!("Failed to render '{file}'"), format!("Failed to parse '{file}'")];
    let tail = format!(" while rendering '{file}'");
    chain
        .iter()
        .map(|part| {
            let part = pest_summary(part).trim();
            let part = wrappers.iter().fold(part, |p, w| p.strip_prefix(w.as_str()).unwrap_or(p));
            let part = part.strip_suffix(tail.as_str()).unwrap_or(part);
            part.trim_start_matches(':').trim().to_owned()
        })
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(": ")
}

/// The `= expected ...` line of a parse error, or the message as it is.
fn pest_summary(message: &str) -> &str {
    message.lines().find_map(|line| line.trim_start().strip_prefix("= ")).unwrap_or(message)
}

/// One `---`-separated piece of a rendered file.
struct Document {
    number: usize,
    line: usize,
    text: String,
}

pub(super) fn parse_manifests(chart: &str, file: &str, text: &str) -> Result<Vec<Value>, RenderError> {
    let mut manifests = Vec::new();
    for document in split_documents(text) {
        let error = |message: String| RenderError::Manifest {
            chart: chart.to_owned(),
            file: file.to_owned(),
            document: document.number,
            line: document.line,
            message,
        };
        let value = from_yaml(&document.text).map_err(|e| error(format!("invalid YAML: {e}")))?;
        manifests.extend(flatten(value).map_err(error)?);
    }
    Ok(manifests)
}

fn split_documents(text: &str) -> Vec<Document> {
    let mut documents = vec![Document { number: 1, line: 1, text: String::new() }];
    for (index, line) in text.lines().enumerate() {
        if is_separator(line) {
            let number = documents.len() + 1;
            documents.push(Document { number, line: index + 2, text: String::new() });
        } else if let Some(document) = documents.last_mut() {
            document.text.push_str(line);
            document.text.push('\n');
        }
    }
    documents.retain(|d| !is_blank(&d.text));
    documents
}

/// `---`, optionally followed by spaces and a `# comment`.
fn is_separator(line: &str) -> bool {
    line.strip_prefix("---").is_some_and(|rest| {
        rest.trim().is_empty() || (rest.starts_with(char::is_whitespace) && rest.trim_start().starts_with('#'))
    })
}

fn is_blank(text: &str) -> bool {
    text.lines().map(str::trim).all(|l| l.is_empty() || l.starts_with('#'))
}

/// A checked manifest, or the checked items of a `kind: List`; nothing for a `null` document.
fn flatten(value: Value) -> Result<Vec<Value>, String> {
    if value.is_null() {
        return Ok(Vec::new());
    }
    if value.get("kind").and_then(Value::as_str) != Some("List") {
        return check_manifest(value).map(|m| vec![m]);
    }
    let Some(Value::Array(items)) = value.get("items") else {
        return Err("a List needs an `items` list".to_owned());
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| check_manifest(item.clone()).map_err(|e| format!("List item {}: {e}", i + 1)))
        .collect()
}

fn check_manifest(value: Value) -> Result<Value, String> {
    if !value.is_object() {
        return Err(format!("a manifest must be a map, got {}", type_name(&value)));
    }
    for (field, found) in [
        ("apiVersion", value.get("apiVersion")),
        ("kind", value.get("kind")),
        ("metadata.name", value.get("metadata").and_then(|m| m.get("name"))),
    ] {
        if found.and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(format!("a manifest needs a string `{field}`"));
        }
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(templates: &[(&str, &str)]) -> Chart {
        Chart {
            name: "smtc-edge".to_owned(),
            version: "1.2.3".to_owned(),
            app_version: Some("4.5".to_owned()),
            metadata: json!({"name": "smtc-edge", "version": "1.2.3", "appVersion": "4.5",
                             "description": "demo"}),
            values: json!({}),
            templates: templates
                .iter()
                .map(|(path, source)| Template { path: (*path).to_owned(), source: (*source).to_owned() })
                .collect(),
            engine: crate::render::chart::Engine::Tera,
            crds: Vec::new(),
            subcharts: Vec::new(),
            files: Vec::new(),
            schema: None,
        }
    }

    fn ctx() -> RenderContext {
        RenderContext {
            release_name: "rel".to_owned(),
            release_namespace: "edge".to_owned(),
            revision: 3,
            kube_version: "v1.35.4".to_owned(),
            api_versions: vec!["apps/v1".to_owned(), "v1".to_owned()],
        }
    }

    fn render(templates: &[(&str, &str)], values: Value) -> Result<Vec<Value>, RenderError> {
        render_templates(&chart(templates), &values, &ctx())
    }

    fn cm(name: &str) -> String {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n")
    }

    #[test]
    fn context_has_helm_variables() {
        let source = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ Release.Name }}\n\
            data:\n  ns: {{ Release.Namespace }}\n  rev: \"{{ Release.Revision }}\"\n\
            \x20 service: {{ Release.Service }}\n  install: \"{{ Release.IsInstall }}\"\n\
            \x20 chart: {{ Chart.Name }}-{{ Chart.Version }}\n  app: \"{{ Chart.AppVersion }}\"\n\
            \x20 desc: {{ Chart.Description }}\n  minor: \"{{ Capabilities.KubeVersion.Minor }}\"\n\
            \x20 major: \"{{ Capabilities.KubeVersion.Major }}\"\n\
            \x20 git: {{ Capabilities.KubeVersion.GitVersion }}\n\
            \x20 apps: \"{{ 'apps/v1' in Capabilities.APIVersions }}\"\n\
            \x20 template: {{ Template.Name }}\n  base: {{ Template.BasePath }}\n";
        let out = render(&[("templates/cm.yaml", source)], json!({})).unwrap();
        assert_eq!(
            out[0]["data"],
            json!({"ns": "edge", "rev": "3", "service": "emco", "install": "true",
                   "chart": "smtc-edge-1.2.3", "app": "4.5", "desc": "demo", "minor": "35",
                   "major": "1", "git": "v1.35.4", "apps": "true",
                   "template": "templates/cm.yaml", "base": "templates"})
        );
    }

    #[test]
    fn default_covers_missing_keys() {
        let source = format!(
            "{}data:\n  a: \"{{{{ Values.x | default(value=3) }}}}\"\n  \
             b: {{{{ Values.deep.er.key | default(value='d') }}}}\n  c: {{{{ Values.set | default(value=1) }}}}\n",
            cm("c")
        );
        let out = render(&[("templates/cm.yaml", &source)], json!({"set": 7})).unwrap();
        assert_eq!(out[0]["data"], json!({"a": "3", "b": "d", "c": 7}));
    }

    #[test]
    fn helpers_are_imported_not_rendered() {
        let helpers = "{% macro name(release) %}{{ release.Name }}-web{% endmacro name %}";
        let source = "{% import \"templates/_helpers.tera\" as helpers %}\napiVersion: v1\n\
            kind: ConfigMap\nmetadata:\n  name: {{ helpers::name(release=Release) }}\n";
        let out = render(
            &[
                ("templates/_helpers.tera", helpers),
                ("templates/cm.yaml", source),
                ("templates/NOTES.txt", "{{ .Release.Name }} is Go syntax"),
                ("templates/raw.txt", "not rendered"),
            ],
            json!({}),
        )
        .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["metadata"]["name"], "rel-web");
    }

    #[test]
    fn output_is_not_escaped_and_get_env_is_disabled() {
        let source = format!("{}data:\n  s: \"{{{{ Values.s }}}}\"\n", cm("c"));
        let out = render(&[("templates/cm.yaml", &source)], json!({"s": "<a&b>"})).unwrap();
        assert_eq!(out[0]["data"]["s"], "<a&b>");
        let source = format!("{}data:\n  s: {{{{ get_env(name='HOME') }}}}\n", cm("c"));
        let err = render(&[("templates/cm.yaml", &source)], json!({})).unwrap_err();
        assert!(err.to_string().contains("get_env is disabled"), "{err}");
    }

    #[test]
    fn splits_documents_and_skips_empty_ones() {
        let source =
            format!("---\n{}--- # second\n{}---   \n# only a comment\n---\n\n---\n{}", cm("a"), cm("b"), cm("c"));
        let out = render(&[("templates/all.yaml", &source)], json!({})).unwrap();
        let names: Vec<_> = out.iter().map(|m| m["metadata"]["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn separator_needs_a_space_before_a_comment() {
        assert!(is_separator("---"));
        assert!(is_separator("---  "));
        assert!(is_separator("--- # note"));
        assert!(!is_separator("---#x"));
        assert!(!is_separator("----"));
        assert!(!is_separator(" ---"));
    }

    #[test]
    fn list_is_flattened() {
        let source = "apiVersion: v1\nkind: List\nitems:\n\
            - {apiVersion: v1, kind: ConfigMap, metadata: {name: one}}\n\
            - {apiVersion: v1, kind: Secret, metadata: {name: two}}\n";
        let out = render(&[("templates/list.yaml", source)], json!({})).unwrap();
        let kinds: Vec<_> = out.iter().map(|m| m["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["ConfigMap", "Secret"]);
        let bad = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap}\n";
        let err = render(&[("templates/list.yaml", bad)], json!({})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "chart smtc-edge, templates/list.yaml document 1 (rendered line 1): \
             List item 1: a manifest needs a string `metadata.name`"
        );
    }

    #[test]
    fn non_map_manifest_names_chart_file_and_document() {
        let source = format!("{}---\n- just\n- a list\n", cm("ok"));
        let err = render(&[("templates/bad.yaml", &source)], json!({})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "chart smtc-edge, templates/bad.yaml document 2 (rendered line 6): \
             a manifest must be a map, got a list"
        );
    }

    #[test]
    fn manifest_needs_api_version_kind_and_name() {
        let err = render(&[("templates/x.yaml", "kind: ConfigMap\n")], json!({})).unwrap_err();
        assert!(err.to_string().ends_with("a manifest needs a string `apiVersion`"), "{err}");
        let err = render(&[("templates/x.yaml", "a: [1\n")], json!({})).unwrap_err();
        assert!(err.to_string().contains("document 1 (rendered line 1): invalid YAML"), "{err}");
    }

    /// Twelve lines; the value that matters is on line 12, a longer look-alike on line 10.
    const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n\
        spec:\n  template:\n    spec:\n      containers:\n      - name: web\n\
        \x20       image: {{ Values.image.repository }}\n        ports:\n\
        \x20       - containerPort: {{ Values.image.repo }}\n";

    #[test]
    fn missing_variable_names_file_and_line() {
        let values = json!({"image": {"repository": "nginx"}});
        let err = render(&[("templates/deployment.yaml", DEPLOYMENT)], values).unwrap_err();
        assert_eq!(
            err.to_string(),
            "chart smtc-edge, templates/deployment.yaml line 12: \
             Variable `Values.image.repo` not found in context"
        );
    }

    #[test]
    fn required_failure_names_file_and_line() {
        let source = format!(
            "{}data:\n  a: {{{{ Values.a | required(msg='a is required') }}}}\n  \
             b: {{{{ Values.b | required(msg='b is required') }}}}\n",
            cm("c")
        );
        let err = render(&[("templates/cm.yaml", &source)], json!({"a": 1, "b": ""})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "chart smtc-edge, templates/cm.yaml line 7: Filter call 'required' failed: b is required"
        );
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let source = format!("{}data:\n  a: {{{{ Values.a }}\n", cm("c"));
        let err = render(&[("templates/ok.yaml", &cm("x")), ("templates/cm.yaml", &source)], json!({})).unwrap_err();
        let RenderError::Template { file, line, message, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!((file.as_str(), *line), ("templates/cm.yaml", Some(6)));
        assert!(message.starts_with("expected"), "{message}");
    }

    #[test]
    fn unknown_filter_and_macro_errors_point_at_the_call() {
        let source = format!("{}data:\n  a: {{{{ Values.a | toYml }}}}\n", cm("c"));
        let err = render(&[("templates/cm.yaml", &source)], json!({"a": 1})).unwrap_err();
        assert_eq!(err.to_string(), "chart smtc-edge, templates/cm.yaml line 6: Filter 'toYml' not found");

        let helpers = "{% macro name(release) %}{{ release.Nmae }}{% endmacro name %}";
        let source = "{% import \"templates/_helpers.tera\" as helpers %}\napiVersion: v1\n\
            kind: ConfigMap\nmetadata:\n  name: {{ helpers::name(release=Release) }}\n";
        let err =
            render(&[("templates/_helpers.tera", helpers), ("templates/cm.yaml", source)], json!({})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "chart smtc-edge, templates/cm.yaml line 5: error while rendering macro \
             `helpers::name`: Variable `release.Nmae` not found in context while rendering \
             'templates/_helpers.tera'"
        );
    }

    #[test]
    fn broken_helper_and_missing_import_name_the_right_file() {
        let err = render(
            &[("templates/_helpers.tera", "\n{% macro x() %}{{ a }{% endmacro x %}"), ("templates/cm.yaml", "")],
            json!({}),
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("chart smtc-edge, templates/_helpers.tera line 2: "), "{err}");
        let source = "\n{% import \"templates/_nope.tera\" as h %}\n";
        let err = render(&[("templates/cm.yaml", source)], json!({})).unwrap_err();
        assert!(err.to_string().starts_with("chart smtc-edge, templates/cm.yaml line 2: Template "), "{err}");
    }
}
