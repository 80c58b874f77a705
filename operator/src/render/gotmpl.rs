//! Go-template charts: ordinary Helm charts, rendered in-process. The template language is Go's
//! text/template with Helm's and Sprig's functions (the `gtmpl-ng` crate with its Helm function
//! set); this module adds what only a chart renderer can give: `include`, `tpl`, `lookup` (empty,
//! as `helm template`), Helm's `toYaml`, the `.Files` and `.Capabilities.APIVersions.Has` methods,
//! and Helm's chart semantics: subcharts (aliases, `condition`, `tags`, library charts), value
//! scoping and `global`, `crds/` untouched, `NOTES.txt` and `_*` partials not rendered.
//!
//! gtmpl-ng cannot pass arguments to a method of a value, so before parsing, `X.Files.Get "a"`
//! is rewritten to `filesGet X.Files "a"` (likewise `GetBytes`, `Glob`, `Lines`, and
//! `X.Capabilities.APIVersions.Has` to `apiVersionsHas`); lines stay where they were.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::LazyLock;

use base64::Engine as _;
use gtmpl_ng::{Context, Func, FuncError, Limits, Template as GoTemplate, Value as G};
use serde_json::{Value, json};

use super::chart::{Chart, Template};
use super::engine::{RenderContext, RenderError, parse_manifests};
use super::values::merge;

/// How deep `include` and `tpl` may nest (Helm allows 1000; a chart needs a handful). Each level
/// is a render of its own with its own limits, so this also bounds their product.
const MAX_NESTING: usize = 16;
/// The longest text one function here may produce.
const MAX_FUNCTION_OUTPUT: usize = super::limits::OUTPUT_BYTES;

/// One chart of the tree to render: where its templates live and the values it sees.
struct Unit<'a> {
    /// `mychart`, `mychart/charts/sub`: the prefix of its template names.
    prefix: String,
    chart: &'a Chart,
    values: Value,
    /// Library charts lend their definitions and render nothing.
    library: bool,
    /// Its name as used: the dependency's alias, when it has one (Helm renames the chart).
    name: String,
}

/// Renders `chart` (with `values` already merged over its own) and its enabled subcharts.
pub(super) fn render(chart: &Chart, values: &Value, ctx: &RenderContext) -> Result<Vec<Value>, RenderError> {
    let mut units = Vec::new();
    collect(chart, chart.name.clone(), chart.name.clone(), values.clone(), &mut units);
    let sources: Vec<(String, String)> = units
        .iter()
        .flat_map(|u| u.chart.templates.iter().map(move |t| (format!("{}/{}", u.prefix, t.path), rewrite(&t.source))))
        .collect();
    for unit in &units {
        let violation = unit.chart.schema.as_ref().and_then(|s| super::values::schema_violations(s, &unit.values));
        if let Some(message) = violation {
            return Err(RenderError::Values { chart: unit.prefix.clone(), message });
        }
    }
    // Files stay in the set, once; `.Files` holds only the unit's handle (its prefix).
    let files = units
        .iter()
        .map(|u| {
            let mut texts: Vec<(String, String)> =
                u.chart.files.iter().map(|(p, b)| (p.clone(), String::from_utf8_lossy(b).into_owned())).collect();
            texts.sort();
            (u.prefix.clone(), texts)
        })
        .collect();
    let set = Rc::new(Set { sources, files, cache: RefCell::default() });
    let mut manifests = Vec::new();
    for unit in &units {
        for crd in &unit.chart.crds {
            manifests.extend(parse_manifests(&chart.name, &format!("{}/{}", unit.prefix, crd.path), &crd.source)?);
        }
    }
    for unit in units.iter().filter(|u| !u.library) {
        for template in unit.chart.templates.iter().filter(|t| rendered(t)) {
            let name = format!("{}/{}", unit.prefix, template.path);
            let data = data(unit, &name, ctx);
            let text = with_set(&set, || set.render(&name, &data)).map_err(|message| {
                if over_a_limit(&message) {
                    let limit = format!("{name} line {}: {message}", line_of(&message, &name).unwrap_or(0));
                    return RenderError::Limit { chart: chart.name.clone(), limit };
                }
                RenderError::Template {
                    chart: chart.name.clone(),
                    file: name.clone(),
                    line: line_of(&message, &name),
                    message,
                }
            })?;
            manifests.extend(parse_manifests(&chart.name, &name, &text)?);
        }
    }
    Ok(manifests)
}

