//! Go-template charts render as `helm template` renders them: the chart `helm create` makes
//! (generated at test time) and the team's own charts under `tests/e2e/charts/`, each with several
//! values files, compared object by object as parsed YAML with the bed's `helm`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use emco::render::{RenderContext, load_chart, merge, parse_values_yaml, render_app};
use emco_e2e::*;
use serde_json::Value;

const KUBE_VERSION: &str = "v1.35.4";

/// The bed's helm binary.
fn helm() -> PathBuf {
    let bed = Bed::get();
    let env = std::fs::read_to_string(bed.dir.join("bed.env")).expect("bed.env");
    let bin = env.lines().find_map(|l| l.strip_prefix("BIN_DIR=")).expect("BIN_DIR in bed.env");
    PathBuf::from(bin.trim_matches('"')).join("helm")
}

/// Objects by (kind, namespace, name), from YAML documents.
fn objects(docs: impl IntoIterator<Item = Value>) -> BTreeMap<String, Value> {
    docs.into_iter()
        .filter(|d| d.is_object())
        .map(|d| {
            let key = format!(
                "{}/{}/{}",
                d["kind"].as_str().unwrap_or("?"),
                d["metadata"]["namespace"].as_str().unwrap_or(""),
                d["metadata"]["name"].as_str().unwrap_or("?")
            );
            (key, d)
        })
        .collect()
}

