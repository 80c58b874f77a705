//! `just bench-scale N` (ignored by `just test`): on the scale bed (`tests/e2e/bed/scale.sh up N`),
//! one DIG of 20 apps × (1 Deployment, 1 Service, 8 ConfigMaps) placed on every scale member:
//! - fan-out: from the apply of the DIG to every member holding all 200 objects (seen by watches on
//!   the members), next to a direct baseline in the same run: the same rendered objects applied
//!   with server-side apply to each member, 16 (member, app) units at once as rsync does;
//! - update propagation: one profile value changed (one ConfigMap per member), P50/P99 over the
//!   members of the time until the member shows it;
//! - hub requests per object delivered, by verb (the hub's own counters);
//! - the operator's peak RSS and CPU seconds during fan-out, and RSS and CPU over 60 s at rest;
//! - render: objects per second for a 200-object chart.
//!
//! Each figure is the median of 3 runs; the table is printed and written to `target/bench/`.
//! `BENCH_DIRECT_WATCHED=1` leaves the direct copies visible to the operator's member watches (the
//! members then send each object back, as they do for every object rsync writes).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use emco_e2e::*;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

const APPS: usize = 20;
const PER_APP: usize = 10;
/// Runs per figure; `BENCH_RUNS` overrides it for a quick look (the figures are then not medians of 3).
fn run_count() -> usize {
    std::env::var("BENCH_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(3)
}
const CHART: &str = "apiVersion: v2\nname: scale\nversion: 0.1.0\n";
const TEMPLATE: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Values.name }}
spec:
  replicas: 1
  selector: {matchLabels: {app: {{ .Values.name }}}}
  template:
    metadata: {labels: {app: {{ .Values.name }}}}
    spec:
      containers:
      - {name: main, image: "registry.example/{{ .Values.name }}:1"}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ .Values.name }}
spec:
  selector: {app: {{ .Values.name }}}
  ports: [{port: 80}]
{{- range $i := until 8 }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ $.Values.name }}-{{ $i }}
data:
  value: {{ if eq $i 0 }}{{ $.Values.value | quote }}{{ else }}"static"{{ end }}
{{- end }}
"#;

/// The bench's chart: one app's Deployment, Service and 8 ConfigMaps.
fn scale_chart() -> Vec<u8> {
    chart_tgz(
        "scale",
        &[("Chart.yaml", CHART), ("values.yaml", "name: x\nvalue: \"1\"\n"), ("templates/all.yaml", TEMPLATE)],
    )
}

/// When each member held its full set of objects (by label selector), as seen by its watches.
#[derive(Default)]
struct Arrivals {
    seen: HashMap<String, HashSet<String>>,
    done: HashMap<String, Instant>,
    /// When the first object reached a member.
    first: Option<Instant>,
}

/// Watches the three kinds on every member for objects matching `selector`; the member is done
/// once it holds `want` of them.
fn watch_arrivals(
    members: &[(String, Client)],
    selector: &str,
    want: usize,
) -> (Arc<Mutex<Arrivals>>, Vec<tokio::task::JoinHandle<()>>) {
    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    let mut tasks = Vec::new();
    for (name, client) in members {
        macro_rules! watch_kind {
            ($kind:ty, $label:expr) => {{
                let (arrivals, name, selector) = (arrivals.clone(), name.clone(), selector.to_string());
                let api = Api::<$kind>::all(client.clone());
                tasks.push(tokio::spawn(async move {
                    let mut events =
                        std::pin::pin!(watcher(api, watcher::Config::default().labels(&selector)).applied_objects());
                    while let Some(Ok(obj)) = events.next().await {
                        let mut a = arrivals.lock().unwrap();
                        a.first.get_or_insert_with(Instant::now);
                        let set = a.seen.entry(name.clone()).or_default();
                        set.insert(format!("{}/{}/{}", $label, obj.namespace().unwrap_or_default(), obj.name_any()));
                        if set.len() >= want && !a.done.contains_key(&name) {
                            a.done.insert(name.clone(), Instant::now());
                        }
                    }
                }));
            }};
        }
        watch_kind!(ConfigMap, "cm");
        watch_kind!(Service, "svc");
        watch_kind!(Deployment, "deploy");
    }
    (arrivals, tasks)
}