/// Whether the renderer stopped on one of its limits (gtmpl-ng's value size, output, iterations,
/// nesting, deadline) rather than on a mistake in the template.
fn over_a_limit(message: &str) -> bool {
    ["allowed", "maximum template nesting depth", "did not finish within"].iter().any(|m| message.contains(m))
}

/// `chart` and, recursively, its enabled subcharts, each with its scoped values.
fn collect<'a>(chart: &'a Chart, name: String, prefix: String, values: Value, units: &mut Vec<Unit<'a>>) {
    let dependencies = chart.metadata["dependencies"].as_array().cloned().unwrap_or_default();
    for sub in &chart.subcharts {
        let declared: Vec<&Value> = dependencies.iter().filter(|d| d["name"] == sub.name.as_str()).collect();
        // A subchart listed under no dependency is used under its own name, as Helm does.
        let uses: Vec<Option<&Value>> =
            if declared.is_empty() { vec![None] } else { declared.into_iter().map(Some).collect() };
        for dependency in uses {
            let name = dependency.and_then(|d| d["alias"].as_str()).unwrap_or(&sub.name).to_string();
            if dependency.is_some_and(|d| !enabled(d, &values)) {
                continue;
            }
            let mut scoped = sub.values.clone();
            merge(&mut scoped, &values[name.as_str()]);
            let mut global = sub.values["global"].clone();
            merge(&mut global, &values["global"]);
            if !global.is_null() {
                scoped["global"] = global;
            }
            collect(sub, name.clone(), format!("{prefix}/charts/{name}"), scoped, units);
        }
    }
    let library = chart.metadata["type"] == "library";
    units.push(Unit { prefix, chart, values, library, name });
}

/// A dependency's `condition` (the first of its paths that is a boolean in the parent's values),
/// else its `tags` (any true), else enabled.
fn enabled(dependency: &Value, values: &Value) -> bool {
    let condition = dependency["condition"].as_str().unwrap_or_default();
    for path in condition.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let found = path.split('.').fold(values, |v, key| &v[key]);
        if let Some(on) = found.as_bool() {
            return on;
        }
    }
    let tags: Vec<&str> = dependency["tags"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if tags.is_empty() {
        return true;
    }
    tags.iter().any(|t| values["tags"][*t].as_bool() == Some(true))
        || tags.iter().all(|t| values["tags"][*t].as_bool().is_none())
}

fn rendered(t: &Template) -> bool {
    let base = t.path.rsplit('/').next().unwrap_or(&t.path);
    !base.starts_with('_') && base != "NOTES.txt"
}

/// The data a template of `unit` sees as `.`.
fn data(unit: &Unit, name: &str, ctx: &RenderContext) -> Value {
    let version = ctx.kube_version.trim_start_matches('v');
    let mut parts = version.split('.');
    let (major, minor) = (parts.next().unwrap_or("1"), parts.next().unwrap_or("0"));
    let mut api_versions = ctx.api_versions.clone();
    if api_versions.is_empty() {
        api_versions = DEFAULT_API_VERSIONS.iter().map(|v| v.to_string()).collect();
    }
    json!({
        "Values": unit.values,
        "Release": {
            "Name": ctx.release_name, "Namespace": ctx.release_namespace, "Revision": ctx.revision,
            "IsInstall": ctx.revision <= 1, "IsUpgrade": ctx.revision > 1, "Service": "Helm",
        },
        "Chart": chart_object(&unit.chart.metadata, &unit.name),
        "Capabilities": {
            "KubeVersion": {"Version": ctx.kube_version, "GitVersion": ctx.kube_version, "Major": major, "Minor": minor},
            "APIVersions": api_versions,
            "HelmVersion": {"Version": "v3.19.0"},
        },
        "Template": {"Name": name, "BasePath": format!("{}/templates", unit.prefix)},
        "Files": {FILES_KEY: unit.prefix},
    })
}

/// API versions `.Capabilities.APIVersions` holds when the member's are not known.
const DEFAULT_API_VERSIONS: [&str; 12] = [
    "v1",
    "apps/v1",
    "batch/v1",
    "autoscaling/v2",
    "policy/v1",
    "networking.k8s.io/v1",
    "rbac.authorization.k8s.io/v1",
    "storage.k8s.io/v1",
    "apiextensions.k8s.io/v1",
    "admissionregistration.k8s.io/v1",
    "coordination.k8s.io/v1",
    "discovery.k8s.io/v1",
];

