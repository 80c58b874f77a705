//! What a Standard or Privileged logical cloud puts on each of its members: the namespace (with
//! its Pod Security level), the user's Roles and RoleBindings (a ClusterRole and
//! ClusterRoleBinding for cluster-wide permissions, Privileged only) and the ResourceQuota. Pure:
//! one logical cloud and what a member serves, one set of objects.
//!
//! A Standard cloud is a boundary: its user never reaches its own ResourceQuota, LimitRange, Role,
//! RoleBinding or Namespace. RBAC cannot deny, so a `*` in a rule's resources is expanded from the
//! member's discovery to every namespaced resource of the rule's groups but those ([`PROTECTED`]);
//! rules naming them are refused at apply.

use std::collections::BTreeMap;

use kube::ResourceExt;
use serde_json::{Value, json};

use crate::api::dcm::{LogicalCloud, LogicalCloudType, Permission};
use crate::api::labels;
use crate::api::rsync::Owner;

/// The rsync owner of a logical cloud's AppContexts.
pub fn owner(lc: &LogicalCloud) -> Owner {
    Owner { kind: "LogicalCloud".into(), name: lc.name_any() }
}

/// The name of the member objects of `lc` within its namespace.
fn local_name(lc: &LogicalCloud) -> String {
    format!("emco-lc-{}", lc.name_any())
}

/// The name of its cluster-wide objects: unique across projects on a shared member (the hash of
/// project and name tells `a` + `b-c` from `a-b` + `c`).
pub fn cluster_wide_name(project_namespace: &str, lc: &str) -> String {
    let hash = crate::hex::digest(format!("{project_namespace}/{lc}").as_bytes(), 10);
    format!("emco-lc-{project_namespace}-{lc}-{hash}")
}

/// What a member serves: its namespaced resources by API group (`""`: core).
pub type Served = BTreeMap<String, Vec<String>>;

/// Resources a Standard cloud's user never gets, by group: what would let it out of its limits.
pub const PROTECTED: [(&str, &str); 4] = [
    ("", "resourcequotas"),
    ("", "limitranges"),
    ("rbac.authorization.k8s.io", "roles"),
    ("rbac.authorization.k8s.io", "rolebindings"),
];

/// The objects of `lc` on a member serving `served`, carrying the owner labels rsync checks before
/// it touches anything.
pub fn member_objects(lc: &LogicalCloud, served: &Served) -> Vec<Value> {
    let ns = lc.spec.namespace.clone().unwrap_or_default();
    let user = lc.member_user();
    let subject = json!([{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}]);
    let level = lc.spec.pod_security.unwrap_or_default().as_str();
    let pod_security: serde_json::Map<String, Value> = ["enforce", "audit", "warn"]
        .iter()
        .map(|mode| (format!("pod-security.kubernetes.io/{mode}"), json!(level)))
        .collect();
    let mut objects =
        vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": pod_security}})];
    for (namespace, rules) in rules_by_namespace(lc, &ns, served) {
        let (role_kind, binding_kind, name) = if namespace.is_empty() {
            (
                "ClusterRole",
                "ClusterRoleBinding",
                cluster_wide_name(&lc.namespace().unwrap_or_default(), &lc.name_any()),
            )
        } else {
            ("Role", "RoleBinding", local_name(lc))
        };
        let mut meta = json!({"name": name});
        if !namespace.is_empty() {
            meta["namespace"] = json!(namespace);
        }
        objects.push(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": role_kind, "metadata": meta, "rules": rules}),
        );
        objects.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": binding_kind, "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": name},
            "subjects": subject,
        }));
    }
    if !lc.spec.quotas.is_empty() {
        objects.push(json!({
            "apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": {"name": local_name(lc), "namespace": ns},
            "spec": {"hard": lc.spec.quotas},
        }));
    }
    let (project, dig) = (lc.namespace().unwrap_or_default(), owner(lc).label());
    objects.iter_mut().for_each(|obj| labels::own(obj, &project, &dig, None));
    objects
}

/// RBAC rules by the namespace they hold in (`""`: cluster-wide); no permissions given means
/// everything within the logical cloud's namespace. A Standard cloud's rules are expanded
/// ([`expand`]).
fn rules_by_namespace(lc: &LogicalCloud, ns: &str, served: &Served) -> BTreeMap<String, Vec<Value>> {
    let everything = [Permission {
        namespace: None,
        api_groups: vec!["*".into()],
        resources: vec!["*".into()],
        verbs: vec!["*".into()],
    }];
    let permissions = if lc.spec.permissions.is_empty() { &everything[..] } else { &lc.spec.permissions[..] };
    let standard = lc.spec.type_ == LogicalCloudType::Standard;
    let mut by_namespace: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for p in permissions {
        let namespace = p.namespace.clone().unwrap_or_else(|| ns.to_string());
        let rules = by_namespace.entry(namespace).or_default();
        if !standard {
            rules.push(json!({"apiGroups": p.api_groups, "resources": p.resources, "verbs": p.verbs}));
            continue;
        }
        rules.extend(
            expand(p, served)
                .into_iter()
                .map(|(group, resources)| json!({"apiGroups": [group], "resources": resources, "verbs": p.verbs})),
        );
    }
    by_namespace.retain(|_, rules| !rules.is_empty());
    by_namespace
}

