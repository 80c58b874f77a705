//! Liveness and readiness for the kubelet, `GET /healthz` and `GET /readyz`, and the metrics,
//! `GET /metrics` ([`crate::metrics`]), on `EMCO_HEALTH_ADDR` (the chart sets `0.0.0.0:8080`;
//! unset, no server runs).
//!
//! - `/readyz` answers 200 once this replica can act: its hub caches have synced and its
//!   controllers run, or it is a standby that reaches the hub and waits for the leader Lease.
//!   Before that (and while the hub cannot be reached) it answers 503 with the reason.
//! - `/healthz` answers 503 once a controller loop has stopped while the process goes on, so the
//!   kubelet restarts it.

use std::sync::Mutex;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Why this replica is not ready (`None`: ready), and the controller loops that stopped.
static STATE: Mutex<(Option<&'static str>, Vec<&'static str>)> = Mutex::new((Some("starting"), Vec::new()));

/// Ready from now on.
pub fn ready() {
    STATE.lock().unwrap_or_else(|e| e.into_inner()).0 = None;
}

/// Not ready, for `why`.
pub fn not_ready(why: &'static str) {
    STATE.lock().unwrap_or_else(|e| e.into_inner()).0 = Some(why);
}

/// Runs controller loop `name`; should it ever end, the replica is no longer healthy.
pub async fn watched(name: &'static str, controller_loop: impl std::future::Future<Output = ()>) {
    controller_loop.await;
    tracing::warn!(controller = name, "controller loop stopped");
    STATE.lock().unwrap_or_else(|e| e.into_inner()).1.push(name);
}

/// Serves the probes until the process ends; a port that cannot be bound is logged, not fatal.
pub async fn serve(addr: String) {
    let listener = match TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => return tracing::warn!(%addr, error = %e, "health endpoint not started"),
    };
    tracing::info!(%addr, "health endpoint listening");
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        tokio::spawn(async move {
            let mut request = [0u8; 512];
            let n = tokio::time::timeout(std::time::Duration::from_secs(2), stream.read(&mut request))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(0);
            let (not_ready, stopped) = STATE.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let _ = stream.write_all(answer(&request[..n], not_ready, &stopped).as_bytes()).await;
        });
    }
}

fn answer(request: &[u8], not_ready: Option<&str>, stopped: &[&str]) -> String {
    let line = request.split(|b| *b == b'\n').next().unwrap_or_default();
    let (code, body) = if line.starts_with(b"GET /healthz ") {
        match stopped {
            [] => ("200 OK", "ok\n".to_string()),
            names => ("503 Service Unavailable", format!("controller loop stopped: {}\n", names.join(", "))),
        }
    } else if line.starts_with(b"GET /readyz ") {
        match not_ready {
            None => ("200 OK", "ok\n".to_string()),
            Some(why) => ("503 Service Unavailable", format!("not ready: {why}\n")),
        }
    } else if line.starts_with(b"GET /metrics ") {
        ("200 OK", crate::metrics::text())
    } else {
        ("404 Not Found", String::new())
    };
    let kind = match line.starts_with(b"GET /metrics ") {
        true => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        false => "text/plain",
    };
    format!(
        "HTTP/1.1 {code}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::answer;

    #[test]
    fn probes_say_why_they_fail() {
        let healthz = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";
        assert!(answer(healthz, Some("starting"), &[]).starts_with("HTTP/1.1 200"), "alive while not ready");
        let down = answer(healthz, None, &["rsync"]);
        assert!(down.starts_with("HTTP/1.1 503") && down.ends_with("controller loop stopped: rsync\n"), "{down}");
        let readyz = b"GET /readyz HTTP/1.1\r\n";
        assert!(answer(readyz, None, &[]).starts_with("HTTP/1.1 200"));
        let waiting = answer(readyz, Some("hub caches not synced"), &[]);
        assert!(waiting.starts_with("HTTP/1.1 503") && waiting.ends_with("not ready: hub caches not synced\n"));
        assert!(answer(b"GET /nothing HTTP/1.1\r\n", None, &[]).starts_with("HTTP/1.1 404"));
        let metrics = answer(b"GET /metrics HTTP/1.1\r\n", Some("starting"), &[]);
        assert!(
            metrics.starts_with("HTTP/1.1 200")
                && metrics.contains("# TYPE emco_rsync_objects_applied counter")
                && metrics.ends_with("# EOF\n"),
            "{metrics}"
        );
    }
}
