//! Helm HTTP chart repositories: finding a chart version in `index.yaml` and downloading it.
//!
//! Repository URLs come from tenants, so requests are fenced ([`Fence`]): internal addresses are
//! refused however they are reached (literal, DNS, redirect), with one reason that says nothing of
//! what listens there; a redirect never goes from https to plain http; an optional allow-list of
//! hosts applies to every request; errors show URLs without credentials or query and never a
//! response body.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

pub use super::fence::Fence;
use super::fence::REFUSED;

/// Largest chart archive downloaded, in bytes.
pub const MAX_CHART_BYTES: usize = 20 * 1024 * 1024;
/// Largest `index.yaml` downloaded, in bytes (big public repositories have big indexes); it is
/// parsed straight into the few fields used.
const MAX_INDEX_BYTES: usize = 16 * 1024 * 1024;

/// A chart that could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// The request failed (connection, TLS, body read, ...).
    #[error("GET {url}: {source}")]
    Http {
        /// The URL requested.
        url: String,
        /// reqwest's error.
        source: reqwest::Error,
    },
    /// The server answered with a non-success status.
    #[error("GET {url}: HTTP status {status}")]
    Status {
        /// The URL requested.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The body is larger than allowed.
    #[error("GET {url}: response is larger than {limit} bytes")]
    TooLarge {
        /// The URL requested.
        url: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// `index.yaml` could not be parsed.
    #[error("{url}: invalid repository index: {message}")]
    Index {
        /// The index URL.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// The index has no entry for the chart.
    #[error("{url}: chart {chart} is not in the repository index")]
    ChartNotFound {
        /// The index URL.
        url: String,
        /// The chart asked for.
        chart: String,
    },
    /// The index has the chart but not the version asked for (or no stable version).
    #[error("{url}: chart {chart} has no {wanted}; available: {}", available.join(", "))]
    VersionNotFound {
        /// The index URL.
        url: String,
        /// The chart asked for.
        chart: String,
        /// `version X` or `stable version`.
        wanted: String,
        /// The versions the index lists.
        available: Vec<String>,
    },
    /// The index entry has no usable download URL.
    #[error("{url}: chart {chart} {version} has no valid download URL: {message}")]
    BadChartUrl {
        /// The index URL.
        url: String,
        /// The chart.
        chart: String,
        /// The version chosen.
        version: String,
        /// What is wrong.
        message: String,
    },
    /// The URL's host is not one the operator may reach.
    #[error("{url}: {why}")]
    Refused {
        /// The URL refused.
        url: String,
        /// Why.
        why: String,
    },
    /// The archive does not match the index's sha256 digest.
    #[error("GET {url}: sha256 digest is {actual}, the index says {expected}")]
    Digest {
        /// The archive URL.
        url: String,
        /// Digest from the index.
        expected: String,
        /// Digest of what was downloaded.
        actual: String,
    },
}

/// Charts fetched from Helm repositories, kept for a minute: every DIG reconcile resolves its
/// inputs, and a repository need not be asked each time.
#[derive(Default)]
pub struct RecentCharts {
    charts: std::sync::Mutex<HashMap<ChartKey, (std::time::Instant, Vec<u8>)>>,
}

/// A chart in a repository: URL, chart name, version asked for.
pub type ChartKey = (String, String, Option<String>);

impl RecentCharts {
    const TTL: Duration = Duration::from_secs(60);
    /// Bytes of charts kept at most; the oldest go first.
    pub const BUDGET: usize = 32 * 1024 * 1024;

    pub fn get(&self, key: &ChartKey) -> Option<Vec<u8>> {
        let charts = self.charts.lock().unwrap();
        charts.get(key).filter(|(at, _)| at.elapsed() < Self::TTL).map(|(_, tgz)| tgz.clone())
    }

    pub fn put(&self, key: ChartKey, tgz: Vec<u8>) {
        let mut charts = self.charts.lock().unwrap();
        charts.retain(|_, (at, _)| at.elapsed() < Self::TTL);
        while charts.values().map(|(_, c)| c.len()).sum::<usize>() + tgz.len() > Self::BUDGET {
            let Some(oldest) = charts.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| k.clone()) else { break };
            charts.remove(&oldest);
        }
        if tgz.len() <= Self::BUDGET {
            charts.insert(key, (std::time::Instant::now(), tgz));
        }
    }
}

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    entries: HashMap<String, Vec<Entry>>,
}

