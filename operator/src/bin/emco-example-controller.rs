//! An example external controller (`docs/controllers.md`), used by the tests: a placement or action
//! controller over plain HTTP on the loopback address. What it does is read from the query string
//! of the URL a Controller registers, so one process serves every test:
//!
//! - `drop=<cluster>`: (placement) removes the cluster from every candidate slot;
//! - `label=<key>=<value>`: (action) adds the label to every resource;
//! - `sleep=<seconds>`: waits before answering; `status=<code>`: answers with that HTTP status;
//!   `garbage=1`: answers something that is not JSON.
//!
//! Usage: `emco-example-controller [--listen 127.0.0.1:0]`; prints `listening on <addr>`.

use emco::orchestrator::intents::external::{ActionAnswer, ActionRequest, PlacementAnswer, PlacementRequest};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let listen = args.iter().position(|a| a == "--listen").and_then(|i| args.get(i + 1)).cloned();
    let listener = TcpListener::bind(listen.as_deref().unwrap_or("127.0.0.1:0")).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(serve(stream));
    }
}

async fn serve(mut stream: TcpStream) {
    let Some((target, body)) = read_request(&mut stream).await else { return };
    let query: Vec<(String, String)> = target
        .split_once('?')
        .map(|(_, q)| q.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect())
        .unwrap_or_default();
    let param = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if let Some(seconds) = param("sleep").and_then(|s| s.parse().ok()) {
        tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
    }
    let (status, answer) = match (param("status"), param("garbage")) {
        (Some(code), _) => (code.parse().unwrap_or(500), format!("example failure {code}")),
        (None, Some(_)) => (200, "this is not JSON".to_string()),
        (None, None) => match answer(&body, param("drop"), param("label")) {
            Ok(a) => (200, a),
            Err(e) => (400, e),
        },
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        answer.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(answer.as_bytes()).await;
}

/// The answer to a placement or action request.
fn answer(body: &[u8], drop: Option<&str>, label: Option<&str>) -> Result<String, String> {
    let request: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let answer = match request["kind"].as_str() {
        Some("PlacementRequest") => {
            let mut request: PlacementRequest = serde_json::from_value(request).map_err(|e| e.to_string())?;
            for slot in request.apps.iter_mut().flat_map(|a| &mut a.slots) {
                slot.clusters.retain(|c| Some(c.as_str()) != drop);
            }
            serde_json::to_string(&PlacementAnswer { apps: request.apps })
        }
        Some("ActionRequest") => {
            let mut request: ActionRequest = serde_json::from_value(request).map_err(|e| e.to_string())?;
            let resources = request
                .apps
                .iter_mut()
                .flat_map(|a| &mut a.clusters)
                .flat_map(|c| std::sync::Arc::make_mut(&mut c.resources).iter_mut());
            for r in resources {
                if let Some((key, value)) = label.and_then(|l| l.split_once('=')) {
                    if !r["metadata"]["labels"].is_object() {
                        r["metadata"]["labels"] = json!({});
                    }
                    r["metadata"]["labels"][key] = json!(value);
                }
            }
            serde_json::to_string(&ActionAnswer { apps: request.apps })
        }
        other => return Err(format!("unknown kind {other:?}")),
    };
    answer.map_err(|e| e.to_string())
}

/// The request target and body of one HTTP/1.1 request.
async fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    let end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..end]).to_string();
    let target = head.split_whitespace().nth(1)?.to_string();
    let length: usize = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    while buffer.len() < end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Some((target, buffer[end..end + length].to_vec()))
}
