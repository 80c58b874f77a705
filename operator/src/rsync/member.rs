//! rsync's work on one member cluster for one app: apply its resources in kind order with
//! server-side apply, read them back for readiness and drift, or delete them (reverse order).
//! Only objects that carry this DIG's owner labels (or do not exist yet) are applied or deleted.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client};
use serde_json::Value;

use super::drift::{self, Applied};
use super::hook;
use super::monitor::{self, Monitor};
use super::{order, ready};
use crate::api::labels;
use crate::members::Members;

/// Prefix of the field manager of everything rsync applies to members; one manager per DIG.
pub const FIELD_MANAGER: &str = "emco-rsync";
/// On a chart object: take over an object that exists on the member and is not this DIG's.
pub const ADOPT: &str = "emco.io/adopt";
/// At most this many failures are reported per app and cluster.
const MAX_FAILURES: usize = 10;
/// A first delivery of at least this many objects to a member pauses its watches, when they hold
/// no more than [`PAUSE_RATIO`] times as many: the member lists them all again afterwards.
const PAUSE_FROM: usize = 16;
const PAUSE_RATIO: usize = 8;

/// How one app fared on one cluster.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub reachable: bool,
    pub present: u32,
    pub ready: u32,
    pub failed: Vec<String>,
    /// The first few resources that are absent or not ready.
    pub not_ready: Vec<String>,
    /// Resources whose fields on the member no longer match what rsync applied.
    pub drifted: Vec<Value>,
    /// What the member answered to this pass's writes, by object: as new as anything its watch
    /// can have yet, so reading back needs no request.
    pub written: HashMap<String, Value>,
}

/// Why one request failed.
#[derive(Clone)]
enum Failure {
    /// The member did not answer: stop here, retry the whole unit later.
    Unreachable(String),
    /// The member refused this resource (invalid, forbidden, kind not served).
    Refused(String),
    /// Not found (404): the object, or the namespace it goes in.
    Gone(String),
    /// The member does not serve the object's kind.
    NotServed(String),
    /// The object changed identity since it was read (409 on a precondition): not ours to delete.
    Changed,
}

fn classify(e: kube::Error) -> Failure {
    match e {
        kube::Error::Api(s) if s.code == 404 => Failure::Gone(s.message),
        kube::Error::Api(s) if s.code == 409 => Failure::Changed,
        kube::Error::Api(s) => Failure::Refused(format!("{} ({})", s.message, s.code)),
        other => Failure::Unreachable(other.to_string()),
    }
}

/// The DIG a member object belongs to, from its owner labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub project: String,
    pub dig: String,
}

impl Owner {
    /// Whether `live` carries this owner's labels.
    fn owns(&self, live: &Value) -> bool {
        let l = &live["metadata"]["labels"];
        l[labels::PROJECT].as_str() == Some(&self.project) && l[labels::DIG].as_str() == Some(&self.dig)
    }

    /// Server-side apply field manager of this DIG (at most 128 characters, as the API requires).
    pub fn field_manager(&self) -> String {
        let name = format!("{FIELD_MANAGER}/{}/{}", self.project, self.dig);
        if name.len() <= 128 { name } else { format!("{FIELD_MANAGER}/{}", crate::hex::digest(name.as_bytes(), 16)) }
    }

    /// Server-side apply as this DIG, taking over conflicting fields. Without the member's
    /// strict decode of the body (`fieldValidation=Ignore`): its only finding for an apply is a
    /// duplicate key, which a serialized map cannot have, and it parses every body a second time.
    pub fn apply_params(&self) -> PatchParams {
        PatchParams::apply(&self.field_manager()).force().validation_ignore()
    }