#[derive(Deserialize)]
struct Entry {
    version: String,
    #[serde(default)]
    urls: Vec<String>,
    digest: Option<String>,
}

/// Downloads `chart` from the Helm repository at `url` and returns the `.tgz` bytes.
///
/// `version` must match an index entry exactly; without it the highest version is taken,
/// comparing dot-separated numbers and leaving out pre-releases (`1.2.0-rc1`). A relative
/// chart URL is resolved against the repository URL. The archive is checked against the
/// index's sha256 `digest` when there is one, and may be at most [`MAX_CHART_BYTES`].
pub async fn fetch_chart(
    http: &reqwest::Client,
    fence: &Fence,
    url: &str,
    chart: &str,
    version: Option<&str>,
) -> Result<Vec<u8>, RepositoryError> {
    let repo = url.trim_end_matches('/');
    let index_url = format!("{repo}/index.yaml");
    let index = parse_index(&index_url, &get(http, fence, &index_url, MAX_INDEX_BYTES).await?)?;
    let entries = index
        .entries
        .get(chart)
        .ok_or_else(|| RepositoryError::ChartNotFound { url: shown(&index_url), chart: chart.to_owned() })?;
    let entry = pick(entries, version).ok_or_else(|| RepositoryError::VersionNotFound {
        url: shown(&index_url),
        chart: chart.to_owned(),
        wanted: version.map_or("stable version".to_owned(), |v| format!("version {v}")),
        available: entries.iter().map(|e| e.version.clone()).collect(),
    })?;
    let chart_url = chart_url(repo, entry).map_err(|message| RepositoryError::BadChartUrl {
        url: shown(&index_url),
        chart: chart.to_owned(),
        version: entry.version.clone(),
        message,
    })?;
    tracing::debug!(chart_url = %shown(chart_url.as_str()), "fetching chart");
    let tgz = get(http, fence, chart_url.as_str(), MAX_CHART_BYTES).await?;
    verify_digest(chart_url.as_str(), entry.digest.as_deref(), &tgz)?;
    Ok(tgz)
}

async fn get(http: &reqwest::Client, fence: &Fence, url: &str, limit: usize) -> Result<Vec<u8>, RepositoryError> {
    let parsed = Url::parse(url).map_err(|e| RepositoryError::Refused { url: shown(url), why: e.to_string() })?;
    allowed(&parsed, fence).map_err(|why| RepositoryError::Refused { url: shown(url), why })?;
    // Every address the name has must be admitted (the resolver checks again as it connects).
    let host = parsed.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port)).await.into_iter().flatten().collect();
    if addrs.is_empty() || addrs.iter().any(|a| !fence.admits(a.ip())) {
        return Err(RepositoryError::Refused { url: shown(url), why: REFUSED.into() });
    }
    let http_error = |source: reqwest::Error| RepositoryError::Http { url: shown(url), source: source.without_url() };
    let mut response = http.get(url).send().await.map_err(http_error)?;
    let status = response.status();
    if !status.is_success() {
        return Err(RepositoryError::Status { url: shown(url), status: status.as_u16() });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(http_error)? {
        if body.len() + chunk.len() > limit {
            return Err(RepositoryError::TooLarge { url: shown(url), limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `url` for messages: no user, password, query or fragment.
pub fn shown(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "(invalid URL)".to_owned(),
    }
}

/// Whether the operator may fetch `url`: http(s), an allowed host, an admitted address literal.
pub fn allowed(url: &Url, fence: &Fence) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme {} is not allowed (http or https only)", url.scheme()));
    }
    let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    if !fence.hosts.is_empty() && !fence.hosts.contains(&host) {
        return Err(format!("host {host} is not in the operator's repository allow-list"));
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) if !fence.admits(ip) => Err(REFUSED.into()),
        _ => Ok(()),
    }
}

/// The HTTP client for chart repositories: 30 s timeout, at most 5 redirects, none from https to
/// http or to a refused host, and names resolved only to addresses the fence admits.
pub fn client(fence: Arc<Fence>) -> reqwest::Result<reqwest::Client> {
    let policy = fence.clone();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            let downgrade =
                attempt.url().scheme() != "https" && attempt.previous().iter().any(|u| u.scheme() == "https");
            if attempt.previous().len() >= 5 {
                attempt.error("too many redirects")
            } else if downgrade {
                attempt.error("redirect from https to plain http refused")
            } else if let Err(why) = allowed(attempt.url(), &policy) {
                attempt.error(why)
            } else {
                attempt.follow()
            }
        }))
        .dns_resolver(Arc::new(Resolver(fence)))
        .build()
}