fn helm_template(chart: &Path, values: Option<&Path>) -> Result<BTreeMap<String, Value>> {
    let mut cmd = Command::new(helm());
    cmd.args(["template", "rel", "--include-crds"]).arg(chart).args([
        "--namespace",
        "conformance",
        "--kube-version",
        KUBE_VERSION,
    ]);
    if let Some(v) = values {
        cmd.arg("-f").arg(v);
    }
    let out = cmd.output()?;
    if !out.status.success() {
        bail!("helm template {}: {}", chart.display(), String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8(out.stdout)?;
    let docs: Vec<Value> = text.split("\n---").filter_map(|d| serde_saphyr::from_str::<Value>(d).ok()).collect();
    Ok(objects(docs))
}

fn ours(chart: &Path, values: Option<&Path>) -> Result<BTreeMap<String, Value>> {
    let tgz = chart_dir_tgz(chart.to_str().context("path")?);
    let chart = load_chart(&tgz)?;
    let mut merged = chart.values.clone();
    if let Some(v) = values {
        merge(&mut merged, &parse_values_yaml(&std::fs::read_to_string(v)?, "values")?);
    }
    let ctx = RenderContext {
        release_name: "rel".into(),
        release_namespace: "conformance".into(),
        revision: 1,
        kube_version: KUBE_VERSION.into(),
        api_versions: Vec::new(),
    };
    Ok(objects(render_app(&chart, &merged, &ctx)?))
}

fn same(chart: &Path, values: Option<&Path>) -> Result<usize> {
    let (theirs, ours) =
        (helm_template(chart, values)?, ours(chart, values).with_context(|| format!("rendering {}", chart.display()))?);
    let what = format!("{} with {:?}", chart.display(), values.map(|v| v.file_name().unwrap_or_default()));
    assert_eq!(theirs.keys().collect::<Vec<_>>(), ours.keys().collect::<Vec<_>>(), "objects of {what}");
    for (key, object) in &theirs {
        assert_eq!(&ours[key], object, "{key} of {what}");
    }
    Ok(theirs.len())
}

#[test]
fn the_helm_create_chart_renders_as_helm_template_does() -> Result<()> {
    let dir = tempdir("helm-create")?;
    let status = Command::new(helm()).arg("create").arg(dir.join("mychart")).output()?;
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let chart = dir.join("mychart");
    let values = [
        ("defaults.yaml", "{}\n"),
        (
            "everything.yaml",
            "replicaCount: 3\nfullnameOverride: shop\ningress:\n  enabled: true\n  className: nginx\n  annotations: {a: b}\n  hosts:\n  - host: shop.example\n    paths: [{path: /, pathType: Prefix}]\n  tls:\n  - {secretName: shop-tls, hosts: [shop.example]}\nautoscaling: {enabled: true, minReplicas: 2, maxReplicas: 5, targetCPUUtilizationPercentage: 70, targetMemoryUtilizationPercentage: 60}\nserviceAccount: {create: false, name: builder}\npodAnnotations: {x: y}\nresources: {limits: {cpu: 100m}}\nnodeSelector: {disk: ssd}\ntolerations: [{key: k, operator: Exists}]\nvolumes: [{name: v, emptyDir: {}}]\nvolumeMounts: [{name: v, mountPath: /v}]\n",
        ),
        (
            "names.yaml",
            "nameOverride: a-very-long-name-override-that-is-longer-than-sixty-three-characters-for-sure\nimage: {tag: \"2.0\"}\nhttpRoute: {enabled: true, parentRefs: [{name: gw}], hostnames: [shop.example]}\n",
        ),
    ];
    let mut count = 0;
    count += same(&chart, None)?;
    for (name, text) in values {
        let file = dir.join(name);
        std::fs::write(&file, text)?;
        count += same(&chart, Some(&file))?;
    }
    println!("helm create chart: {count} objects equal over {} renders", values.len() + 1);
    Ok(())
}

#[test]
fn the_teams_charts_render_as_helm_template_does() -> Result<()> {
    let root = repo_root().join("tests/e2e/charts");
    let mut count = 0;
    let mut charts = std::fs::read_dir(&root)?.map(|e| e.map(|e| e.path())).collect::<std::io::Result<Vec<_>>>()?;
    charts.push(repo_root().join(format!("{SAMPLE}/charts/smtc-cloud")));
    for chart in charts {
        if !chart.join("Chart.yaml").exists() {
            continue;
        }
        count += same(&chart, None)?;
        let values_dir = chart.join("ci");
        for values in std::fs::read_dir(&values_dir).into_iter().flatten() {
            count += same(&chart, Some(&values?.path()))?;
        }
    }
    println!("team charts: {count} objects equal");
    Ok(())
}

fn tempdir(what: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("emco-{what}-{}", unique_suffix()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Benchmark (`just bench`): our render of the `helm create` chart and of a 200-object chart next
/// to `helm template` (its process included), in the same run, with the ratio.
#[test]
#[ignore = "benchmark: run with `just bench`"]
fn bench_render_against_helm_template() -> Result<()> {
    let dir = tempdir("helm-bench")?;
    assert!(Command::new(helm()).arg("create").arg(dir.join("mychart")).status()?.success());
    let big = dir.join("big");
    std::fs::create_dir_all(big.join("templates"))?;
    std::fs::write(big.join("Chart.yaml"), "apiVersion: v2\nname: big\nversion: 0.1.0\n")?;
    std::fs::write(big.join("values.yaml"), "count: 200\nlabels: {team: edge, tier: backend}\n")?;
    std::fs::write(
        big.join("templates/_helpers.tpl"),
        "{{- define \"big.labels\" -}}\napp: {{ .Chart.Name }}\n{{ toYaml .Values.labels }}\n{{- end -}}\n",
    )?;
    std::fs::write(
        big.join("templates/many.yaml"),
        "{{- range $i := until (int .Values.count) }}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ printf \"cm-%03d\" $i }}\n  labels:\n    {{- include \"big.labels\" $ | nindent 4 }}\ndata:\n  index: {{ $i | quote }}\n  release: {{ $.Release.Name | upper | quote }}\n{{- end }}\n",
    )?;
    for (what, chart) in [("helm create chart", dir.join("mychart")), ("200-object chart", big)] {
        let runs = 15;
        let time = |f: &mut dyn FnMut() -> Result<usize>| -> Result<(f64, usize)> {
            let mut times = Vec::new();
            let mut n = 0;
            for _ in 0..runs {
                let start = std::time::Instant::now();
                n = f()?;
                times.push(start.elapsed().as_secs_f64() * 1000.0);
            }
            times.sort_by(f64::total_cmp);
            Ok((times[runs / 2], n))
        };
        let (theirs, n_theirs) = time(&mut || Ok(helm_template(&chart, None)?.len()))?;
        let (ours_ms, n_ours) = time(&mut || Ok(ours(&chart, None)?.len()))?;
        assert_eq!(n_theirs, n_ours);
        println!(
            "BENCH render {what} ({n_ours} objects): ours {ours_ms:.2} ms, helm template {theirs:.1} ms (median of {runs}); helm/ours = {:.0}x",
            theirs / ours_ms
        );
    }
    Ok(())
}
