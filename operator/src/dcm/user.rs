//! A logical cloud's user on one member, made through the member's own CSR API. The key is made
//! on the hub and kept first (in the user's Secret in the project's namespace); then a CSR named
//! after that key goes to the member, dcm approves it, keeps the certificate the member issues
//! with a kubeconfig, and deletes the CSR. Each step finds what an earlier try left, so an operator
//! restart or an unreachable member only delays the user; it never makes a second one. Key,
//! certificate and kubeconfig go nowhere but that Secret: messages name them, never quote them.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestCondition};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::api::clm::Cluster;
use crate::api::dcm::{LogicalCloud, user_secret};
use crate::api::labels;
use crate::members::{Members, User};

/// The signer of client certificates every Kubernetes API server trusts.
const SIGNER: &str = "kubernetes.io/kube-apiserver-client";
/// Field manager of what dcm writes.
const MANAGER: &str = "emco-dcm";

/// Where a user stands on one member.
#[derive(Debug, Clone, PartialEq)]
pub enum UserState {
    /// The certificate is kept; it expires at this time.
    Issued { expiry: Timestamp, renewing: Option<String> },
    /// Not yet: what is under way or in the way.
    Pending(String),
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("hub API: {0}")]
    Hub(#[from] kube::Error),
}

/// How long a certificate is asked for, and when it is renewed (a third of it left).
#[derive(Debug, Clone, Copy)]
pub struct Lifetime {
    pub seconds: i64,
}

impl Lifetime {
    /// From `EMCO_LC_CERTIFICATE_SECONDS` (at least 600, the API's minimum), else 30 days.
    pub fn from_env() -> Self {
        let seconds = std::env::var("EMCO_LC_CERTIFICATE_SECONDS").ok().and_then(|s| s.parse().ok());
        Lifetime { seconds: seconds.unwrap_or(30 * 24 * 3600).max(600) }
    }

    /// Whether a certificate expiring at `expiry` is due for renewal at `now`.
    pub fn renew_due(&self, expiry: Timestamp, now: Timestamp) -> bool {
        expiry.as_second() - now.as_second() < self.seconds / 3
    }

    /// When a certificate expiring at `expiry` becomes due.
    pub fn renew_at(&self, expiry: Timestamp) -> i64 {
        expiry.as_second() - self.seconds / 3
    }
}

/// Moves the user of `lc` on `cluster` one step on; `client` is the member's admin client.
pub async fn ensure(
    hub: &kube::Client,
    members: &Members,
    lc: &LogicalCloud,
    cluster: &Cluster,
    lifetime: Lifetime,
) -> Result<UserState, UserError> {
    let ns = lc.namespace().unwrap_or_default();
    let secrets = Api::<Secret>::namespaced(hub.clone(), &ns);
    let name = user_secret::name(&lc.name_any(), &cluster.name_any());
    let secret = match secrets.get_opt(&name).await? {
        Some(s) => s,
        None => create_secret(&secrets, lc, cluster, &name).await?,
    };
    let data = secret.data.clone().unwrap_or_default();
    let Some(key) =
        data.get(user_secret::KEY).and_then(|k| rcgen::KeyPair::from_pem(&String::from_utf8_lossy(&k.0)).ok())
    else {
        // Someone emptied it: start over with a fresh key.
        secrets.delete(&name, &Default::default()).await?;
        return Ok(UserState::Pending("the user's key was missing; making a new one".into()));
    };
    let kept = data.get(user_secret::CERTIFICATE).and_then(|c| expiry_if_matches(&c.0, &key));
    let now = Timestamp::now();
    if let Some(expiry) = kept
        && !lifetime.renew_due(expiry, now)
    {
        return Ok(UserState::Issued { expiry, renewing: None });
    }
    let round = kept.map_or(0, |e| e.as_second());
    let step = request(members, lc, cluster, &secrets, &name, &key, round, lifetime).await;
    match (kept, step) {
        (_, Ok(issued @ UserState::Issued { .. })) => Ok(issued),
        (Some(expiry), Ok(UserState::Pending(m))) if expiry > now => {
            Ok(UserState::Issued { expiry, renewing: Some(m) })
        }
        (_, other) => other,
    }
}

/// The expiry of certificate `pem` when it is for `key`.
fn expiry_if_matches(pem: &[u8], key: &rcgen::KeyPair) -> Option<Timestamp> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let cert = pem.parse_x509().ok()?;
    if cert.public_key().raw != key.public_key_der().as_slice() {
        return None;
    }
    Timestamp::from_second(cert.validity().not_after.timestamp()).ok()
}

