//! Status from the members: one label-selected watch per member and kind that rsync applied,
//! caching what it sees. rsync reads readiness from these caches instead of asking the member per
//! object, and every change wakes the AppContexts of the DIG the object belongs to.
//!
//! Anyone allowed on a member can label objects as the operator's, so the caches keep objects
//! [`compact`](super::drift::compact)ed (long strings and oversized fields as digests, no managed
//! fields) and list in small pages: a member user's big objects cost the operator next to nothing.
//!
//! A member's watches can be [`pause`](Monitor::pause)d while rsync delivers many objects to it
//! for the first time: the member would send each of them back as an event (about 0.6 ms of its
//! CPU per object), where listing them once afterwards costs a tenth of that. A paused watch
//! keeps its cache and what it has seen, and lists again when resumed: what changed or went
//! meanwhile wakes its DIG then.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::{mpsc, watch};

use super::drift::Applied;
use crate::api::labels;

/// Objects per page of a watch's list: a page of objects of the largest size is about 30 MiB.
const LIST_PAGE: u32 = 20;

/// How long a new watch is given for its first list.
const LIST_WAIT: Duration = Duration::from_secs(5);

/// An object of a DIG changed on a member: (project namespace, DIG name).
pub type Wakeup = (String, String);

struct Watch {
    /// Which client (kubeconfig version) it watches with.
    client_key: String,
    resource: ApiResource,
    store: Store<DynamicObject>,
    /// Whether the watch has listed once (the store is complete).
    listed: watch::Receiver<bool>,
    started: std::time::Instant,
    task: tokio::task::JoinHandle<()>,
}

/// The key of the watch of `resource` on `cluster`: (member, kind).
pub fn watch_key(cluster: &str, resource: &ApiResource) -> (String, String) {
    (cluster.to_string(), format!("{}/{}", resource.api_version, resource.kind))
}

/// The watches, by member and kind.
pub struct Monitor {
    watches: Mutex<HashMap<(String, String), Watch>>,
    switches: Switches,
    wake: mpsc::UnboundedSender<Wakeup>,
    applied: Arc<Applied>,
}

/// By member: how many pauses hold its watches, and the switch they follow (`true`: running).
type Switches = Arc<Mutex<HashMap<String, (usize, watch::Sender<bool>)>>>;

/// The pause count and switch of `cluster`'s watches (running, unpaused, when new).
fn switch_of<'a>(
    switches: &'a mut HashMap<String, (usize, watch::Sender<bool>)>,
    cluster: &str,
) -> &'a mut (usize, watch::Sender<bool>) {
    switches.entry(cluster.to_string()).or_insert_with(|| (0, watch::channel(true).0))
}

/// Holds a member's watches paused; they resume when the last such guard is dropped.
pub struct Paused {
    switches: Switches,
    cluster: String,
}

impl Drop for Paused {
    fn drop(&mut self) {
        let mut switches = self.switches.lock().unwrap();
        if let Some((pauses, running)) = switches.get_mut(&self.cluster) {
            *pauses = pauses.saturating_sub(1);
            if *pauses == 0 {
                running.send_replace(true);
            }
        }
    }
}

impl Monitor {
    /// A monitor whose wakeups arrive on the returned receiver; `applied` says which versions
    /// rsync has seen already (its own writes' answers), which wake nothing.
    pub fn new(applied: Arc<Applied>) -> (Monitor, mpsc::UnboundedReceiver<Wakeup>) {
        let (wake, rx) = mpsc::unbounded_channel();
        (Monitor { watches: Default::default(), switches: Default::default(), wake, applied }, rx)
    }

    /// Pauses the watches of `cluster` (those it has and those started meanwhile) until the
    /// guard is dropped; meanwhile [`peek`](Self::peek) and [`cache`](Self::cache) give nothing,
    /// so that the caller asks the member.
    pub fn pause(&self, cluster: &str) -> Paused {
        let mut switches = self.switches.lock().unwrap();
        let (pauses, running) = switch_of(&mut switches, cluster);
        *pauses += 1;
        running.send_replace(false);
        Paused { switches: self.switches.clone(), cluster: cluster.to_string() }
    }

