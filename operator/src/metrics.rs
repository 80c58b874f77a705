//! Prometheus metrics, served as text on `GET /metrics` next to the probes ([`crate::health`]).
//!
//! Labels are bounded: a controller, a verb, a reason (an error variant or a fixed word), a state;
//! never an object's name, and no cluster label, so that 10,000 members make no more series than
//! one. What a person needs per cluster or object is in status and Events instead.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reconcile {
    controller: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Controller {
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Failure {
    controller: &'static str,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Request {
    api: &'static str,
    verb: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct State {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Via {
    via: &'static str,
}

fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Every metric the operator exports.
struct Metrics {
    registry: Registry,
    reconciles: Family<Reconcile, Counter>,
    reconcile_errors: Family<Failure, Counter>,
    reconcile_seconds: Family<Controller, Histogram, fn() -> Histogram>,
    requests: Family<Request, Counter>,
    apply_seconds: Histogram,
    applied: Counter,
    apply_failures: Family<Reason, Counter>,
    retries: Counter,
    watched: Family<Via, Counter>,
    render_seconds: Histogram,
    render_refusals: Family<Reason, Counter>,
    clusters: Family<State, Gauge>,
    resources: Family<State, Gauge>,
    /// What the gauges sum: each cluster's connectivity, each AppContext's counts.
    connectivity: Mutex<HashMap<String, &'static str>>,
    counts: Mutex<HashMap<String, [i64; 3]>>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut m = Metrics {
        registry: Registry::with_prefix("emco"),
        reconciles: Family::default(),
        reconcile_errors: Family::default(),
        reconcile_seconds: Family::new_with_constructor(seconds),
        requests: Family::default(),
        apply_seconds: seconds(),
        applied: Counter::default(),
        apply_failures: Family::default(),
        retries: Counter::default(),
        watched: Family::default(),
        render_seconds: seconds(),
        render_refusals: Family::default(),
        clusters: Family::default(),
        resources: Family::default(),
        connectivity: Mutex::default(),
        counts: Mutex::default(),
    };
    let r = &mut m.registry;
    r.register("reconciles", "Reconciles per controller and result (ok, error)", m.reconciles.clone());
    r.register("reconcile_errors", "Failed reconciles per controller and error", m.reconcile_errors.clone());
    r.register("reconcile_duration_seconds", "Time of one reconcile", m.reconcile_seconds.clone());
    r.register("api_requests", "Requests to the hub and to member API servers, by verb", m.requests.clone());
    r.register(
        "rsync_apply_duration_seconds",
        "Time to apply one app's resources to one cluster",
        m.apply_seconds.clone(),
    );
    r.register(
        "rsync_objects_applied",
        "Objects written to member clusters (unchanged ones are not written)",
        m.applied.clone(),
    );
    r.register("rsync_member_failures", "Requests to members that failed, by reason", m.apply_failures.clone());
    r.register(
        "rsync_retries",
        "AppContext passes that will be retried (a failure or an unreachable member)",
        m.retries.clone(),
    );
    r.register(
        "rsync_member_watch_objects",
        "Objects the member watches received, by how (list: a watch's list; event: one change)",
        m.watched.clone(),
    );
    r.register("render_duration_seconds", "Time to render one app's chart", m.render_seconds.clone());
    r.register("render_refusals", "Renders refused, by reason", m.render_refusals.clone());
    r.register("clusters", "Member clusters by connectivity (Available, Retrying, Unknown)", m.clusters.clone());
    r.register(
        "resources",
        "Resources of the current AppContexts: total, deployed (applied), ready",
        m.resources.clone(),
    );
    m
});

/// The metrics in Prometheus' text format.
pub fn text() -> String {
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, &METRICS.registry);
    out
}

/// Runs one reconcile of `controller`, counting it, its time and, on failure, the error's variant.
pub async fn reconciled<T, E: std::fmt::Debug>(
    controller: &'static str,
    reconcile: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let start = Instant::now();
    let result = reconcile.await;
    let m = &*METRICS;
    m.reconcile_seconds.get_or_create(&Controller { controller }).observe(start.elapsed().as_secs_f64());
    let outcome = if result.is_ok() { "ok" } else { "error" };
    m.reconciles.get_or_create(&Reconcile { controller, result: outcome }).inc();
    if let Err(e) = &result {
        m.reconcile_errors.get_or_create(&Failure { controller, reason: variant(e) }).inc();
    }
    result
}

/// The variant of an error enum, from its Debug form: `Hub(...)` gives `Hub`. A bounded label.
fn variant(e: &impl std::fmt::Debug) -> String {
    let debug = format!("{e:?}");
    debug.split(|c: char| !c.is_alphanumeric() && c != '_').next().unwrap_or_default().to_string()
}

/// One request to the hub (`api` "hub") or a member ("member").
pub fn request(api: &'static str, method: &http::Method, uri: &http::Uri) {
    METRICS.requests.get_or_create(&Request { api, verb: verb(method, uri) }).inc();
}

/// The Kubernetes verb of a request, from its method and path.
fn verb(method: &http::Method, uri: &http::Uri) -> &'static str {
    match *method {
        http::Method::GET if uri.query().is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1")) => {
            "watch"
        }
        http::Method::GET if names_one(uri.path()) => "get",
        http::Method::GET => "list",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "other",
    }
}