/// The user's Secret with a new key, owned by the logical cloud (it goes with it).
async fn create_secret(api: &Api<Secret>, lc: &LogicalCloud, cluster: &Cluster, name: &str) -> kube::Result<Secret> {
    let key = rcgen::KeyPair::generate().expect("ECDSA P-256 keys can be made");
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: lc.namespace(),
            labels: Some(BTreeMap::from([
                (labels::MANAGED_BY.into(), labels::MANAGER.into()),
                (user_secret::LOGICAL_CLOUD.into(), lc.name_any()),
                (user_secret::CLUSTER.into(), cluster.name_any()),
            ])),
            annotations: Some(BTreeMap::from([(user_secret::USER.into(), user_name(lc))])),
            owner_references: Some(vec![lc.controller_owner_ref(&()).expect("logical clouds have a uid")]),
            ..Default::default()
        },
        type_: Some(user_secret::TYPE.into()),
        data: Some(BTreeMap::from([(user_secret::KEY.into(), ByteString(key.serialize_pem().into_bytes()))])),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &secret).await {
        Err(kube::Error::Api(e)) if e.code == 409 => api.get(name).await,
        other => other,
    }
}

fn user_name(lc: &LogicalCloud) -> String {
    lc.spec.user.as_ref().map(|u| u.name.clone()).unwrap_or_default()
}

/// The CSR of `key` for renewal round `round` (0: the first certificate): its name is fixed by
/// both, so a retry finds the CSR an earlier try made.
fn csr_name(lc: &LogicalCloud, cluster: &str, key: &rcgen::KeyPair, round: i64) -> String {
    let id = format!("{}/{}/{cluster}/{round}/", lc.namespace().unwrap_or_default(), lc.name_any());
    let mut bytes = id.into_bytes();
    bytes.extend(key.public_key_der());
    format!("emco-lc-{}", crate::hex::digest(&bytes, 24))
}

/// One step of the CSR round-trip on the member.
#[allow(clippy::too_many_arguments)]
async fn request(
    members: &Members,
    lc: &LogicalCloud,
    cluster: &Cluster,
    secrets: &Api<Secret>,
    secret_name: &str,
    key: &rcgen::KeyPair,
    round: i64,
    lifetime: Lifetime,
) -> Result<UserState, UserError> {
    let member = match members.client(cluster).await {
        Ok(c) => c,
        Err(e) => return Ok(UserState::Pending(e.to_string())),
    };
    let csrs = Api::<CertificateSigningRequest>::all(member);
    let name = csr_name(lc, &cluster.name_any(), key, round);
    let unreachable = |e: kube::Error| UserState::Pending(format!("member {}: {e}", cluster.name_any()));
    let csr = match csrs.get_opt(&name).await {
        Ok(Some(csr)) => csr,
        Ok(None) => {
            let made = csrs.create(&PostParams::default(), &new_csr(&name, lc, key, lifetime)).await;
            return Ok(match made {
                Ok(_) => UserState::Pending("certificate requested from the member".into()),
                Err(e) => unreachable(e),
            });
        }
        Err(e) => return Ok(unreachable(e)),
    };
    let status = csr.status.clone().unwrap_or_default();
    let conditions = status.conditions.unwrap_or_default();
    if let Some(c) = conditions.iter().find(|c| c.type_ == "Denied" || c.type_ == "Failed") {
        let message =
            format!("the member refused the certificate ({}: {})", c.type_, c.message.clone().unwrap_or_default());
        let _ = csrs.delete(&name, &Default::default()).await;
        return Ok(UserState::Pending(message));
    }
    if let Some(certificate) = status.certificate.filter(|c| !c.0.is_empty()) {
        let Some(expiry) = expiry_if_matches(&certificate.0, key) else {
            let _ = csrs.delete(&name, &Default::default()).await;
            return Ok(UserState::Pending("the member issued a certificate for another key; asking again".into()));
        };
        keep(members, lc, cluster, secrets, secret_name, key, &certificate.0).await?;
        let _ = csrs.delete(&name, &Default::default()).await;
        return Ok(UserState::Issued { expiry, renewing: None });
    }
    if !conditions.iter().any(|c| c.type_ == "Approved") {
        let approval = json!({"status": {"conditions": [CertificateSigningRequestCondition {
            type_: "Approved".into(), status: "True".into(), reason: Some("EmcoLogicalCloud".into()),
            message: Some(format!("user of logical cloud {}/{}", lc.namespace().unwrap_or_default(), lc.name_any())),
            ..Default::default()
        }]}});
        if let Err(e) = csrs.patch_approval(&name, &PatchParams::default(), &Patch::Merge(approval)).await {
            return Ok(unreachable(e));
        }
        return Ok(UserState::Pending("certificate approved; waiting for the member to sign it".into()));
    }
    Ok(UserState::Pending("waiting for the member to sign the certificate".into()))
}

