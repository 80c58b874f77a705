//! Finalizers: each controller adds its own and removes only its own, every write guarded by the
//! resourceVersion it read. Not kube-runtime's `finalizer` helper: that removes the finalizer as
//! soon as the cleanup returns, while ours wait over several passes (a terminate must finish on
//! the members, a Cluster waits until no AppContext uses it) and rsync releases objects it does
//! not reconcile (bundle Secrets, replaced AppContexts).

use kube::api::{PartialObjectMeta, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Whether `obj` carries finalizer `name`.
pub fn has<K: Resource>(obj: &K, name: &str) -> bool {
    obj.finalizers().iter().any(|f| f == name)
}

/// Adds finalizer `name` to `obj` unless it is there.
pub async fn add<K>(api: &Api<K>, obj: &K, name: &str) -> kube::Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    if has(obj, name) {
        return Ok(());
    }
    let finalizers: Vec<&str> = obj.finalizers().iter().map(String::as_str).chain([name]).collect();
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": obj.resource_version()}});
    api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await.map(|_| ())
}

/// Removes finalizer `name` from `obj`, keeping every other; gone already is fine.
pub async fn remove<K>(api: &Api<K>, obj: &K, name: &str) -> kube::Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    if !has(obj, name) {
        return Ok(());
    }
    let patch = without(obj, name);
    match api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Removes finalizer `name` from an object read as metadata only (its body is never fetched).
pub async fn remove_from_metadata<K>(api: &Api<K>, meta: &PartialObjectMeta<K>, name: &str) -> kube::Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    if !has(meta, name) {
        return Ok(());
    }
    match api.patch_metadata(&meta.name_any(), &PatchParams::default(), &Patch::Merge(without(meta, name))).await {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Like [`remove`], reading the object again once if it changed since it was read.
pub async fn remove_fresh<K>(api: &Api<K>, obj: &K, name: &str) -> kube::Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match remove(api, obj, name).await {
        Err(kube::Error::Api(e)) if e.code == 409 => match api.get_opt(&obj.name_any()).await? {
            Some(fresh) => remove(api, &fresh, name).await,
            None => Ok(()),
        },
        other => other,
    }
}

/// A merge patch that removes `name` from `obj`'s finalizers, guarded by its resourceVersion.
fn without<K: Resource>(obj: &K, name: &str) -> Value {
    let kept: Vec<&String> = obj.finalizers().iter().filter(|f| *f != name).collect();
    json!({"metadata": {"finalizers": kept, "resourceVersion": obj.resource_version()}})
}