    fn paused(&self, cluster: &str) -> bool {
        self.switches.lock().unwrap().get(cluster).is_some_and(|(pauses, _)| *pauses > 0)
    }

    /// The switch the watches of `cluster` follow.
    fn switch(&self, cluster: &str) -> watch::Receiver<bool> {
        switch_of(&mut self.switches.lock().unwrap(), cluster).1.subscribe()
    }

    /// How many objects the watches of `cluster` hold.
    pub fn held(&self, cluster: &str) -> usize {
        let watches = self.watches.lock().unwrap();
        watches.iter().filter(|((c, _), _)| c == cluster).map(|(_, w)| w.store.state().len()).sum()
    }

    /// The cache of `resource` objects on `cluster` that the operator manages, once it has listed
    /// them; `None` while it has not, so the caller asks the member directly. A new watch is given
    /// up to 5 s for its first list.
    pub async fn cache(
        &self,
        cluster: &str,
        client_key: &str,
        client: &Client,
        resource: &ApiResource,
    ) -> Option<Store<DynamicObject>> {
        if self.paused(cluster) {
            return None;
        }
        let (store, mut listed, new) = self.watch(cluster, client_key, client, resource);
        // Not the store's `wait_until_ready`: it keeps one waker, the last poller's, so a unit
        // that merely looked would take the wakeup from the one waiting (which then slept 5 s).
        let ready = if new {
            tokio::time::timeout(LIST_WAIT, listed.wait_for(|l| *l)).await.is_ok_and(|r| r.is_ok())
        } else {
            *listed.borrow()
        };
        ready.then_some(store)
    }

    /// The cache of `resource` objects on `cluster` when its watch has listed already; starts
    /// no watch.
    pub fn peek(&self, cluster: &str, client_key: &str, resource: &ApiResource) -> Option<Store<DynamicObject>> {
        if self.paused(cluster) {
            return None;
        }
        let watches = self.watches.lock().unwrap();
        let w = watches.get(&watch_key(cluster, resource))?;
        (w.client_key == client_key && *w.listed.borrow()).then(|| w.store.clone())
    }

    /// The watch of `resource` on `cluster`, started unless it runs: its store, whether it has
    /// listed, and whether it is new.
    pub fn watch(
        &self,
        cluster: &str,
        client_key: &str,
        client: &Client,
        resource: &ApiResource,
    ) -> (Store<DynamicObject>, watch::Receiver<bool>, bool) {
        let key = watch_key(cluster, resource);
        let mut watches = self.watches.lock().unwrap();
        match watches.get(&key) {
            Some(w) if w.client_key == client_key => (w.store.clone(), w.listed.clone(), false),
            _ => {
                let watch = self.start(cluster, client.clone(), resource, client_key);
                let (store, listed) = (watch.store.clone(), watch.listed.clone());
                if let Some(old) = watches.insert(key, watch) {
                    old.task.abort();
                }
                (store, listed, true)
            }
        }
    }

    /// Every kind watched on `cluster` with what its watch has seen, once it has listed: a watch
    /// started in the last few seconds (by the pass before a prune, say) is given up to 5 s.
    pub async fn caches_of(&self, cluster: &str) -> Vec<(ApiResource, Store<DynamicObject>)> {
        let watches: Vec<_> = {
            let watches = self.watches.lock().unwrap();
            let of = watches.iter().filter(|((c, _), _)| c == cluster);
            of.map(|(_, w)| (w.resource.clone(), w.store.clone(), w.listed.clone(), w.started)).collect()
        };
        let listed = watches.into_iter().map(|(resource, store, mut listed, started)| async move {
            let wait = LIST_WAIT.saturating_sub(started.elapsed());
            let done = tokio::time::timeout(wait, listed.wait_for(|l| *l)).await.is_ok_and(|r| r.is_ok());
            done.then_some((resource, store))
        });
        futures::future::join_all(listed).await.into_iter().flatten().collect()
    }