    /// Why `live` may not be touched, naming who it belongs to.
    fn refusal(&self, live: &Value) -> Failure {
        let l = &live["metadata"]["labels"];
        let holder = match (l[labels::PROJECT].as_str(), l[labels::DIG].as_str()) {
            (Some(p), Some(d)) => format!("it belongs to DIG {p}/{d}"),
            _ => "it was not created by EMCO".to_string(),
        };
        Failure::Refused(format!(
            "exists and is not managed by DIG {}/{} ({holder}; annotate it in the chart with {ADOPT}: \"true\" to take it over)",
            self.project, self.dig
        ))
    }
}

/// Server-side applies `obj` at `t`. The answer is read straight into a JSON value: through
/// `DynamicObject` it would be parsed into typed metadata (timestamps and all) and written back.
async fn write(t: &Target, params: &PatchParams, obj: &Value) -> Result<Value, Failure> {
    let mut req = kube::core::Request::new(t.write.resource_url())
        .patch(&t.name, params, &Patch::Apply(obj))
        .map_err(|e| Failure::Refused(e.to_string()))?;
    req.extensions_mut().insert("patch");
    t.write.clone().into_client().request::<Value>(req).await.map_err(classify)
}

/// `live` with the `apiVersion` and `kind` of `t` (objects of a watch's initial list come without).
fn typed(t: &Target, mut live: Value) -> Value {
    live["apiVersion"] = Value::from(t.resource.api_version.as_str());
    live["kind"] = Value::from(t.resource.kind.as_str());
    live
}

/// One member of one reconcile: the client, what it serves, and the default namespace.
pub struct Member<'a> {
    pub name: &'a str,
    /// Reads and watches (the cluster's own credentials).
    pub client: Client,
    /// Applies and deletes: a logical cloud's user, or `client`.
    pub writer: Client,
    /// Whether rsync creates the default namespace when missing (not for a logical cloud's user:
    /// its logical cloud made it).
    pub makes_namespace: bool,
    /// A logical cloud's own objects: when its Namespace is refused (someone else's), nothing
    /// else of it is applied there (its Role and quota would land in a foreign namespace).
    pub guarded: bool,
    /// Deletes only in this namespace (the writer stands in for a logical cloud's user that is
    /// gone: it may not reach beyond what that user could).
    pub confine: Option<String>,
    /// Identifies the client (its kubeconfig's version), for the monitor's watches.
    pub client_key: String,
    pub members: &'a Members,
    pub monitor: &'a Monitor,
    pub namespace: &'a str,
    pub owner: Owner,
    /// What rsync last applied and saw, to tell drift from server defaults.
    pub applied: &'a Applied,
    /// What this pass learnt of the members already.
    pub listing: &'a Listing,
}

/// What one rsync pass learnt of its members, shared by the pass's units (apps): the default
/// namespaces found, and the names each kind has in a namespace (one metadata list per member,
/// kind and namespace per pass, not per app).
#[derive(Default)]
pub struct Listing {
    /// By (member, namespace): made sure of by the first unit that needs it, the others wait.
    namespaces: Mutex<HashMap<(String, String), Looked>>,
    /// By (member, kind, namespace): filled by the first unit that needs it.
    names: Mutex<HashMap<Place, Names>>,
    /// By (member, kind): the watches to start once the pass is done with the member (client
    /// key, client, kind).
    unwatched: Mutex<HashMap<(String, String), Unwatched>>,
    /// By member: its units of this pass not done yet.
    remaining: Mutex<HashMap<String, usize>>,
    /// By member: its watches paused while its first units of the pass, how many are left, run.
    paused: Mutex<HashMap<String, (usize, monitor::Paused)>>,
}

