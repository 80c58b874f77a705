//! Chart archives: reading a `helm package` style `.tgz` into a [`Chart`]: `Chart.yaml`,
//! `values.yaml`, the files under `templates/` and `crds/`, subcharts under `charts/` (folders or
//! packaged `.tgz`, at most [`MAX_DEPTH`] deep), every other file for `.Files`, and which template
//! engine the chart is written for ([`Engine`]).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path};

use flate2::read::GzDecoder;
use serde_json::Value;

use super::values::{from_yaml, parse_values_yaml, type_name};

/// Largest uncompressed archive (the tar stream) accepted.
pub const MAX_UNCOMPRESSED_BYTES: u64 = 20 * 1024 * 1024;
/// Most entries (files, directories, ...) an archive may hold.
pub const MAX_ENTRIES: usize = 2000;
/// How deep subcharts may nest.
pub const MAX_DEPTH: usize = 5;
/// The Chart.yaml annotation that names the template engine.
pub const ENGINE_ANNOTATION: &str = "emco.io/template-engine";

/// A chart archive that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// The gzip or tar stream is broken.
    #[error("reading chart archive: {0}")]
    Archive(#[from] std::io::Error),
    /// The archive unpacks to more than [`MAX_UNCOMPRESSED_BYTES`].
    #[error("chart archive is larger than {MAX_UNCOMPRESSED_BYTES} bytes uncompressed")]
    TooLarge,
    /// The archive has more than [`MAX_ENTRIES`] entries.
    #[error("chart archive has more than {MAX_ENTRIES} entries")]
    TooManyEntries,
    /// An entry path is absolute or contains `..`.
    #[error("chart archive entry {0:?} has an absolute path or `..`")]
    UnsafePath(String),
    /// Entries are not all under one top-level directory.
    #[error("chart archive entry {0:?} is not under the chart's top-level directory")]
    NotUnderTopDir(String),
    /// A file that must be text is not UTF-8.
    #[error("chart file {0} is not UTF-8 text")]
    NotText(String),
    /// There is no `<chart>/Chart.yaml`.
    #[error("chart archive has no Chart.yaml")]
    MissingChartYaml,
    /// `Chart.yaml` is not a usable YAML map.
    #[error("Chart.yaml: {0}")]
    ChartYaml(String),
    /// `values.yaml` is not a YAML map.
    #[error(transparent)]
    Values(#[from] super::values::ValuesError),
    /// The template engine cannot be told, or the annotation names none.
    #[error("chart {chart}: {message}")]
    Engine { chart: String, message: String },
    /// Subcharts nest deeper than [`MAX_DEPTH`].
    #[error("subcharts nest deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// A subchart is broken.
    #[error("subchart {name}: {source}")]
    Subchart { name: String, source: Box<ChartError> },
}

/// The template language of a chart's templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Engine {
    /// Go's text/template with Helm's and Sprig's functions: an ordinary Helm chart.
    #[default]
    Go,
    /// tera, for charts written for this project (`emco.io/template-engine: tera`).
    Tera,
}

/// A loaded chart.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Chart {
    /// `name` from `Chart.yaml`.
    pub name: String,
    /// `version` from `Chart.yaml`.
    pub version: String,
    /// `appVersion` from `Chart.yaml`, if any.
    pub app_version: Option<String>,
    /// All of `Chart.yaml`, as a map.
    pub metadata: Value,
    /// `values.yaml` as a map; `{}` when the chart has none.
    pub values: Value,
    /// Every file under `templates/`, sorted by path (`NOTES.txt` included).
    pub templates: Vec<Template>,
    /// The template engine.
    #[serde(default)]
    pub engine: Engine,
    /// Files under `crds/`: applied as they are, before everything else, never templated.
    #[serde(default)]
    pub crds: Vec<Template>,
    /// Subcharts from `charts/`, folders first, then packaged ones, each by name.
    #[serde(default)]
    pub subcharts: Vec<Chart>,
    /// Every other file (not Chart.yaml, values.yaml, templates/ or charts/), for `.Files`.
    /// Serialized (to the render worker) as base64 strings, not as arrays of numbers.
    #[serde(default, with = "base64_files")]
    pub files: Vec<(String, Vec<u8>)>,
    /// `values.schema.json`: the final values must meet it.
    #[serde(default)]
    pub schema: Option<Value>,
}

