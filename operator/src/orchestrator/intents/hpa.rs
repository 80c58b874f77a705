//! The hardware-platform-aware controller (pure), in both phases. Placement: from each cluster's
//! node inventory (allocatable per Ready node, node labels), drops the clusters where the nodes
//! cannot host every consumer's mandatory requirements for all its replicas, and orders the
//! candidates of an `anyOf` by the weights of the optional requirements they meet. Action: sets the
//! consumer container's requests and limits and a node affinity for label requirements.
//!
//! A node hosts `floor(allocatable / request)` replicas for each resource, the least of them for
//! several; only nodes with every mandatory label count. What already runs on a node is not known
//! to the inventory and is not subtracted.

use serde_json::{Value, json};

use super::{Candidates, ClusterFacts, Pick, Placed};
use crate::api::clm::NodeInventory;
use crate::api::hpa::{Consumer, HpaIntent, Requirement, RequirementResource};

/// `candidates` narrowed to the clusters that can host the intent's app, best first.
pub fn place(intent: &HpaIntent, mut candidates: Candidates, clusters: &[ClusterFacts]) -> Result<Candidates, String> {
    let spec = &intent.spec;
    let app = candidates
        .apps
        .iter_mut()
        .find(|a| a.name == spec.app)
        .ok_or_else(|| format!("app {} is not placed by the DIG", spec.app))?;
    let mut unfit: Vec<String> = Vec::new();
    let mut score = |cluster: &String| {
        let nodes = clusters.iter().find(|c| &c.name == cluster).map_or(&[][..], |c| &c.nodes[..]);
        match fit(&spec.consumers, nodes) {
            Ok(score) => Some(score),
            Err(why) => {
                unfit.push(format!("{cluster}: {why}"));
                None
            }
        }
    };
    for slot in &mut app.slots {
        let mut kept: Vec<(u32, String)> = slot.clusters.drain(..).filter_map(|c| score(&c).map(|s| (s, c))).collect();
        if slot.pick == Pick::One {
            kept.sort_by_key(|(s, _)| std::cmp::Reverse(*s));
        }
        slot.clusters = kept.into_iter().map(|(_, c)| c).collect();
    }
    if app.stranded() {
        unfit.dedup();
        return Err(format!("app {}: no candidate cluster fits ({})", spec.app, unfit.join("; ")));
    }
    Ok(candidates)
}

/// The weight of the optional requirements `nodes` meet, or the first mandatory one they cannot.
fn fit(consumers: &[Consumer], nodes: &[NodeInventory]) -> Result<u32, String> {
    let mut score = 0;
    for consumer in consumers {
        let mandatory: Vec<&Requirement> = consumer.requirements.iter().filter(|r| r.mandatory).collect();
        let eligible: Vec<&NodeInventory> =
            nodes.iter().filter(|n| n.ready && mandatory.iter().all(|r| has_label(n, &r.resource))).collect();
        let who = format!("{}/{}", consumer.kind, consumer.name);
        let labels = mandatory.iter().filter(|r| r.resource.key.is_some());
        if let Some(r) = labels.clone().find(|r| !eligible.iter().any(|n| has_label(n, &r.resource))) {
            return Err(format!("{who}: no Ready node has label {}", describe(&r.resource)));
        }
        let resources: Vec<&RequirementResource> =
            mandatory.iter().map(|r| &r.resource).filter(|r| r.name.is_some()).collect();
        let hosted: u64 = eligible.iter().map(|n| replicas_on(n, &resources)).sum::<Result<u64, String>>()?;
        if hosted < u64::from(consumer.replicas) {
            let what = resources.iter().map(|r| describe(r)).collect::<Vec<_>>().join(" and ");
            return Err(format!("{who}: {what} per replica × {} replicas; the nodes hold {hosted}", consumer.replicas));
        }
        for optional in consumer.requirements.iter().filter(|r| !r.mandatory) {
            let met = match optional.resource.name {
                Some(_) => {
                    let on: u64 =
                        eligible.iter().map(|n| replicas_on(n, &[&optional.resource])).sum::<Result<u64, String>>()?;
                    on >= u64::from(consumer.replicas)
                }
                None => eligible.iter().any(|n| has_label(n, &optional.resource)),
            };
            score += if met { optional.weight } else { 0 };
        }
    }
    Ok(score)
}