/// Chart.yaml as Helm's `.Chart`: fields capitalised (`apiVersion` is `APIVersion`).
fn chart_object(metadata: &Value, name: &str) -> Value {
    let mut fields = metadata.as_object().cloned().unwrap_or_default();
    fields.insert("name".into(), json!(name));
    let capitalised = fields.into_iter().map(|(k, v)| {
        let key = match k.as_str() {
            "apiVersion" => "APIVersion".to_string(),
            _ => {
                let mut chars = k.chars();
                chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
            }
        };
        (key, v)
    });
    Value::Object(capitalised.collect())
}

/// Where the `.Files` object keeps its files.
const FILES_KEY: &str = "__files";

static METHODS: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(
        r"(?P<recv>(?:\$[A-Za-z0-9_]*)?(?:\.[A-Za-z_][A-Za-z0-9_]*)*?)\.(?P<what>Files\.(?:Get|GetBytes|Glob|Lines)|Capabilities\.APIVersions\.Has)\b",
    )
    .expect("a valid pattern")
});

/// Go's maps are shared, so `$_ := set $d "k" v` changes `$d`; gtmpl-ng's values are copies.
static MUTATIONS: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(
        r"\$_\s*:?=\s*(?P<f>set|unset|merge|mergeOverwrite|mustMerge|mustMergeOverwrite)\s+(?P<v>\$[A-Za-z0-9_]+)\b",
    )
    .expect("a valid pattern")
});

/// `X.Files.Get "a"` as `filesGet X.Files "a"`, the other methods likewise, and
/// `$_ := set $d ...` as `$d = set $d ...`.
fn rewrite(source: &str) -> String {
    let source = MUTATIONS.replace_all(source, "$v = $f $v");
    METHODS
        .replace_all(&source, |c: &regex::Captures| {
            let recv = &c["recv"];
            match &c["what"] {
                "Capabilities.APIVersions.Has" => format!("apiVersionsHas {recv}.Capabilities.APIVersions"),
                what => {
                    let method = what.trim_start_matches("Files.");
                    format!("files{method} {recv}.Files")
                }
            }
        })
        .into_owned()
}

/// Every template of the chart tree, and the parsed template sets made from them by entry point.
struct Set {
    sources: Vec<(String, String)>,
    /// Each unit's files (as text, sorted by path), by the unit's prefix.
    files: HashMap<String, Vec<(String, String)>>,
    cache: RefCell<HashMap<String, Rc<GoTemplate>>>,
}

impl Set {
    /// Runs the named template (a file or a `define`) on `data`.
    fn render(&self, name: &str, data: &Value) -> Result<String, String> {
        let cached = self.cache.borrow().get(name).cloned();
        let template = match cached {
            Some(t) => t,
            None => {
                let quoted = serde_json::to_string(name).expect("strings serialize");
                let entry = format!("{{{{- template {quoted} . -}}}}");
                let t = Rc::new(self.parse(&entry)?);
                self.cache.borrow_mut().insert(name.to_string(), t.clone());
                t
            }
        };
        template.render(&Context::from(to_g(data))).map_err(|e| e.to_string())
    }

    /// A template set whose entry point is `text`, with every chart template defined.
    fn parse(&self, text: &str) -> Result<GoTemplate, String> {
        let mut template = GoTemplate::with_limits(
            Limits::default().with_output_bytes(super::limits::OUTPUT_BYTES).with_deadline(super::limits::DEADLINE),
        );
        template.add_funcs(gtmpl_ng::helm_functions::HELM_FUNCTIONS);
        template.add_funcs(&OURS);
        for (name, source) in &self.sources {
            template.add_template(name.clone(), source.clone()).map_err(|e| e.to_string())?;
        }
        template.parse(text.to_string()).map_err(|e| e.to_string())?;
        Ok(template)
    }
}

thread_local! {
    /// The set being rendered, for `include` and `tpl`, and how deep they nest.
    static CURRENT: RefCell<Option<(Rc<Set>, usize)>> = const { RefCell::new(None) };
}

fn with_set<T>(set: &Rc<Set>, f: impl FnOnce() -> T) -> T {
    CURRENT.with(|c| *c.borrow_mut() = Some((set.clone(), 0)));
    let out = f();
    CURRENT.with(|c| *c.borrow_mut() = None);
    out
}

