//! What a Standard or Privileged logical cloud puts on each of its members: the namespace, the
//! user's Roles and RoleBindings (a ClusterRole and ClusterRoleBinding for cluster-wide
//! permissions, Privileged only) and the ResourceQuota. Pure: one logical cloud, one set of objects.

use std::collections::BTreeMap;

use kube::ResourceExt;
use serde_json::{Value, json};

use crate::api::dcm::{LogicalCloud, Permission};
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

/// The name of its cluster-wide objects: unique across projects on a shared member.
fn cluster_wide_name(lc: &LogicalCloud) -> String {
    format!("emco-lc-{}-{}", lc.namespace().unwrap_or_default(), lc.name_any())
}

/// The objects of `lc` on every member, carrying the owner labels rsync checks before it touches
/// anything.
pub fn member_objects(lc: &LogicalCloud) -> Vec<Value> {
    let ns = lc.spec.namespace.clone().unwrap_or_default();
    let user = lc.member_user();
    let subject = json!([{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}]);
    let mut objects = vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})];
    for (namespace, rules) in rules_by_namespace(lc, &ns) {
        let (role_kind, binding_kind, name) = if namespace.is_empty() {
            ("ClusterRole", "ClusterRoleBinding", cluster_wide_name(lc))
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
    let owner = owner(lc);
    for obj in &mut objects {
        obj["metadata"]["labels"] = json!({
            labels::MANAGED_BY: labels::MANAGER,
            labels::PROJECT: lc.namespace().unwrap_or_default(),
            labels::DIG: owner.label(),
        });
    }
    objects
}

/// RBAC rules by the namespace they hold in (`""`: cluster-wide); no permissions given means
/// everything within the logical cloud's namespace.
fn rules_by_namespace(lc: &LogicalCloud, ns: &str) -> BTreeMap<String, Vec<Value>> {
    let everything = [Permission {
        namespace: None,
        api_groups: vec!["*".into()],
        resources: vec!["*".into()],
        verbs: vec!["*".into()],
    }];
    let permissions = if lc.spec.permissions.is_empty() { &everything[..] } else { &lc.spec.permissions[..] };
    let mut by_namespace: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for p in permissions {
        let namespace = p.namespace.clone().unwrap_or_else(|| ns.to_string());
        by_namespace.entry(namespace).or_default().push(json!({
            "apiGroups": p.api_groups, "resources": p.resources, "verbs": p.verbs,
        }));
    }
    by_namespace
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lc(yaml: &str) -> LogicalCloud {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn standard_gets_namespace_role_binding_and_quota_all_owned() {
        let lc = lc("{apiVersion: dcm.emco.io/v1alpha1, kind: LogicalCloud, metadata: {name: lc1, namespace: p},
            spec: {type: Standard, namespace: apps, user: {name: u}, quotas: {pods: '2'}, clusters: [{cluster: a}]}}");
        let objects = member_objects(&lc);
        let kinds: Vec<_> = objects.iter().map(|o| o["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["Namespace", "Role", "RoleBinding", "ResourceQuota"]);
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
        let objects = member_objects(&lc);
        let kinds: Vec<_> = objects.iter().map(|o| o["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["Namespace", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"]);
        assert_eq!(objects[1]["metadata"]["name"], "emco-lc-p-lc1");
        assert!(objects[1]["metadata"].get("namespace").is_none());
    }
}