/// How many replicas needing `resources` one node holds (unbounded counts as many as asked).
fn replicas_on(node: &NodeInventory, resources: &[&RequirementResource]) -> Result<u64, String> {
    let mut fits = u64::from(u32::MAX);
    for r in resources {
        let (Some(name), Some(requests)) = (&r.name, &r.requests) else { continue };
        let need = quantity(requests).ok_or_else(|| format!("{name}: requests {requests} is not a quantity"))?;
        let have = node.allocatable.get(name).and_then(|q| quantity(q)).unwrap_or(0.0);
        if need > 0.0 {
            fits = fits.min((have / need + 1e-9).floor() as u64);
        }
    }
    Ok(fits)
}

/// A label requirement is met by a node with the key (and value, when given); a resource one is
/// not a label and is met by every node here.
fn has_label(node: &NodeInventory, r: &RequirementResource) -> bool {
    let Some(key) = &r.key else { return true };
    node.labels.get(key).is_some_and(|v| r.value.as_ref().is_none_or(|want| want == v))
}

fn describe(r: &RequirementResource) -> String {
    match (&r.name, &r.key) {
        (Some(name), _) => format!("{name} {}", r.requests.as_deref().unwrap_or("?")),
        (None, Some(key)) => match &r.value {
            Some(v) => format!("{key}={v}"),
            None => key.clone(),
        },
        (None, None) => "?".into(),
    }
}

/// A Kubernetes quantity (`500m`, `2`, `4Gi`, `1e3`) as a number.
pub fn quantity(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => 10f64.powi(exp[1..].parse().ok()?),
        _ => return None,
    };
    (number >= 0.0).then_some(number * scale)
}

/// `placed` with each consumer's container resources and node affinity set on every cluster of
/// the intent's app.
pub fn act(intent: &HpaIntent, mut placed: Placed) -> Result<Placed, String> {
    let spec = &intent.spec;
    let Some(app) = placed.apps.iter_mut().find(|a| a.name == spec.app) else { return Ok(placed) };
    for cluster in &mut app.clusters {
        for consumer in &spec.consumers {
            let who = format!("{} {}/{}", consumer.api_version, consumer.kind, consumer.name);
            let workload = std::sync::Arc::make_mut(&mut cluster.resources)
                .iter_mut()
                .find(|r| {
                    r["apiVersion"] == consumer.api_version.as_str()
                        && r["kind"] == consumer.kind.as_str()
                        && r["metadata"]["name"] == consumer.name.as_str()
                })
                .ok_or_else(|| format!("{who} is not among app {}'s objects on {}", spec.app, cluster.cluster))?;
            shape(workload, consumer).map_err(|e| format!("{who}: {e}"))?;
        }
    }
    Ok(placed)
}

/// Sets requests, limits and node affinity in the workload's pod spec.
fn shape(workload: &mut Value, consumer: &Consumer) -> Result<(), String> {
    let path: &[&str] = match workload["kind"].as_str() {
        Some("Pod") => &["spec"],
        Some("CronJob") => &["spec", "jobTemplate", "spec", "template", "spec"],
        _ => &["spec", "template", "spec"],
    };
    let mut pod = &mut *workload;
    for key in path {
        pod = pod.as_object_mut().and_then(|o| o.get_mut(*key)).ok_or("it has no pod template with containers")?;
    }
    let containers =
        pod.get_mut("containers").and_then(Value::as_array_mut).ok_or("it has no pod template with containers")?;
    let container = containers
        .iter_mut()
        .find(|c| c["name"] == consumer.container.as_str())
        .and_then(Value::as_object_mut)
        .ok_or_else(|| format!("it has no container {}", consumer.container))?;
    for r in consumer.requirements.iter().map(|r| &r.resource) {
        let Some(name) = &r.name else { continue };
        for (field, value) in [("requests", &r.requests), ("limits", &r.limits)] {
            if let Some(value) = value {
                let resources = child(container.entry("resources").or_insert(json!({})), field);
                *child(resources, name) = json!(value);
            }
        }
    }
    for r in consumer.requirements.iter().filter(|r| r.resource.key.is_some()) {
        add_affinity(pod, r);
    }
    Ok(())
}

