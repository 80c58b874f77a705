//! Rendering limits: what one chart may cost, so that no chart can take the operator down.
//!
//! In the operator every chart renders in a child process ([`super::sandbox`]) whose memory, time
//! and output are capped; a crash there (a stack exhausted by recursion, memory exhausted) fails
//! that chart's DIG and nothing else. Inside the renderer the same limits are checked as it goes,
//! so that most charts that break one get a precise message: output is written through
//! [`Budget`], `range` is bounded and checks the deadline, and macro recursion and include cycles
//! are refused before rendering ([`check_cycles`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::chart::Chart;

/// Bytes all templates of one chart may write.
pub const OUTPUT_BYTES: usize = 16 * 1024 * 1024;
/// Time one chart may take to render (in the renderer; the child process is killed a little later).
pub const DEADLINE: Duration = Duration::from_secs(5);
/// Items a `range` may produce.
pub const RANGE_ITEMS: usize = 10_000;
/// Largest `indent`/`nindent` width.
pub const INDENT: i64 = 1024;
/// Memory (data segment, heap included) of the child process that renders one chart, unless
/// `EMCO_RENDER_WORKER_MEMORY_MIB` says otherwise.
pub const WORKER_MEMORY: u64 = 128 * 1024 * 1024;
/// Render workers running at once, unless `EMCO_RENDER_WORKERS` says otherwise; more renders wait.
pub const WORKERS: usize = 2;

/// The worker's memory cap in bytes, from the environment or [`WORKER_MEMORY`].
pub fn worker_memory() -> u64 {
    std::env::var("EMCO_RENDER_WORKER_MEMORY_MIB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|m| *m >= 16)
        .map_or(WORKER_MEMORY, |m| m * 1024 * 1024)
}

/// How many render workers may run at once, from the environment or [`WORKERS`].
pub fn workers() -> usize {
    std::env::var("EMCO_RENDER_WORKERS").ok().and_then(|v| v.parse().ok()).filter(|n| *n >= 1).unwrap_or(WORKERS)
}

/// Output of a render with its limits: bytes written so far and the deadline.
pub struct Budget {
    pub text: Vec<u8>,
    pub deadline: Instant,
    /// The limit broken, once one is.
    pub broken: Option<String>,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget::new()
    }
}

impl Budget {
    pub fn new() -> Budget {
        Budget { text: Vec::new(), deadline: Instant::now() + DEADLINE, broken: None }
    }

    /// Takes the text written since the last call.
    pub fn take(&mut self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut self.text)).into_owned()
    }
}

impl std::io::Write for Budget {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let over = |what: String| std::io::Error::other(what);
        if Instant::now() > self.deadline {
            self.broken = Some(format!("rendering took longer than {} s", DEADLINE.as_secs()));
            return Err(over(self.broken.clone().unwrap_or_default()));
        }
        if self.text.len() + buf.len() > OUTPUT_BYTES {
            self.broken = Some(format!("rendered output over {} MiB", OUTPUT_BYTES / (1024 * 1024)));
            return Err(over(self.broken.clone().unwrap_or_default()));
        }
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A macro that calls itself (directly or through others) or an include cycle, named, if any.
/// Read from the template text: `{% macro m(...) %}` bodies, their `self::x(` and `ns::x(` calls
/// (with `{% import "file" as ns %}`), and `{% include "file" %}`.
pub fn check_cycles(chart: &Chart) -> Result<(), String> {
    let mut calls: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for t in &chart.templates {
        let imports = imports(&t.source);
        let mut rest = t.source.as_str();
        while let Some((name, body, after)) = next_macro(rest) {
            let node = format!("{}::{name}", t.path);
            let callees = calls.entry(node).or_default();
            for (ns, callee) in macro_calls(body) {
                let file = if ns == "self" { Some(t.path.as_str()) } else { imports.get(ns).map(String::as_str) };
                callees.extend(file.map(|f| format!("{f}::{callee}")));
            }
            rest = after;
        }
        calls.entry(t.path.clone()).or_default().extend(tag_strings(&t.source, "include"));
    }
    for start in calls.keys() {
        if let Some(path) = cycle_from(&calls, start) {
            return Err(format!("recursion is not allowed: {}", path.join(" -> ")));
        }
    }
    Ok(())
}

fn cycle_from(calls: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in calls.get(&node).into_iter().flatten() {
            if next == start {
                return Some([path.clone(), vec![next.clone()]].concat());
            }
            if seen.insert(next.clone()) {
                stack.push((next.clone(), [path.clone(), vec![next.clone()]].concat()));
            }
        }
    }
    None
}

