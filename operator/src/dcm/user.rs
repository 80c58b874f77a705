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
    /// The certificate is kept; it expires at `expiry` and is renewed from `renew_at` (seconds).
    Issued { expiry: Timestamp, renew_at: i64, renewing: Option<String> },
    /// Not yet: what is under way.
    Pending(String),
    /// Not yet, and not soon: the member is unreachable or refused (tried again in 30 s).
    Refused(String),
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
    /// From `EMCO_LC_CERTIFICATE_SECONDS` (at least 600, the API's minimum; at most ten years),
    /// else 30 days.
    pub fn from_env() -> Self {
        let seconds = std::env::var("EMCO_LC_CERTIFICATE_SECONDS").ok().and_then(|s| s.parse().ok());
        Lifetime { seconds: seconds.unwrap_or(30 * 24 * 3600).clamp(600, 10 * 365 * 24 * 3600) }
    }
}

/// When a certificate holds: renewed with a third of its own validity left (a member's signer
/// may have shortened what was asked for).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

impl Validity {
    pub fn renew_at(&self) -> i64 {
        self.not_before + (self.not_after - self.not_before) * 2 / 3
    }

    fn expiry(&self) -> Timestamp {
        Timestamp::from_second(self.not_after).unwrap_or(Timestamp::MAX)
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
    let labels = secret.labels();
    if labels.get(user_secret::LOGICAL_CLOUD) != Some(&lc.name_any())
        || labels.get(user_secret::CLUSTER) != Some(&cluster.name_any())
    {
        return Ok(UserState::Pending(format!(
            "Secret {name} exists and is not this logical cloud's user on this cluster"
        )));
    }
    let data = secret.data.clone().unwrap_or_default();
    let key = data.get(user_secret::KEY).and_then(|k| rcgen::KeyPair::from_pem(&String::from_utf8_lossy(&k.0)).ok());
    let Some(key) = key.filter(|k| k.algorithm() == &rcgen::PKCS_ECDSA_P256_SHA256) else {
        // Emptied or replaced by hand: start over with a fresh key.
        secrets.delete(&name, &Default::default()).await?;
        return Ok(UserState::Pending("the user's key was missing or not dcm's; making a new one".into()));
    };
    let user = lc.member_user();
    let kept = data.get(user_secret::CERTIFICATE).and_then(|c| validity_if_ours(&c.0, &key, &user));
    let now = Timestamp::now().as_second();
    if let Some(v) = kept
        && now < v.renew_at()
    {
        return Ok(UserState::Issued { expiry: v.expiry(), renew_at: v.renew_at(), renewing: None });
    }
    let round = kept.map_or(0, |v| v.not_after);
    let step = request(members, lc, cluster, &secrets, &key, round, lifetime).await;
    match (kept, step) {
        (_, Ok(issued @ UserState::Issued { .. })) => Ok(issued),
        (Some(v), Ok(UserState::Pending(m) | UserState::Refused(m))) if v.not_after > now => {
            Ok(UserState::Issued { expiry: v.expiry(), renew_at: now + 5, renewing: Some(m) })
        }
        (_, other) => other,
    }
}

/// When certificate `pem` holds, if it is for `key` and names `user` (and nothing else).
fn validity_if_ours(pem: &[u8], key: &rcgen::KeyPair, user: &str) -> Option<Validity> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let cert = pem.parse_x509().ok()?;
    if cert.public_key().raw != key.public_key_der().as_slice() || !only_common_name(cert.subject(), user) {
        return None;
    }
    let validity = cert.validity();
    Some(Validity { not_before: validity.not_before.timestamp(), not_after: validity.not_after.timestamp() })
}

/// Whether `name` is exactly `CN=<user>`: no organization (a group on the member), nothing else.
fn only_common_name(name: &x509_parser::x509::X509Name, user: &str) -> bool {
    let attributes: Vec<_> = name.iter_attributes().collect();
    attributes.len() == 1
        && attributes[0].attr_type() == &x509_parser::oid_registry::OID_X509_COMMON_NAME
        && attributes[0].as_str().ok() == Some(user)
}