impl Listing {
    /// The units of this pass, by the member each goes to.
    pub fn expect<'a>(&self, members: impl Iterator<Item = &'a str>) {
        let mut remaining = self.remaining.lock().unwrap();
        members.for_each(|m| *remaining.entry(m.to_string()).or_default() += 1);
    }

    /// Pauses the watches of each member to which `units` (member, and objects delivered for
    /// the first time) give many objects, next to what the watches hold, until those units are
    /// done: the member lists what they wrote once, rather than send each object back as it is
    /// written. Call it before the units start; they must be the member's first to finish.
    pub fn pause_watches<'a>(&self, monitor: &Monitor, units: impl Iterator<Item = (&'a str, usize)>) {
        let mut by_member: HashMap<&str, (usize, usize)> = HashMap::new();
        for (member, objects) in units {
            let (units, total) = by_member.entry(member).or_default();
            (*units, *total) = (*units + 1, *total + objects);
        }
        let mut paused = self.paused.lock().unwrap();
        for (member, (units, objects)) in by_member {
            if objects >= PAUSE_FROM && objects * PAUSE_RATIO >= monitor.held(member) {
                paused.entry(member.to_string()).or_insert_with(|| (units, monitor.pause(member)));
            }
        }
    }

    /// One unit on `member` is done: its paused watches resume once the units that paused them
    /// are, its missing watches start once all of its units are (the member lists what the pass
    /// wrote once, rather than send each object back).
    pub fn unit_done(&self, member: &str, monitor: &Monitor, current: impl Fn(&str, &str) -> bool) {
        {
            let mut paused = self.paused.lock().unwrap();
            if let Some((units, _)) = paused.get_mut(member) {
                *units = units.saturating_sub(1);
                if *units == 0 {
                    paused.remove(member);
                }
            }
        }
        let left = self.remaining.lock().unwrap().get_mut(member).map(|n| {
            *n = n.saturating_sub(1);
            *n
        });
        if left == Some(0) {
            self.start_watches(monitor, Some(member), current);
        }
    }

    /// Starts the member watches this pass found missing (on `member`, or on every member), with
    /// the client the pass used while `current(member, client key)` holds: not once the member
    /// moved to another shard, nor over a watch a later pass started with a newer kubeconfig.
    pub fn start_watches(&self, monitor: &Monitor, member: Option<&str>, current: impl Fn(&str, &str) -> bool) {
        self.unwatched.lock().unwrap().retain(|(m, _), (client_key, client, resource)| {
            let starting = member.is_none_or(|only| m == only);
            if starting && current(m, client_key) {
                monitor.watch(m, client_key, client, resource);
            }
            !starting
        });
    }
}

/// (member, kind, namespace).
type Place = (String, String, Option<String>);
type Names = Arc<tokio::sync::OnceCell<HashSet<String>>>;
type Looked = Arc<tokio::sync::OnceCell<Result<(), Failure>>>;
/// A member watch to start: (client key, client, kind).
type Unwatched = (String, Client, ApiResource);

/// Where one resource lives on a member.
struct Target {
    api: Api<DynamicObject>,
    /// The same place, as the writer.
    write: Api<DynamicObject>,
    resource: ApiResource,
    namespace: Option<String>,
    name: String,
}