/// Whether a resource path names one object (`.../pods/web`) rather than a collection
/// (`.../pods`): `/api/v1/...` and `/apis/<group>/<version>/...`, namespaced or not.
fn names_one(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segments.as_slice() {
        ["api", _, rest @ ..] | ["apis", _, _, rest @ ..] => rest,
        _ => return true,
    };
    match rest {
        ["namespaces", _, rest @ ..] if !rest.is_empty() => rest.len() >= 2,
        rest => rest.len() >= 2,
    }
}

/// A layer that counts every request of a client as `api`.
pub fn counted(
    api: &'static str,
) -> tower::util::MapRequestLayer<impl Fn(http::Request<kube::client::Body>) -> http::Request<kube::client::Body> + Clone>
{
    tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
        request(api, req.method(), req.uri());
        req
    })
}

/// One app applied to one cluster: its time and the objects written.
pub fn applied(started: Instant, written: u64) {
    METRICS.apply_seconds.observe(started.elapsed().as_secs_f64());
    METRICS.applied.inc_by(written);
}

/// A request to a member failed, for `reason` (Unreachable, Refused, NotServed, Gone, Changed).
pub fn member_failure(reason: &'static str) {
    METRICS.apply_failures.get_or_create(&Reason { reason }).inc();
}

/// An object a member watch received: `via` "list" or "event".
pub fn watched(via: &'static str) {
    METRICS.watched.get_or_create(&Via { via }).inc();
}

/// An AppContext pass that will be retried.
pub fn retried() {
    METRICS.retries.inc();
}

/// One chart rendered (or refused for `refusal`).
pub fn rendered(started: Instant, refusal: Option<&'static str>) {
    METRICS.render_seconds.observe(started.elapsed().as_secs_f64());
    if let Some(reason) = refusal {
        METRICS.render_refusals.get_or_create(&Reason { reason }).inc();
    }
}

/// Cluster `name` is now `connectivity` (`None`: no longer registered here).
pub fn cluster(name: &str, connectivity: Option<&'static str>) {
    let m = &*METRICS;
    let mut all = m.connectivity.lock().unwrap_or_else(|e| e.into_inner());
    let before = match connectivity {
        Some(c) => all.insert(name.to_string(), c),
        None => all.remove(name),
    };
    // Moved from one state to another: the gauges follow, without a count over every cluster.
    if let Some(state) = before {
        m.clusters.get_or_create(&State { state }).dec();
    }
    if let Some(state) = connectivity {
        m.clusters.get_or_create(&State { state }).inc();
    }
}

/// AppContext `key` now has `[total, deployed, ready]` resources (`None`: it is gone or done with).
pub fn resources(key: &str, counts: Option<[i64; 3]>) {
    let m = &*METRICS;
    let mut all = m.counts.lock().unwrap_or_else(|e| e.into_inner());
    let before = match counts {
        Some(c) => all.insert(key.to_string(), c),
        None => all.remove(key),
    };
    let (before, after) = (before.unwrap_or_default(), counts.unwrap_or_default());
    for (i, state) in ["total", "deployed", "ready"].into_iter().enumerate() {
        m.resources.get_or_create(&State { state }).inc_by(after[i] - before[i]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_from_paths() {
        let v = |m: http::Method, u: &str| verb(&m, &u.parse().unwrap());
        assert_eq!(v(http::Method::GET, "/api/v1/namespaces/a/pods"), "list");
        assert_eq!(v(http::Method::GET, "/api/v1/namespaces/a/pods/web"), "get");
        assert_eq!(v(http::Method::GET, "/api/v1/namespaces/a"), "get");
        assert_eq!(v(http::Method::GET, "/api/v1/namespaces"), "list");
        assert_eq!(v(http::Method::GET, "/apis/apps/v1/deployments?labelSelector=x"), "list");
        assert_eq!(v(http::Method::GET, "/apis/clm.emco.io/v1alpha1/clusters/edge01/status"), "get");
        assert_eq!(v(http::Method::GET, "/apis/apps/v1/namespaces/a/deployments?watch=true&x=1"), "watch");
        assert_eq!(v(http::Method::GET, "/version"), "get");
        assert_eq!(v(http::Method::PATCH, "/apis/apps/v1/namespaces/a/deployments/web"), "patch");
    }

    #[tokio::test]
    async fn text_has_bounded_labels() {
        #[derive(Debug)]
        #[allow(dead_code)]
        enum E {
            Hub(String),
        }
        let failing = async { Err::<(), _>(E::Hub("edge01 is down".into())) };
        assert!(reconciled("test", failing).await.is_err());
        cluster("edge01", Some("Available"));
        cluster("edge02", Some("Retrying"));
        cluster("edge02", Some("Available"));
        resources("p/d-1", Some([4, 3, 2]));
        let text = text();
        assert!(text.contains("emco_reconciles_total{controller=\"test\",result=\"error\"} 1"), "{text}");
        assert!(text.contains("emco_reconcile_errors_total{controller=\"test\",reason=\"Hub\"} 1"), "{text}");
        assert!(text.contains("emco_clusters{state=\"Available\"} 2"), "{text}");
        assert!(text.contains("emco_resources{state=\"ready\"} 2"), "{text}");
        assert!(!text.contains("edge01"), "no cluster names in labels");
    }
}