/// Runs `f` with the current set, one level deeper.
fn nested(f: impl FnOnce(&Set) -> Result<String, String>) -> Result<G, FuncError> {
    let (set, depth) = CURRENT.with(|c| c.borrow().clone()).ok_or_else(|| generic("no chart is being rendered"))?;
    if depth >= MAX_NESTING {
        return Err(generic(&format!("include and tpl nest deeper than {MAX_NESTING}")));
    }
    CURRENT.with(|c| *c.borrow_mut() = Some((set.clone(), depth + 1)));
    let out = f(&set);
    CURRENT.with(|c| *c.borrow_mut() = Some((set.clone(), depth)));
    out.map(G::String).map_err(|e| generic(&e))
}

fn generic(message: &str) -> FuncError {
    FuncError::Generic(message.to_string())
}

static OURS: [(&str, Func); 22] = [
    ("merge", merge_keep as Func),
    ("mergeOverwrite", merge_overwrite as Func),
    ("seq", seq as Func),
    ("quote", quote as Func),
    ("title", title as Func),
    ("nindent", nindent as Func),
    ("join", join as Func),
    ("splitList", split_list as Func),
    ("split", split as Func),
    ("sortAlpha", sort_alpha as Func),
    ("semverCompare", semver_compare as Func),
    ("include", include as Func),
    ("tpl", tpl as Func),
    ("lookup", lookup as Func),
    ("toYaml", to_yaml as Func),
    ("filesGet", files_get as Func),
    ("filesGetBytes", files_get as Func),
    ("filesLines", files_lines as Func),
    ("filesGlob", files_glob as Func),
    ("filesAsConfig", files_as_config as Func),
    ("filesAsSecrets", files_as_secrets as Func),
    ("apiVersionsHas", api_versions_has as Func),
];

fn arg<'a>(args: &'a [G], i: usize, what: &str) -> Result<&'a G, FuncError> {
    args.get(i).ok_or_else(|| generic(&format!("{what}: missing argument {}", i + 1)))
}