/// `v[key]`, making `v` an object first when it is anything else.
fn child<'a>(v: &'a mut Value, key: &str) -> &'a mut Value {
    ensure_object(v);
    v.as_object_mut().expect("made an object").entry(key).or_insert(Value::Null)
}

fn add_affinity(pod: &mut Value, r: &Requirement) {
    let key = r.resource.key.clone().unwrap_or_default();
    let expression = match &r.resource.value {
        Some(v) => json!({"key": key, "operator": "In", "values": [v]}),
        None => json!({"key": key, "operator": "Exists"}),
    };
    let affinity = child(child(pod, "affinity"), "nodeAffinity");
    if r.mandatory {
        let required = child(child(affinity, "requiredDuringSchedulingIgnoredDuringExecution"), "nodeSelectorTerms");
        if required.as_array().is_none_or(|t| t.is_empty()) {
            *required = json!([{"matchExpressions": []}]);
        }
        // Terms are ORed: the requirement goes into each.
        for term in required.as_array_mut().into_iter().flatten() {
            let expressions = child(term, "matchExpressions");
            ensure_array(expressions);
            expressions.as_array_mut().expect("made an array").push(expression.clone());
        }
    } else {
        let preferred = child(affinity, "preferredDuringSchedulingIgnoredDuringExecution");
        ensure_array(preferred);
        let weight = r.weight.clamp(1, 100);
        preferred
            .as_array_mut()
            .expect("made an array")
            .push(json!({"weight": weight, "preference": {"matchExpressions": [expression]}}));
    }
}

fn ensure_object(v: &mut Value) {
    if !v.is_object() {
        *v = json!({});
    }
}