    /// Stops the watches of a deleted cluster.
    pub fn forget_cluster(&self, cluster: &str) {
        self.watches.lock().unwrap().retain(|(c, _), w| {
            if c == cluster {
                w.task.abort();
            }
            c != cluster
        });
    }

    fn start(&self, cluster: &str, client: Client, resource: &ApiResource, client_key: &str) -> Watch {
        let writer: Writer<DynamicObject> = Writer::new(resource.clone());
        let store = writer.as_reader();
        let api: Api<DynamicObject> = Api::all_with(client, resource);
        let selector = format!("{}={}", labels::MANAGED_BY, labels::MANAGER);
        let config = watcher::Config::default().labels(&selector).page_size(LIST_PAGE);
        let mut running = self.switch(cluster);
        let (listed_tx, listed) = watch::channel(false);
        let mut sink = Sink {
            writer,
            changes: Changes::default(),
            listed: listed_tx,
            wake: self.wake.clone(),
            applied: self.applied.clone(),
            cluster: cluster.to_string(),
            group: resource.group.clone(),
            kind: resource.kind.clone(),
        };
        let task = tokio::spawn(async move {
            loop {
                // Paused: no watch open until resumed (then it lists again).
                while !*running.borrow_and_update() {
                    if running.changed().await.is_err() {
                        return;
                    }
                }
                let events = watcher(api.clone(), config.clone()).default_backoff().modify(trim);
                let mut events = std::pin::pin!(events);
                loop {
                    let event = tokio::select! {
                        switched = running.changed() => match switched {
                            Ok(()) if *running.borrow() => continue,
                            Ok(()) => break,
                            Err(_) => return,
                        },
                        event = events.next() => event,
                    };
                    match event {
                        None => return,
                        Some(Ok(event)) => sink.take(event),
                        Some(Err(_)) => {}
                    }
                }
            }
        });
        let started = std::time::Instant::now();
        Watch { client_key: client_key.to_string(), resource: resource.clone(), store, listed, started, task }
    }
}

/// Where a watch's events go: its cache, and the DIGs to wake.
struct Sink {
    writer: Writer<DynamicObject>,
    changes: Changes,
    /// Set once the watch has listed.
    listed: watch::Sender<bool>,
    wake: mpsc::UnboundedSender<Wakeup>,
    applied: Arc<Applied>,
    cluster: String,
    group: String,
    kind: String,
}

impl Sink {
    fn take(&mut self, event: watcher::Event<DynamicObject>) {
        self.writer.apply_watcher_event(&event);
        // A version rsync has seen already (its write's answer) is no news: the member sends back
        // every object rsync writes.
        let news = match &event {
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                let listed = matches!(event, watcher::Event::InitApply(_));
                crate::metrics::watched(if listed { "list" } else { "event" });
                let key = super::member::object_key(
                    &self.group,
                    &self.kind,
                    &o.namespace().unwrap_or_default(),
                    &o.name_any(),
                );
                !self.applied.knows(&self.cluster, &key, o.resource_version().as_deref().unwrap_or_default())
            }
            watcher::Event::Delete(_) => {
                crate::metrics::watched("event");
                true
            }
            watcher::Event::InitDone => {
                self.listed.send_replace(true);
                true
            }
            watcher::Event::Init => true,
        };
        for dig in self.changes.of(event).into_iter().filter(|_| news) {
            let _ = self.wake.send(dig);
        }
    }
}

/// What a watch keeps of an object: other managers' fields stay known (drift leaves them to
/// them); ours and status writes are dropped, long values are digests.
fn trim(o: &mut DynamicObject) {
    o.managed_fields_mut().retain(|f| {
        !f.manager.as_deref().unwrap_or_default().starts_with(super::member::FIELD_MANAGER)
            && f.subresource.as_deref() != Some("status")
    });
    super::drift::compact(&mut o.data);
    super::drift::compact_annotations(o.annotations_mut());
}

