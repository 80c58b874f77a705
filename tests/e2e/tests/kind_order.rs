//! Kind order on a member: a chart whose custom resource comes before its CRD (and whose objects
//! live in a Namespace the chart also makes) still applies in one pass: CRD and Namespace first.

use std::time::Duration;

use anyhow::Result;
use emco::api::orchestrator::DigState;
use emco_e2e::*;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

const CR: &str = "apiVersion: e2e.emco.io/v1\nkind: Widget\nmetadata:\n  name: gadget\n  namespace: {{ Values.ns }}\nspec:\n  size: 3\n";
const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.e2e.emco.io
spec:
  group: e2e.emco.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;
const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {{ Values.ns }}\n";

#[tokio::test]
async fn custom_resources_and_namespaces_apply_after_their_definitions() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("order-{}", unique_suffix());
    project(&hub, &ns).await?;
    let values: &'static str = Box::leak(format!("ns: {ns}-widgets\n").into_boxed_str());
    let chart = vec![
        ("Chart.yaml", "apiVersion: v2\nname: probe\nversion: 0.1.0\n"),
        ("values.yaml", values),
        ("templates/a-widget.yaml", CR),
        ("templates/b-namespace.yaml", NS),
        ("templates/z-crd.yaml", CRD),
    ];
    let probe = Probe { chart: Some(chart), ..Probe::new(json!({"app": "probe", "allOf": [{"cluster": "edge02"}]})) };
    probe.apply(&hub, &bed, &ns).await?;
    let status = wait_dig(&hub, &ns, &ns, "Instantiated", Duration::from_secs(60), |s| {
        s.state == DigState::Instantiated && complete(&s.ready)
    })
    .await?;
    assert_eq!(status.deployed.as_deref(), Some("3/3"));
    let edge02 = bed.client("edge02").await;
    let widgets = deployed_names(&edge02, "e2e.emco.io/v1", "Widget", "widgets", &ns).await?;
    assert_eq!(widgets, ["gadget"]);

    // Terminate deletes the custom resource and the namespace, and leaves the CRD (as Helm does).
    Api::<emco::api::orchestrator::DeploymentIntentGroup>::namespaced(hub.clone(), &ns)
        .patch(&ns, &PatchParams::apply("e2e-terminate"), &Patch::Merge(json!({"spec": {"state": "Terminated"}})))
        .await?;
    wait_dig(&hub, &ns, &ns, "Terminated", Duration::from_secs(60), |s| s.state == DigState::Terminated).await?;
    assert!(deployed_names(&edge02, "e2e.emco.io/v1", "Widget", "widgets", &ns).await?.is_empty());
    let crds = Api::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>::all(
        edge02,
    );
    assert!(crds.get_opt("widgets.e2e.emco.io").await?.is_some(), "the CRD must stay");
    Ok(())
}
