//! The operator's Helm chart lints and renders with the pinned helm, and its ClusterRole grants
//! what the controllers use.

use std::process::Command;

use emco_e2e::{Bed, repo_root};

fn helm(args: &[&str]) -> String {
    let env = std::fs::read_to_string(Bed::get().dir.join("bed.env")).expect("bed.env");
    let bin = env.lines().find_map(|l| l.strip_prefix("BIN_DIR=")).expect("BIN_DIR in bed.env");
    let out = Command::new(format!("{bin}/helm")).args(args).current_dir(repo_root()).output().expect("running helm");
    assert!(out.status.success(), "helm {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn chart_lints_and_renders_with_the_rbac_the_operator_needs() {
    helm(&["lint", "--strict", "charts/emco-operator"]);
    let rendered = helm(&["template", "emco", "charts/emco-operator", "--namespace", "emco-system"]);
    for needed in [
        "kind: ClusterRole",
        "clm.emco.io",
        "rsync.emco.io",
        "secrets",
        "namespaces",
        "coordination.k8s.io",
        "kind: Deployment",
    ] {
        assert!(rendered.contains(needed), "rendered chart lacks {needed:?}");
    }
}

#[test]
fn sharded_rsync_is_one_value_and_its_leases_are_in_the_role() {
    let template = |extra: &[&str]| {
        let mut args = vec!["template", "emco", "charts/emco-operator", "--namespace", "emco-system"];
        args.extend_from_slice(extra);
        helm(&args)
    };
    let sharded_env = |rendered: &str| {
        let at = rendered.find("name: EMCO_RSYNC_SHARDED").expect("EMCO_RSYNC_SHARDED in the Deployment");
        rendered[at..].lines().nth(1).unwrap_or_default().trim().to_string()
    };
    assert_eq!(sharded_env(&template(&[])), "value: \"false\"", "one replica carries every cluster by default");
    let sharded = template(&["--set", "rsync.sharded=true", "--set", "replicas=3"]);
    assert_eq!(sharded_env(&sharded), "value: \"true\"");
    assert!(sharded.contains("replicas: 3"));
    let role = sharded.split("---").find(|d| d.contains("kind: Role\n")).expect("the namespaced Role");
    assert!(role.contains("verbs: [get, list, create, update, patch, delete]"), "shard Leases: {role}");
}

#[test]
fn the_hub_is_closed_unless_the_single_tenant_value_says_otherwise() {
    let closed = helm(&["template", "emco", "charts/emco-operator", "--namespace", "emco-system"]);
    assert!(!closed.contains("kind: ClusterGrant"), "a grant by default");
    let open = helm(&[
        "template",
        "emco",
        "charts/emco-operator",
        "--namespace",
        "emco-system",
        "--set",
        "tenancy.singleTenant=true",
    ]);
    let grant = open.split("---").find(|d| d.contains("kind: ClusterGrant")).expect("the single-tenant grant");
    assert!(grant.contains("projects: [\"*\"]") && grant.contains("- Admin"), "{grant}");
}

#[test]
fn the_memory_budget_adds_up() {
    let rendered = helm(&["template", "emco", "charts/emco-operator", "--namespace", "emco-system"]);
    for needed in ["EMCO_RENDER_WORKERS", "EMCO_RENDER_WORKER_MEMORY_MIB", "memory: 512Mi"] {
        assert!(rendered.contains(needed), "rendered chart lacks {needed:?}");
    }
    // Workers x their cap leave the operator at least 192 MiB of the container's limit.
    let limit = emco_e2e::chart_memory_limit();
    let workers = emco::render::limits::WORKERS as u64 * emco::render::limits::WORKER_MEMORY;
    assert!(limit >= workers + (192 << 20), "limit {limit} < workers {workers} + 192 MiB");
}