/// What a watch saw change: a watch that lists again (after an expired resourceVersion, say)
/// sends every object anew, and only those whose version moved, and those gone, are changes.
#[derive(Default)]
struct Changes {
    /// By object: its resourceVersion as last seen, and the DIG it belongs to.
    seen: HashMap<(Option<String>, String), (String, Option<Wakeup>)>,
    /// The same for a list under way.
    listing: HashMap<(Option<String>, String), (String, Option<Wakeup>)>,
}

impl Changes {
    /// The DIGs to wake for `event`.
    fn of(&mut self, event: watcher::Event<DynamicObject>) -> Vec<Wakeup> {
        let key = |o: &DynamicObject| (o.namespace(), o.name_any());
        let record = |o: &DynamicObject| {
            let (project, dig) = (o.labels().get(labels::PROJECT), o.labels().get(labels::DIG));
            (o.resource_version().unwrap_or_default(), project.cloned().zip(dig.cloned()))
        };
        match event {
            watcher::Event::Apply(o) => {
                let now = record(&o);
                let before = self.seen.insert(key(&o), now.clone());
                if before.is_some_and(|b| b.0 == now.0) { vec![] } else { now.1.into_iter().collect() }
            }
            watcher::Event::Delete(o) => {
                self.seen.remove(&key(&o));
                record(&o).1.into_iter().collect()
            }
            watcher::Event::Init => {
                self.listing.clear();
                vec![]
            }
            watcher::Event::InitApply(o) => {
                let now = record(&o);
                let moved = self.seen.get(&key(&o)).is_none_or(|b| b.0 != now.0);
                self.listing.insert(key(&o), now.clone());
                if moved { now.1.into_iter().collect() } else { vec![] }
            }
            watcher::Event::InitDone => {
                let listed = std::mem::take(&mut self.listing);
                let gone = self.seen.iter().filter(|(k, _)| !listed.contains_key(*k)).filter_map(|(_, r)| r.1.clone());
                let gone = gone.collect();
                self.seen = listed;
                gone
            }
        }
    }
}

/// The key of `name` in `namespace` (None for cluster-scoped kinds) in a cache of `resource`.
pub fn object_ref(resource: &ApiResource, namespace: Option<&str>, name: &str) -> ObjectRef<DynamicObject> {
    let r = ObjectRef::new_with(name, resource.clone());
    match namespace {
        Some(ns) => r.within(ns),
        None => r,
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        for w in self.watches.lock().unwrap().values() {
            w.task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::watcher::Event;

    fn object(name: &str, version: &str) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "n", "resourceVersion": version,
                         "labels": {labels::PROJECT: "p", labels::DIG: "d"}}
        }))
        .unwrap()
    }

    #[test]
    fn a_watch_that_lists_again_wakes_only_for_what_moved_or_went() {
        let mut changes = Changes::default();
        let dig = vec![("p".to_string(), "d".to_string())];
        assert!(changes.of(Event::Init).is_empty());
        assert_eq!(changes.of(Event::InitApply(object("a", "1"))), dig, "first seen");
        assert_eq!(changes.of(Event::InitApply(object("b", "1"))), dig);
        assert!(changes.of(Event::InitDone).is_empty());
        assert!(changes.of(Event::Apply(object("a", "1"))).is_empty(), "same version again");
        assert_eq!(changes.of(Event::Apply(object("a", "2"))), dig, "a moved");

        // The watch lists again: a is as it was, b is gone.
        changes.of(Event::Init);
        assert!(changes.of(Event::InitApply(object("a", "2"))).is_empty());
        assert_eq!(changes.of(Event::InitDone), dig, "b went while the watch was away");
        assert_eq!(changes.of(Event::Delete(object("a", "2"))), dig);
    }
}
