//! The generic action controller (pure): adds an app's new objects on the clusters its
//! customizations select, and changes new or chart objects there with JSON patches (RFC 6902),
//! merge patches (RFC 7386), strategic merge patches and file data for ConfigMaps and Secrets.

use base64::Engine as _;
use serde_json::{Value, json};

use super::{Files, Placed, PlacedCluster};
use crate::api::gac::{ClusterInfo, Customization, GacResource, GenericActionIntent, Mode, PatchType, Scope};

/// `placed` with `intent` carried out, or why it cannot be. Data read from a Secret lands only in
/// a v1 Secret: an object that received some must still be one when every resource is done.
pub fn apply(intent: &GenericActionIntent, files: &Files, mut placed: Placed) -> Result<Placed, String> {
    let mut holding_secrets = std::collections::BTreeSet::new();
    for resource in &intent.spec.resources {
        let (a, app) = placed
            .apps
            .iter_mut()
            .enumerate()
            .find(|(_, a)| a.name == resource.app)
            .ok_or_else(|| format!("resource {}: app {} is not placed", resource.name, resource.app))?;
        for (c, cluster) in app.clusters.iter_mut().enumerate() {
            let held = apply_on(resource, files, cluster).map_err(|e| format!("resource {}: {e}", resource.name))?;
            holding_secrets.extend(held.map(|i| (a, c, i, resource.name.clone())));
        }
    }
    for (a, c, i, name) in holding_secrets {
        let obj = &placed.apps[a].clusters[c].resources[i];
        if obj["apiVersion"] != "v1" || obj["kind"] != "Secret" {
            return Err(format!(
                "resource {name}: data from a Secret (secretRef) may only go into a v1 Secret, not {} {}",
                obj["apiVersion"].as_str().unwrap_or("?"),
                obj["kind"].as_str().unwrap_or("?")
            ));
        }
    }
    Ok(placed)
}

/// Carries out `resource` on one cluster; the index of the object it put Secret data in, if any.
fn apply_on(resource: &GacResource, files: &Files, cluster: &mut PlacedCluster) -> Result<Option<usize>, String> {
    let here: Vec<&Customization> =
        resource.customizations.iter().filter(|c| selects(c.cluster_info.as_ref(), cluster)).collect();
    let gvk = &resource.gvk;
    let index = if resource.new_object {
        if !resource.customizations.is_empty() && here.is_empty() {
            return Ok(None);
        }
        std::sync::Arc::make_mut(&mut cluster.resources).push(new_object(resource)?);
        cluster.resources.len() - 1
    } else {
        let found = cluster.resources.iter().position(|r| {
            r["apiVersion"] == gvk.api_version.as_str()
                && r["kind"] == gvk.kind.as_str()
                && r["metadata"]["name"] == gvk.name.as_str()
        });
        match found {
            Some(i) => i,
            None if here.is_empty() => return Ok(None),
            None => {
                return Err(format!(
                    "{} {}/{} is not among the app's objects on {}",
                    gvk.api_version, gvk.kind, gvk.name, cluster.cluster
                ));
            }
        }
    };
    if here.is_empty() {
        return Ok(None);
    }
    let obj = &mut std::sync::Arc::make_mut(&mut cluster.resources)[index];
    for c in &here {
        customize(obj, c, files).map_err(|e| format!("customization {}: {e}", c.name))?;
    }
    let secret_data =
        here.iter().flat_map(|c| &c.files).any(|f| f.content.is_none() && f.source().is_some_and(|r| r.secret));
    Ok(secret_data.then_some(index))
}

/// Whether a customization applies on `cluster`: no `clusterInfo` means everywhere.
fn selects(info: Option<&ClusterInfo>, cluster: &PlacedCluster) -> bool {
    let Some(info) = info else { return true };
    let matched = match info.scope {
        Scope::Name => info.cluster.as_deref() == Some(cluster.cluster.as_str()),
        Scope::Label => info.cluster_label.as_ref().is_some_and(|l| cluster.labels.contains_key(l)),
    };
    matched == (info.mode == Mode::Allow)
}