/// `(path, bytes)` pairs as `[path, base64]` pairs.
mod base64_files {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

    /// One file encoded at a time, as the serializer asks.
    pub fn serialize<S: Serializer>(files: &[(String, Vec<u8>)], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(files.iter().map(|(p, b)| (p, B64.encode(b))))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, Vec<u8>)>, D::Error> {
        let encoded = Vec::<(String, String)>::deserialize(d)?;
        encoded
            .into_iter()
            .map(|(p, b)| B64.decode(b).map(|bytes| (p, bytes)).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// One file under `templates/`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Template {
    /// Path inside the chart, e.g. `templates/deployment.yaml`.
    pub path: String,
    /// The file's text.
    pub source: String,
}

/// Loads a chart from a gzipped tar as `helm package` makes it: every entry under one
/// top-level `<chart>/` directory, with `Chart.yaml` (needs `name` and `version`), an optional
/// `values.yaml` (a map), `templates/**`, `crds/**` and `charts/**`.
pub fn load_chart(tgz: &[u8]) -> Result<Chart, ChartError> {
    let mut budget = Budget { bytes: MAX_UNCOMPRESSED_BYTES, entries: MAX_ENTRIES };
    load_nested(tgz, 0, &mut budget)
}

/// What is left of the limits for the whole chart, packaged subcharts included.
struct Budget {
    bytes: u64,
    entries: usize,
}

fn load_nested(tgz: &[u8], depth: usize, budget: &mut Budget) -> Result<Chart, ChartError> {
    if depth > MAX_DEPTH {
        return Err(ChartError::TooDeep);
    }
    from_files(entries(tgz, budget)?, depth, budget)
}

/// A chart from its files (paths relative to its folder).
fn from_files(files: BTreeMap<String, Vec<u8>>, depth: usize, budget: &mut Budget) -> Result<Chart, ChartError> {
    if depth > MAX_DEPTH {
        return Err(ChartError::TooDeep);
    }
    let text = |path: &str| files.get(path).map(|b| as_text(path, b)).transpose();
    let metadata = parse_chart_yaml(&text("Chart.yaml")?.ok_or(ChartError::MissingChartYaml)?)?;
    let values = match text("values.yaml")? {
        Some(text) => parse_values_yaml(&text, "chart values.yaml")?,
        None => Value::Object(Default::default()),
    };
    let name = required_text(&metadata, "name")?;
    let mut templates = Vec::new();
    let mut crds = Vec::new();
    let mut others = Vec::new();
    let mut nested: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    let mut packaged: Vec<(String, Vec<u8>)> = Vec::new();
    for (path, bytes) in &files {
        if let Some(rest) = path.strip_prefix("charts/") {
            match rest.split_once('/') {
                Some((dir, inner)) => {
                    nested.entry(dir.to_string()).or_default().insert(inner.to_string(), bytes.clone());
                }
                None if rest.ends_with(".tgz") => packaged.push((rest.to_string(), bytes.clone())),
                None => {}
            }
        } else if path.starts_with("templates/") {
            templates.push(Template { path: path.clone(), source: as_text(path, bytes)? });
        } else if path.starts_with("crds/") {
            crds.push(Template { path: path.clone(), source: as_text(path, bytes)? });
        } else if !matches!(path.as_str(), "Chart.yaml" | "values.yaml" | "values.schema.json") {
            others.push((path.clone(), bytes.clone()));
        }
    }
    let mut subcharts = Vec::new();
    for (dir, files) in nested {
        let sub = from_files(files, depth + 1, budget)
            .map_err(|e| ChartError::Subchart { name: dir, source: Box::new(e) })?;
        subcharts.push(sub);
    }
    for (file, tgz) in packaged {
        let sub = load_nested(&tgz, depth + 1, budget)
            .map_err(|e| ChartError::Subchart { name: file, source: Box::new(e) })?;
        subcharts.push(sub);
    }
    let engine = engine(&name, &metadata, &templates)?;
    let schema = match text("values.schema.json")? {
        Some(json) => {
            Some(serde_json::from_str(&json).map_err(|e| ChartError::ChartYaml(format!("values.schema.json: {e}")))?)
        }
        None => None,
    };
    Ok(Chart {
        schema,
        version: required_text(&metadata, "version")?,
        app_version: metadata.get("appVersion").and_then(text_of),
        name,
        metadata,
        values,
        templates,
        engine,
        crds,
        subcharts,
        files: others,
    })
}

/// The chart's engine: the annotation when there is one; else tera when a template uses tera's
/// own syntax (`{%`, `{#`, a `.tera` file, or `Values.` without Go's leading dot), Go otherwise.
fn engine(chart: &str, metadata: &Value, templates: &[Template]) -> Result<Engine, ChartError> {
    let refuse = |message: String| ChartError::Engine { chart: chart.to_string(), message };
    match metadata["annotations"][ENGINE_ANNOTATION].as_str() {
        Some("tera") => return Ok(Engine::Tera),
        Some("go" | "helm") => return Ok(Engine::Go),
        Some(other) => return Err(refuse(format!("annotation {ENGINE_ANNOTATION}: {other} is neither go nor tera"))),
        None => {}
    }
    let tera = |t: &&Template| {
        t.source.contains("{%") || t.source.contains("{#") || t.path.ends_with(".tera") || bare_values(&t.source)
    };
    let go = |t: &&Template| {
        ["{{ .", "{{- .", "{{.", "include \"", "{{- define", "{{ define", "{{/*", "{{- /*", "$."]
            .iter()
            .any(|m| t.source.contains(m))
    };
    let read: Vec<&Template> = templates.iter().filter(|t| !t.path.ends_with("NOTES.txt")).collect();
    match (read.iter().copied().find(tera), read.iter().copied().find(go)) {
        (Some(a), Some(b)) => Err(refuse(format!(
            "{} reads as tera and {} as a Go template; say which with the annotation {ENGINE_ANNOTATION}: go|tera",
            a.path, b.path
        ))),
        (Some(_), None) => Ok(Engine::Tera),
        _ => Ok(Engine::Go),
    }
}

/// Whether an action reads `Values.`, `Release.`, `Chart.` or `Capabilities.` without Go's dot.
fn bare_values(source: &str) -> bool {
    source.split("{{").skip(1).filter_map(|s| s.split("}}").next()).any(|action| {
        ["Values.", "Release.", "Chart.", "Capabilities."].iter().any(|word| {
            action.match_indices(word).any(|(i, _)| {
                let before = action[..i].chars().last();
                !matches!(before, Some('.' | '$' | 'a'..='z' | 'A'..='Z' | '0'..='9' | '_'))
            })
        })
    })
}

/// Every file of the archive, by its path inside the chart's top-level directory, read straight
/// from the gzip stream (no copy of the whole tar) and counted against the chart's byte budget.
fn entries(tgz: &[u8], budget: &mut Budget) -> Result<BTreeMap<String, Vec<u8>>, ChartError> {
    let read = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let stream = Counted { inner: GzDecoder::new(tgz).take(budget.bytes + 1), read: read.clone() };
    let files = read_entries(stream, budget);
    if read.get() > budget.bytes {
        return Err(ChartError::TooLarge);
    }
    budget.bytes -= read.get();
    files
}

/// A reader that counts the bytes read through it.
struct Counted<R> {
    inner: R,
    read: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

fn read_entries(tar: impl Read, budget: &mut Budget) -> Result<BTreeMap<String, Vec<u8>>, ChartError> {
    let mut files = BTreeMap::new();
    let mut top_dir: Option<String> = None;
    for entry in tar::Archive::new(tar).entries()? {
        budget.entries = budget.entries.checked_sub(1).ok_or(ChartError::TooManyEntries)?;
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let inner = path_in_chart(&path, &mut top_dir)?.to_string();
        if !entry.header().entry_type().is_file() {
            continue;
        }
        if inner.is_empty() {
            return Err(ChartError::NotUnderTopDir(path));
        }
        let size = entry.header().size().unwrap_or(0).min(budget.bytes);
        let mut bytes = Vec::with_capacity(size as usize);
        entry.read_to_end(&mut bytes)?;
        files.insert(inner, bytes);
    }
    Ok(files)
}

/// Checks an entry path and returns it relative to the chart's top-level directory.
fn path_in_chart<'a>(path: &'a str, top_dir: &mut Option<String>) -> Result<&'a str, ChartError> {
    let unsafe_path = Path::new(path).components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if unsafe_path {
        return Err(ChartError::UnsafePath(path.to_owned()));
    }
    let trimmed = path.trim_start_matches("./");
    let (dir, inner) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    match top_dir {
        Some(top) if top != dir => Err(ChartError::NotUnderTopDir(path.to_owned())),
        _ => {
            *top_dir = Some(dir.to_owned());
            Ok(inner)
        }
    }
}

fn as_text(path: &str, bytes: &[u8]) -> Result<String, ChartError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ChartError::NotText(path.to_owned()))
}

