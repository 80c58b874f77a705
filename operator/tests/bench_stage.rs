//! Benchmark (run by `just bench`, ignored by `just test`): what the controller stage adds to a
//! revision of a SmartCity-sized plan (14 objects: an edge app on two clusters, a cloud app on
//! one) with three intents: a generic action intent of three resources (a new ConfigMap with file
//! data, a JSON patch and a strategic merge), an hpa intent (placement on three clusters' node
//! inventory, then requests, limits and affinity), and an external action controller (the example
//! controller on loopback, adding a label: one HTTP round trip).

use std::collections::BTreeMap;
use std::time::Instant;

use emco::api::clm::NodeInventory;
use emco::api::controller::ControllerSpec;
use emco::api::gac::GenericActionIntent;
use emco::api::hpa::HpaIntent;
use emco::orchestrator::intents::external::About;
use emco::orchestrator::intents::{
    CandidateApp, Candidates, ClusterFacts, Intent, Pick, Placed, PlacedApp, PlacedCluster, Slot, Stage,
};
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
        kv: BTreeMap::new(),
        resources: resources.clone().into(),
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
    let hpa: HpaIntent = serde_json::from_value(json!({"apiVersion": "hpa.emco.io/v1alpha1", "kind": "HpaIntent",
        "metadata": {"name": "smtc-hpa", "namespace": "smtc"},
        "spec": {"app": "edge", "consumers": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "analytics", "container": "analytics",
            "replicas": 3, "requirements": [{"resource": {"name": "cpu", "requests": "2", "limits": "4"}},
                                            {"mandatory": false, "weight": 10, "resource": {"key": "accel", "value": "gpu"}}]}]}}))
    .unwrap();
    let mut example = Example(
        std::process::Command::new(env!("CARGO_BIN_EXE_emco-example-controller"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(example.0.stdout.take().unwrap()), &mut line).unwrap();
    let addr = line.trim().trim_start_matches("listening on ").to_string();
    let external: ControllerSpec = serde_json::from_value(json!({"type": "action", "priority": 2000,
        "endpoint": {"url": format!("http://{addr}/?label=team=blue")}}))
    .unwrap();
    let gac = Intent::Gac { name: "smtc-gac".into(), intent: Box::new(intent), files: BTreeMap::new() };
    let hpa = Intent::Hpa { name: "smtc-hpa".into(), intent: Box::new(hpa) };
    let labeller = Intent::External { controller: "labeller".into(), intent: "team".into(), spec: external };
    let nodes = |cpu: &str| {
        vec![NodeInventory {
            name: "n".into(),
            ready: true,
            labels: BTreeMap::new(),
            allocatable: BTreeMap::from([("cpu".to_string(), cpu.to_string())]),
        }]
    };
    let clusters: Vec<ClusterFacts> = [("edge01", "32"), ("edge02", "8"), ("cloud01", "64")]
        .iter()
        .map(|(name, cpu)| ClusterFacts { name: name.to_string(), nodes: nodes(cpu), ..Default::default() })
        .collect();
    let candidates = Candidates {
        apps: vec![
            CandidateApp {
                name: "edge".into(),
                slots: vec![Slot { pick: Pick::All, clusters: vec!["edge01".into(), "edge02".into()] }],
            },
            CandidateApp {
                name: "cloud".into(),
                slots: vec![Slot { pick: Pick::One, clusters: vec!["cloud01".into()] }],
            },
        ],
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let runs = 500;
    for (what, intents) in [
        ("gac + hpa (built-in)", vec![gac.clone(), hpa.clone()]),
        ("gac + hpa + an external action controller", vec![gac, hpa, labeller]),
    ] {
        let stage =
            Stage { intents: &intents, about: About::default(), clusters: clusters.clone(), namespace: "smtc".into() };
        let mut times: Vec<f64> = (0..runs)
            .map(|_| {
                let start = Instant::now();
                let mut ran = Vec::new();
                let out = runtime.block_on(async {
                    stage.place(candidates.clone(), &mut ran).await.unwrap();
                    stage.act(placed.clone(), &mut ran).await.unwrap()
                });
                let elapsed = start.elapsed().as_secs_f64() * 1e6;
                assert_eq!((out.apps.len(), ran.len()), (2, intents.len() + 1));
                elapsed
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "BENCH controller stage ({what}) on SmartCity's 14 objects: median {:.0} µs, min {:.0} µs, max {:.0} µs over {runs} runs",
            times[runs / 2],
            times[0],
            times[runs - 1]
        );
    }
}

/// The example controller, stopped when the benchmark ends (or fails).
struct Example(std::process::Child);

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
