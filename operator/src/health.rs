//! Liveness and readiness for the kubelet: `GET /healthz` and `GET /readyz` on
//! `EMCO_HEALTH_ADDR` (the chart sets `0.0.0.0:8080`; unset, no server runs). A replica waiting
//! for the leader Lease is healthy and ready too: it is doing what it should.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

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
            let _ = stream.write_all(answer(&request[..n]).as_bytes()).await;
        });
    }
}

fn answer(request: &[u8]) -> &'static str {
    let line = request.split(|b| *b == b'\n').next().unwrap_or_default();
    if line.starts_with(b"GET /healthz ") || line.starts_with(b"GET /readyz ") {
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n"
    } else {
        "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn probes_answer_ok_and_anything_else_is_not_found() {
        assert!(super::answer(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").starts_with("HTTP/1.1 200"));
        assert!(super::answer(b"GET /readyz HTTP/1.1\r\n").starts_with("HTTP/1.1 200"));
        assert!(super::answer(b"GET /metrics HTTP/1.1\r\n").starts_with("HTTP/1.1 404"));
    }
}