/// `{% import "file" as ns %}`: ns -> file.
fn imports(source: &str) -> BTreeMap<String, String> {
    tags(source, "import")
        .filter_map(|tag| {
            let file = quoted(tag)?;
            let ns = tag.rsplit_once(" as ")?.1.trim().trim_end_matches('-').trim();
            Some((ns.to_string(), file))
        })
        .collect()
}

/// The contents of `{% keyword ... %}` tags.
fn tags<'a>(source: &'a str, keyword: &'a str) -> impl Iterator<Item = &'a str> {
    source.split("{%").skip(1).filter_map(move |piece| {
        let tag = piece.split("%}").next()?.trim_start_matches('-').trim();
        tag.strip_prefix(keyword).filter(|rest| rest.starts_with(char::is_whitespace))
    })
}

fn tag_strings(source: &str, keyword: &str) -> Vec<String> {
    tags(source, keyword).filter_map(quoted).collect()
}

fn quoted(tag: &str) -> Option<String> {
    let q = tag.find(['"', '\''])?;
    let quote = tag[q..].chars().next()?;
    let rest = &tag[q + 1..];
    Some(rest[..rest.find(quote)?].to_string())
}

/// The next `{% macro name(...) %} body {% endmacro %}` in `source`: name, body, what follows.
fn next_macro(mut source: &str) -> Option<(&str, &str, &str)> {
    loop {
        let piece = &source[source.find("{%")? + 2..];
        let tag_end = piece.find("%}")?;
        let tag = piece[..tag_end].trim_start_matches('-').trim();
        let after_tag = &piece[tag_end + 2..];
        if let Some(rest) = tag.strip_prefix("macro").filter(|r| r.starts_with(char::is_whitespace)) {
            let name = rest.trim().split('(').next()?.trim();
            let end = after_tag.find("endmacro").unwrap_or(after_tag.len());
            return Some((name, &after_tag[..end], &after_tag[end..]));
        }
        source = after_tag;
    }
}

/// `ns::name(` calls in a macro body.
fn macro_calls(body: &str) -> Vec<(&str, &str)> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut found = Vec::new();
    for (i, _) in body.match_indices("::") {
        let ns_start = body[..i].rfind(|c: char| !is_ident(c)).map_or(0, |p| p + 1);
        let rest = &body[i + 2..];
        let name_end = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
        if rest[name_end..].trim_start().starts_with('(') && ns_start < i && name_end > 0 {
            found.push((&body[ns_start..i], &rest[..name_end]));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::chart::Template;

    fn chart(files: &[(&str, &str)]) -> Chart {
        Chart {
            name: "c".into(),
            version: "1".into(),
            app_version: None,
            metadata: serde_json::json!({}),
            values: serde_json::json!({}),
            templates: files.iter().map(|(p, s)| Template { path: p.to_string(), source: s.to_string() }).collect(),
            engine: crate::render::chart::Engine::Tera,
            crds: Vec::new(),
            subcharts: Vec::new(),
            files: Vec::new(),
            schema: None,
        }
    }

    #[test]
    fn a_self_recursive_macro_is_named() {
        let c = chart(&[(
            "templates/a.yaml",
            "{% macro boom(n) %}{{ self::boom(n=n) }}{% endmacro boom %}{{ self::boom(n=1) }}",
        )]);
        assert_eq!(
            check_cycles(&c).unwrap_err(),
            "recursion is not allowed: templates/a.yaml::boom -> templates/a.yaml::boom"
        );
    }

    #[test]
    fn mutual_recursion_through_an_import_and_include_cycles_are_found() {
        let c = chart(&[
            (
                "templates/_h.tera",
                "{% import \"templates/_h.tera\" as h %}{% macro a() %}{{ h::b() }}{% endmacro %}{% macro b() %}{{ h::a() }}{% endmacro %}",
            ),
            ("templates/x.yaml", "{% import \"templates/_h.tera\" as h %}{{ h::a() }}"),
        ]);
        assert!(check_cycles(&c).unwrap_err().contains("_h.tera::a"));
        let c = chart(&[
            ("templates/x.yaml", "{% include \"templates/y.yaml\" %}"),
            ("templates/y.yaml", "{%- include 'templates/x.yaml' -%}"),
        ]);
        assert!(check_cycles(&c).is_err());
    }

    #[test]
    fn ordinary_helpers_pass() {
        let c = chart(&[
            (
                "templates/_h.tera",
                "{% macro name(r) %}{{ r.Name }}{% endmacro name %}{% macro full(r) %}{{ self::name(r=r) }}-x{% endmacro %}",
            ),
            (
                "templates/x.yaml",
                "{% import \"templates/_h.tera\" as h %}{{ h::full(r=Release) }}{% include \"templates/_part.tera\" %}",
            ),
            ("templates/_part.tera", "a: 1"),
        ]);
        assert_eq!(check_cycles(&c), Ok(()));
    }
}