impl Member<'_> {
    /// The key of `obj` in what rsync remembers of this member.
    fn key(&self, obj: &Value) -> String {
        identity(obj, self.namespace)
    }

    /// Where `obj` lives on the member.
    async fn locate(&self, obj: &Value) -> Result<Target, Failure> {
        let (api_version, kind) =
            (obj["apiVersion"].as_str().unwrap_or_default(), obj["kind"].as_str().unwrap_or_default());
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let served = self.members.kind(self.name, &self.client, &gvk).await.map_err(|e| match e {
            kube::Error::Api(s) if s.code == 404 => Failure::NotServed(format!("{api_version} {kind}")),
            other => classify(other),
        })?;
        let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let namespace =
            served.namespaced.then(|| obj["metadata"]["namespace"].as_str().unwrap_or(self.namespace).to_string());
        let at = |client: &Client| match &namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &served.resource),
            None => Api::all_with(client.clone(), &served.resource),
        };
        let (api, write) = (at(&self.client), at(&self.writer));
        Ok(Target { api, write, resource: served.resource, namespace, name })
    }

    /// `t` as the member has it: from the watch, else asked directly. Every copy carries
    /// `apiVersion` and `kind`, so that readiness and drift judge them alike.
    async fn read_at(&self, t: &Target) -> Result<Option<Value>, Failure> {
        match self.cached(t).await {
            Some(live) => Ok(Some(live)),
            None => self.fetch(t).await,
        }
    }

    /// `t` asked of the member.
    async fn fetch(&self, t: &Target) -> Result<Option<Value>, Failure> {
        let live = t.api.get_opt(&t.name).await.map_err(classify)?;
        Ok(live.map(|l| typed(t, serde_json::to_value(l).unwrap_or_default())))
    }

    /// `t` from the monitor's watch, when the watch has it.
    async fn cached(&self, t: &Target) -> Option<Value> {
        let cache = self.monitor.cache(self.name, &self.client_key, &self.watch_client(), &t.resource).await?;
        self.in_cache(t, &cache)
    }

    /// `t` from the monitor's watch when that watch has listed already. Else the watch starts
    /// once the pass is done with the member ([`Listing::unit_done`]): a watch started before a
    /// first delivery would have the member send every object written back to rsync once more.
    fn peeked(&self, t: &Target) -> Option<Value> {
        let Some(cache) = self.monitor.peek(self.name, &self.client_key, &t.resource) else {
            let watch = (self.client_key.clone(), self.watch_client(), t.resource.clone());
            self.listing.unwatched.lock().unwrap().entry(monitor::watch_key(self.name, &t.resource)).or_insert(watch);
            return None;
        };
        self.in_cache(t, &cache)
    }

    fn in_cache(&self, t: &Target, cache: &kube::runtime::reflector::Store<DynamicObject>) -> Option<Value> {
        let live = cache.get(&monitor::object_ref(&t.resource, t.namespace.as_deref(), &t.name))?;
        Some(typed(t, serde_json::to_value(live.as_ref()).unwrap_or_default()))
    }

    fn watch_client(&self) -> Client {
        self.members.watch_client(self.name).unwrap_or_else(|| self.client.clone())
    }

    /// Creates the default namespace when missing (looked for once per member and pass, however
    /// many units of the member run at once: a member that did not answer is not asked again by
    /// each of its units in turn); never deletes it (it may hold others' objects).
    async fn ensure_namespace(&self) -> Result<(), Failure> {
        if !self.makes_namespace {
            return Ok(());
        }
        let key = (self.name.to_string(), self.namespace.to_string());
        let cell = self.listing.namespaces.lock().unwrap().entry(key).or_default().clone();
        // Kept for the pass: the namespace found or made, or the member not answering. A refusal
        // (a 429 or 500 among them) is not: the next unit asks again.
        let looked = cell
            .get_or_try_init(|| async {
                match self.make_namespace().await {
                    Err(f @ Failure::Unreachable(_)) => Ok(Err(f)),
                    Err(f) => Err(f),
                    Ok(()) => Ok(Ok(())),
                }
            })
            .await?;
        looked.clone()
    }

    async fn make_namespace(&self) -> Result<(), Failure> {
        let api = Api::<Namespace>::all(self.client.clone());
        if api.get_opt(self.namespace).await.map_err(classify)?.is_some() {
            return Ok(());
        }
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": self.namespace, "labels": {labels::MANAGED_BY: labels::MANAGER}}
        }))
        .expect("a valid Namespace");
        match api.create(&PostParams::default(), &ns).await {
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            other => other.map(|_| ()).map_err(classify),
        }
    }

    /// Whether the member has an object of `t`'s kind and name in its namespace, from a metadata
    /// list made once per pass: an object absent there needs no read before it is applied.
    async fn listed(&self, t: &Target) -> Result<bool, Failure> {
        let kind = format!("{}/{}", t.resource.api_version, t.resource.plural);
        let key = (self.name.to_string(), kind, t.namespace.clone());
        let cell = self.listing.names.lock().unwrap().entry(key).or_default().clone();
        let names = cell
            .get_or_try_init(|| async {
                let list = t.api.list_metadata(&ListParams::default()).await.map_err(classify)?;
                Ok::<_, Failure>(list.items.into_iter().filter_map(|o| o.metadata.name).collect())
            })
            .await?;
        Ok(names.contains(&t.name))
    }

    /// Applies `resources` in kind order; stops at the first sign the member is unreachable.
    /// What exists is learnt from one metadata list per kind and namespace (and the watches),
    /// not a read per object.
    pub async fn apply(&self, resources: &[Value]) -> Outcome {
        let (started, mut written) = (std::time::Instant::now(), 0);
        let out = self.apply_counted(resources, &mut written).await;
        crate::metrics::applied(started, written);
        out
    }

    async fn apply_counted(&self, resources: &[Value], written: &mut u64) -> Outcome {
        let mut out = Outcome { reachable: true, ..Default::default() };
        if let Err(f) = self.ensure_namespace().await {
            record(&mut out, f, &format!("Namespace {}", self.namespace));
            return out;
        }
        let mut ordered: Vec<&Value> = resources.iter().collect();
        order::install_order(&mut ordered);
        let params = self.owner.apply_params();
        for obj in ordered {
            let applied = async {
                let t = self.locate(obj).await?;
                // An object the member has: its watch (started now, if need be), else a read.
                let live = match self.peeked(&t) {
                    Some(live) => Some(live),
                    None if self.listed(&t).await? => match self.cached(&t).await {
                        Some(live) => Some(live),
                        None => self.fetch(&t).await?,
                    },
                    None => None,
                };
                match live {
                    // A CRD is shared by everyone on the member: created if absent, never taken over.
                    Some(live) if shared(obj) && !self.owner.owns(&live) => return Ok(None),
                    Some(live) if !self.owner.owns(&live) && obj["metadata"]["annotations"][ADOPT] != "true" => {
                        return Err(self.owner.refusal(&live));
                    }
                    // Applied before as it is now and still held: no write (an update writes
                    // only what changed). After a restart, the content digest on the object says
                    // what was applied.
                    Some(live) if self.applied.unchanged(self.name, &self.key(obj), obj, &live) => return Ok(None),
                    Some(live) if holds(obj, &live) && !self.applied.drifted(self.name, &self.key(obj), obj, &live) => {
                        return Ok(None);
                    }
                    // Fields another manager took over stay theirs.
                    Some(live) => {
                        let theirs = with_digest(&drift::without_others(obj, &live), obj);
                        return write(&t, &params, &theirs).await.map(Some);
                    }
                    None => {}
                }
                write(&t, &params, &with_digest(obj, obj)).await.map(Some)
            };
            match applied.await {
                Ok(live) => {
                    out.present += 1;
                    if let Some(live) = live {
                        *written += 1;
                        self.applied.record(self.name, &self.key(obj), &drift::without_others(obj, &live), &live);
                        out.written.insert(self.key(obj), live);
                    }
                }
                Err(f) => {
                    record(&mut out, f, &describe(obj));
                    if self.guarded && obj["kind"] == "Namespace" {
                        return out;
                    }
                }
            }
            if !out.reachable {
                return out;
            }
            if obj["kind"] == "CustomResourceDefinition" {
                self.wait_established(&describe(obj), obj["metadata"]["name"].as_str().unwrap_or_default()).await;
                self.members.forget_kinds(self.name);
            }
        }
        out
    }

    /// Waits (up to 10 s) until the member serves the kinds of a CRD just applied, so that custom
    /// resources later in the same pass find them.
    async fn wait_established(&self, what: &str, name: &str) {
        let api = Api::<CustomResourceDefinition>::all(self.client.clone());
        for _ in 0..50 {
            if let Ok(crd) = api.get(name).await
                && ready::is_ready(&serde_json::to_value(crd).unwrap_or_default())
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        tracing::debug!(cluster = self.name, crd = what, "CRD not established after 10 s");
    }

    /// Reads every resource back: how many are present and how many ready. `written` holds the
    /// member's answers to this pass's writes: one is read from the watch only once the watch
    /// has caught up with it, and that version needs no drift check (it was recorded in sync
    /// as it was written).
    pub async fn observe(&self, resources: &[Value], written: &HashMap<String, Value>) -> Outcome {
        let mut out = Outcome { reachable: true, ..Default::default() };
        for obj in resources {
            let answer = written.get(&self.key(obj));
            match self.read_back(obj, answer).await {
                Ok(Some(live)) if shared(obj) && !self.owner.owns(&live) => {
                    out.present += 1;
                    out.ready += u32::from(ready::is_ready(&live));
                }
                Ok(Some(live)) if !self.owner.owns(&live) => {
                    record(&mut out, self.owner.refusal(&live), &describe(obj))
                }
                Ok(Some(live)) => {
                    out.present += 1;
                    let as_written = answer
                        .and_then(drift::resource_version)
                        .is_some_and(|v| drift::resource_version(&live) == Some(v));
                    if !as_written
                        && !drift::ignored(obj)
                        && self.applied.drifted(self.name, &self.key(obj), obj, &live)
                    {
                        out.drifted.push(obj.clone());
                    }
                    let is_ready = ready::is_ready(&live);
                    out.ready += u32::from(is_ready);
                    if !is_ready && out.not_ready.len() < MAX_FAILURES {
                        out.not_ready.push(match ready::why_not(&live) {
                            Some(why) => format!("{} ({why})", describe(obj)),
                            None => describe(obj),
                        });
                    }
                }
                Ok(None) if out.not_ready.len() < MAX_FAILURES => {
                    out.not_ready.push(format!("{} (absent)", describe(obj)))
                }
                Ok(None) => {}
                Err(f) => record(&mut out, f, &describe(obj)),
            }
            if !out.reachable {
                return out;
            }
        }
        out
    }

    /// `obj` as the member has it, asking the member only when nothing else will do: the watch's
    /// copy unless it lags what rsync last wrote; then `answer`, the member's answer to this
    /// pass's write, or a lagging copy where readiness does not depend on status; else the
    /// member itself.
    async fn read_back(&self, obj: &Value, answer: Option<&Value>) -> Result<Option<Value>, Failure> {
        let (t, key) = (self.locate(obj).await?, self.key(obj));
        // Just written: the answer will do until a watch runs.
        let watched = if answer.is_some() { self.peeked(&t) } else { self.cached(&t).await };
        match (watched, answer) {
            (Some(live), _) if !self.applied.behind(self.name, &key, &live) => Ok(Some(live)),
            (_, Some(answer)) => Ok(Some(answer.clone())),
            (Some(live), None) if !ready::judged_by_status(obj["kind"].as_str().unwrap_or_default()) => Ok(Some(live)),
            _ => self.fetch(&t).await,
        }
    }

    /// Deletes `resources` in reverse kind order; `present` counts what is still there.
    /// CustomResourceDefinitions are left in place, as Helm does: deleting one would delete every
    /// custom resource of its kinds on the member, ours or not.
    pub async fn delete(&self, resources: &[&Value]) -> Outcome {
        let mut out = Outcome { reachable: true, ..Default::default() };
        let mut ordered: Vec<&Value> =
            resources.iter().copied().filter(|r| r["kind"] != "CustomResourceDefinition").collect();
        order::install_order(&mut ordered);
        for obj in ordered.into_iter().rev() {
            let deleted = async {
                let t = self.locate(obj).await?;
                if self.confine.as_ref().is_some_and(|ns| t.namespace.as_ref() != Some(ns)) {
                    tracing::debug!(cluster = self.name, object = %describe(obj), "not deleted: outside the user's namespace");
                    return Ok(());
                }
                let Some(live) = self.read_at(&t).await? else { return Ok(()) };
                if !self.owner.owns(&live) {
                    tracing::debug!(cluster = self.name, object = %describe(obj), "not deleted: not this DIG's");
                    return Ok(());
                }
                let uid = live["metadata"]["uid"].as_str().map(String::from);
                let params = DeleteParams {
                    preconditions: Some(kube::api::Preconditions { uid, resource_version: None }),
                    ..DeleteParams::background()
                };
                self.applied.forget(self.name, &self.key(obj));
                t.write.delete(&t.name, &params).await.map(|_| ()).map_err(classify)
            };
            match deleted.await {
                Ok(()) => {}
                Err(Failure::Gone(_) | Failure::Changed | Failure::NotServed(_)) => {}
                Err(f) => {
                    out.present += 1;
                    record(&mut out, f, &describe(obj));
                }
            }
            if !out.reachable {
                return out;
            }
        }
        out
    }
}