fn parse_chart_yaml(text: &str) -> Result<Value, ChartError> {
    let metadata = from_yaml(text).map_err(|e| ChartError::ChartYaml(e.to_string()))?;
    if !metadata.is_object() {
        let found = type_name(&metadata);
        return Err(ChartError::ChartYaml(format!("must be a map, got {found}")));
    }
    Ok(metadata)
}

fn required_text(metadata: &Value, key: &str) -> Result<String, ChartError> {
    metadata
        .get(key)
        .and_then(text_of)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ChartError::ChartYaml(format!("`{key}` is required")))
}

/// A string, or a number written unquoted (`appVersion: 1.16`), as text.
fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use serde_json::json;

    /// Builds a gzipped tar holding `files` (paths taken as given, not checked).
    pub(crate) fn tgz(files: &[(&str, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        for (path, data) in files {
            append_raw(&mut builder, path, data.as_bytes());
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    /// Appends an entry without the path checks `tar` does, so bad paths can be tested.
    fn append_raw(builder: &mut tar::Builder<impl std::io::Write>, path: &str, data: &[u8]) {
        let mut header = tar::Header::new_gnu();
        header.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }

    const CHART_YAML: &str = "apiVersion: v2\nname: demo\nversion: 0.3.1\nappVersion: 1.16\n";

    #[test]
    fn loads_chart_values_and_templates() {
        let chart = load_chart(&tgz(&[
            ("demo/Chart.yaml", CHART_YAML),
            ("demo/values.yaml", "replicas: 2\n"),
            ("demo/templates/svc.yaml", "kind: Service\n"),
            ("demo/templates/_helpers.tera", "{% macro x() %}{% endmacro x %}"),
            ("demo/templates/NOTES.txt", "hello"),
            ("demo/charts/sub/Chart.yaml", "name: sub\nversion: 0.1.0\n"),
            ("demo/crds/crd.yaml", "kind: CustomResourceDefinition\n"),
            ("demo/README.md", "readme"),
            ("demo/.helmignore", "*.bak"),
        ]))
        .unwrap();
        assert_eq!(chart.name, "demo");
        assert_eq!(chart.version, "0.3.1");
        assert_eq!(chart.app_version.as_deref(), Some("1.16"));
        assert_eq!(chart.metadata["apiVersion"], "v2");
        assert_eq!(chart.values, json!({"replicas": 2}));
        let paths: Vec<_> = chart.templates.iter().map(|t| t.path.as_str()).collect();
        assert_eq!(paths, ["templates/NOTES.txt", "templates/_helpers.tera", "templates/svc.yaml"]);
        assert_eq!(chart.templates[2].source, "kind: Service\n");
        assert_eq!(chart.subcharts.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["sub"]);
        assert_eq!(chart.crds[0].path, "crds/crd.yaml");
        let files: Vec<&str> = chart.files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(files, [".helmignore", "README.md"]);
        assert_eq!(chart.engine, Engine::Tera, "a .tera partial makes it a tera chart");
    }

    #[test]
    fn values_default_to_an_empty_map() {
        let chart = load_chart(&tgz(&[("demo/Chart.yaml", CHART_YAML)])).unwrap();
        assert_eq!(chart.values, json!({}));
        assert!(chart.templates.is_empty());
    }

    #[test]
    fn missing_chart_yaml_is_an_error() {
        let err = load_chart(&tgz(&[("demo/values.yaml", "a: 1\n")])).unwrap_err();
        assert!(matches!(err, ChartError::MissingChartYaml), "{err}");
    }

    #[test]
    fn chart_yaml_needs_name_and_version() {
        let err = load_chart(&tgz(&[("demo/Chart.yaml", "name: demo\n")])).unwrap_err();
        assert_eq!(err.to_string(), "Chart.yaml: `version` is required");
        let err = load_chart(&tgz(&[("demo/Chart.yaml", "- a\n")])).unwrap_err();
        assert_eq!(err.to_string(), "Chart.yaml: must be a map, got a list");
    }

    #[test]
    fn values_yaml_must_be_a_map() {
        let err =
            load_chart(&tgz(&[("demo/Chart.yaml", CHART_YAML), ("demo/values.yaml", "just a string\n")])).unwrap_err();
        assert_eq!(err.to_string(), "chart values.yaml: values must be a map, got a string");
    }

    #[test]
    fn rejects_unsafe_paths() {
        for bad in ["demo/../etc/passwd", "/etc/passwd"] {
            let err = load_chart(&tgz(&[("demo/Chart.yaml", CHART_YAML), (bad, "x")])).unwrap_err();
            assert!(matches!(err, ChartError::UnsafePath(ref p) if p == bad), "{err}");
        }
    }

    #[test]
    fn rejects_entries_outside_the_top_dir() {
        let err = load_chart(&tgz(&[("demo/Chart.yaml", CHART_YAML), ("other/x.yaml", "x")])).unwrap_err();
        assert!(matches!(err, ChartError::NotUnderTopDir(_)), "{err}");
    }

    #[test]
    fn rejects_files_at_the_top_level() {
        let err = load_chart(&tgz(&[("Chart.yaml", CHART_YAML)])).unwrap_err();
        assert!(matches!(err, ChartError::NotUnderTopDir(_)), "{err}");
    }

    #[test]
    fn rejects_too_many_entries() {
        let names: Vec<String> = (0..=MAX_ENTRIES).map(|i| format!("demo/f{i}")).collect();
        let files: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "")).collect();
        let err = load_chart(&tgz(&files)).unwrap_err();
        assert!(matches!(err, ChartError::TooManyEntries), "{err}");
    }

    #[test]
    fn rejects_archives_too_large_uncompressed() {
        let big = "a".repeat(MAX_UNCOMPRESSED_BYTES as usize);
        let err = load_chart(&tgz(&[("demo/Chart.yaml", CHART_YAML), ("demo/big", &big)])).unwrap_err();
        assert!(matches!(err, ChartError::TooLarge), "{err}");
    }

    #[test]
    fn rejects_garbage() {
        let err = load_chart(b"not a tgz").unwrap_err();
        assert!(matches!(err, ChartError::Archive(_)), "{err}");
    }
}