/// When each member was done, in order, in seconds after `start`: where a phase spends its time.
fn timeline(arrivals: &Arc<Mutex<Arrivals>>, start: Instant) -> String {
    let a = arrivals.lock().unwrap();
    let mut done: Vec<f64> = a.done.values().map(|t| t.duration_since(start).as_secs_f64()).collect();
    done.sort_by(f64::total_cmp);
    let first = a.first.map(|t| t.duration_since(start).as_secs_f64()).unwrap_or_default();
    let done: Vec<String> = done.iter().map(|d| format!("{d:.2}")).collect();
    format!("first object {first:.2} s, members done at {}", done.join(" "))
}

async fn wait_all(arrivals: &Arc<Mutex<Arrivals>>, n: usize, timeout: Duration) -> Result<Instant> {
    let start = Instant::now();
    loop {
        {
            let a = arrivals.lock().unwrap();
            if a.done.len() >= n {
                return Ok(*a.done.values().max().unwrap());
            }
            anyhow::ensure!(
                start.elapsed() < timeout,
                "only {} of {n} members complete: {:?}",
                a.done.len(),
                a.seen.iter().map(|(m, s)| (m.clone(), s.len())).collect::<BTreeMap<_, _>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The hub's request counters by verb.
async fn hub_requests(hub: &Client) -> Result<BTreeMap<String, u64>> {
    let mut by_verb = BTreeMap::new();
    for (verb, _, count) in request_counts(hub).await? {
        *by_verb.entry(verb).or_default() += count;
    }
    Ok(by_verb)
}

/// The operator's requests to members so far, by verb (its own counters).
async fn member_requests() -> Result<BTreeMap<String, u64>> {
    let prefix = r#"emco_api_requests_total{api="member",verb=""#;
    Ok(scrape()
        .await?
        .into_iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.trim_end_matches("\"}").to_string(), v as u64)))
        .collect())
}

/// `after - before`, by key, without the keys that did not move.
fn moved(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after.iter().map(|(v, c)| (v.clone(), c - before.get(v).copied().unwrap_or(0))).filter(|(_, c)| *c > 0).collect()
}

/// Samples the RSS of `pid` every 100 ms until the flag is set; returns the peak.
fn sample_peak(pid: u32, stop: Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            peak = peak.max(rss_bytes(pid));
            std::thread::sleep(Duration::from_millis(100));
        }
        peak
    })
}

/// Busy share of all cores over `window`, from `/proc/stat` (user to steal; guest time is in user).
async fn busy(window: Duration) -> f64 {
    let sample = || -> (u64, u64) {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let fields = stat.lines().next().unwrap_or_default().split_whitespace().skip(1).take(8);
        let v: Vec<u64> = fields.filter_map(|x| x.parse().ok()).collect();
        let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
        (v.iter().sum(), idle)
    };
    let (t0, i0) = sample();
    tokio::time::sleep(window).await;
    let (t1, i1) = sample();
    1.0 - i1.saturating_sub(i0) as f64 / t1.saturating_sub(t0).max(1) as f64
}

/// Before a measured phase: waits (up to 60 s) until the machine is quiet and the operator idle,
/// 2 s in a row under 40 % busy with the operator under 5 % of a core, so that no phase pays for
/// work the one before left behind (deletes, garbage collection, an update's last pass).
async fn settle(phase: &str) {
    let operator = operator_pid().ok();
    let start = Instant::now();
    let mut quiet = 0;
    while quiet < 2 && start.elapsed() < Duration::from_secs(60) {
        let before = operator.map(cpu_seconds).unwrap_or(0.0);
        let machine = busy(Duration::from_secs(1)).await;
        let idle = operator.map(cpu_seconds).unwrap_or(0.0) - before < 0.05;
        quiet = if machine < 0.4 && idle { quiet + 1 } else { 0 };
    }
    match quiet {
        2 => eprintln!("settled before {phase} in {:.1} s", start.elapsed().as_secs_f64()),
        _ => eprintln!("warning: the machine was not quiet within 60 s before {phase}"),
    }
}