/// Kinds shared by every tenant of a member (CRDs): created when absent, left alone when another
/// made them, never deleted.
fn shared(obj: &Value) -> bool {
    obj["kind"] == "CustomResourceDefinition"
}

fn record(out: &mut Outcome, failure: Failure, what: &str) {
    crate::metrics::member_failure(match failure {
        Failure::Unreachable(_) => "Unreachable",
        Failure::Refused(_) => "Refused",
        Failure::NotServed(_) => "NotServed",
        Failure::Gone(_) => "Gone",
        Failure::Changed => "Changed",
    });
    let message = match failure {
        Failure::Unreachable(m) => {
            out.reachable = false;
            format!("cluster unreachable: {m}")
        }
        Failure::Refused(m) => format!("{what}: {m}"),
        Failure::NotServed(kind) => format!("{what}: {kind} is not served by the cluster"),
        Failure::Gone(m) => format!("{what}: {m} (404)"),
        Failure::Changed => format!("{what}: changed meanwhile (409)"),
    };
    if out.failed.len() < MAX_FAILURES {
        out.failed.push(message);
    }
}

/// `Kind/name` of a resource, for messages.
pub fn describe(obj: &Value) -> String {
    format!("{}/{}", obj["kind"].as_str().unwrap_or("?"), obj["metadata"]["name"].as_str().unwrap_or("?"))
}

