//! External controllers: the JSON exchange of `docs/controllers.md` and the one HTTP call per step.
//! The orchestrator POSTs a request (the DIG, the intent's name, and the candidates or the placed
//! resources) and takes the answer only when it is well formed: a placement answer may only drop
//! and reorder candidates, an action answer must keep every app and cluster. Secrets are withheld:
//! the controller never sees them and they come back unchanged. Anything else (timeout, HTTP
//! error, malformed answer) fails the step with a message; nothing is half-applied.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{CandidateApp, Candidates, ClusterFacts, Intent, Placed, PlacedApp};
use crate::api::controller::ControllerSpec;

/// `apiVersion` of every request and answer.
pub const API_VERSION: &str = "controllers.emco.io/v1alpha1";
/// The largest answer read.
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// Who asks: the same for every step of a revision, but for the controller, intent and kind.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct About {
    pub api_version: String,
    pub kind: String,
    pub controller: String,
    pub intent: String,
    pub project: String,
    pub deployment_intent_group: String,
    pub composite_app: String,
    pub logical_cloud: String,
    pub revision: u32,
}

impl About {
    /// This request for `intent`'s controller, of `kind`.
    pub fn of(&self, intent: &Intent, kind: &str) -> About {
        About {
            api_version: API_VERSION.into(),
            kind: kind.into(),
            controller: intent.controller().into(),
            intent: intent.name().into(),
            ..self.clone()
        }
    }
}

/// What a placement controller is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlacementRequest {
    #[serde(flatten)]
    pub about: About,
    pub clusters: Vec<ClusterFacts>,
    pub apps: Vec<CandidateApp>,
}

/// What a placement controller answers: the same apps and slots, candidates dropped or reordered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlacementAnswer {
    pub apps: Vec<CandidateApp>,
}

/// What an action controller is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionRequest {
    #[serde(flatten)]
    pub about: About,
    pub apps: Vec<PlacedApp>,
}

/// What an action controller answers: every app on every cluster, with its resources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionAnswer {
    pub apps: Vec<PlacedApp>,
}

/// Asks a placement controller; its answer, checked against what it was sent.
pub async fn place(
    spec: &ControllerSpec,
    about: About,
    clusters: &[ClusterFacts],
    candidates: Candidates,
) -> Result<Candidates, String> {
    let request = PlacementRequest { about, clusters: clusters.to_vec(), apps: candidates.apps.clone() };
    let answer: PlacementAnswer = call(spec, &request).await?;
    narrowed(&candidates, answer.apps)
}

/// `answer` if it only drops or reorders the candidates of `sent`.
pub fn narrowed(sent: &Candidates, answer: Vec<CandidateApp>) -> Result<Candidates, String> {
    if answer.len() != sent.apps.len() {
        return Err(format!("the answer has {} apps, the request {}", answer.len(), sent.apps.len()));
    }
    for app in &sent.apps {
        let theirs =
            answer.iter().find(|a| a.name == app.name).ok_or(format!("the answer leaves out app {}", app.name))?;
        if theirs.slots.len() != app.slots.len() {
            return Err(format!(
                "app {}: the answer has {} slots, the request {}",
                app.name,
                theirs.slots.len(),
                app.slots.len()
            ));
        }
        for (i, (ours, their)) in app.slots.iter().zip(&theirs.slots).enumerate() {
            if ours.pick != their.pick {
                return Err(format!("app {}: slot {i} changed its pick", app.name));
            }
            if let Some(c) = their.clusters.iter().find(|c| !ours.clusters.contains(c)) {
                return Err(format!("app {}: cluster {c} was not a candidate of slot {i}", app.name));
            }
            let mut seen = their.clusters.clone();
            seen.sort();
            seen.dedup();
            if seen.len() != their.clusters.len() {
                return Err(format!("app {}: slot {i} names a cluster twice", app.name));
            }
        }
    }
    Ok(Candidates { apps: answer })
}

/// Asks an action controller, Secrets withheld; its answer, checked, with the Secrets back.
pub async fn act(spec: &ControllerSpec, about: About, placed: Placed) -> Result<Placed, String> {
    let (sent, withheld) = withhold_secrets(placed);
    let request = ActionRequest { about, apps: sent.apps.clone() };
    let answer: ActionAnswer = call(spec, &request).await?;
    restored(&sent, answer.apps, withheld)
}

/// Secrets by (app, cluster), taken out of `placed`.
type Withheld = BTreeMap<(String, String), Vec<Value>>;