/// A Standard cloud's rule as one rule per group: `*` in groups or resources replaced by what the
/// member serves, [`PROTECTED`] resources (and their subresources) left out.
fn expand(p: &Permission, served: &Served) -> BTreeMap<String, Vec<String>> {
    let groups: Vec<&String> =
        if p.api_groups.iter().any(|g| g == "*") { served.keys().collect() } else { p.api_groups.iter().collect() };
    let protected = |group: &str, resource: &str| {
        let base = resource.split('/').next().unwrap_or_default();
        PROTECTED.iter().any(|(g, r)| *g == group && *r == base)
    };
    let mut by_group = BTreeMap::new();
    for group in groups {
        let resources: Vec<String> = if p.resources.iter().any(|r| r == "*") {
            served.get(group).into_iter().flatten().cloned().collect()
        } else {
            p.resources.clone()
        };
        let kept: Vec<String> = resources.into_iter().filter(|r| !protected(group, r)).collect();
        if !kept.is_empty() {
            by_group.insert(group.clone(), kept);
        }
    }
    by_group
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lc(yaml: &str) -> LogicalCloud {
        serde_saphyr::from_str(yaml).unwrap()
    }

    /// A member serving pods (with subresources), quotas, limit ranges, deployments, RBAC and a CRD.
    fn served() -> Served {
        let list = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        BTreeMap::from([
            (
                "".to_string(),
                list(&["configmaps", "limitranges", "pods", "pods/log", "resourcequotas", "resourcequotas/status"]),
            ),
            ("apps".to_string(), list(&["deployments", "deployments/scale"])),
            ("rbac.authorization.k8s.io".to_string(), list(&["rolebindings", "roles"])),
            ("example.com".to_string(), list(&["widgets"])),
        ])
    }

    #[test]
    fn standard_gets_namespace_role_binding_and_quota_all_owned() {
        let lc = lc("{apiVersion: dcm.emco.io/v1alpha1, kind: LogicalCloud, metadata: {name: lc1, namespace: p},
            spec: {type: Standard, namespace: apps, user: {name: u}, quotas: {pods: '2'}, clusters: [{cluster: a}]}}");
        let objects = member_objects(&lc, &served());
        let kinds: Vec<_> = objects.iter().map(|o| o["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["Namespace", "Role", "RoleBinding", "ResourceQuota"]);
        assert_eq!(objects[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "baseline");
        assert_eq!(objects[1]["rules"][0]["verbs"], json!(["*"]));
        assert_eq!(objects[1]["metadata"]["namespace"], "apps");
        assert_eq!(objects[2]["subjects"][0]["name"], "emco:p:u");
        assert_eq!(objects[3]["spec"]["hard"]["pods"], "2");
        assert!(objects.iter().all(|o| o["metadata"]["labels"][labels::DIG] == "lc_lc1"));
    }

    #[test]
    fn cluster_wide_permissions_become_a_cluster_role_named_per_project() {
        let lc = lc("{apiVersion: dcm.emco.io/v1alpha1, kind: LogicalCloud, metadata: {name: lc1, namespace: p},
            spec: {type: Privileged, namespace: apps, user: {name: u}, clusters: [{cluster: a}],
              permissions: [{namespace: '', apiGroups: [rbac.authorization.k8s.io], resources: [clusterroles], verbs: ['*']},
                            {apiGroups: [''], resources: [pods], verbs: [get]}]}}");
        let objects = member_objects(&lc, &served());
        let kinds: Vec<_> = objects.iter().map(|o| o["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["Namespace", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"]);
        assert!(objects[1]["metadata"]["name"].as_str().unwrap().starts_with("emco-lc-p-lc1-"));
        assert_ne!(cluster_wide_name("a", "b-c"), cluster_wide_name("a-b", "c"));
        assert!(objects[1]["metadata"].get("namespace").is_none());
    }

    #[test]
    fn a_standard_star_is_expanded_without_what_would_let_the_user_out() {
        let lc = lc("{apiVersion: dcm.emco.io/v1alpha1, kind: LogicalCloud, metadata: {name: lc1, namespace: p},
            spec: {type: Standard, namespace: apps, user: {name: u}, podSecurity: restricted, clusters: [{cluster: a}],
              permissions: [{apiGroups: ['', apps], resources: ['*'], verbs: [get]}]}}");
        let objects = member_objects(&lc, &served());
        let rules = &objects[1]["rules"];
        assert_eq!(
            rules[0],
            json!({"apiGroups": [""], "resources": ["configmaps", "pods", "pods/log"], "verbs": ["get"]})
        );
        assert_eq!(rules[1]["resources"], json!(["deployments", "deployments/scale"]));
        assert_eq!(objects[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "restricted");
        // No permissions: every served group, still without quota, limits and RBAC.
        let all = lc.clone();
        let all = LogicalCloud { spec: crate::api::dcm::LogicalCloudSpec { permissions: vec![], ..all.spec }, ..all };
        let objects = member_objects(&all, &served());
        let text = objects[1]["rules"].to_string();
        assert!(text.contains("widgets") && text.contains("pods/log"), "{text}");
        for never in ["resourcequotas", "limitranges", "\"roles\"", "rolebindings", "namespaces"] {
            assert!(!text.contains(never), "{never} in {text}");
        }
    }
}