/// Why the CSR found under dcm's name is not the one dcm made, if it is not: it must ask the
/// client signer for exactly `CN=<user>`, for dcm's key, with no extensions, client usages and
/// no longer than asked. Anyone allowed to create CSRs on the member could have put one there.
fn foreign(
    csr: &CertificateSigningRequest,
    key: &rcgen::KeyPair,
    user: &str,
    lifetime: Lifetime,
) -> Option<&'static str> {
    use x509_parser::prelude::FromDer;
    let spec = &csr.spec;
    if spec.signer_name != SIGNER {
        return Some("another signer");
    }
    if spec
        .usages
        .iter()
        .flatten()
        .any(|u| !["client auth", "digital signature", "key encipherment"].contains(&u.as_str()))
    {
        return Some("other usages");
    }
    if spec.expiration_seconds.is_some_and(|s| i64::from(s) > lifetime.seconds) {
        return Some("a longer lifetime");
    }
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(&spec.request.0) else { return Some("an unreadable request") };
    let Ok((_, request)) = x509_parser::certification_request::X509CertificationRequest::from_der(&pem.contents) else {
        return Some("an unreadable request");
    };
    let info = &request.certification_request_info;
    if info.subject_pki.raw != key.public_key_der().as_slice() {
        return Some("another key");
    }
    if !only_common_name(&info.subject, user) {
        return Some("another subject");
    }
    if request.requested_extensions().is_some_and(|mut e| e.next().is_some()) {
        return Some("extensions");
    }
    None
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
            annotations: Some(BTreeMap::from([(user_secret::USER.into(), lc.member_user())])),
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

/// The CSR of `key` for renewal round `round` (0: the first certificate): its name is fixed by
/// both, so a retry finds the CSR an earlier try made.
fn csr_name(lc: &LogicalCloud, cluster: &str, key: &rcgen::KeyPair, round: i64) -> String {
    let id = format!("{}/{}/{cluster}/{round}/", lc.namespace().unwrap_or_default(), lc.name_any());
    let mut bytes = id.into_bytes();
    bytes.extend(key.public_key_der());
    format!("emco-lc-{}", crate::hex::digest(&bytes, 24))
}

/// One step of the CSR round-trip on the member.
async fn request(
    members: &Members,
    lc: &LogicalCloud,
    cluster: &Cluster,
    secrets: &Api<Secret>,
    key: &rcgen::KeyPair,
    round: i64,
    lifetime: Lifetime,
) -> Result<UserState, UserError> {
    let member = match members.client(cluster).await {
        Ok(c) => c,
        Err(e) => return Ok(UserState::Refused(e.to_string())),
    };
    let csrs = Api::<CertificateSigningRequest>::all(member);
    let name = csr_name(lc, &cluster.name_any(), key, round);
    let unreachable = |e: kube::Error| UserState::Refused(format!("member {}: {e}", cluster.name_any()));
    let csr = match csrs.get_opt(&name).await {
        Ok(Some(csr)) => csr,
        Ok(None) => {
            let Some(csr) = new_csr(&name, lc, key, lifetime) else {
                return Ok(UserState::Refused("the user's key cannot sign a request".into()));
            };
            let made = csrs.create(&PostParams::default(), &csr).await;
            return Ok(match made {
                Ok(_) => UserState::Pending("certificate requested from the member".into()),
                Err(e) => unreachable(e),
            });
        }
        Err(e) => return Ok(unreachable(e)),
    };
    if let Some(why) = foreign(&csr, key, &lc.member_user(), lifetime) {
        tracing::warn!(cluster = %cluster.name_any(), csr = %name, why, "deleted a CSR dcm did not make");
        let _ = csrs.delete(&name, &Default::default()).await;
        return Ok(UserState::Refused(format!("a CSR dcm did not make was at {name} ({why}); deleted")));
    }
    let status = csr.status.clone().unwrap_or_default();
    let conditions = status.conditions.unwrap_or_default();
    if let Some(c) = conditions.iter().find(|c| c.type_ == "Denied" || c.type_ == "Failed") {
        let message =
            format!("the member refused the certificate ({}: {})", c.type_, c.message.clone().unwrap_or_default());
        let _ = csrs.delete(&name, &Default::default()).await;
        return Ok(UserState::Refused(message));
    }
    if let Some(certificate) = status.certificate.filter(|c| !c.0.is_empty()) {
        let Some(validity) = validity_if_ours(&certificate.0, key, &lc.member_user()) else {
            let _ = csrs.delete(&name, &Default::default()).await;
            return Ok(UserState::Pending("the member issued a certificate for another key; asking again".into()));
        };
        // The CSR goes first: stopped in between, the next pass asks again (same key, same name)
        // rather than leave an issued CSR behind for good.
        let _ = csrs.delete(&name, &Default::default()).await;
        keep(members, lc, cluster, secrets, key, &certificate.0).await?;
        return Ok(UserState::Issued { expiry: validity.expiry(), renew_at: validity.renew_at(), renewing: None });
    }
    if !conditions.iter().any(|c| c.type_ == "Approved") {
        // Preconditions: only the very CSR checked above is approved, not one put in its place since.
        let approval = json!({"metadata": {"uid": csr.metadata.uid, "resourceVersion": csr.metadata.resource_version},
            "status": {"conditions": [CertificateSigningRequestCondition {
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

fn new_csr(
    name: &str,
    lc: &LogicalCloud,
    key: &rcgen::KeyPair,
    lifetime: Lifetime,
) -> Option<CertificateSigningRequest> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).ok()?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, lc.member_user());
    let pem = params.serialize_request(key).and_then(|r| r.pem()).ok()?;
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {labels::MANAGED_BY: labels::MANAGER}},
        "spec": {
            "request": ByteString(pem.into_bytes()),
            "signerName": SIGNER,
            "usages": ["client auth", "digital signature"],
            "expirationSeconds": lifetime.seconds,
        }
    }))
    .ok()
}