fn withhold_secrets(mut placed: Placed) -> (Placed, Withheld) {
    let mut withheld = Withheld::new();
    for app in &mut placed.apps {
        for cluster in &mut app.clusters {
            let all = std::mem::take(std::sync::Arc::make_mut(&mut cluster.resources));
            let (secrets, rest): (Vec<Value>, Vec<Value>) = all.into_iter().partition(is_secret);
            cluster.resources = std::sync::Arc::new(rest);
            withheld.insert((app.name.clone(), cluster.cluster.clone()), secrets);
        }
    }
    (placed, withheld)
}

fn is_secret(r: &Value) -> bool {
    r["kind"] == "Secret" && r["apiVersion"] == "v1"
}

/// `answer` if it keeps every app and cluster of `sent` and holds only objects, no Secrets; with
/// the withheld Secrets and `sent`'s cluster labels back.
pub fn restored(sent: &Placed, answer: Vec<PlacedApp>, mut withheld: Withheld) -> Result<Placed, String> {
    if answer.len() != sent.apps.len() {
        return Err(format!("the answer has {} apps, the request {}", answer.len(), sent.apps.len()));
    }
    let mut apps = Vec::new();
    for app in &sent.apps {
        let mut theirs = answer
            .iter()
            .find(|a| a.name == app.name)
            .cloned()
            .ok_or(format!("the answer leaves out app {}", app.name))?;
        let names = |clusters: &[super::PlacedCluster]| {
            let mut n: Vec<String> = clusters.iter().map(|c| c.cluster.clone()).collect();
            n.sort();
            n
        };
        if names(&theirs.clusters) != names(&app.clusters) {
            return Err(format!("app {}: the answer changes the clusters (action controllers do not place)", app.name));
        }
        for cluster in &mut theirs.clusters {
            for r in cluster.resources.iter() {
                check_object(r).map_err(|e| format!("app {} on {}: {e}", app.name, cluster.cluster))?;
            }
            let ours = app.clusters.iter().find(|c| c.cluster == cluster.cluster).expect("same clusters");
            cluster.labels = ours.labels.clone();
            cluster.kv = ours.kv.clone();
            let secrets = withheld.remove(&(app.name.clone(), cluster.cluster.clone())).unwrap_or_default();
            std::sync::Arc::make_mut(&mut cluster.resources).extend(secrets);
        }
        apps.push(theirs);
    }
    Ok(Placed { apps })
}

fn check_object(r: &Value) -> Result<(), String> {
    let text = |v: &Value| v.as_str().is_some_and(|s| !s.is_empty());
    if !(text(&r["apiVersion"]) && text(&r["kind"]) && text(&r["metadata"]["name"])) {
        return Err("an object without apiVersion, kind or metadata.name".into());
    }
    if r["kind"].as_str().is_some_and(|k| k.ends_with("List")) {
        return Err(format!("{}: answers hold objects, not lists", r["kind"].as_str().unwrap_or("?")));
    }
    if is_secret(r) {
        return Err(format!("Secret {}: answers may not carry Secrets", r["metadata"]["name"].as_str().unwrap_or("?")));
    }
    Ok(())
}

/// POSTs `request` to the controller; its answer, parsed.
async fn call<Q: Serialize, A: DeserializeOwned>(spec: &ControllerSpec, request: &Q) -> Result<A, String> {
    if let Some(why) = spec.endpoint.refused() {
        return Err(why);
    }
    let timeout = Duration::from_secs(spec.timeout_seconds.into());
    let client = client(spec.endpoint.ca_bundle.as_ref().map(|b| &b.0[..]))?;
    let body = serde_json::to_vec(request).expect("requests serialize");
    let failed = |e: reqwest::Error| {
        if e.is_timeout() {
            format!("no answer within {} s", spec.timeout_seconds)
        } else {
            format!("call failed: {}", e.without_url())
        }
    };
    let mut response = client
        .post(&spec.endpoint.url)
        .timeout(timeout)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(failed)?;
    let status = response.status();
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(failed)? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_ANSWER_BYTES {
            return Err(format!("the answer is over {MAX_ANSWER_BYTES} bytes"));
        }
    }
    if !status.is_success() {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).trim().to_string();
        return Err(format!("answered HTTP {}: {text}", status.as_u16()));
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("malformed answer: {e}"))
}

/// HTTP clients by CA bundle (none: the system roots); building one loads the roots, which costs
/// more than a loopback call.
static CLIENTS: std::sync::LazyLock<std::sync::Mutex<BTreeMap<Option<Vec<u8>>, reqwest::Client>>> =
    std::sync::LazyLock::new(Default::default);
/// Distinct CA bundles kept; the cache starts over beyond this.
const MAX_CLIENTS: usize = 32;