/// The system resolver, keeping only the answers the fence admits.
struct Resolver(Arc<Fence>);

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let fence = self.0.clone();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.filter(|a| fence.admits(a.ip())).collect();
            if addrs.is_empty() {
                return Err(REFUSED.into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

fn parse_index(url: &str, body: &[u8]) -> Result<Index, RepositoryError> {
    // Parser messages can quote the body: say only what is wrong in general.
    let error = |message: &str| RepositoryError::Index { url: shown(url), message: message.to_owned() };
    let text = std::str::from_utf8(body).map_err(|_| error("not UTF-8 text"))?;
    serde_saphyr::from_str(text).map_err(|_| error("not a Helm repository index (YAML with `entries`)"))
}

/// The exact `version`, or the highest stable one.
fn pick<'a>(entries: &'a [Entry], version: Option<&str>) -> Option<&'a Entry> {
    let Some(version) = version else {
        return entries
            .iter()
            .filter_map(|e| stable_key(&e.version).map(|key| (key, e)))
            .max_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, e)| e);
    };
    entries.iter().find(|e| e.version == version)
}

/// Numeric parts of a version without pre-release (`-...`); build metadata (`+...`) ignored.
fn stable_key(version: &str) -> Option<Vec<u64>> {
    let core = version.trim_start_matches('v').split('+').next()?;
    if core.contains('-') {
        return None;
    }
    core.split('.').map(|part| part.parse().ok()).collect()
}

fn chart_url(repo: &str, entry: &Entry) -> Result<Url, String> {
    let first = entry.urls.first().ok_or("the index lists no urls")?;
    let base = Url::parse(&format!("{repo}/")).map_err(|e| format!("repository URL: {e}"))?;
    base.join(first).map_err(|e| format!("{}: {e}", shown(first)))
}