fn new_csr(name: &str, lc: &LogicalCloud, key: &rcgen::KeyPair, lifetime: Lifetime) -> CertificateSigningRequest {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("no names to check");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, user_name(lc));
    let pem = params.serialize_request(key).and_then(|r| r.pem()).expect("a CSR of a usable key serializes");
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {labels::MANAGED_BY: labels::MANAGER}},
        "spec": {
            "request": ByteString(pem.into_bytes()),
            "signerName": SIGNER,
            "usages": ["client auth", "digital signature"],
            "expirationSeconds": lifetime.seconds,
        }
    }))
    .expect("a valid CertificateSigningRequest")
}

/// Keeps the issued certificate, and the kubeconfig made from it, in the user's Secret.
async fn keep(
    members: &Members,
    lc: &LogicalCloud,
    cluster: &Cluster,
    secrets: &Api<Secret>,
    secret_name: &str,
    key: &rcgen::KeyPair,
    certificate: &[u8],
) -> Result<(), UserError> {
    let key_pem = key.serialize_pem();
    let name = user_name(lc);
    let namespace = lc.spec.namespace.clone().unwrap_or_default();
    let user = User { name: &name, namespace: &namespace, certificate, key: key_pem.as_bytes() };
    let mut data = BTreeMap::from([(user_secret::CERTIFICATE.to_string(), ByteString(certificate.to_vec()))]);
    if let Ok(kubeconfig) = members.user_kubeconfig_yaml(cluster, &user) {
        data.insert(user_secret::KUBECONFIG.into(), ByteString(kubeconfig.into_bytes()));
    }
    let patch = json!({"data": data});
    secrets
        .patch(
            secret_name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret_name}, "data": patch["data"],
            })),
        )
        .await?;
    Ok(())
}

/// Deletes the CSRs dcm made for `lc` on `cluster` that are still there (best effort: the member
/// may be gone), and the user's Secret.
pub async fn forget(hub: &kube::Client, members: &Members, lc: &LogicalCloud, cluster: &Cluster) -> kube::Result<()> {
    let ns = lc.namespace().unwrap_or_default();
    let secrets = Api::<Secret>::namespaced(hub.clone(), &ns);
    let name = user_secret::name(&lc.name_any(), &cluster.name_any());
    if let Some(secret) = secrets.get_opt(&name).await?
        && let Some(key) = secret.data.as_ref().and_then(|d| d.get(user_secret::KEY))
        && let Ok(key) = rcgen::KeyPair::from_pem(&String::from_utf8_lossy(&key.0))
        && let Ok(member) = members.client(cluster).await
    {
        let round = secret
            .data
            .as_ref()
            .and_then(|d| d.get(user_secret::CERTIFICATE))
            .and_then(|c| expiry_if_matches(&c.0, &key))
            .map_or(0, |e| e.as_second());
        let csrs = Api::<CertificateSigningRequest>::all(member);
        for r in [0, round] {
            let _ = csrs.delete(&csr_name(lc, &cluster.name_any(), &key, r), &Default::default()).await;
        }
    }
    match secrets.delete(&name, &Default::default()).await {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => other.map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_with_a_third_of_the_lifetime_left() {
        let lifetime = Lifetime { seconds: 3000 };
        let now = Timestamp::from_second(1_000_000).unwrap();
        assert!(!lifetime.renew_due(Timestamp::from_second(1_001_001).unwrap(), now));
        assert!(lifetime.renew_due(Timestamp::from_second(1_000_999).unwrap(), now));
    }

    #[test]
    fn the_csr_name_is_fixed_by_key_and_round() {
        let lc: LogicalCloud = serde_saphyr::from_str(
            "{apiVersion: dcm.emco.io/v1alpha1, kind: LogicalCloud, metadata: {name: l, namespace: p}, spec: {clusters: [{cluster: a}]}}",
        )
        .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        assert_eq!(csr_name(&lc, "a", &key, 0), csr_name(&lc, "a", &key, 0));
        assert_ne!(csr_name(&lc, "a", &key, 0), csr_name(&lc, "a", &key, 5));
        assert_ne!(csr_name(&lc, "a", &key, 0), csr_name(&lc, "a", &other, 0));
        assert_ne!(csr_name(&lc, "a", &key, 0), csr_name(&lc, "b", &key, 0));
    }

    #[test]
    fn a_certificate_for_another_key_is_not_taken() {
        let key = rcgen::KeyPair::generate().unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["u".into()]).unwrap().self_signed(&key).unwrap();
        assert!(expiry_if_matches(cert.pem().as_bytes(), &key).is_some());
        assert!(expiry_if_matches(cert.pem().as_bytes(), &other).is_none());
    }
}
