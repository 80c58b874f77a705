//! Chart archives: reading a `helm package` style `.tgz` into a [`Chart`].
//!
//! Only what rendering needs is kept: `Chart.yaml`, `values.yaml` and the files under
//! `templates/`. Subcharts under `charts/` are not supported yet and are ignored, as are
//! `crds/`, `.helmignore`, `README*`, `LICENSE` and every other file.

use std::io::Read;
use std::path::{Component, Path};

use flate2::read::GzDecoder;
use serde_json::Value;

use super::values::{from_yaml, parse_values_yaml, type_name};

/// Largest uncompressed archive (the tar stream) accepted.
pub const MAX_UNCOMPRESSED_BYTES: u64 = 20 * 1024 * 1024;
/// Most entries (files, directories, ...) an archive may hold.
pub const MAX_ENTRIES: usize = 2000;

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
}

/// A loaded chart.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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
}

/// One file under `templates/`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Template {
    /// Path inside the chart, e.g. `templates/deployment.yaml`.
    pub path: String,
    /// The file's text.
    pub source: String,
}

/// Files of interest found in the archive, before they are checked.
#[derive(Default)]
struct Files {
    chart_yaml: Option<String>,
    values_yaml: Option<String>,
    templates: Vec<Template>,
}

/// Loads a chart from a gzipped tar as `helm package` makes it: every entry under one
/// top-level `<chart>/` directory, with `Chart.yaml` (needs `name` and `version`), an optional
/// `values.yaml` (a map) and `templates/**`.
pub fn load_chart(tgz: &[u8]) -> Result<Chart, ChartError> {
    let tar = decompress(tgz)?;
    let files = read_entries(&tar)?;
    let chart_yaml = files.chart_yaml.ok_or(ChartError::MissingChartYaml)?;
    let metadata = parse_chart_yaml(&chart_yaml)?;
    let values = match files.values_yaml {
        Some(text) => parse_values_yaml(&text, "chart values.yaml")?,
        None => Value::Object(Default::default()),
    };
    let mut templates = files.templates;
    templates.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Chart {
        name: required_text(&metadata, "name")?,
        version: required_text(&metadata, "version")?,
        app_version: metadata.get("appVersion").and_then(text),
        metadata,
        values,
        templates,
    })
}

fn decompress(tgz: &[u8]) -> Result<Vec<u8>, ChartError> {
    let mut tar = Vec::new();
    GzDecoder::new(tgz).take(MAX_UNCOMPRESSED_BYTES + 1).read_to_end(&mut tar)?;
    if tar.len() as u64 > MAX_UNCOMPRESSED_BYTES {
        return Err(ChartError::TooLarge);
    }
    Ok(tar)
}

fn read_entries(tar: &[u8]) -> Result<Files, ChartError> {
    let mut files = Files::default();
    let mut top_dir: Option<String> = None;
    for (index, entry) in tar::Archive::new(tar).entries()?.enumerate() {
        if index >= MAX_ENTRIES {
            return Err(ChartError::TooManyEntries);
        }
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let inner = path_in_chart(&path, &mut top_dir)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        if inner.is_empty() {
            return Err(ChartError::NotUnderTopDir(path));
        }
        keep_file(&mut files, inner, &mut entry)?;
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

fn keep_file(files: &mut Files, inner: &str, entry: &mut impl Read) -> Result<(), ChartError> {
    let slot = match inner {
        "Chart.yaml" => &mut files.chart_yaml,
        "values.yaml" => &mut files.values_yaml,
        _ if inner.starts_with("templates/") => {
            let source = read_text(inner, entry)?;
            files.templates.push(Template { path: inner.to_owned(), source });
            return Ok(());
        }
        _ => return Ok(()),
    };
    *slot = Some(read_text(inner, entry)?);
    Ok(())
}

fn read_text(inner: &str, entry: &mut impl Read) -> Result<String, ChartError> {
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes)?;
    String::from_utf8(bytes).map_err(|_| ChartError::NotText(inner.to_owned()))
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
        .and_then(text)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ChartError::ChartYaml(format!("`{key}` is required")))
}

/// A string, or a number written unquoted (`appVersion: 1.16`), as text.
fn text(value: &Value) -> Option<String> {
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
            ("demo/charts/sub/Chart.yaml", "name: sub\n"),
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