fn ensure_array(v: &mut Value) {
    if !v.is_array() {
        *v = json!([]);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{CandidateApp, PlacedApp, PlacedCluster, Slot};
    use super::*;

    fn intent(yaml: &str) -> HpaIntent {
        let spec: Value = serde_saphyr::from_str(yaml).expect("fixture YAML");
        serde_json::from_value(json!({"apiVersion": "hpa.emco.io/v1alpha1", "kind": "HpaIntent",
            "metadata": {"name": "hpa", "namespace": "p"}, "spec": spec}))
        .expect("fixture fits HpaIntent")
    }

    fn node(cpu: &str, labels: &[(&str, &str)]) -> NodeInventory {
        NodeInventory {
            name: format!("n-{cpu}"),
            ready: true,
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            allocatable: [("cpu".to_string(), cpu.to_string()), ("memory".to_string(), "64Gi".to_string())].into(),
        }
    }

    /// small: two 4-CPU nodes; big: one 32-CPU node labelled accel=gpu.
    fn clusters() -> Vec<ClusterFacts> {
        vec![
            ClusterFacts {
                name: "small".into(),
                nodes: vec![node("4", &[]), node("4000m", &[])],
                ..Default::default()
            },
            ClusterFacts { name: "big".into(), nodes: vec![node("32", &[("accel", "gpu")])], ..Default::default() },
        ]
    }

    fn candidates(pick: Pick) -> Candidates {
        Candidates {
            apps: vec![CandidateApp {
                name: "web".into(),
                slots: vec![Slot { pick, clusters: vec!["small".into(), "big".into()] }],
            }],
        }
    }

    const NEEDS: &str = "app: web
consumers:
- apiVersion: apps/v1
  kind: Deployment
  name: web
  container: web
  replicas: REPLICAS
  requirements:
  - {resource: {name: cpu, requests: CPU, limits: '40'}}
  - {mandatory: false, weight: 10, resource: {key: accel, value: gpu}}
";

    fn needs(cpu: &str, replicas: u32) -> HpaIntent {
        intent(&NEEDS.replace("CPU", cpu).replace("REPLICAS", &replicas.to_string()))
    }

    #[test]
    fn replicas_count_per_node_and_clusters_that_cannot_host_them_are_dropped() {
        // 3 CPU per replica: a 4-CPU node holds one, so small holds 2 and big holds 10.
        let kept = place(&needs("3", 2), candidates(Pick::All), &clusters()).unwrap();
        assert_eq!(kept.apps[0].slots[0].clusters, ["small", "big"]);
        let kept = place(&needs("3", 3), candidates(Pick::All), &clusters()).unwrap();
        assert_eq!(kept.apps[0].slots[0].clusters, ["big"]);
        let kept = place(&needs("500m", 1), candidates(Pick::All), &clusters()).unwrap();
        assert_eq!(kept.choose()["web"].len(), 2);
    }

    #[test]
    fn any_of_prefers_the_cluster_meeting_optional_requirements() {
        let kept = place(&needs("1", 1), candidates(Pick::One), &clusters()).unwrap();
        assert_eq!(kept.apps[0].slots[0].clusters, ["big", "small"], "big meets the weighted label");
        assert_eq!(kept.choose()["web"].iter().collect::<Vec<_>>(), ["big"]);
    }

    #[test]
    fn no_fitting_cluster_names_the_requirement() {
        let e = place(&needs("48", 1), candidates(Pick::One), &clusters()).unwrap_err();
        assert!(e.contains("cpu 48 per replica × 1 replicas"), "{e}");
        assert!(e.contains("small:") && e.contains("big:"), "{e}");
        let label = intent(
            "app: web\nconsumers: [{apiVersion: apps/v1, kind: Deployment, name: web, container: web, requirements: [{resource: {key: disk, value: ssd}}]}]",
        );
        let e = place(&label, candidates(Pick::All), &clusters()).unwrap_err();
        assert!(e.contains("no Ready node has label disk=ssd"), "{e}");
    }

    #[test]
    fn quantities_parse_as_kubernetes_writes_them() {
        assert_eq!(quantity("500m"), Some(0.5));
        assert_eq!(quantity("2Gi"), Some(2.0 * 1024f64.powi(3)));
        assert_eq!(quantity("1e3"), Some(1000.0));
        assert_eq!(quantity("1.5k"), Some(1500.0));
        assert_eq!(quantity("lots"), None);
        assert_eq!(quantity("3X"), None);
        let e = place(&needs("lots", 1), candidates(Pick::All), &clusters()).unwrap_err();
        assert!(e.contains("requests lots is not a quantity"), "{e}");
    }

    #[test]
    fn the_action_sets_requests_limits_and_affinity_and_keeps_the_rest() {
        let deployment: Value = serde_saphyr::from_str(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      containers:\n      - {name: side, image: s}\n      - {name: web, image: w, resources: {requests: {memory: 1Gi}}}\n",
        )
        .unwrap();
        let placed = Placed {
            apps: vec![PlacedApp {
                name: "web".into(),
                clusters: vec![PlacedCluster {
                    cluster: "big".into(),
                    resources: vec![deployment].into(),
                    ..Default::default()
                }],
            }],
        };
        let mut hpa = needs("2", 1);
        hpa.spec.consumers[0].requirements[1].mandatory = true;
        let out = act(&hpa, placed.clone()).unwrap();
        let pod = &out.apps[0].clusters[0].resources[0]["spec"]["template"]["spec"];
        assert_eq!(
            pod["containers"][1]["resources"],
            json!({"requests": {"memory": "1Gi", "cpu": "2"}, "limits": {"cpu": "40"}})
        );
        assert_eq!(pod["containers"][0].get("resources"), None, "other containers are left alone");
        assert_eq!(
            pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"],
            json!([{"matchExpressions": [{"key": "accel", "operator": "In", "values": ["gpu"]}]}])
        );
        hpa.spec.consumers[0].container = "nope".into();
        let e = act(&hpa, placed.clone()).unwrap_err();
        assert!(e.contains("apps/v1 Deployment/web: it has no container nope"), "{e}");
        // Odd shapes are errors or replaced, never a panic.
        let mut odd = placed;
        std::sync::Arc::make_mut(&mut odd.apps[0].clusters[0].resources)[0]["spec"] = json!([]);
        assert!(act(&needs("1", 1), odd.clone()).unwrap_err().contains("no pod template"));
        std::sync::Arc::make_mut(&mut odd.apps[0].clusters[0].resources)[0]["spec"] =
            json!({"template": {"spec": {"affinity": 1, "containers": [{"name": "web", "resources": "x"}]}}});
        let mut hpa = needs("1", 1);
        hpa.spec.consumers[0].requirements[1].mandatory = true;
        let out = act(&hpa, odd).unwrap();
        assert_eq!(
            out.apps[0].clusters[0].resources[0]["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
                ["cpu"],
            "1"
        );
    }
}