/// Keeps the issued certificate, and the kubeconfig made from it, in the user's Secret.
async fn keep(
    members: &Members,
    lc: &LogicalCloud,
    cluster: &Cluster,
    secrets: &Api<Secret>,
    key: &rcgen::KeyPair,
    certificate: &[u8],
) -> Result<(), UserError> {
    let secret_name = user_secret::name(&lc.name_any(), &cluster.name_any());
    let key_pem = key.serialize_pem();
    let name = lc.member_user();
    let namespace = lc.spec.namespace.clone().unwrap_or_default();
    let user = User { name: &name, namespace: &namespace, certificate, key: key_pem.as_bytes() };
    let mut data = BTreeMap::from([(user_secret::CERTIFICATE.to_string(), ByteString(certificate.to_vec()))]);
    if let Ok(kubeconfig) = members.user_kubeconfig_yaml(cluster, &user) {
        data.insert(user_secret::KUBECONFIG.into(), ByteString(kubeconfig.into_bytes()));
    }
    let patch = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret_name}, "data": data});
    secrets.patch(&secret_name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(patch)).await?;
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
            .and_then(|c| validity_if_ours(&c.0, &key, &lc.member_user()))
            .map_or(0, |v| v.not_after);
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
    fn renewal_is_due_with_a_third_of_the_certificates_own_validity_left() {
        let v = Validity { not_before: 1_000, not_after: 4_000 };
        assert_eq!(v.renew_at(), 3_000);
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
    fn a_certificate_for_another_key_or_subject_is_not_taken() {
        let key = rcgen::KeyPair::generate().unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        let cert = |cn: &str, org: Option<&str>| {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name = rcgen::DistinguishedName::new();
            params.distinguished_name.push(rcgen::DnType::CommonName, cn);
            if let Some(o) = org {
                params.distinguished_name.push(rcgen::DnType::OrganizationName, o);
            }
            params.self_signed(&key).unwrap().pem()
        };
        assert!(validity_if_ours(cert("emco:p:u", None).as_bytes(), &key, "emco:p:u").is_some());
        assert!(validity_if_ours(cert("emco:p:u", None).as_bytes(), &other, "emco:p:u").is_none());
        assert!(validity_if_ours(cert("emco:p:v", None).as_bytes(), &key, "emco:p:u").is_none());
        assert!(validity_if_ours(cert("emco:p:u", Some("system:masters")).as_bytes(), &key, "emco:p:u").is_none());
    }

    fn csr_of(pem: &str, signer: &str) -> CertificateSigningRequest {
        serde_json::from_value(json!({"metadata": {"name": "x"}, "spec": {
            "request": ByteString(pem.as_bytes().to_vec()), "signerName": signer, "usages": ["client auth"]}}))
        .unwrap()
    }

    #[test]
    fn only_the_csr_dcm_would_make_is_approved() {
        let lc: LogicalCloud = serde_saphyr::from_str(
            "{apiVersion: dcm.emco.io/v1alpha1, kind: LogicalCloud, metadata: {name: l, namespace: p},
              spec: {type: Standard, namespace: n, user: {name: u}, clusters: [{cluster: a}]}}",
        )
        .unwrap();
        let (key, other) = (rcgen::KeyPair::generate().unwrap(), rcgen::KeyPair::generate().unwrap());
        let lifetime = Lifetime { seconds: 3600 };
        let ours = new_csr("x", &lc, &key, lifetime).unwrap();
        assert_eq!(foreign(&ours, &key, "emco:p:u", lifetime), None);
        assert_eq!(foreign(&ours, &other, "emco:p:u", lifetime), Some("another key"));
        let request = |org: Option<&str>| {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name = rcgen::DistinguishedName::new();
            params.distinguished_name.push(rcgen::DnType::CommonName, "emco:p:u");
            if let Some(o) = org {
                params.distinguished_name.push(rcgen::DnType::OrganizationName, o);
            }
            params.serialize_request(&key).unwrap().pem().unwrap()
        };
        let with_group = csr_of(&request(Some("kubeadm:cluster-admins")), SIGNER);
        assert_eq!(foreign(&with_group, &key, "emco:p:u", lifetime), Some("another subject"));
        let other_signer = csr_of(&request(None), "kubernetes.io/kubelet-serving");
        assert_eq!(foreign(&other_signer, &key, "emco:p:u", lifetime), Some("another signer"));
        assert_eq!(foreign(&csr_of(&request(None), SIGNER), &key, "emco:p:u", lifetime), None);
    }
}