fn text(v: &G) -> String {
    match v {
        G::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `nindent n text`: a newline, then the text with every line indented by n spaces.
fn nindent(args: &[G]) -> Result<G, FuncError> {
    let width =
        text(arg(args, 0, "nindent")?).parse::<usize>().map_err(|_| generic("nindent: the width is not a number"))?;
    if width > 1024 {
        return Err(generic("nindent: the width is over 1024"));
    }
    let pad = " ".repeat(width);
    let body = text(arg(args, 1, "nindent")?);
    if body.len() + (body.matches('\n').count() + 1) * width > MAX_FUNCTION_OUTPUT {
        return Err(generic("nindent: the result would be over 16 MiB"));
    }
    Ok(G::String(format!("\n{pad}{}", body.replace('\n', &format!("\n{pad}")))))
}

fn strings(v: &G) -> Vec<String> {
    match v {
        G::Array(a) => a.iter().map(text).collect(),
        G::NoValue | G::Nil => Vec::new(),
        other => vec![text(other)],
    }
}

/// `title`: Go's `strings.Title`, each word's first letter upper case (gtmpl-ng 1.0.0's returns
/// its input unchanged).
fn title(args: &[G]) -> Result<G, FuncError> {
    let mut after_separator = true;
    let titled = text(arg(args, 0, "title")?)
        .chars()
        .map(|c| {
            let out = if after_separator { c.to_uppercase().next().unwrap_or(c) } else { c };
            after_separator = !(c.is_alphanumeric() || c == '_');
            out
        })
        .collect();
    Ok(G::String(titled))
}

/// `quote`: each argument as Go's `strconv.Quote` writes it (escapes included), joined by spaces.
fn quote(args: &[G]) -> Result<G, FuncError> {
    let quoted: Vec<String> =
        args.iter().filter(|a| !matches!(a, G::Nil | G::NoValue)).map(|a| go_quote(&text(a))).collect();
    Ok(G::String(quoted.join(" ")))
}

fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `seq [first [step]] last`: the numbers, as a string joined by spaces (as Sprig's).
fn seq(args: &[G]) -> Result<G, FuncError> {
    let n: Vec<i128> = args
        .iter()
        .map(|a| text(a).parse::<i128>())
        .collect::<Result<_, _>>()
        .map_err(|_| generic("seq: not a number"))?;
    let (first, step, last) = match n[..] {
        [last] => (1, 1, last),
        [first, last] => (first, if last >= first { 1 } else { -1 }, last),
        [first, step, last] => (first, step, last),
        _ => return Err(generic("seq: 1 to 3 numbers")),
    };
    if step == 0 || (last - first) / step > 10_000 {
        return Err(generic("seq: over 10000 numbers"));
    }
    let mut out = Vec::new();
    let mut i = first;
    while (step > 0 && i <= last) || (step < 0 && i >= last) {
        out.push(i.to_string());
        i += step;
    }
    Ok(G::String(out.join(" ")))
}

/// `merge dst src...`: keys of each source that `dst` lacks are added, maps merged deeply; what
/// `dst` has wins (Sprig's, through mergo).
fn merge_keep(args: &[G]) -> Result<G, FuncError> {
    merge_maps(args, false)
}

/// `mergeOverwrite dst src...`: as `merge`, but each source wins.
fn merge_overwrite(args: &[G]) -> Result<G, FuncError> {
    merge_maps(args, true)
}

fn merge_maps(args: &[G], overwrite: bool) -> Result<G, FuncError> {
    let mut dst = from_g(arg(args, 0, "merge")?);
    for src in &args[1..] {
        deep_merge(&mut dst, &from_g(src), overwrite);
    }
    Ok(to_g(&dst))
}

fn deep_merge(dst: &mut Value, src: &Value, overwrite: bool) {
    let (Some(d), Some(s)) = (dst.as_object_mut(), src.as_object()) else { return };
    for (k, v) in s {
        match d.get_mut(k) {
            Some(existing) if existing.is_object() && v.is_object() => deep_merge(existing, v, overwrite),
            Some(existing) if overwrite => *existing = v.clone(),
            Some(existing) if existing.is_null() => *existing = v.clone(),
            Some(_) => {}
            None => {
                d.insert(k.clone(), v.clone());
            }
        }
    }
}

/// `join sep list`.
fn join(args: &[G]) -> Result<G, FuncError> {
    let sep = text(arg(args, 0, "join")?);
    let parts = strings(arg(args, 1, "join")?);
    if parts.iter().map(|p| p.len() + sep.len()).sum::<usize>() > MAX_FUNCTION_OUTPUT {
        return Err(generic("join: the result would be over 16 MiB"));
    }
    Ok(G::String(parts.join(&sep)))
}

/// `splitList sep text`: the parts, as a list.
fn split_list(args: &[G]) -> Result<G, FuncError> {
    let sep = text(arg(args, 0, "splitList")?);
    let whole = text(arg(args, 1, "splitList")?);
    Ok(G::Array(whole.split(sep.as_str()).map(|p| G::String(p.to_string())).collect()))
}

/// `split sep text`: the parts, as a map `_0`, `_1`, ...
fn split(args: &[G]) -> Result<G, FuncError> {
    let sep = text(arg(args, 0, "split")?);
    let whole = text(arg(args, 1, "split")?);
    Ok(G::Map(
        whole.split(sep.as_str()).enumerate().map(|(i, p)| (format!("_{i}"), G::String(p.to_string()))).collect(),
    ))
}

fn sort_alpha(args: &[G]) -> Result<G, FuncError> {
    let mut all = strings(arg(args, 0, "sortAlpha")?);
    all.sort();
    Ok(G::Array(all.into_iter().map(G::String).collect()))
}

/// `semverCompare constraint version`: `>=1.19-0`, `~1.2`, `^2`, `<1.30 || >=1.31`, ...
fn semver_compare(args: &[G]) -> Result<G, FuncError> {
    let constraint = text(arg(args, 0, "semverCompare")?);
    let version = text(arg(args, 1, "semverCompare")?);
    let v = semver(&version).ok_or_else(|| generic(&format!("semverCompare: {version} is not a version")))?;
    let any = constraint.split("||").map(|all| {
        all.split([',', ' ']).filter(|c| !c.trim().is_empty()).all(|c| satisfies(c.trim(), v).unwrap_or(false))
    });
    Ok(G::Bool(any.into_iter().any(|ok| ok)))
}

/// Major, minor and patch of `v1.2.3-pre+build` (missing parts are 0).
fn semver(text: &str) -> Option<(u64, u64, u64)> {
    let core = text.trim().trim_start_matches(['v', 'V', '=']).split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| if p == "x" || p == "*" { Some(0) } else { p.parse().ok() });
    Some((parts.next()??, parts.next().unwrap_or(Some(0))?, parts.next().unwrap_or(Some(0))?))
}

fn satisfies(constraint: &str, v: (u64, u64, u64)) -> Option<bool> {
    let op_len = constraint.find(|c: char| c.is_ascii_digit() || c == 'v').unwrap_or(0);
    let (op, rest) = constraint.split_at(op_len);
    let want = semver(rest)?;
    let given = rest.trim_start_matches('v').split(['-', '+']).next()?.split('.').count();
    Some(match op.trim() {
        "" | "=" => v == want,
        "!=" => v != want,
        ">" => v > want,
        "<" => v < want,
        ">=" | "=>" => v >= want,
        "<=" | "=<" => v <= want,
        "~" | "~>" if given >= 2 => v >= want && v < (want.0, want.1.saturating_add(1), 0),
        "~" | "~>" | "^" if want.0 == 0 && given >= 2 => v >= want && v < (0, want.1.saturating_add(1), 0),
        "~" | "~>" | "^" => v >= want && v < (want.0.saturating_add(1), 0, 0),
        _ => return None,
    })
}

/// `include "name" data`: the named template's output, as a string.
fn include(args: &[G]) -> Result<G, FuncError> {
    let name = text(arg(args, 0, "include")?);
    let data = from_g(args.get(1).unwrap_or(&G::Nil));
    nested(|set| set.render(&name, &data).map_err(|e| format!("include {name:?}: {e}")))
}

/// `tpl "text" data`: the text rendered as a template, with the chart's definitions.
fn tpl(args: &[G]) -> Result<G, FuncError> {
    let source = rewrite(&text(arg(args, 0, "tpl")?));
    let data = to_g(&from_g(args.get(1).unwrap_or(&G::Nil)));
    nested(|set| set.parse(&source)?.render(&Context::from(data)).map_err(|e| format!("tpl: {e}")))
}

/// `lookup`: empty, as under `helm template` (no cluster is read while planning).
fn lookup(_: &[G]) -> Result<G, FuncError> {
    Ok(G::Map(HashMap::new()))
}

/// Helm's `toYaml`: without the final newline.
fn to_yaml(args: &[G]) -> Result<G, FuncError> {
    let value = from_g(arg(args, 0, "toYaml")?);
    let yaml = serde_saphyr::to_string(&value).map_err(|e| generic(&e.to_string()))?;
    Ok(G::String(yaml.trim_end_matches('\n').to_string()))
}

/// Runs `f` on the files of a `.Files` object, by path: a chart's (its handle names them in the
/// set being rendered) or a `Glob`'s (held inline).
fn with_files<T>(v: &G, f: impl FnOnce(&[(String, String)]) -> T) -> T {
    let (G::Map(m) | G::Object(m)) = v else { return f(&[]) };
    match m.get(FILES_KEY) {
        Some(G::String(handle)) => {
            let set = CURRENT.with(|c| c.borrow().as_ref().map(|(s, _)| s.clone()));
            let files = set.as_ref().and_then(|s| s.files.get(handle));
            f(files.map_or(&[][..], |x| &x[..]))
        }
        Some(G::Map(inline) | G::Object(inline)) => {
            let mut all: Vec<(String, String)> = inline.iter().map(|(k, v)| (k.clone(), text(v))).collect();
            all.sort();
            f(&all)
        }
        _ => f(&[]),
    }
}

fn files_object(files: Vec<(String, String)>) -> G {
    let inner: HashMap<String, G> = files.into_iter().map(|(k, v)| (k, G::String(v))).collect();
    G::Map(HashMap::from([
        (FILES_KEY.to_string(), G::Map(inner)),
        ("AsConfig".to_string(), G::from(files_as_config as Func)),
        ("AsSecrets".to_string(), G::from(files_as_secrets as Func)),
    ]))
}

fn files_get(args: &[G]) -> Result<G, FuncError> {
    let path = text(arg(args, 1, "Files.Get")?);
    let found =
        with_files(arg(args, 0, "Files.Get")?, |files| files.iter().find(|(p, _)| *p == path).map(|(_, c)| c.clone()));
    Ok(G::String(found.unwrap_or_default()))
}

fn files_lines(args: &[G]) -> Result<G, FuncError> {
    let content = text(&files_get(args)?);
    Ok(G::Array(content.lines().map(|l| G::String(l.to_string())).collect()))
}

fn files_glob(args: &[G]) -> Result<G, FuncError> {
    let pattern = text(arg(args, 1, "Files.Glob")?);
    let matcher = glob(&pattern);
    let matched = with_files(arg(args, 0, "Files.Glob")?, |files| {
        files.iter().filter(|(p, _)| matcher.is_match(p)).cloned().collect::<Vec<_>>()
    });
    Ok(files_object(matched))
}

/// A glob (`*` within a path segment, `**` across, `?`, `{a,b}`) as a regex.
fn glob(pattern: &str) -> regex::Regex {
    let mut re = String::from("^");
    let mut chars = pattern.chars().peekable();
    let mut braces = 0;
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                re.push_str(".*");
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '{' => {
                braces += 1;
                re.push('(');
            }
            '}' if braces > 0 => {
                braces -= 1;
                re.push(')');
            }
            ',' if braces > 0 => re.push('|'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re).unwrap_or_else(|_| regex::Regex::new("^$").expect("valid"))
}

fn files_as_config(args: &[G]) -> Result<G, FuncError> {
    let files = with_files(arg(args, 0, "AsConfig")?, <[_]>::to_vec);
    let map: serde_json::Map<String, Value> =
        files.into_iter().map(|(p, c)| (p.rsplit('/').next().unwrap_or(&p).to_string(), json!(c))).collect();
    to_yaml(&[to_g(&Value::Object(map))])
}

fn files_as_secrets(args: &[G]) -> Result<G, FuncError> {
    let files = with_files(arg(args, 0, "AsSecrets")?, <[_]>::to_vec);
    let engine = base64::engine::general_purpose::STANDARD;
    let map: serde_json::Map<String, Value> = files
        .into_iter()
        .map(|(p, c)| (p.rsplit('/').next().unwrap_or(&p).to_string(), json!(engine.encode(c))))
        .collect();
    to_yaml(&[to_g(&Value::Object(map))])
}

fn api_versions_has(args: &[G]) -> Result<G, FuncError> {
    let wanted = text(arg(args, 1, "APIVersions.Has")?);
    let G::Array(versions) = arg(args, 0, "APIVersions.Has")? else { return Ok(G::Bool(false)) };
    // `apps/v1/Deployment` asks for a kind: the group/version before it must be served.
    let group_version = match wanted.rsplit_once('/') {
        Some((gv, kind)) if kind.starts_with(|c: char| c.is_ascii_uppercase()) => gv.to_string(),
        _ => wanted,
    };
    Ok(G::Bool(versions.iter().any(|v| text(v) == group_version)))
}

fn to_g(v: &Value) -> G {
    match v {
        Value::Null => G::Nil,
        Value::Bool(b) => G::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => G::from(i),
            (None, Some(u), _) => G::from(u),
            (_, _, Some(f)) => G::from(f),
            _ => G::Nil,
        },
        Value::String(s) => G::String(s.clone()),
        Value::Array(a) => G::Array(a.iter().map(to_g).collect()),
        Value::Object(o) => G::Map(o.iter().map(|(k, v)| (k.clone(), to_g(v))).collect()),
    }
}

fn from_g(v: &G) -> Value {
    match v {
        G::NoValue | G::Nil => Value::Null,
        G::Bool(b) => json!(b),
        G::String(s) => json!(s),
        G::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => json!(i),
            (None, Some(u), _) => json!(u),
            (_, _, Some(f)) => json!(f),
            _ => Value::Null,
        },
        G::Array(a) => Value::Array(a.iter().map(from_g).collect()),
        G::Map(m) | G::Object(m) => {
            let mut sorted: Vec<(&String, &G)> = m.iter().filter(|(_, v)| !matches!(v, G::Function(_))).collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), from_g(v))).collect())
        }
        G::Function(_) => Value::Null,
    }
}