/// A client that follows no redirect, uses no proxy and trusts `ca_bundle` alone when given.
fn client(ca_bundle: Option<&[u8]>) -> Result<reqwest::Client, String> {
    let key = ca_bundle.map(<[u8]>::to_vec);
    let mut clients = CLIENTS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = clients.get(&key) {
        return Ok(c.clone());
    }
    crate::install_crypto_provider();
    let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy();
    if let Some(ca) = ca_bundle {
        let certs = reqwest::Certificate::from_pem_bundle(ca).map_err(|e| format!("caBundle: {e}"))?;
        builder = builder.tls_certs_only(certs);
    }
    let client = builder.build().map_err(|e| format!("HTTP client: {e}"))?;
    if clients.len() >= MAX_CLIENTS {
        clients.clear();
    }
    clients.insert(key, client.clone());
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::super::{Pick, PlacedCluster, Slot};
    use super::*;
    use serde_json::json;

    fn candidates() -> Candidates {
        Candidates {
            apps: vec![CandidateApp {
                name: "web".into(),
                slots: vec![
                    Slot { pick: Pick::All, clusters: vec!["a".into(), "b".into()] },
                    Slot { pick: Pick::One, clusters: vec!["b".into(), "c".into()] },
                ],
            }],
        }
    }

    fn answer(json: Value) -> Vec<CandidateApp> {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_placement_answer_may_drop_and_reorder_but_not_add() {
        let ok = narrowed(
            &candidates(),
            answer(json!([{"name": "web", "slots": [{"pick": "all", "clusters": ["b"]}, {"pick": "one", "clusters": ["c", "b"]}]}])),
        )
        .unwrap();
        assert_eq!(ok.choose()["web"].iter().collect::<Vec<_>>(), ["b", "c"]);
        let added = answer(
            json!([{"name": "web", "slots": [{"pick": "all", "clusters": ["a", "z"]}, {"pick": "one", "clusters": ["b"]}]}]),
        );
        assert_eq!(narrowed(&candidates(), added).unwrap_err(), "app web: cluster z was not a candidate of slot 0");
        let fewer = answer(json!([{"name": "web", "slots": [{"pick": "all", "clusters": ["a"]}]}]));
        assert!(narrowed(&candidates(), fewer).unwrap_err().contains("1 slots, the request 2"));
        let other = answer(json!([{"name": "api", "slots": []}]));
        assert_eq!(narrowed(&candidates(), other).unwrap_err(), "the answer leaves out app web");
    }

    fn placed() -> Placed {
        Placed {
            apps: vec![PlacedApp {
                name: "web".into(),
                clusters: vec![PlacedCluster {
                    cluster: "a".into(),
                    labels: [("edge".to_string(), String::new())].into(),
                    kv: [("region".to_string(), "eu-west".to_string())].into(),
                    resources: vec![
                        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
                        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "c2VjcmV0"}}),
                    ]
                    .into(),
                }],
            }],
        }
    }

    #[test]
    fn secrets_never_leave_and_come_back_unchanged() {
        let (sent, withheld) = withhold_secrets(placed());
        let request = serde_json::to_string(&sent).unwrap();
        assert!(!request.contains("Secret") && !request.contains("c2VjcmV0"), "{request}");
        assert!(request.contains(r#""kv":{"region":"eu-west"}"#), "the cluster's kv pairs go along: {request}");
        let mut apps = sent.apps.clone();
        std::sync::Arc::make_mut(&mut apps[0].clusters[0].resources)[0]["metadata"]["labels"] = json!({"team": "x"});
        apps[0].clusters[0].labels.clear();
        let back = restored(&sent, apps, withheld).unwrap();
        let resources = &back.apps[0].clusters[0].resources;
        assert_eq!(resources[0]["metadata"]["labels"]["team"], "x");
        assert_eq!(resources[1]["data"]["k"], "c2VjcmV0");
        assert!(back.apps[0].clusters[0].labels.contains_key("edge"), "labels are the hub's, not the answer's");
    }

    #[test]
    fn an_action_answer_must_keep_clusters_and_carry_no_secrets_or_shapeless_objects() {
        let (sent, withheld) = withhold_secrets(placed());
        let mut moved = sent.apps.clone();
        moved[0].clusters[0].cluster = "b".into();
        assert!(restored(&sent, moved, withheld.clone()).unwrap_err().contains("changes the clusters"));
        let mut secret = sent.apps.clone();
        std::sync::Arc::make_mut(&mut secret[0].clusters[0].resources)
            .push(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}));
        assert!(restored(&sent, secret, withheld.clone()).unwrap_err().contains("answers may not carry Secrets"));
        let mut shapeless = sent.apps.clone();
        std::sync::Arc::make_mut(&mut shapeless[0].clusters[0].resources).push(json!({"kind": "ConfigMap"}));
        assert!(
            restored(&sent, shapeless, withheld).unwrap_err().contains("without apiVersion, kind or metadata.name")
        );
    }
}