fn verify_digest(url: &str, expected: Option<&str>, tgz: &[u8]) -> Result<(), RepositoryError> {
    let Some(expected) = expected.filter(|d| !d.is_empty()) else {
        return Ok(());
    };
    let expected = expected.trim_start_matches("sha256:").to_ascii_lowercase();
    let actual = crate::hex::digest(tgz, 64);
    if actual != expected {
        return Err(RepositoryError::Digest { url: shown(url), expected, actual });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::chart::tests::tgz;
    use crate::render::load_chart;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// A canned reply: status and body, by request path.
    type Routes = Vec<(String, u16, Vec<u8>)>;

    /// A tiny HTTP/1.1 server on 127.0.0.1, stopped when dropped.
    struct Server {
        base: String,
        task: tokio::task::JoinHandle<()>,
        connections: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Server {
        /// Connections accepted so far.
        fn hits(&self) -> usize {
            self.connections.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// A listener on a free port and its base URL.
    async fn bind() -> (TcpListener, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        (listener, base)
    }

    fn start(listener: TcpListener, base: String, routes: Routes) -> Server {
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = answer(&mut socket, &routes).await;
            }
        });
        Server { base, task, connections }
    }

    async fn serve(routes: Routes) -> Server {
        let (listener, base) = bind().await;
        start(listener, base, routes)
    }

    /// Serves one request, the body delimited by closing the connection.
    async fn answer(socket: &mut TcpStream, routes: &Routes) -> std::io::Result<()> {
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            request.extend_from_slice(&buf[..n]);
        }
        let request = String::from_utf8_lossy(&request);
        let path = request.split(' ').nth(1).unwrap_or_default();
        let (status, body) =
            routes.iter().find(|(p, _, _)| p == path).map_or((404, &[][..]), |(_, s, b)| (*s, b.as_slice()));
        let head = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n\r\n");
        socket.write_all(head.as_bytes()).await?;
        socket.write_all(body).await?;
        socket.shutdown().await
    }

    fn client() -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::new()
    }

    /// The fence with the test servers' loopback address allow-listed.
    fn loopback() -> Fence {
        Fence { allowed: vec!["127.0.0.1/32".parse().unwrap()], ..Default::default() }
    }

    #[tokio::test]
    async fn internal_addresses_are_refused_alike_and_never_dialled() {
        let server = repository().await;
        let fence = Fence { hub_ranges: vec!["203.0.113.0/24".parse().unwrap()], ..Default::default() };
        let base = format!("{}/repo/", server.base);
        let local = base.replace("127.0.0.1", "localhost");
        let private = ["http://10.1.2.3:8080/", "http://192.168.0.1/", "http://172.20.0.1/", "http://[fd00::1]/"];
        let hub = ["http://203.0.113.10/", "http://169.254.169.254/"];
        for url in [base.as_str(), local.as_str()].into_iter().chain(private).chain(hub) {
            let started = std::time::Instant::now();
            let err = fetch_chart(&client(), &fence, url, "demo", None).await.unwrap_err();
            assert!(matches!(&err, RepositoryError::Refused { why, .. } if why == REFUSED), "{url}: {err}");
            assert!(started.elapsed() < Duration::from_secs(1), "{url}: no connection is tried");
        }
        assert_eq!(server.hits(), 0, "the loopback server was never asked");
        let real = super::client(Arc::new(loopback())).unwrap();
        let fetched = fetch_chart(&real, &loopback(), &base, "demo", None).await;
        assert!(fetched.is_ok(), "allow-listed: {:?}", fetched.err());
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        crate::hex::digest(bytes, 64)
    }

    fn demo_tgz(version: &str) -> Vec<u8> {
        let chart_yaml = format!("name: demo\nversion: {version}\n");
        tgz(&[("demo/Chart.yaml", &chart_yaml)])
    }

    /// A repository under `/repo`: demo 1.0.0, 1.10.0 and 1.9.0 at relative URLs, 2.0.0-rc1 at
    /// an absolute one, and `other` with no versions.
    async fn repository() -> Server {
        let (listener, base) = bind().await;
        let mut entries = String::new();
        let mut routes = Routes::new();
        for version in ["1.0.0", "1.10.0", "1.9.0", "2.0.0-rc1"] {
            let archive = demo_tgz(version);
            let (url, path) = match version {
                "2.0.0-rc1" => {
                    let path = format!("/elsewhere/demo-{version}.tgz");
                    (format!("{base}{path}"), path)
                }
                _ => (format!("charts/demo-{version}.tgz"), format!("/repo/charts/demo-{version}.tgz")),
            };
            let digest = sha256_hex(&archive);
            entries.push_str(&format!("  - version: {version}\n    urls: [\"{url}\"]\n    digest: {digest}\n"));
            routes.push((path, 200, archive));
        }
        let index = format!("apiVersion: v1\nentries:\n  demo:\n{entries}  other: []\n");
        routes.push(("/repo/index.yaml".to_owned(), 200, index.into_bytes()));
        start(listener, base, routes)
    }

    #[tokio::test]
    async fn fetches_the_highest_stable_version() {
        let server = repository().await;
        let url = format!("{}/repo/", server.base);
        let bytes = fetch_chart(&client(), &loopback(), &url, "demo", None).await.unwrap();
        assert_eq!(load_chart(&bytes).unwrap().version, "1.10.0");
    }

    #[tokio::test]
    async fn fetches_an_exact_pre_release_from_an_absolute_url() {
        let server = repository().await;
        let url = format!("{}/repo", server.base);
        let bytes = fetch_chart(&client(), &loopback(), &url, "demo", Some("2.0.0-rc1")).await.unwrap();
        assert_eq!(load_chart(&bytes).unwrap().version, "2.0.0-rc1");
    }

    #[tokio::test]
    async fn unknown_version_lists_the_available_ones() {
        let server = repository().await;
        let url = format!("{}/repo", server.base);
        let err = fetch_chart(&client(), &loopback(), &url, "demo", Some("3.0.0")).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{url}/index.yaml: chart demo has no version 3.0.0; \
                 available: 1.0.0, 1.10.0, 1.9.0, 2.0.0-rc1"
            )
        );
        let err = fetch_chart(&client(), &loopback(), &url, "other", None).await.unwrap_err();
        assert!(err.to_string().contains("chart other has no stable version"), "{err}");
    }

    #[tokio::test]
    async fn chart_missing_from_index() {
        let server = repository().await;
        let url = format!("{}/repo", server.base);
        let err = fetch_chart(&client(), &loopback(), &url, "nope", None).await.unwrap_err();
        assert_eq!(err.to_string(), format!("{url}/index.yaml: chart nope is not in the repository index"));
    }

    #[tokio::test]
    async fn http_errors_name_url_and_status() {
        let server = serve(Routes::new()).await;
        let url = format!("{}/missing", server.base);
        let err = fetch_chart(&client(), &loopback(), &url, "demo", None).await.unwrap_err();
        assert_eq!(err.to_string(), format!("GET {url}/index.yaml: HTTP status 404"));
    }

    #[tokio::test]
    async fn digest_mismatch_is_rejected() {
        let archive = demo_tgz("1.0.0");
        let index = format!(
            "entries:\n  demo:\n  - version: 1.0.0\n    urls: [demo.tgz]\n    digest: {}\n",
            sha256_hex(b"something else")
        );
        let server = serve(vec![
            ("/index.yaml".to_owned(), 200, index.into_bytes()),
            ("/demo.tgz".to_owned(), 200, archive.clone()),
        ])
        .await;
        let err = fetch_chart(&client(), &loopback(), &server.base, "demo", None).await.unwrap_err();
        let RepositoryError::Digest { url, actual, .. } = &err else { panic!("{err}") };
        assert_eq!(url, &format!("{}/demo.tgz", server.base));
        assert_eq!(actual, &sha256_hex(&archive));
    }

    #[tokio::test]
    async fn oversized_chart_is_rejected() {
        let index = "entries:\n  demo:\n  - version: 1.0.0\n    urls: [demo.tgz]\n";
        let server = serve(vec![
            ("/index.yaml".to_owned(), 200, index.as_bytes().to_vec()),
            ("/demo.tgz".to_owned(), 200, vec![0; MAX_CHART_BYTES + 1]),
        ])
        .await;
        let err = fetch_chart(&client(), &loopback(), &server.base, "demo", None).await.unwrap_err();
        assert!(matches!(err, RepositoryError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn version_order_is_numeric() {
        let entries: Vec<Entry> = ["0.9.0", "1.2.0-rc1", "1.10.0+build", "1.9.3", "x.y"]
            .iter()
            .map(|v| Entry { version: (*v).to_owned(), urls: Vec::new(), digest: None })
            .collect();
        assert_eq!(pick(&entries, None).unwrap().version, "1.10.0+build");
        assert_eq!(pick(&entries, Some("1.2.0-rc1")).unwrap().version, "1.2.0-rc1");
        assert!(pick(&entries, Some("1.2.0")).is_none());
    }
}

#[cfg(test)]
mod fence_tests {
    use super::*;

    #[test]
    fn link_local_and_metadata_addresses_are_refused() {
        for url in [
            "http://169.254.169.254/latest",
            "http://[fe80::1]/x",
            "http://100.100.100.200/",
            "http://[::ffff:169.254.1.1]/",
        ] {
            assert_eq!(allowed(&Url::parse(url).unwrap(), &Fence::default()), Err(REFUSED.to_string()), "{url}");
        }
        assert!(allowed(&Url::parse("https://charts.example/x").unwrap(), &Fence::default()).is_ok());
        assert!(allowed(&Url::parse("file:///etc/passwd").unwrap(), &Fence::default()).is_err());
    }

    #[test]
    fn the_allow_list_applies_when_set() {
        let fence = Fence { hosts: vec!["charts.example".to_string()], ..Default::default() };
        assert!(allowed(&Url::parse("https://charts.example/a").unwrap(), &fence).is_ok());
        assert!(
            allowed(&Url::parse("https://elsewhere.example/a").unwrap(), &fence).unwrap_err().contains("allow-list")
        );
    }

    #[test]
    fn urls_are_shown_without_credentials_or_query() {
        assert_eq!(shown("https://user:s3cret@charts.example/idx?token=t#f"), "https://charts.example/idx");
    }
}
