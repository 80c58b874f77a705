//! Standard and Privileged logical clouds on the bed's real members: the namespace, quota, RBAC
//! and certificate user dcm makes on each member (the user's kubeconfig works, and only within
//! its rights), DIGs applied with the logical cloud's own credentials (the member's quota and RBAC
//! refuse, the DIG says why), add/remove cluster, terminate, and an operator restart mid-way.

use std::time::Duration;

use anyhow::{Result, ensure};
use emco::api::dcm::{LogicalCloudClusterState, LogicalCloudState};
use emco::api::orchestrator::DigState;
use emco_e2e::*;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{Namespace, Pod, ResourceQuota, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

const READY: Duration = Duration::from_secs(60);

fn standard(ns: &str, user: &str, quotas: Value) -> Value {
    json!({"type": "Standard", "namespace": ns, "user": {"name": user}, "quotas": quotas})
}

async fn apply_lc(hub: &Client, ns: &str, name: &str, mut spec: Value, clusters: &[&str]) -> Result<()> {
    spec["clusters"] = json!(clusters.iter().map(|c| json!({"cluster": c})).collect::<Vec<_>>());
    apply(
        hub,
        &json!({"apiVersion": "dcm.emco.io/v1alpha1", "kind": "LogicalCloud",
                "metadata": {"name": name, "namespace": ns}, "spec": spec}),
    )
    .await?;
    Ok(())
}

fn instantiated(s: &emco::api::dcm::LogicalCloudStatus) -> bool {
    s.state == Some(LogicalCloudState::Instantiated)
        && s.clusters.iter().all(|c| c.state == LogicalCloudClusterState::Ready)
}

async fn namespace_exists(member: &Client, name: &str) -> Result<bool> {
    Ok(Api::<Namespace>::all(member.clone())
        .get_opt(name)
        .await?
        .is_some_and(|n| n.metadata.deletion_timestamp.is_none()))
}

#[tokio::test]
async fn a_standard_cloud_gives_each_member_a_namespace_quota_role_and_a_working_user() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("lcstd-{}", unique_suffix());
    let apps = format!("{ns}-apps");
    project(&hub, &ns).await?;
    // The DIG (Probe) makes logical cloud `lc`: Standard, on edge01 and edge02, two pods at most.
    let probe = Probe {
        chart: Some(vec![web_chart_files()[0], ("templates/web.yaml", web_3_replicas())]),
        clusters: Some(vec!["edge01".into(), "edge02".into()]),
        logical_cloud: Some(standard(&apps, &format!("{ns}-user"), json!({"pods": "2"}))),
        ..Probe::new(json!({"app": "probe", "allOf": [{"cluster": "edge01"}, {"cluster": "edge02"}]}))
    };
    probe.apply(&hub, &bed, &ns).await?;
    let status = wait_lc(&hub, &ns, "lc", "Instantiated", READY, instantiated).await?;
    let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(hub.clone(), &ns);
    wait_for("CertificateIssued events", READY, || async {
        let list = events.list(&ListParams::default()).await?;
        let issued = list.items.iter().filter(|e| e.reason.as_deref() == Some("CertificateIssued")).count();
        Ok((issued >= 1).then_some(()))
    })
    .await?;
    let in_a_week = k8s_openapi::jiff::Timestamp::now().as_second() + 7 * 24 * 3600;
    for c in &status.clusters {
        ensure!(c.kubeconfig_secret.as_deref() == Some(format!("emco-lc-lc-{}", c.cluster).as_str()), "{c:?}");
        ensure!(c.certificate_expiry.as_ref().is_some_and(|t| t.0.as_second() > in_a_week), "expiry: {c:?}");
    }

    for member in ["edge01", "edge02"] {
        let client = bed.client(member).await;
        ensure!(namespace_exists(&client, &apps).await?, "namespace {apps} on {member}");
        let quota = Api::<ResourceQuota>::namespaced(client.clone(), &apps).get("emco-lc-lc").await?;
        ensure!(quota.spec.and_then(|s| s.hard).and_then(|h| h.get("pods").cloned()).is_some_and(|q| q.0 == "2"));
        Api::<Role>::namespaced(client.clone(), &apps).get("emco-lc-lc").await?;
        let binding = Api::<RoleBinding>::namespaced(client.clone(), &apps).get("emco-lc-lc").await?;
        ensure!(
            binding
                .subjects
                .unwrap_or_default()
                .iter()
                .any(|s| s.kind == "User" && s.name == format!("emco:{ns}:{ns}-user"))
        );

        // The generated kubeconfig: its user lists pods in the namespace, and nothing beyond it.
        let user = logical_cloud_user(&hub, &ns, "lc", member).await?;
        Api::<Pod>::namespaced(user.clone(), &apps).list(&ListParams::default()).await?;
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "intruder"},
            "spec": {"containers": [{"name": "c", "image": "registry.example/c:1"}]}}))?;
        match Api::<Pod>::namespaced(user.clone(), "default").create(&PostParams::default(), &pod).await {
            Err(kube::Error::Api(e)) if e.code == 403 => {}
            other => anyhow::bail!("creating a pod in `default` as the user on {member}: {other:?}"),
        }
    }
    ensure!(!namespace_exists(&bed.client("cloud01").await, &apps).await?, "nothing on cloud01");

    // The DIG asks for three pods; the member's quota allows two and says so in the DIG.
    let status = wait_dig(&hub, &ns, &ns, "shows the quota", READY, |s| {
        s.conditions.iter().any(|c| c.type_ == "Ready" && c.message.contains("exceeded quota"))
    })
    .await?;
    ensure!(status.state == DigState::Instantiated, "{status:?}");
    for member in ["edge01", "edge02"] {
        let pods = Api::<Pod>::namespaced(bed.client(member).await, &apps).list(&ListParams::default()).await?;
        ensure!(pods.items.len() == 2, "{} pods on {member}", pods.items.len());
    }

    // Deleting the whole project (its user Secrets go at once) still cleans both members.
    hub_kubectl(&["delete", "project.orchestrator.emco.io", &ns, "--wait=false"])?;
    let namespaces = Api::<Namespace>::all(hub.clone());
    wait_for("the project's namespace gone", Duration::from_secs(90), || async {
        Ok(namespaces.get_opt(&ns).await?.is_none().then_some(()))
    })
    .await?;
    for member in ["edge01", "edge02"] {
        ensure!(!namespace_exists(&bed.client(member).await, &apps).await?, "{apps} left on {member}");
    }
    Ok(())
}

