//! Benchmark (run by `just bench`, ignored by `just test`): what the controller stage adds to a
//! revision of a SmartCity-sized plan (14 objects: an edge app on two clusters, a cloud app on
//! one) with a generic action intent of three resources (a new ConfigMap with file data, a JSON
//! patch and a strategic merge).

use std::collections::BTreeMap;
use std::time::Instant;

use emco::api::gac::GenericActionIntent;
use emco::orchestrator::intents::{self, Intent, Placed, PlacedApp, PlacedCluster};
use serde_json::json;

fn deployment(name: &str) -> serde_json::Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"app": name}},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": {"metadata": {"labels": {"app": name}},
           "spec": {"containers": [{"name": name, "image": format!("r/{name}:1"), "env": [{"name": "A", "value": "1"}],
                                    "ports": [{"containerPort": 8080}]}]}}}})
}

fn service(name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}})
}

#[test]
#[ignore = "benchmark: run with `just bench`"]
fn controller_stage_on_smartcity() {
    let edge = vec![
        deployment("sensor"),
        deployment("analytics"),
        deployment("storage"),
        service("analytics"),
        service("storage"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "smtc-edge-config"}, "data": {"MODE": "edge"}}),
    ];
    let cluster = |name: &str, resources: &Vec<serde_json::Value>, edge: bool| PlacedCluster {
        cluster: name.into(),
        labels: if edge {
            BTreeMap::from([("LabelSmartCityEdge".to_string(), String::new())])
        } else {
            BTreeMap::new()
        },
        resources: resources.clone(),
    };
    let placed = Placed {
        apps: vec![
            PlacedApp {
                name: "edge".into(),
                clusters: vec![cluster("edge01", &edge, true), cluster("edge02", &edge, true)],
            },
            PlacedApp {
                name: "cloud".into(),
                clusters: vec![cluster("cloud01", &vec![deployment("web"), service("web")], false)],
            },
        ],
    };
    let intent: GenericActionIntent = serde_json::from_value(json!({"apiVersion": "gac.emco.io/v1alpha1", "kind": "GenericActionIntent",
        "metadata": {"name": "smtc-gac", "namespace": "smtc"},
        "spec": {"resources": [
            {"name": "office", "app": "edge", "newObject": true, "gvk": {"apiVersion": "v1", "kind": "ConfigMap", "name": "office"},
             "customizations": [{"name": "edge01", "clusterInfo": {"scope": "name", "cluster": "edge01"}, "files": [{"keyName": "office.ini", "content": "name=1"}]}]},
            {"name": "scale", "app": "edge", "gvk": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "analytics"},
             "customizations": [{"name": "r", "patchType": "json", "patch": [{"op": "replace", "path": "/spec/replicas", "value": 3}]}]},
            {"name": "env", "app": "cloud", "gvk": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
             "customizations": [{"name": "e", "patchType": "strategic",
                                 "patch": {"spec": {"template": {"spec": {"containers": [{"name": "web", "env": [{"name": "B", "value": "2"}]}]}}}}}]}]}}))
    .unwrap();
    let intents = [Intent::Gac { name: "smtc-gac".into(), intent: Box::new(intent), files: BTreeMap::new() }];
    let runs = 2000;
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            let (out, ran) = intents::run(&intents, placed.clone()).unwrap();
            let elapsed = start.elapsed().as_secs_f64() * 1e6;
            assert_eq!((out.apps.len(), ran.len()), (2, 2));
            elapsed
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!(
        "BENCH controller stage (gac, 3 resources) on SmartCity's 14 objects: median {:.0} µs, min {:.0} µs, max {:.0} µs over {runs} runs",
        times[runs / 2],
        times[0],
        times[runs - 1]
    );
}
