//! An app far larger than one hub object may be (several MiB rendered) still deploys: its rendered
//! resources are split over bundle Secrets under 1 MiB each, and the AppContext stays small.

use std::time::Duration;

use anyhow::Result;
use emco::api::rsync::AppContext;
use emco_e2e::*;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json::json;

/// `len` characters that do not compress much (a xorshift stream over the base64 alphabet).
fn incompressible(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % 64) as usize] as char
        })
        .collect()
}

#[tokio::test]
async fn a_multi_mebibyte_app_deploys_through_bundles_under_one_mebibyte() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("large-{}", unique_suffix());
    project(&hub, &ns).await?;
    let values = format!("blob: {}\n", incompressible(700 * 1024));
    let template = "{% for i in range(end=4) %}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big-{{ i }}\ndata:\n  blob: {{ Values.blob }}\n{% endfor %}\n";
    let chart: Vec<(&'static str, &'static str)> = vec![
        ("Chart.yaml", "apiVersion: v2\nname: probe\nversion: 0.1.0\n"),
        ("values.yaml", Box::leak(values.into_boxed_str())),
        ("templates/big.yaml", template),
    ];
    Probe { chart: Some(chart), ..Probe::new(json!({"app": "probe", "allOf": [{"cluster": "edge01"}]})) }
        .apply(&hub, &bed, &ns)
        .await?;
    let status =
        wait_dig(&hub, &ns, &ns, "deployed 4/4", Duration::from_secs(120), |s| s.deployed.as_deref() == Some("4/4"))
            .await?;

    let context = Api::<AppContext>::namespaced(hub.clone(), &ns).get(status.app_context.as_deref().unwrap()).await?;
    let bundle = &context.spec.apps[0].bundles[0];
    assert!(bundle.parts >= 3, "about 2 MiB of gzipped resources need several parts, got {}", bundle.parts);
    assert!(serde_json::to_vec(&context)?.len() < 16 * 1024, "the AppContext must stay small");
    let selector = format!("{}={ns}", emco::api::labels::DIG);
    let secrets =
        Api::<Secret>::namespaced(hub.clone(), &ns).list(&kube::api::ListParams::default().labels(&selector)).await?;
    assert_eq!(secrets.items.len(), bundle.parts as usize);
    for s in &secrets.items {
        let size = serde_json::to_vec(s)?.len();
        assert!(size < 1024 * 1024, "bundle Secret {:?} is {size} bytes", s.metadata.name);
    }
    let on_member = deployed_names(&bed.client("edge01").await, "v1", "ConfigMap", "configmaps", &ns).await?;
    assert_eq!(on_member, ["big-0", "big-1", "big-2", "big-3"]);
    Ok(())
}