fn new_object(resource: &GacResource) -> Result<Value, String> {
    let mut obj = resource.template.clone().unwrap_or_else(|| json!({}));
    if !obj.is_object() {
        return Err("the template is not an object".into());
    }
    let gvk = &resource.gvk;
    for (field, value) in [("apiVersion", &gvk.api_version), ("kind", &gvk.kind)] {
        if obj[field].is_null() {
            obj[field] = json!(value);
        }
    }
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    if obj["metadata"]["name"].is_null() {
        obj["metadata"]["name"] = json!(gvk.name);
    }
    Ok(obj)
}

fn customize(obj: &mut Value, c: &Customization, files: &Files) -> Result<(), String> {
    if let Some(patch) = &c.patch {
        match c.patch_type.unwrap_or(PatchType::Merge) {
            PatchType::Json => {
                let ops: json_patch::Patch =
                    serde_json::from_value(patch.clone()).map_err(|e| format!("not a JSON patch: {e}"))?;
                json_patch::patch(obj, &ops).map_err(|e| format!("JSON patch failed: {e}"))?;
            }
            PatchType::Merge => json_patch::merge(obj, patch),
            PatchType::Strategic => strategic_merge(obj, patch),
        }
    }
    for file in &c.files {
        let content: Vec<u8> = match (&file.content, file.source()) {
            (Some(text), _) => text.clone().into_bytes(),
            (None, Some(r)) => files.get(&r).cloned().ok_or_else(|| {
                format!("{} {} has no key {}", if r.secret { "Secret" } else { "ConfigMap" }, r.name, r.key)
            })?,
            (None, None) => return Err(format!("file {} has neither content nor a reference", file.key_name)),
        };
        let base64 = |bytes: &[u8]| json!(base64::engine::general_purpose::STANDARD.encode(bytes));
        match (obj["kind"].as_str(), String::from_utf8(content)) {
            (Some("ConfigMap"), Ok(text)) => set_data(obj, "data", &file.key_name, json!(text)),
            (Some("ConfigMap"), Err(binary)) => set_data(obj, "binaryData", &file.key_name, base64(binary.as_bytes())),
            (Some("Secret"), content) => {
                let bytes = content.map(String::into_bytes).unwrap_or_else(|e| e.into_bytes());
                set_data(obj, "data", &file.key_name, base64(&bytes))
            }
            (other, _) => return Err(format!("files go in a ConfigMap or Secret, not {}", other.unwrap_or("?"))),
        }
    }
    Ok(())
}

fn set_data(obj: &mut Value, field: &str, key: &str, value: Value) {
    if !obj[field].is_object() {
        obj[field] = json!({});
    }
    obj[field][key] = value;
}

/// The merge keys of the lists a strategic merge patch merges item by item (as Kubernetes does
/// for these fields); other lists are replaced.
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers" | "initContainers" | "env" | "volumes" | "volumeMounts" | "imagePullSecrets" => Some("name"),
        "ports" => Some("containerPort"),
        _ => None,
    }
}