/// The line of `name` an error message points at (`name:12:5`), if it says.
fn line_of(message: &str, name: &str) -> Option<usize> {
    let at = message.find(&format!("{name}:"))? + name.len() + 1;
    message[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::chart::{Engine, Template};

    fn chart(files: &[(&str, &str)]) -> Chart {
        Chart {
            name: "web".into(),
            version: "1.0.0".into(),
            metadata: json!({"name": "web", "version": "1.0.0"}),
            values: json!({"name": "shop"}),
            templates: files.iter().map(|(p, s)| Template { path: p.to_string(), source: s.to_string() }).collect(),
            engine: Engine::Go,
            ..Default::default()
        }
    }

    fn ctx() -> RenderContext {
        RenderContext {
            release_name: "r".into(),
            release_namespace: "ns".into(),
            revision: 2,
            kube_version: "v1.35.4".into(),
            api_versions: Vec::new(),
        }
    }

    fn error(source: &str) -> String {
        let c = chart(&[("templates/a.yaml", source)]);
        render(&c, &c.values, &ctx()).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_function() {
        let e = error(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ required \"name2 is required\" .Values.name2 }}\n",
        );
        assert!(e.contains("web/templates/a.yaml") && e.contains(":4:") && e.contains("name2 is required"), "{e}");
        let e = error("a: 1\nb: {{ .Values.name | nosuchfunc }}\n");
        assert!(e.contains("web/templates/a.yaml") && e.contains(":2:") && e.contains("nosuchfunc"), "{e}");
        let e = error("a: {{ include \"missing\" . }}\n");
        assert!(e.contains("include \"missing\""), "{e}");
    }

    #[test]
    fn upgrades_show_in_release_and_set_changes_the_dict() {
        let c = chart(&[(
            "templates/a.yaml",
            "{{- $d := dict \"a\" 1 }}{{ $_ := set $d \"b\" 2 }}\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: {{ .Values.name }}}\ndata:\n  upgrade: {{ .Release.IsUpgrade | quote }}\n  d: {{ $d | toJson | quote }}\n",
        )]);
        let out = render(&c, &c.values, &ctx()).unwrap();
        assert_eq!(out[0]["data"], json!({"upgrade": "true", "d": "{\"a\":1,\"b\":2}"}));
    }

    #[test]
    fn values_must_meet_the_schema_of_the_chart_and_of_each_subchart() {
        let schema = json!({"type": "object", "properties": {"replicas": {"type": "integer", "minimum": 1}}});
        let mut c = chart(&[("templates/a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")]);
        c.schema = Some(schema.clone());
        assert!(render(&c, &json!({"replicas": 2}), &ctx()).is_ok());
        let e = render(&c, &json!({"replicas": "three"}), &ctx()).unwrap_err().to_string();
        assert!(e.contains("chart web: values do not meet values.schema.json: /replicas"), "{e}");
        let mut sub = chart(&[]);
        sub.name = "db".into();
        sub.metadata = json!({"name": "db", "version": "1.0.0"});
        sub.schema = Some(schema);
        let mut parent = chart(&[]);
        parent.subcharts.push(sub);
        let e = render(&parent, &json!({"db": {"replicas": 0}}), &ctx()).unwrap_err().to_string();
        assert!(e.contains("chart web/charts/db: values do not meet") && e.contains("/replicas"), "{e}");
    }

    #[test]
    fn rewriting_keeps_lines_and_reaches_every_receiver() {
        let text =
            "{{ .Files.Get \"a\" }}\n{{ $.Files.Glob \"x/*\" }}\n{{ $root.Capabilities.APIVersions.Has \"v1\" }}";
        assert_eq!(
            rewrite(text),
            "{{ filesGet .Files \"a\" }}\n{{ filesGlob $.Files \"x/*\" }}\n{{ apiVersionsHas $root.Capabilities.APIVersions \"v1\" }}"
        );
    }

    #[test]
    fn semver_constraints_read_as_helm_reads_them() {
        let check = |c: &str, v: &str| {
            semver_compare(&[G::from(c.to_string()), G::from(v.to_string())]).unwrap() == G::Bool(true)
        };
        assert!(check(">=1.19-0", "v1.35.4"));
        assert!(!check("<1.25", "v1.35.4"));
        assert!(check("~1.35.0", "1.35.9") && !check("~1.35.0", "1.36.0"));
        assert!(check("^1.2", "1.9.0") && !check("^1.2", "2.0.0"));
        assert!(check("<1.20 || >=1.30", "1.35.0"));
        assert!(check(">=1.2, <2", "1.5.0") && !check(">=1.2, <2", "2.1.0"));
        assert!(!check("~1.18446744073709551615", "1.0.0"), "no overflow");
    }

    #[test]
    fn hostile_arguments_are_errors_not_panics() {
        let seq = |a: &[&str]| super::seq(&a.iter().map(|s| G::from(s.to_string())).collect::<Vec<_>>());
        assert!(seq(&["0", "-1", "-9223372036854775808"]).is_err());
        assert!(seq(&["9223372036854775806", "9223372036854775807"]).is_ok());
        assert_eq!(seq(&["3"]).unwrap(), G::String("1 2 3".into()));
        assert!(glob("a,b").is_match("a,b") && !glob("a,b").is_match("a"));
        assert!(glob("conf/{a,b}.ini").is_match("conf/b.ini"));
        let long = G::String("x\n".repeat(1 << 20));
        assert!(nindent(&[G::from(1024i64), long]).is_err());
        assert_eq!(chart_object(&json!({"": 1, "ébc": 2}), "n")["Ébc"], 2);
    }
}
