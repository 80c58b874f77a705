//! A test-only fault switch: with `EMCO_FAULT_AFTER_WRITES=k` the process exits (code 75) right
//! after its k-th write to the hub or a member has been answered, and sends no write after it, as
//! if it crashed there. Writes are POST, PUT, PATCH and DELETE, less the leader Lease's renewals
//! and Events (neither is state a reconciler acts on); with `EMCO_FAULT_SCOPE=s`, only those
//! whose path contains `s` (a test's namespace: what other objects on the hub do neither counts
//! nor is held). Unset, the layer passes every request through untouched.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures::future::BoxFuture;

/// The environment variable that arms the switch.
pub const ENV: &str = "EMCO_FAULT_AFTER_WRITES";
/// Only writes whose path contains this count, when set.
pub const SCOPE_ENV: &str = "EMCO_FAULT_SCOPE";
/// The exit code of a fault.
pub const EXIT_CODE: i32 = 75;

static LIMIT: LazyLock<Option<u64>> = LazyLock::new(|| std::env::var(ENV).ok()?.parse().ok().filter(|k| *k > 0));
static SCOPE: LazyLock<Option<String>> = LazyLock::new(|| std::env::var(SCOPE_ENV).ok().filter(|s| !s.is_empty()));
static WRITES: AtomicU64 = AtomicU64::new(0);

/// The layer for a client (hub or member).
#[derive(Clone, Copy, Default)]
pub struct FaultLayer;

impl<S> tower::Layer<S> for FaultLayer {
    type Service = Fault<S>;
    fn layer(&self, inner: S) -> Fault<S> {
        Fault { inner }
    }
}

#[derive(Clone)]
pub struct Fault<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for Fault<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let Some(limit) = *LIMIT else { return Box::pin(self.inner.call(req)) };
        let in_scope = SCOPE.as_ref().is_none_or(|s| req.uri().path().contains(s.as_str()));
        if !in_scope || !counted(req.method(), req.uri().path()) {
            return Box::pin(self.inner.call(req));
        }
        let n = WRITES.fetch_add(1, Ordering::SeqCst) + 1;
        if n > limit {
            return Box::pin(futures::future::pending());
        }
        // Armed only in tests: which writes a run made, to see where each one died.
        eprintln!("{ENV}: write {n}: {} {}", req.method(), req.uri().path());
        let answer = self.inner.call(req);
        Box::pin(async move {
            let out = answer.await;
            if n == limit {
                eprintln!("{ENV}: exiting after write {n}");
                std::process::exit(EXIT_CODE);
            }
            out
        })
    }
}

/// Whether a request is a write the switch counts.
fn counted(method: &http::Method, path: &str) -> bool {
    let write = matches!(*method, http::Method::POST | http::Method::PUT | http::Method::PATCH | http::Method::DELETE);
    write && !path.contains("/leases/") && !path.ends_with("/leases") && !path.contains("/events")
}

#[cfg(test)]
mod tests {
    use super::counted;
    use http::Method;

    #[test]
    fn writes_count_but_lease_renewals_and_events_do_not() {
        assert!(counted(&Method::PATCH, "/apis/rsync.emco.io/v1alpha1/namespaces/p/appcontexts/d-1/status"));
        assert!(counted(&Method::DELETE, "/api/v1/namespaces/p/configmaps/c"));
        assert!(!counted(&Method::GET, "/api/v1/namespaces/p/configmaps/c"));
        assert!(!counted(&Method::PUT, "/apis/coordination.k8s.io/v1/namespaces/emco-system/leases/emco-operator"));
        assert!(!counted(&Method::POST, "/apis/events.k8s.io/v1/namespaces/p/events"));
    }
}