/// The scale bed's etcd (its gRPC gateway) at `path`, posted `body`: the answer as JSON.
fn scale_etcd(path: &str, body: &str) -> Option<Value> {
    let url = format!("http://127.0.0.1:23790/v3/{path}");
    let out = std::process::Command::new("curl").args(["-sf", "-X", "POST", &url, "-d", body]).output().ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// The scale etcd's current revision.
fn etcd_revision() -> Option<u64> {
    scale_etcd("kv/range", r#"{"key":"AA=="}"#)?["header"]["revision"].as_str()?.parse().ok()
}

/// Compacts the scale etcd up to `revision`: the members do not (see scale.sh), and without it
/// every range over a prefix walks each key the bench ever wrote there, so later phases cost etcd
/// more than earlier ones. The revision is one run old, older than what any quiet watch has seen.
fn compact(revision: u64) {
    let done = scale_etcd("kv/compaction", &format!(r#"{{"revision":"{revision}","physical":true}}"#));
    eprintln!("etcd compacted to revision {revision}: {}", if done.is_some() { "ok" } else { "failed" });
}

/// A phase boundary on stderr with the wall clock, to line up with profiles taken beside the bench.
fn mark(phase: &str) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    eprintln!("phase {phase} at {:.3}", now.as_secs_f64());
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// The scale members from the scale bed's kubeconfigs.
async fn scale_members(bed: &Bed) -> Result<Vec<(String, Client)>> {
    let dir = bed.dir.join("scale");
    let n: usize = std::fs::read_to_string(dir.join("members"))
        .context("the scale bed is not up: scale.sh up N")?
        .trim()
        .parse()?;
    let mut members = Vec::new();
    for i in 0..n {
        let kc = kube::config::Kubeconfig::read_from(dir.join(format!("s{i}.kubeconfig")))?;
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
        members.push((format!("s{i}"), Client::try_from(config)?));
    }
    Ok(members)
}

/// How the direct baseline orders its (member, app) units.
#[derive(Clone, Copy)]
enum Order {
    /// Every app of one member, then the next member: each member serves a burst.
    MemberByMember,
    /// Each app on every member, then the next app: every member busy at once.
    Interleaved,
    /// Two members at a time, their apps taking turns: the order rsync sends a level of apps in.
    TwoAtATime,
}

/// Creates namespace `ns` on every member, before a direct baseline's clock starts. (rsync makes
/// the fan-out's namespaces inside its clock; made one member after another here, they used to
/// take the baseline up to 2.5 s at a fraction of the cores, which flattered the fan-out.)
async fn make_namespace(members: &[(String, Client)], ns: &str) -> Result<()> {
    for (_, client) in members {
        let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
        let _ = Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await;
    }
    Ok(())
}

/// Applies `objects` to every member in namespace `ns` (made already), 16 (member, app) units at
/// once in `order`, each unit's objects in order.
async fn direct_apply(members: &[(String, Client)], ns: &str, apps: &[Vec<Value>], order: Order) -> Result<()> {
    let units: Vec<(Client, &Vec<Value>)> = match order {
        Order::MemberByMember => members.iter().flat_map(|(_, c)| apps.iter().map(move |a| (c.clone(), a))).collect(),
        Order::Interleaved => apps.iter().flat_map(|a| members.iter().map(move |(_, c)| (c.clone(), a))).collect(),
        // rsync's own order, from the same function.
        Order::TwoAtATime => {
            let by_member = members.iter().flat_map(|(m, c)| apps.iter().map(move |a| (m.as_str(), c.clone(), a)));
            emco::rsync::order::by_cluster(by_member.collect(), |(m, _, _)| (0, m))
                .into_iter()
                .map(|(_, c, a)| (c, a))
                .collect()
        }
    };
    let params = PatchParams::apply("bench-direct").force();
    let results: Vec<Result<()>> = futures::stream::iter(units)
        .map(|(client, objects)| {
            let params = params.clone();
            async move {
                for obj in objects {
                    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
                    match obj["kind"].as_str() {
                        Some("ConfigMap") => drop(
                            Api::<ConfigMap>::namespaced(client.clone(), ns)
                                .patch(name, &params, &Patch::Apply(obj))
                                .await?,
                        ),
                        Some("Service") => drop(
                            Api::<Service>::namespaced(client.clone(), ns)
                                .patch(name, &params, &Patch::Apply(obj))
                                .await?,
                        ),
                        Some("Deployment") => drop(
                            Api::<Deployment>::namespaced(client.clone(), ns)
                                .patch(name, &params, &Patch::Apply(obj))
                                .await?,
                        ),
                        other => anyhow::bail!("unexpected kind {other:?}"),
                    }
                }
                Ok(())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Deletes a direct baseline's copies (the members have no namespace controller to do it), so
/// that runs do not pile objects up on the members.
async fn remove_copies(members: &[(String, Client)], ns: &str) -> Result<()> {
    let (dp, lp) = (kube::api::DeleteParams::default(), kube::api::ListParams::default());
    for (_, client) in members {
        Api::<ConfigMap>::namespaced(client.clone(), ns).delete_collection(&dp, &lp).await?;
        Api::<Deployment>::namespaced(client.clone(), ns).delete_collection(&dp, &lp).await?;
        let services = Api::<Service>::namespaced(client.clone(), ns);
        for svc in services.list_metadata(&lp).await? {
            services.delete(&svc.name_any(), &dp).await?;
        }
    }
    Ok(())
}

struct Run {
    fanout: f64,
    direct: f64,
    interleaved: f64,
    two_at_a_time: f64,
    update_p50: f64,
    update_p99: f64,
    hub_per_object: f64,
    hub_by_verb: BTreeMap<String, u64>,
    member_fanout: BTreeMap<String, u64>,
    member_per_object: f64,
    member_update: BTreeMap<String, u64>,
    peak_rss_mib: f64,
    cpu_fanout: f64,
    ns: String,
}

/// One run; its DIG is terminated at the end unless `keep` (the caller measures at rest with it).
async fn one_run(hub: &Client, members: &[(String, Client)], run: usize, keep: bool) -> Result<Run> {
    let n = members.len();
    let ns = format!("scale{run}-{}", unique_suffix());
    project(hub, &ns).await?;
    let tgz = scale_chart();
    apply(hub, &chart_configmap(&ns, "scale-chart", &tgz)).await?;
    let apps: Vec<Value> = (0..APPS)
        .map(|a| json!({"name": format!("app{a}"), "chart": {"configMap": {"name": "scale-chart"}}}))
        .collect();
    let profile = |value: &str| {
        let profiles: Vec<Value> = (0..APPS).map(|a| json!({"app": format!("app{a}"), "values": {"name": format!("app{a}"), "value": if a == 0 { value } else { "1" }}})).collect();
        json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "CompositeProfile", "metadata": {"name": "profile", "namespace": ns}, "spec": {"profiles": profiles}})
    };
    let intents: Vec<Value> =
        (0..APPS).map(|a| json!({"app": format!("app{a}"), "allOf": [{"clusterLabel": "scale"}]})).collect();
    let clusters: Vec<Value> = members.iter().map(|(m, _)| json!({"cluster": m})).collect();
    for doc in [
        json!({"apiVersion": "dcm.emco.io/v1alpha1", "kind": "LogicalCloud", "metadata": {"name": "lc", "namespace": ns}, "spec": {"type": "Admin", "namespace": ns, "clusters": clusters}}),
        json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "CompositeApp", "metadata": {"name": "ca", "namespace": ns}, "spec": {"apps": apps}}),
        profile("1"),
        json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "GenericPlacementIntent", "metadata": {"name": "gpi", "namespace": ns}, "spec": {"appIntents": intents}}),
    ] {
        apply(hub, &doc).await?;
    }
    wait_lc(hub, &ns, "lc", "Instantiated", Duration::from_secs(60), |s| {
        s.state == Some(emco::api::dcm::LogicalCloudState::Instantiated)
    })
    .await?;

    // Fan-out through the operator.
    let selector = format!("{}={ns}", emco::api::labels::DIG);
    let (arrivals, watches) = watch_arrivals(members, &selector, APPS * PER_APP);
    tokio::time::sleep(Duration::from_secs(1)).await;
    fresh_and_settled(members, "fanout").await;
    let gcs_before = member_gcs(members).await;
    let pid = operator_pid()?;
    let (hub_before, cpu_before, member_before) =
        (hub_requests(hub).await?, cpu_seconds(pid), member_requests().await?);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = sample_peak(pid, stop.clone());
    let mut dig = dig_manifest(&ns, json!({"genericPlacementIntent": "gpi"}));
    dig["spec"]["compositeProfile"] = json!("profile");
    let with_hub: Vec<(String, Client)> = members.iter().cloned().chain([("hub".into(), hub.clone())]).collect();
    let profiles = profile_members(&with_hub, &format!("fanout{run}"));
    mark("fanout start");
    let start = Instant::now();
    apply(hub, &dig).await?;
    let fanout = wait_all(&arrivals, n, Duration::from_secs(600)).await?.duration_since(start).as_secs_f64();
    mark("fanout done");
    eprintln!("fan-out: {}", timeline(&arrivals, start));
    eprintln!("member GCs in the fan-out (3 members): {}", member_gcs(members).await.saturating_sub(gcs_before));
    let (hub_after, cpu_after) = (hub_requests(hub).await?, cpu_seconds(pid));
    let member_fanout = moved(&member_before, &member_requests().await?);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap_or(0);
    watches.iter().for_each(|w| w.abort());
    futures::future::join_all(profiles).await;
    let hub_by_verb = moved(&hub_before, &hub_after);
    let hub_total: u64 = hub_by_verb.values().sum();

    // Update: app0's value changes; one ConfigMap per member.
    let updated: Arc<Mutex<HashMap<String, Instant>>> = Default::default();
    let mut tasks = Vec::new();
    for (name, client) in members {
        let (updated, name) = (updated.clone(), name.clone());
        let api = Api::<ConfigMap>::namespaced(client.clone(), &ns);
        let config = watcher::Config::default().fields("metadata.name=app0-0");
        tasks.push(tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher(api, config).applied_objects());
            while let Some(Ok(cm)) = events.next().await {
                if cm.data.unwrap_or_default().get("value").map(String::as_str) == Some("2") {
                    updated.lock().unwrap().entry(name.clone()).or_insert_with(Instant::now);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    fresh_and_settled(members, "update").await;
    let member_before = member_requests().await?;
    let start = Instant::now();
    apply(hub, &profile("2")).await?;
    while updated.lock().unwrap().len() < n {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(300),
            "update reached {} of {n}",
            updated.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tasks.iter().for_each(|t| t.abort());
    // Until the pass that carried the update is over.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let member_update = moved(&member_before, &member_requests().await?);
    let delays: Vec<f64> = updated.lock().unwrap().values().map(|t| t.duration_since(start).as_secs_f64()).collect();

    // The direct baselines: the same rendered objects, straight to each member, in both orders.
    let actx_name = dig_status_context(hub, &ns).await?;
    let actx = Api::<emco::api::rsync::AppContext>::namespaced(hub.clone(), &ns).get(&actx_name).await?;
    let cache = emco::rsync::bundle::BundleCache::default();
    let mut bundles = Vec::new();
    for app in &actx.spec.apps {
        bundles.push(cache.load(hub, &ns, &app.bundles[0]).await?.as_ref().clone());
    }
    let mut direct = [0.0; 3];
    // `BENCH_DIRECT_REPEAT=k` measures the member-by-member baseline k times in a row (each
    // printed; the first one counts), to see its spread apart from the fan-out's.
    let repeat: usize = std::env::var("BENCH_DIRECT_REPEAT").ok().and_then(|r| r.parse().ok()).unwrap_or(1);
    // Each phase: its order, its tag, and the slot of `direct` its time goes in (repeats: none).
    let mut phases: Vec<(Order, String, Option<usize>)> = vec![(Order::MemberByMember, "direct".into(), Some(0))];
    phases.extend((1..repeat).map(|j| (Order::MemberByMember, format!("direct{j}"), None)));
    phases.push((Order::Interleaved, "inter".into(), Some(1)));
    phases.push((Order::TwoAtATime, "pairs".into(), Some(2)));
    for (order, tag, slot) in phases {
        let target = format!("{tag}-{ns}");
        let mut rendered: Vec<Vec<Value>> = bundles.clone();
        for o in rendered.iter_mut().flatten() {
            o["metadata"]["labels"][emco::api::labels::DIG] = json!(target);
            // Not the operator's: its member watches (label-selected) leave these out, unless
            // BENCH_DIRECT_WATCHED=1 (they then see each object written, as in a fan-out).
            if std::env::var("BENCH_DIRECT_WATCHED").is_err() {
                o["metadata"]["labels"].as_object_mut().map(|l| l.remove(emco::api::labels::MANAGED_BY));
            }
        }
        let (arrivals, watches) =
            watch_arrivals(members, &format!("{}={target}", emco::api::labels::DIG), APPS * PER_APP);
        tokio::time::sleep(Duration::from_secs(1)).await;
        make_namespace(members, &target).await?;
        fresh_and_settled(members, &tag).await;
        let gcs_before = member_gcs(members).await;
        let profiles = profile_members(members, &format!("{tag}{run}"));
        mark(&format!("{tag} start"));
        let start = Instant::now();
        direct_apply(members, &target, &rendered, order).await?;
        let took = wait_all(&arrivals, n, Duration::from_secs(600)).await?.duration_since(start).as_secs_f64();
        eprintln!("{tag}: {took:.2} s; {}", timeline(&arrivals, start));
        eprintln!("member GCs in {tag} (3 members): {}", member_gcs(members).await.saturating_sub(gcs_before));
        if let Some(i) = slot {
            direct[i] = took;
        }
        mark(&format!("{tag} done"));
        futures::future::join_all(profiles).await;
        watches.iter().for_each(|w| w.abort());
        remove_copies(members, &target).await?;
    }

    if !keep {
        terminate(hub, &ns).await?;
    }
    Ok(Run {
        ns,
        fanout,
        direct: direct[0],
        interleaved: direct[1],
        two_at_a_time: direct[2],
        update_p50: percentile(delays.clone(), 0.5),
        update_p99: percentile(delays, 0.99),
        hub_per_object: hub_total as f64 / (n * APPS * PER_APP) as f64,
        hub_by_verb,
        member_per_object: member_fanout.values().sum::<u64>() as f64 / (n * APPS * PER_APP) as f64,
        member_fanout,
        member_update,
        peak_rss_mib: peak as f64 / (1 << 20) as f64,
        cpu_fanout: cpu_after - cpu_before,
    })
}

/// Terminates the run's DIG, then deletes its project and grant: what a run leaves behind would
/// otherwise wake the controllers of every later run and of the rest measurement.
async fn terminate(hub: &Client, ns: &str) -> Result<()> {
    set_dig_state(hub, ns, ns, "Terminated").await?;
    wait_dig(hub, ns, ns, "Terminated", Duration::from_secs(600), |s| {
        s.state == emco::api::orchestrator::DigState::Terminated
    })
    .await?;
    let dp = kube::api::DeleteParams::default();
    Api::<emco::api::orchestrator::Project>::all(hub.clone()).delete(ns, &dp).await?;
    Api::<emco::api::dcm::ClusterGrant>::all(hub.clone()).delete(&format!("e2e-{ns}"), &dp).await?;
    // Until the hub has deleted what the project held: that work would fall in the next run.
    let namespaces = Api::<Namespace>::all(hub.clone());
    wait_for(&format!("namespace {ns} gone"), Duration::from_secs(300), || async {
        Ok(namespaces.get_opt(ns).await?.is_none().then_some(()))
    })
    .await
}

async fn dig_status_context(hub: &Client, ns: &str) -> Result<String> {
    dig(hub, ns, ns).await?.status.and_then(|s| s.app_context).context("the DIG has no AppContext")
}

/// Warms the members up before the first run (`BENCH_WARMUP=0` skips it): the bench's 20 apps
/// rendered in-process and applied directly to every member, then deleted; nothing is measured.
/// Each run measures the direct baseline after the fan-out, on members the fan-out has warmed; a
/// fan-out on members that have served nothing yet is dearer (run 0 without it: members 24.6
/// CPU-s, against 16.6–20.5 in later runs and 20.3 in a run 0 after a warm-up).
async fn warm_up(members: &[(String, Client)]) -> Result<()> {
    let tgz = scale_chart();
    let chart = emco::render::chart::load_chart(&tgz)?;
    let ctx = release("warm");
    let mut apps = Vec::new();
    for a in 0..APPS {
        let values = serde_json::from_value(json!({"name": format!("app{a}"), "value": "1"}))?;
        apps.push(emco::render::render_app(&chart, &values, &ctx)?);
    }
    let start = Instant::now();
    make_namespace(members, "warm").await?;
    direct_apply(members, "warm", &apps, Order::MemberByMember).await?;
    remove_copies(members, "warm").await?;
    eprintln!("warmed the members up in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// With `BENCH_PROFILE_DIR` set: every member's (and in a fan-out the hub's) CPU profile
/// (`/debug/pprof/profile`) over the phase's first `BENCH_PROFILE_SECONDS` (4), saved as
/// `{dir}/{phase}-{member}.pb.gz`, to compare what members do in a fan-out and in a direct
/// baseline (`go tool pprof -top` merges them).
fn profile_members(members: &[(String, Client)], phase: &str) -> Vec<tokio::task::JoinHandle<()>> {
    let Ok(dir) = std::env::var("BENCH_PROFILE_DIR") else { return Vec::new() };
    let seconds = std::env::var("BENCH_PROFILE_SECONDS").unwrap_or_else(|_| "4".into());
    members
        .iter()
        .map(|(name, client)| {
            let (client, path) = (client.clone(), format!("{dir}/{phase}-{name}.pb.gz"));
            let uri = format!("/debug/pprof/profile?seconds={seconds}");
            tokio::spawn(async move {
                let req = http::Request::get(uri).body(Vec::new()).expect("a request");
                let mut body = Vec::new();
                if let Ok(mut stream) = client.request_stream(req).await
                    && futures::AsyncReadExt::read_to_end(&mut stream, &mut body).await.is_ok()
                {
                    let _ = std::fs::write(path, body);
                }
            })
        })
        .collect()
}

/// Garbage collections so far of three members (first, middle, last), from their metrics.
async fn member_gcs(members: &[(String, Client)]) -> u64 {
    let mut gcs = 0;
    for (_, client) in [&members[0], &members[members.len() / 2], &members[members.len() - 1]] {
        let req = http::Request::get("/metrics").body(Vec::new()).expect("a request");
        let text = client.request_text(req).await.unwrap_or_default();
        let count = text.lines().find_map(|l| l.strip_prefix("go_gc_duration_seconds_count "));
        gcs += count.and_then(|c| c.trim().parse::<f64>().ok()).unwrap_or(0.0) as u64;
    }
    gcs
}

/// Before a measured phase: every member collects its garbage (the Go runtime's, through
/// `/debug/pprof/heap?gc=1`), then the machine settles, so that each phase starts on members in
/// the same state. Without it, whichever phase comes first after a quiet spell pays for the
/// garbage the ones before left: the fan-out (first in a run) had each member collect once during
/// its burst, the direct baseline after it none (members 7,830 against 5,384 perf samples, 1,400
/// of the difference in the collector).
async fn fresh_and_settled(members: &[(String, Client)], phase: &str) {
    let collect = members.iter().map(|(_, client)| async move {
        // The profile is binary; only whether the member answered counts.
        let req = http::Request::get("/debug/pprof/heap?gc=1").body(Vec::new().into()).expect("a request");
        client.send(req).await.is_ok_and(|r| r.status().is_success())
    });
    let failed = futures::future::join_all(collect).await.iter().filter(|ok| !**ok).count();
    if failed > 0 {
        eprintln!("warning: {failed} members did not collect their garbage before {phase} (SCALE_PROFILING=false?)");
    }
    settle(phase).await;
}

/// The release facts of an in-process render: release `name` in namespace `name`.
fn release(name: &str) -> emco::render::RenderContext {
    emco::render::RenderContext {
        release_name: name.into(),
        release_namespace: name.into(),
        revision: 1,
        kube_version: "v1.35.0".into(),
        api_versions: vec![],
    }
}

/// Objects per second rendered in-process for a chart of 200 objects.
fn render_rate() -> Result<f64> {
    let template = "{{- range $i := until 200 }}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{{ $i }}\ndata:\n  value: {{ $.Values.value | quote }}\n{{- end }}\n";
    let tgz =
        chart_tgz("render", &[("Chart.yaml", CHART), ("values.yaml", "value: x\n"), ("templates/cms.yaml", template)]);
    let chart = emco::render::chart::load_chart(&tgz)?;
    let ctx = release("r");
    let start = Instant::now();
    let mut objects = 0;
    while start.elapsed() < Duration::from_secs(2) {
        objects += emco::render::render_app(&chart, &chart.values, &ctx)?.len();
    }
    Ok(objects as f64 / start.elapsed().as_secs_f64())
}

#[tokio::test]
#[ignore = "benchmark: run with `just bench-scale N`"]
async fn scale_fan_out_update_and_cost() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let members = scale_members(&bed).await?;
    let n = members.len();
    let mut runs = Vec::new();
    let total = run_count();
    if std::env::var("BENCH_WARMUP").as_deref() != Ok("0") {
        warm_up(&members).await?;
    }
    let mut last_start = None;
    for run in 0..total {
        if let Some(revision) = last_start {
            compact(revision);
        }
        last_start = etcd_revision();
        let r = one_run(&hub, &members, run, run + 1 == total).await?;
        println!(
            "run {run}: fan-out {:.2} s (direct {:.2} s, {:.2}x; interleaved {:.2} s, {:.2}x; two at a time {:.2} s, {:.2}x), update P50 {:.3} s P99 {:.3} s, hub {:.3}/object {:?}, member requests fan-out {:?} update {:?}, peak RSS {:.0} MiB, CPU {:.1} s",
            r.fanout,
            r.direct,
            r.fanout / r.direct,
            r.interleaved,
            r.fanout / r.interleaved,
            r.two_at_a_time,
            r.fanout / r.two_at_a_time,
            r.update_p50,
            r.update_p99,
            r.hub_per_object,
            r.hub_by_verb,
            r.member_fanout,
            r.member_update,
            r.peak_rss_mib,
            r.cpu_fanout
        );
        runs.push(r);
    }
    // At rest: the last run's N x 200 objects deployed and under watch, nothing to do.
    let pid = operator_pid()?;
    let (cpu, hub_before) = (cpu_seconds(pid), hub_requests(&hub).await?);
    // `BENCH_REST=0` skips it, for a quick look.
    let rest = if std::env::var("BENCH_REST").as_deref() == Ok("0") { 1 } else { 60 };
    tokio::time::sleep(Duration::from_secs(rest)).await;
    let rest_cpu = (cpu_seconds(pid) - cpu) / rest as f64 * 100.0;
    let rest_rss = rss_bytes(pid) as f64 / (1 << 20) as f64;
    let hub_after = hub_requests(&hub).await?;
    let rest_hub: u64 = hub_after.iter().map(|(v, c)| c - hub_before.get(v).copied().unwrap_or(0)).sum();
    println!("at rest: {rest_cpu:.2} % of a core, {rest_rss:.0} MiB, {rest_hub} hub requests in {rest} s");
    if let Some(last) = runs.last() {
        terminate(&hub, &last.ns).await?;
    }
    let m = |f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
    let table = format!(
        "scale bench, N = {n} members, {APPS} apps x {PER_APP} objects ({} objects), median of {total} runs\n\
         | figure | value |\n|---|---|\n\
         | fan-out (apply DIG -> all objects on every member) | {:.2} s |\n\
         | direct baseline, member by member (same objects, SSA, same concurrency{}) | {:.2} s |\n\
         | ratio | {:.2}x |\n\
         | direct baseline, interleaved: every member at once (same run) | {:.2} s |\n\
         | ratio to interleaved | {:.2}x |\n\
         | direct baseline, two members at a time as rsync sends (same run) | {:.2} s |\n\
         | ratio to two at a time | {:.2}x |\n\
         | update propagation P50 / P99 | {:.3} s / {:.3} s |\n\
         | hub requests per object delivered | {:.3} |\n\
         | member requests per object, fan-out | {:.2} |\n\
         | member writes / reads in the update (N objects changed) | {:.0} / {:.0} |\n\
         | operator peak RSS during fan-out | {:.0} MiB |\n\
         | operator CPU during fan-out | {:.1} s |\n\
         | at rest (60 s, N x 200 objects under watch): CPU / RSS | {:.2} % of a core / {:.0} MiB |\n\
         | render, 200-object chart | {:.0} objects/s |\n",
        n * APPS * PER_APP,
        m(|r| r.fanout),
        if std::env::var("BENCH_DIRECT_WATCHED").is_ok() { "; seen by the operator's member watches" } else { "" },
        m(|r| r.direct),
        m(|r| r.fanout / r.direct),
        m(|r| r.interleaved),
        m(|r| r.fanout / r.interleaved),
        m(|r| r.two_at_a_time),
        m(|r| r.fanout / r.two_at_a_time),
        m(|r| r.update_p50),
        m(|r| r.update_p99),
        m(|r| r.hub_per_object),
        m(|r| r.member_per_object),
        m(|r| r.member_update.get("patch").copied().unwrap_or(0) as f64),
        m(|r| (r.member_update.get("get").copied().unwrap_or(0) + r.member_update.get("list").copied().unwrap_or(0))
            as f64),
        m(|r| r.peak_rss_mib),
        m(|r| r.cpu_fanout),
        rest_cpu,
        rest_rss,
        render_rate()?,
    );
    println!("{table}");
    let out = repo_root().join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join(format!("scale-{n}.md")), &table)?;
    Ok(())
}