/// Kubernetes-style strategic merge: maps merge key by key (`null` deletes), lists named in
/// [`merge_key`] merge item by item on their key, other values replace.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let (Some(target_map), Some(patch_map)) = (target.as_object_mut(), patch.as_object()) else {
        *target = patch.clone();
        return;
    };
    for (field, value) in patch_map {
        match (value, merge_key(field), target_map.get_mut(field)) {
            (Value::Null, _, _) => {
                target_map.remove(field);
            }
            (Value::Array(items), Some(key), Some(Value::Array(existing))) => {
                for item in items {
                    match existing.iter_mut().find(|e| e.get(key).is_some() && e.get(key) == item.get(key)) {
                        Some(e) => strategic_merge(e, item),
                        None => existing.push(item.clone()),
                    }
                }
            }
            (Value::Object(_), _, Some(existing @ Value::Object(_))) => strategic_merge(existing, value),
            _ => {
                target_map.insert(field.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::gac::FileRef;
    use crate::orchestrator::intents::PlacedApp;
    use std::collections::BTreeMap;

    fn intent(yaml: &str) -> GenericActionIntent {
        let spec: Value = serde_saphyr::from_str(yaml).expect("fixture YAML");
        serde_json::from_value(json!({"apiVersion": "gac.emco.io/v1alpha1", "kind": "GenericActionIntent",
            "metadata": {"name": "g", "namespace": "p"}, "spec": spec}))
        .expect("fixture fits the intent")
    }

    fn placed() -> Placed {
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "web", "image": "w:1", "env": [{"name": "A", "value": "1"}], "ports": [{"containerPort": 80}]}]}}}});
        let cluster = |name: &str, edge: bool| PlacedCluster {
            cluster: name.into(),
            labels: if edge { BTreeMap::from([("edge".to_string(), String::new())]) } else { BTreeMap::new() },
            kv: BTreeMap::new(),
            resources: vec![deployment.clone()].into(),
        };
        Placed {
            apps: vec![PlacedApp {
                name: "web".into(),
                clusters: vec![cluster("e1", true), cluster("e2", true), cluster("c1", false)],
            }],
        }
    }

    fn on<'a>(p: &'a Placed, cluster: &str) -> &'a [Value] {
        &p.apps[0].clusters.iter().find(|c| c.cluster == cluster).unwrap().resources
    }

    #[test]
    fn a_new_object_lands_only_where_allowed_with_file_data() {
        let i = intent("{resources: [{name: cm, app: web, newObject: true, gvk: {apiVersion: v1, kind: ConfigMap, name: extra},
            template: {data: {a: '1'}},
            customizations: [{name: only-e1, clusterInfo: {scope: name, cluster: e1, mode: allow},
                              files: [{keyName: config.txt, content: hello}, {keyName: from-cm, configMapRef: {name: files, key: k}}]}]}]}");
        let key = FileRef { secret: false, name: "files".into(), key: "k".into() };
        let files = BTreeMap::from([(key, b"from a ConfigMap".to_vec())]);
        let out = apply(&i, &files, placed()).unwrap();
        let extra = on(&out, "e1").iter().find(|r| r["kind"] == "ConfigMap").unwrap();
        assert_eq!(extra["metadata"]["name"], "extra");
        assert_eq!(extra["data"], json!({"a": "1", "config.txt": "hello", "from-cm": "from a ConfigMap"}));
        assert!(on(&out, "e2").iter().all(|r| r["kind"] != "ConfigMap"));
        assert!(on(&out, "c1").iter().all(|r| r["kind"] != "ConfigMap"));
    }

    #[test]
    fn secret_data_goes_base64_into_a_secret_and_binary_into_binary_data() {
        let i = intent(
            "{resources: [
            {name: s, app: web, newObject: true, gvk: {apiVersion: v1, kind: Secret, name: creds},
             customizations: [{name: all, files: [{keyName: token, secretRef: {name: vault, key: t}}]}]},
            {name: b, app: web, newObject: true, gvk: {apiVersion: v1, kind: ConfigMap, name: blob},
             customizations: [{name: all, files: [{keyName: bin, configMapRef: {name: blobs}}]}]}]}",
        );
        let files = BTreeMap::from([
            (FileRef { secret: true, name: "vault".into(), key: "t".into() }, b"s3cr3t".to_vec()),
            (FileRef { secret: false, name: "blobs".into(), key: "bin".into() }, vec![0xff, 0x00]),
        ]);
        let out = apply(&i, &files, placed()).unwrap();
        let secret = on(&out, "c1").iter().find(|r| r["kind"] == "Secret").unwrap();
        assert_eq!(secret["data"]["token"], "czNjcjN0");
        let blob = on(&out, "c1").iter().find(|r| r["kind"] == "ConfigMap").unwrap();
        assert_eq!(blob["binaryData"]["bin"], "/wA=");
    }

    #[test]
    fn secret_data_never_leaves_a_secret() {
        let vault =
            || BTreeMap::from([(FileRef { secret: true, name: "vault".into(), key: "t".into() }, b"s".to_vec())]);
        let into_configmap = intent(
            "{resources: [{name: leak, app: web, newObject: true, gvk: {apiVersion: v1, kind: ConfigMap, name: c},
             customizations: [{name: all, files: [{keyName: token, secretRef: {name: vault, key: t}}]}]}]}",
        );
        let e = apply(&into_configmap, &vault(), placed()).unwrap_err();
        assert!(e.contains("may only go into a v1 Secret, not v1 ConfigMap"), "{e}");
        // Made a Secret, then turned into a ConfigMap by a later patch: refused all the same.
        let turned = intent(
            "{resources: [{name: s, app: web, newObject: true, gvk: {apiVersion: v1, kind: Secret, name: c},
             customizations: [{name: all, files: [{keyName: token, secretRef: {name: vault, key: t}}]}]},
            {name: turn, app: web, gvk: {apiVersion: v1, kind: Secret, name: c},
             customizations: [{name: all, patch: {kind: ConfigMap}}]}]}",
        );
        let e = apply(&turned, &vault(), placed()).unwrap_err();
        assert!(e.contains("resource s: data from a Secret"), "{e}");
    }

    #[test]
    fn a_json_patch_on_labelled_clusters_and_a_strategic_merge_everywhere() {
        let i = intent("{resources: [{name: scale, app: web, gvk: {apiVersion: apps/v1, kind: Deployment, name: web}, customizations: [
            {name: edge, clusterInfo: {scope: label, clusterLabel: edge, mode: allow}, patchType: json, patch: [{op: replace, path: /spec/replicas, value: 3}]},
            {name: env, patchType: strategic, patch: {spec: {template: {spec: {containers: [{name: web, env: [{name: B, value: '2'}], ports: [{containerPort: 80, name: http}]}]}}}}}]}]}");
        let out = apply(&i, &BTreeMap::new(), placed()).unwrap();
        for (cluster, replicas) in [("e1", 3), ("e2", 3), ("c1", 1)] {
            let d = &on(&out, cluster)[0];
            assert_eq!(d["spec"]["replicas"], replicas, "{cluster}");
            let c = &d["spec"]["template"]["spec"]["containers"][0];
            assert_eq!(c["env"], json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]), "{cluster}");
            assert_eq!(c["ports"], json!([{"containerPort": 80, "name": "http"}]));
            assert_eq!(c["image"], "w:1");
        }
    }

    #[test]
    fn deny_excludes_the_named_cluster_and_merge_patches_apply() {
        let i = intent("{resources: [{name: l, app: web, gvk: {apiVersion: apps/v1, kind: Deployment, name: web}, customizations: [
            {name: not-c1, clusterInfo: {scope: name, cluster: c1, mode: deny}, patchType: merge, patch: {metadata: {labels: {tier: edge}}}}]}]}");
        let out = apply(&i, &BTreeMap::new(), placed()).unwrap();
        assert_eq!(on(&out, "e1")[0]["metadata"]["labels"]["tier"], "edge");
        assert!(on(&out, "c1")[0]["metadata"].get("labels").is_none());
    }

    #[test]
    fn bad_patches_and_missing_objects_say_what_and_where() {
        let bad = intent("{resources: [{name: r, app: web, gvk: {apiVersion: apps/v1, kind: Deployment, name: web}, customizations: [
            {name: c, patchType: json, patch: [{op: replace, path: /spec/nothing/here, value: 1}]}]}]}");
        let e = apply(&bad, &BTreeMap::new(), placed()).unwrap_err();
        assert!(e.starts_with("resource r: customization c: JSON patch failed"), "{e}");
        let not_a_patch = intent("{resources: [{name: r, app: web, gvk: {apiVersion: apps/v1, kind: Deployment, name: web}, customizations: [
            {name: c, patchType: json, patch: {op: replace}}]}]}");
        assert!(apply(&not_a_patch, &BTreeMap::new(), placed()).unwrap_err().contains("not a JSON patch"));
        let missing = intent(
            "{resources: [{name: r, app: web, gvk: {apiVersion: v1, kind: ConfigMap, name: nope}, customizations: [{name: c, patch: {}}]}]}",
        );
        assert!(
            apply(&missing, &BTreeMap::new(), placed())
                .unwrap_err()
                .contains("v1 ConfigMap/nope is not among the app's objects on e1")
        );
    }
}