/// Identity of a resource on a member, for comparing two revisions.
pub fn identity(obj: &Value, default_namespace: &str) -> String {
    let group = obj["apiVersion"].as_str().unwrap_or_default().rsplit_once('/').map_or("", |(g, _)| g);
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or(default_namespace);
    object_key(
        group,
        obj["kind"].as_str().unwrap_or_default(),
        ns,
        obj["metadata"]["name"].as_str().unwrap_or_default(),
    )
}

/// `<group>/<kind>/<namespace>/<name>`: an object's key in what rsync remembers of a member.
pub fn object_key(group: &str, kind: &str, namespace: &str, name: &str) -> String {
    format!("{group}/{kind}/{namespace}/{name}")
}

/// How far a phase's hooks got on one member.
#[derive(Debug, PartialEq)]
pub enum Hooks {
    /// Every hook of the phase finished.
    Done,
    /// One is running (or was just started): look again.
    Waiting(String),
    /// One failed: the operation fails on this member with this message.
    Failed(String),
    /// The member did not answer.
    Unreachable(String),
}

impl Member<'_> {
    /// Runs `hooks` (one phase's, in order) as run `run`: each is started once per run, waited
    /// for, and deleted as its policy says; the next starts only when it finished.
    pub async fn run_hooks(&self, hooks: &[&Value], run: &str) -> Hooks {
        match self.ensure_namespace().await {
            Err(Failure::Unreachable(m)) => return Hooks::Unreachable(m),
            Err(f) => {
                let mut out = Outcome::default();
                record(&mut out, f, &format!("Namespace {}", self.namespace));
                return Hooks::Failed(out.failed.join("; "));
            }
            Ok(()) => {}
        }
        for hook in hooks {
            match self.run_hook(hook, run).await {
                Ok(Hooks::Done) => continue,
                Ok(other) => return other,
                Err(Failure::Unreachable(m)) => return Hooks::Unreachable(m),
                Err(f) => {
                    let mut out = Outcome::default();
                    record(&mut out, f, &format!("hook {}", describe(hook)));
                    return Hooks::Failed(out.failed.join("; "));
                }
            }
        }
        Hooks::Done
    }

    async fn run_hook(&self, hook: &Value, run: &str) -> Result<Hooks, Failure> {
        let t = self.locate(hook).await?;
        let what = format!("hook {}", describe(hook));
        let live = self.fetch(&t).await?;
        let ours = live.as_ref().is_some_and(|l| l["metadata"]["annotations"][hook::RUN] == run);
        if !ours {
            if let Some(old) = &live {
                // Another run's object: gone first (before-hook-creation), or kept and refused.
                if !hook::policy(hook, "before-hook-creation") {
                    return Ok(Hooks::Failed(format!(
                        "{what} exists from an earlier run and its delete policy keeps it"
                    )));
                }
                self.remove(&t, old).await?;
                return Ok(Hooks::Waiting(format!("{what}: replacing the earlier run's")));
            }
            let mut obj = hook.clone();
            obj["metadata"]["annotations"][hook::RUN] = Value::String(run.to_string());
            let params = self.owner.apply_params();
            let started = t.write.patch(&t.name, &params, &Patch::Apply(&obj)).await.map_err(classify)?;
            let started = typed(&t, serde_json::to_value(started).unwrap_or_default());
            return self.finish(&t, hook, &started, &what).await;
        }
        let live = live.expect("ours is some");
        self.finish(&t, hook, &live, &what).await
    }

    /// What `live` says of a hook of this run; finished ones are deleted as their policy says.
    async fn finish(&self, t: &Target, hook: &Value, live: &Value, what: &str) -> Result<Hooks, Failure> {
        match hook::state(live) {
            hook::State::Running => Ok(Hooks::Waiting(format!("{what}: running"))),
            hook::State::Done => {
                if hook::policy(hook, "hook-succeeded") {
                    self.remove(t, live).await?;
                }
                Ok(Hooks::Done)
            }
            hook::State::Failed(message) => {
                if hook::policy(hook, "hook-failed") {
                    self.remove(t, live).await?;
                }
                Ok(Hooks::Failed(format!("{what} failed: {message}")))
            }
        }
    }

    /// Deletes a hook object (its pods with it).
    async fn remove(&self, t: &Target, live: &Value) -> Result<(), Failure> {
        let uid = live["metadata"]["uid"].as_str().map(String::from);
        let params = DeleteParams {
            preconditions: Some(kube::api::Preconditions { uid, resource_version: None }),
            ..DeleteParams::background()
        };
        match t.write.delete(&t.name, &params).await.map_err(classify) {
            Ok(_) | Err(Failure::Gone(_) | Failure::Changed) => Ok(()),
            Err(f) => Err(f),
        }
    }
}

/// Annotation on every object rsync applies: a digest of its rendered content, so that after a
/// restart an object the member still holds as applied is not written again.
pub const CONTENT_DIGEST: &str = "emco.io/content-digest";

/// The digest of `desired` as rendered.
pub(crate) fn content_digest(desired: &Value) -> String {
    crate::hex::digest(desired.to_string().as_bytes(), 16)
}

/// `obj` (what is applied) with the digest of `desired` (as rendered) in its annotations.
pub(crate) fn with_digest(obj: &Value, desired: &Value) -> Value {
    let mut obj = obj.clone();
    if let Some(meta) = obj["metadata"].as_object_mut() {
        let annotations = meta.entry("annotations").or_insert_with(|| serde_json::json!({}));
        if let Some(a) = annotations.as_object_mut() {
            a.insert(CONTENT_DIGEST.into(), Value::String(content_digest(desired)));
        }
    }
    obj
}

/// Whether `live` carries the digest of `desired`: what was applied last is this very content.
fn holds(desired: &Value, live: &Value) -> bool {
    live["metadata"]["annotations"][CONTENT_DIGEST].as_str() == Some(content_digest(desired).as_str())
}