/// The web chart's Deployment with three replicas.
fn web_3_replicas() -> &'static str {
    Box::leak(web_chart_files()[1].1.replace("replicas: 1", "replicas: 3").into_boxed_str())
}

/// Terminates the DIG named after `ns`, then deletes the project (its logical clouds go with it).
async fn teardown(hub: &Client, ns: &str) -> Result<()> {
    set_dig_state(hub, ns, ns, "Terminated").await?;
    wait_dig(hub, ns, ns, "Terminated", READY, |s| s.state == DigState::Terminated).await?;
    Ok(())
}

#[tokio::test]
async fn cluster_scoped_kinds_fail_in_a_standard_cloud_and_deploy_in_a_privileged_one() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let suffix = unique_suffix();
    let role = format!("reader-{suffix}");
    let chart_role: &'static str = Box::leak(
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {role}\n\
             rules:\n- apiGroups: [\"\"]\n  resources: [pods]\n  verbs: [get]\n"
        )
        .into_boxed_str(),
    );
    let chart =
        vec![("Chart.yaml", "apiVersion: v2\nname: probe\nversion: 0.1.0\n"), ("templates/role.yaml", chart_role)];
    let placement = json!({"app": "probe", "allOf": [{"cluster": "edge01"}]});
    let (std_ns, priv_ns) = (format!("lccr-s-{suffix}"), format!("lccr-p-{suffix}"));

    project(&hub, &std_ns).await?;
    let probe = Probe {
        chart: Some(chart.clone()),
        clusters: Some(vec!["edge01".into()]),
        logical_cloud: Some(standard(&format!("{std_ns}-apps"), &format!("{std_ns}-user"), json!({}))),
        ..Probe::new(placement.clone())
    };
    probe.apply(&hub, &bed, &std_ns).await?;
    let status = wait_dig(&hub, &std_ns, &std_ns, "refused by edge01", READY, |s| {
        s.state == DigState::InstantiateFailed
            && s.conditions.iter().any(|c| c.type_ == "Deployed" && c.message.contains("forbidden"))
    })
    .await?;
    let message =
        status.conditions.iter().find(|c| c.type_ == "Deployed").map(|c| c.message.clone()).unwrap_or_default();
    ensure!(
        message.contains("forbidden") && message.contains(&format!("{std_ns}-user")) && message.contains(&role),
        "Deployed condition: {message}"
    );

    project(&hub, &priv_ns).await?;
    let mut privileged = standard(&format!("{priv_ns}-apps"), &format!("{priv_ns}-user"), json!({}));
    privileged["type"] = json!("Privileged");
    privileged["permissions"] = json!([
        {"namespace": "", "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["*"]},
        {"namespace": format!("{priv_ns}-apps"), "apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
    ]);
    let probe = Probe { logical_cloud: Some(privileged), ..probe };
    probe.apply(&hub, &bed, &priv_ns).await?;
    wait_dig(&hub, &priv_ns, &priv_ns, "Instantiated", READY, |s| {
        s.state == DigState::Instantiated && complete(&s.ready)
    })
    .await?;
    let edge01 = bed.client("edge01").await;
    let made = Api::<ClusterRole>::all(edge01.clone()).get(&role).await?;
    let manager =
        made.metadata.managed_fields.unwrap_or_default().iter().filter_map(|m| m.manager.clone()).collect::<Vec<_>>();
    ensure!(manager.iter().any(|m| m.contains(&priv_ns)), "managers: {manager:?}");
    Api::<ClusterRole>::all(edge01.clone()).get(&emco::dcm::objects::cluster_wide_name(&priv_ns, "lc")).await?;

    teardown(&hub, &priv_ns).await?;
    ensure!(Api::<ClusterRole>::all(edge01).get_opt(&role).await?.is_none(), "ClusterRole removed on terminate");
    teardown(&hub, &std_ns).await
}

#[tokio::test]
async fn two_projects_stay_apart() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let suffix = unique_suffix();
    let (a, b) = (format!("lca-{suffix}"), format!("lcb-{suffix}"));
    let alice = format!("alice-{suffix}");
    for (p, admin) in [(&a, &alice), (&b, &format!("bob-{suffix}"))] {
        apply(
            &hub,
            &json!({"apiVersion": "orchestrator.emco.io/v1alpha1", "kind": "Project", "metadata": {"name": p},
            "spec": {"namespace": p, "admins": [{"kind": "User", "name": admin}]}}),
        )
        .await?;
    }
    for p in [&a, &b] {
        let namespaces = Api::<Namespace>::all(hub.clone());
        wait_for("project namespace", READY, || async { Ok(namespaces.get_opt(p).await?.map(|_| ())) }).await?;
    }
    // The hub is closed: A has no grant at all, B is granted edge01 only.
    apply_lc(&hub, &a, "closed", json!({"type": "Admin"}), &["edge01"]).await?;
    let closed =
        wait_lc(&hub, &a, "closed", "refused", READY, |s| s.state == Some(LogicalCloudState::InstantiateFailed))
            .await?;
    let ready = closed.conditions.iter().find(|c| c.type_ == "Ready");
    ensure!(
        ready.is_some_and(|r| r.reason == "ClusterNotGranted"
            && r.message.contains(&format!("no ClusterGrant gives project {a} cluster edge01 for Admin"))
            && r.message.contains("kind: ClusterGrant")),
        "the missing grant is named: {closed:?}"
    );
    grant(&hub, &b, json!({"clusters": ["edge01"]})).await?;
    apply_lc(&hub, &b, "lc", standard(&format!("{b}-apps"), &format!("{b}-user"), json!({})), &["edge01"]).await?;
    wait_lc(&hub, &b, "lc", "Instantiated", READY, instantiated).await?;

    // A DIG of A naming B's logical cloud.
    let probe = Probe::new(json!({"app": "probe", "allOf": [{"cluster": "edge01"}]}));
    probe.apply(&hub, &bed, &a).await?;
    let api = Api::<emco::api::orchestrator::DeploymentIntentGroup>::namespaced(hub.clone(), &a);
    api.patch(&a, &PatchParams::default(), &Patch::Merge(json!({"spec": {"logicalCloud": format!("{b}/lc")}}))).await?;
    let status =
        wait_dig(&hub, &a, &a, "refused", READY, |s| s.conditions.iter().any(|c| c.reason == "CrossProjectReference"))
            .await?;
    ensure!(status.app_context.is_none(), "nothing deployed: {status:?}");

    // Once a platform admin grants A edge01 for Standard clouds, A may use nothing else.
    let grant = format!("grant-{suffix}");
    apply(
        &hub,
        &json!({"apiVersion": "dcm.emco.io/v1alpha1", "kind": "ClusterGrant", "metadata": {"name": grant},
        "spec": {"projects": [a], "clusters": ["edge01"]}}),
    )
    .await?;
    apply_lc(&hub, &a, "wide", standard(&format!("{a}-apps"), &format!("{a}-user"), json!({})), &["edge01", "edge02"])
        .await?;
    let wide =
        wait_lc(&hub, &a, "wide", "refused", READY, |s| s.state == Some(LogicalCloudState::InstantiateFailed)).await?;
    let ready = wide.conditions.iter().find(|c| c.type_ == "Ready");
    ensure!(ready.is_some_and(|r| r.reason == "ClusterNotGranted" && r.message.contains("edge02")), "{wide:?}");
    ensure!(!namespace_exists(&bed.client("edge01").await, &format!("{a}-apps")).await?, "nothing half-made");
    // A second grant makes the same logical cloud good; taking it back removes edge02 only.
    let second = format!("grant2-{suffix}");
    apply(
        &hub,
        &json!({"apiVersion": "dcm.emco.io/v1alpha1", "kind": "ClusterGrant", "metadata": {"name": second},
        "spec": {"projects": [a], "clusters": ["edge02"]}}),
    )
    .await?;
    wait_lc(&hub, &a, "wide", "Instantiated once granted", READY, instantiated).await?;
    let (edge01, edge02) = (bed.client("edge01").await, bed.client("edge02").await);
    ensure!(namespace_exists(&edge02, &format!("{a}-apps")).await?, "namespace on edge02");
    hub_kubectl(&["delete", "clustergrant", &second])?;
    wait_for("edge02 revoked", READY, || async {
        Ok((!namespace_exists(&edge02, &format!("{a}-apps")).await?).then_some(()))
    })
    .await?;
    for _ in 0..6 {
        ensure!(namespace_exists(&edge01, &format!("{a}-apps")).await?, "edge01 keeps its namespace");
        ensure!(
            Api::<Secret>::namespaced(hub.clone(), &a).get_opt("emco-lc-wide-edge02").await?.is_none(),
            "user gone"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    apply_lc(&hub, &a, "admin", json!({"type": "Admin"}), &["edge01"]).await?;
    let admin =
        wait_lc(&hub, &a, "admin", "refused", READY, |s| s.state == Some(LogicalCloudState::InstantiateFailed)).await?;
    ensure!(admin.clusters[0].state == LogicalCloudClusterState::NotGranted, "{admin:?}");

    // A's project admin reads A's generated kubeconfigs and not B's, and cannot grant itself clusters.
    let can = |verb: &str, what: &str, ns: &str| hub_kubectl(&["auth", "can-i", verb, what, "-n", ns, "--as", &alice]);
    ensure!(can("get", "secrets/emco-lc-lc-edge01", &b)? == "no", "alice reads B's kubeconfig");
    ensure!(can("list", "secrets", &b)? == "no", "alice lists B's Secrets");
    ensure!(can("get", "secrets", &a)? == "yes", "alice reads A's Secrets");
    ensure!(can("create", "logicalclouds.dcm.emco.io", &a)? == "yes", "alice makes logical clouds in A");
    ensure!(can("create", "clustergrants.dcm.emco.io", &a)? == "no", "alice grants clusters");

    // Taking back A's last grant closes A again: never open.
    hub_kubectl(&["delete", "clustergrant", &grant])?;
    let closed_again = wait_lc(&hub, &a, "wide", "closed again", READY, |s| {
        s.state == Some(LogicalCloudState::InstantiateFailed)
            && s.clusters.iter().all(|c| c.state == LogicalCloudClusterState::NotGranted)
    })
    .await?;
    ensure!(closed_again.conditions.iter().any(|c| c.reason == "ClusterNotGranted"), "{closed_again:?}");
    wait_for("edge01 revoked too", READY, || async {
        Ok((!namespace_exists(&edge01, &format!("{a}-apps")).await?).then_some(()))
    })
    .await?;
    hub_kubectl(&["delete", "clustergrant", &format!("e2e-{b}")])?;
    for p in [&a, &b] {
        hub_kubectl(&["delete", "project.orchestrator.emco.io", p, "--wait=false"])?;
    }
    Ok(())
}

#[tokio::test]
async fn adding_and_removing_a_cluster_touch_only_that_cluster_and_terminate_removes_everything() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("lcadd-{}", unique_suffix());
    let apps = format!("{ns}-apps");
    let (edge01, cloud01) = (bed.client("edge01").await, bed.client("cloud01").await);
    project(&hub, &ns).await?;
    let spec = standard(&apps, &format!("{ns}-user"), json!({"pods": "5"}));
    apply_lc(&hub, &ns, "lc", spec.clone(), &["edge01"]).await?;
    wait_lc(&hub, &ns, "lc", "Instantiated", READY, instantiated).await?;
    let uid = Api::<Namespace>::all(edge01.clone()).get(&apps).await?.metadata.uid;

    apply_lc(&hub, &ns, "lc", spec.clone(), &["edge01", "cloud01"]).await?;
    wait_lc(&hub, &ns, "lc", "on cloud01", READY, |s| instantiated(s) && s.clusters.len() == 2).await?;
    ensure!(namespace_exists(&cloud01, &apps).await?, "namespace on cloud01");
    Api::<ResourceQuota>::namespaced(cloud01.clone(), &apps).get("emco-lc-lc").await?;
    logical_cloud_user(&hub, &ns, "lc", "cloud01").await?.apiserver_version().await?;
    ensure!(Api::<Namespace>::all(edge01.clone()).get(&apps).await?.metadata.uid == uid, "edge01 untouched");

    apply_lc(&hub, &ns, "lc", spec.clone(), &["cloud01"]).await?;
    wait_for("namespace gone from edge01", READY, || async {
        Ok((!namespace_exists(&edge01, &apps).await?).then_some(()))
    })
    .await?;
    let secrets = Api::<Secret>::namespaced(hub.clone(), &ns);
    for _ in 0..10 {
        ensure!(namespace_exists(&cloud01, &apps).await?, "cloud01 keeps its namespace");
        ensure!(secrets.get_opt("emco-lc-lc-edge01").await?.is_none(), "edge01's user is forgotten");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // A DIG on it: terminate is refused while the DIG lives, then removes everything.
    let probe = Probe {
        clusters: Some(vec!["cloud01".into()]),
        logical_cloud: Some(spec.clone()),
        ..Probe::new(json!({"app": "probe", "allOf": [{"cluster": "cloud01"}]}))
    };
    probe.apply(&hub, &bed, &ns).await?;
    wait_dig(&hub, &ns, &ns, "Instantiated", READY, |s| s.state == DigState::Instantiated && complete(&s.ready))
        .await?;
    let mut terminated = spec.clone();
    terminated["state"] = json!("Terminated");
    apply_lc(&hub, &ns, "lc", terminated.clone(), &["cloud01"]).await?;
    let refused = wait_lc(&hub, &ns, "lc", "refuses terminate", READY, |s| {
        s.conditions.iter().any(|c| c.type_ == "Terminated" && c.reason == "InUse")
    })
    .await?;
    let message = refused.conditions.iter().find(|c| c.type_ == "Terminated").map(|c| c.message.clone());
    ensure!(message.is_some_and(|m| m.contains(&ns)), "names the DIG: {refused:?}");
    ensure!(namespace_exists(&cloud01, &apps).await?, "nothing removed while in use");
    let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(hub.clone(), &ns);
    wait_for("a TerminateRefused event", READY, || async {
        let list = events.list(&ListParams::default()).await?;
        Ok(list.items.iter().any(|e| e.reason.as_deref() == Some("TerminateRefused")).then_some(()))
    })
    .await?;

    teardown(&hub, &ns).await?;
    wait_lc(&hub, &ns, "lc", "Terminated", READY, |s| s.state == Some(LogicalCloudState::Terminated)).await?;
    for _ in 0..6 {
        ensure!(!namespace_exists(&cloud01, &apps).await?, "namespace removed from cloud01");
        let users = secrets.list(&ListParams::default().labels("dcm.emco.io/logical-cloud=lc")).await?;
        ensure!(users.items.is_empty(), "user Secrets removed");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

#[tokio::test]
async fn an_operator_restart_mid_instantiate_still_ends_with_one_working_user_per_member() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("lcrst-{}", unique_suffix());
    let apps = format!("{ns}-apps");
    project(&hub, &ns).await?;
    let members: Vec<&str> = bed.members.iter().map(String::as_str).collect();
    apply_lc(&hub, &ns, "lc", standard(&apps, &format!("{ns}-user"), json!({})), &members).await?;
    // Restart as soon as the first user's key is kept on the hub (the CSRs are then on their way).
    let secrets = Api::<Secret>::namespaced(hub.clone(), &ns);
    wait_for("a user's key", READY, || async {
        Ok((!secrets.list(&ListParams::default()).await?.items.is_empty()).then_some(()))
    })
    .await?;
    let before = operator_pid()?;
    let after = restart_operator()?;
    ensure!(before != after, "operator restarted");
    wait_lc(&hub, &ns, "lc", "Instantiated", READY, instantiated).await?;

    let users = secrets.list(&ListParams::default().labels("dcm.emco.io/logical-cloud=lc")).await?;
    ensure!(users.items.len() == members.len(), "{} user Secrets", users.items.len());
    for member in &members {
        let user = logical_cloud_user(&hub, &ns, "lc", member).await?;
        Api::<Pod>::namespaced(user, &apps).list(&ListParams::default()).await?;
        // No CSR of this logical cloud is left on the member.
        let mark = format!("user of logical cloud {ns}/lc");
        let csrs = Api::<CertificateSigningRequest>::all(bed.client(member).await).list(&ListParams::default()).await?;
        let left = csrs
            .items
            .iter()
            .filter(|c| {
                c.status.iter().flat_map(|s| s.conditions.iter().flatten()).any(|c| c.message.as_deref() == Some(&mark))
            })
            .count();
        ensure!(left == 0, "{left} CSRs left on {member}");
    }
    hub_kubectl(&["delete", "logicalcloud.dcm.emco.io", "lc", "-n", &ns])?;
    for member in &members {
        ensure!(
            !namespace_exists(&bed.client(member).await, &apps).await?,
            "deleting the logical cloud cleans {member}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_certificate_near_its_end_is_renewed_through_the_member_and_no_secret_reaches_the_log() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("lcrenew-{}", unique_suffix());
    let apps = format!("{ns}-apps");
    project(&hub, &ns).await?;
    apply_lc(&hub, &ns, "lc", standard(&apps, &format!("{ns}-user"), json!({})), &["edge02"]).await?;
    wait_lc(&hub, &ns, "lc", "Instantiated", READY, instantiated).await?;
    let secrets = Api::<Secret>::namespaced(hub.clone(), &ns);
    let secret = secrets.get("emco-lc-lc-edge02").await?;
    let data = secret.data.unwrap_or_default();
    let issued = data["tls.crt"].0.clone();

    // The kept certificate is swapped for one of the same key that ran out in 2020.
    let key = rcgen::KeyPair::from_pem(std::str::from_utf8(&data["tls.key"].0)?)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, format!("emco:{ns}:{ns}-user"));
    (params.not_before, params.not_after) = (rcgen::date_time_ymd(2019, 1, 1), rcgen::date_time_ymd(2020, 1, 1));
    let old = params.self_signed(&key)?.pem();
    let patch = json!({"data": {"tls.crt": k8s_openapi::ByteString(old.clone().into_bytes())}});
    secrets.patch("emco-lc-lc-edge02", &PatchParams::default(), &Patch::Merge(patch)).await?;

    // dcm asks edge02 for a new one and keeps it: a working user again, expiring in a month.
    let renewed = wait_for("a renewed certificate", READY, || async {
        let now = secrets.get("emco-lc-lc-edge02").await?.data.unwrap_or_default()["tls.crt"].0.clone();
        Ok((now != old.as_bytes() && now != issued).then_some(now))
    })
    .await?;
    ensure!(renewed.starts_with(b"-----BEGIN CERTIFICATE-----"), "a PEM certificate");
    let status = wait_lc(&hub, &ns, "lc", "Instantiated", READY, instantiated).await?;
    let in_a_week = k8s_openapi::jiff::Timestamp::now().as_second() + 7 * 24 * 3600;
    ensure!(status.clusters[0].certificate_expiry.as_ref().is_some_and(|t| t.0.as_second() > in_a_week), "{status:?}");
    let user = logical_cloud_user(&hub, &ns, "lc", "edge02").await?;
    Api::<Pod>::namespaced(user, &apps).list(&ListParams::default()).await?;

    // Keys, certificates and kubeconfigs never reach the operator's log, nor the status.
    let log = std::fs::read_to_string(bed.dir.join("operator.log"))?;
    for marker in ["PRIVATE KEY", "BEGIN CERTIFICATE", "LS0tLS1CRUdJTi", "client-key-data"] {
        ensure!(!log.contains(marker), "the operator log holds {marker}");
    }
    let status_text = serde_json::to_string(&status)?;
    ensure!(!status_text.contains("BEGIN") && !status_text.contains("LS0tLS1"), "status: {status_text}");
    hub_kubectl(&["delete", "project.orchestrator.emco.io", &ns, "--wait=false"])?;
    Ok(())
}

#[tokio::test]
async fn a_logical_cloud_reaches_no_further_than_its_own_namespace() -> Result<()> {
    let bed = Bed::get();
    let hub = bed.hub().await;
    let ns = format!("lcbad-{}", unique_suffix());
    project(&hub, &ns).await?;
    let apps = format!("{ns}-apps");
    let refused = |spec: Value| {
        let hub = hub.clone();
        let ns = ns.clone();
        async move {
            match apply_lc(&hub, &ns, "bad", spec, &["edge01"]).await {
                Err(e) => Ok(format!("{e:#}")),
                Ok(()) => anyhow::bail!("accepted"),
            }
        }
    };
    // Refused at apply: rights in another namespace, cluster-wide rights, a system namespace.
    let mut other = standard(&apps, "u", json!({}));
    other["permissions"] =
        json!([{"namespace": "kube-system", "apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]);
    ensure!(refused(other).await?.contains("own namespace only"));
    let mut wide = standard(&apps, "u", json!({}));
    wide["permissions"] = json!([{"namespace": "", "apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]);
    ensure!(refused(wide).await?.contains("own namespace only"));
    ensure!(refused(standard("kube-system", "u", json!({}))).await?.contains("cannot be a logical cloud's namespace"));
    ensure!(refused(json!({"type": "Standard", "namespace": apps})).await?.contains("needs `namespace` and `user`"));

    // A namespace that exists on the member and is not the logical cloud's: nothing goes in it.
    let taken = format!("{ns}-taken");
    let edge01 = bed.client("edge01").await;
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": taken}}))?;
    Api::<Namespace>::all(edge01.clone()).create(&PostParams::default(), &namespace).await?;
    apply_lc(&hub, &ns, "lc", standard(&taken, "u", json!({"pods": "1"})), &["edge01"]).await?;
    let status = wait_lc(&hub, &ns, "lc", "refused by edge01", READY, |s| {
        s.clusters.iter().any(|c| c.message.as_deref().is_some_and(|m| m.contains("not managed")))
    })
    .await?;
    ensure!(status.state != Some(LogicalCloudState::Instantiated), "{status:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    ensure!(
        Api::<Role>::namespaced(edge01.clone(), &taken).get_opt("emco-lc-lc").await?.is_none(),
        "a Role in {taken}"
    );
    ensure!(Api::<ResourceQuota>::namespaced(edge01.clone(), &taken).get_opt("emco-lc-lc").await?.is_none());

    // Type, namespace and user stay as made.
    apply_lc(&hub, &ns, "ok", standard(&apps, "u", json!({})), &["edge01"]).await?;
    let mut changed = standard(&format!("{apps}-2"), "u", json!({}));
    changed["clusters"] = json!([{"cluster": "edge01"}]);
    let patch = json!({"spec": changed});
    let api = Api::<emco::api::dcm::LogicalCloud>::namespaced(hub.clone(), &ns);
    let err = api.patch("ok", &PatchParams::default(), &Patch::Merge(patch)).await.expect_err("namespace changed");
    ensure!(err.to_string().contains("cannot change"), "{err}");
    hub_kubectl(&["delete", "project.orchestrator.emco.io", &ns, "--wait=false"])?;
    Api::<Namespace>::all(edge01).delete(&taken, &Default::default()).await?;
    Ok(())
}
