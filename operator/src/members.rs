//! Clients for member clusters, built from the kubeconfig Secret each Cluster names, cached per
//! cluster and rebuilt when that Secret changes. Also caches what each member serves (discovery).
//! Kubeconfig content never leaves this module: errors say where it was, never what it holds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiResource, Scope, pinned_kind};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Config, ResourceExt};

use crate::api::clm::Cluster;

#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error("kubeconfig Secret {namespace}/{name} must be in the operator's namespace {operator}")]
    SecretOutsideOperatorNamespace { namespace: String, name: String, operator: String },
    #[error("kubeconfig Secret {namespace}/{name} not found")]
    SecretNotFound { namespace: String, name: String },
    #[error("kubeconfig Secret {namespace}/{name} has no key {key}")]
    KeyMissing { namespace: String, name: String, key: String },
    #[error("kubeconfig in Secret {namespace}/{name} key {key} is not a usable kubeconfig: {reason}")]
    Invalid { namespace: String, name: String, key: String, reason: String },
    #[error("cluster {cluster} is reached through Git: it has no kubeconfig")]
    ReachedThroughGit { cluster: String },
    #[error("Git credentials Secret {namespace}/{name} must be in the operator's namespace {operator}")]
    CredentialsNamespace { namespace: String, name: String, operator: String },
    #[error("Git credentials Secret {namespace}/{name} not found")]
    CredentialsNotFound { namespace: String, name: String },
    #[error("Git credentials Secret {namespace}/{name} holds neither `password` nor `token`")]
    CredentialsIncomplete { namespace: String, name: String },
    #[error(
        "kubeconfig in Secret {namespace}/{name} key {key} uses `{field}`, which is refused: only inline data is \
         accepted (server, certificate-authority-data, client-certificate-data, client-key-data, token)"
    )]
    Refused { namespace: String, name: String, key: String, field: String },
}

impl MemberError {
    /// The condition reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            MemberError::SecretOutsideOperatorNamespace { .. } => "KubeconfigSecretNamespace",
            MemberError::SecretNotFound { .. } => "KubeconfigSecretNotFound",
            MemberError::KeyMissing { .. } => "KubeconfigKeyMissing",
            MemberError::Invalid { .. } => "KubeconfigInvalid",
            MemberError::Refused { .. } => "KubeconfigFieldRefused",
            MemberError::ReachedThroughGit { .. } => "ReachedThroughGit",
            MemberError::CredentialsNamespace { .. } => "CredentialsSecretNamespace",
            MemberError::CredentialsNotFound { .. } => "CredentialsSecretNotFound",
            MemberError::CredentialsIncomplete { .. } => "CredentialsIncomplete",
        }
    }
}

/// A kind as a member serves it.
#[derive(Clone, Debug)]
pub struct ServedKind {
    pub resource: ApiResource,
    pub namespaced: bool,
}

/// By member and kind: how the member serves it, once asked.
type Kinds = HashMap<(String, GroupVersionKind), Arc<tokio::sync::OnceCell<Result<ServedKind, KindFailure>>>>;

/// Why a member did not say how it serves a kind: its answer, or what went wrong on the way.
#[derive(Clone)]
enum KindFailure {
    Api(Box<kube::core::Status>),
    Other(String),
}

struct CachedClient {
    secret_version: String,
    client: Client,
    /// For the member watches: a watch waits longer than a request may.
    watch: Client,
}

/// Member clients and discovery, shared by clm and rsync.
#[derive(Clone)]
pub struct Members {
    operator_namespace: String,
    secrets: Store<Secret>,
    clients: Arc<Mutex<HashMap<String, CachedClient>>>,
    kinds: Arc<Mutex<Kinds>>,
    /// Clients of logical cloud users, by cluster, user and credentials version.
    users: Arc<Mutex<HashMap<String, Client>>>,
}

impl Members {
    /// `secrets` is a reflector over Secrets in the operator's namespace.
    pub fn new(operator_namespace: String, secrets: Store<Secret>) -> Self {
        Members {
            operator_namespace,
            secrets,
            clients: Default::default(),
            kinds: Default::default(),
            users: Default::default(),
        }
    }

    /// Whether the kubeconfig Secrets have been listed once (before that, every Secret looks
    /// missing).
    pub fn synced(&self) -> bool {
        futures::FutureExt::now_or_never(self.secrets.wait_until_ready()).is_some()
    }

    /// A client for `cluster`, from cache unless its kubeconfig Secret changed.
    pub async fn client(&self, cluster: &Cluster) -> Result<Client, MemberError> {
        let r = kubeconfig_ref(cluster)?;
        let secret = self.admin_secret(cluster)?;
        let version = format!("{}/{}", secret.resource_version().unwrap_or_default(), r.key);
        let name = cluster.name_any();
        if let Some(cached) = self.clients.lock().unwrap().get(&name)
            && cached.secret_version == version
        {
            return Ok(cached.client.clone());
        }
        let kubeconfig = admin_kubeconfig(cluster, &secret)?;
        let client = client_from(cluster, kubeconfig.clone(), REQUEST_READ_TIMEOUT).await?;
        let watch = client_from(cluster, kubeconfig, WATCH_READ_TIMEOUT).await?;
        self.kinds.lock().unwrap().retain(|(c, _), _| c != &name);
        let cached = CachedClient { secret_version: version, client: client.clone(), watch };
        self.clients.lock().unwrap().insert(name, cached);
        Ok(client)
    }

    /// The client for the watches on `cluster` (built with its request client).
    pub fn watch_client(&self, cluster: &str) -> Option<Client> {
        self.clients.lock().unwrap().get(cluster).map(|c| c.watch.clone())
    }

    /// The version of the kubeconfig the cached client of `cluster` was built from.
    pub fn client_key(&self, cluster: &str) -> String {
        self.clients.lock().unwrap().get(cluster).map(|c| c.secret_version.clone()).unwrap_or_default()
    }

    /// How `cluster` serves `gvk`, asking it once and caching the answer. The many units that
    /// start on a member at once wait for one request; a failure goes to those waiting for it
    /// and is not kept (the next asks again).
    pub async fn kind(&self, cluster: &str, client: &Client, gvk: &GroupVersionKind) -> kube::Result<ServedKind> {
        let key = (cluster.to_string(), gvk.clone());
        let cell = self.kinds.lock().unwrap().entry(key.clone()).or_default().clone();
        let asked = cell
            .get_or_init(|| async {
                match pinned_kind(client, gvk).await {
                    Ok((resource, caps)) => Ok(ServedKind { resource, namespaced: caps.scope == Scope::Namespaced }),
                    Err(kube::Error::Api(status)) => Err(KindFailure::Api(status)),
                    Err(other) => Err(KindFailure::Other(other.to_string())),
                }
            })
            .await
            .clone();
        if asked.is_err() {
            let mut kinds = self.kinds.lock().unwrap();
            if kinds.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                kinds.remove(&key);
            }
        }
        asked.map_err(|f| match f {
            KindFailure::Api(status) => kube::Error::Api(status),
            KindFailure::Other(message) => kube::Error::Service(message.into()),
        })
    }

    /// Forgets the client and discovery of a deleted cluster.
    pub fn forget(&self, cluster: &str) {
        self.clients.lock().unwrap().remove(cluster);
        self.users.lock().unwrap().retain(|k, _| !k.starts_with(&format!("{cluster}\u{0}")));
        self.forget_kinds(cluster);
    }

    /// Forgets what `cluster` serves (after it gained CRDs, say).
    pub fn forget_kinds(&self, cluster: &str) {
        self.kinds.lock().unwrap().retain(|(c, _), _| c != cluster);
    }
}

/// The cluster's own kubeconfig, checked: inline data only.
fn admin_kubeconfig(cluster: &Cluster, secret: &Secret) -> Result<Kubeconfig, MemberError> {
    let r = kubeconfig_ref(cluster)?;
    let invalid = |reason: String| invalid(cluster, reason);
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .map(|b| b.0.clone())
        .or_else(|| secret.string_data.as_ref().and_then(|d| d.get(&r.key)).map(|s| s.clone().into_bytes()))
        .ok_or_else(|| MemberError::KeyMissing {
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            key: r.key.clone(),
        })?;
    let text = String::from_utf8(bytes).map_err(|_| invalid("not UTF-8 text".into()))?;
    // Parse errors can quote the input: report only that parsing failed.
    let kubeconfig = Kubeconfig::from_yaml(&text).map_err(|_| invalid("not a kubeconfig YAML document".into()))?;
    if kubeconfig.clusters.is_empty() {
        return Err(invalid("it names no cluster".into()));
    }
    if let Some(field) = refused_field(&kubeconfig) {
        return Err(MemberError::Refused {
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            key: r.key.clone(),
            field,
        });
    }
    Ok(kubeconfig)
}

/// How long a request to a member may go without an answer.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The same for a watch: longer than the server keeps a quiet watch open (290 s), so that a watch
/// with nothing to say ends cleanly instead of failing and being made again every 30 s.
const WATCH_READ_TIMEOUT: Duration = Duration::from_secs(330);

async fn client_from(cluster: &Cluster, kubeconfig: Kubeconfig, read: Duration) -> Result<Client, MemberError> {
    let invalid = |reason: String| invalid(cluster, reason);
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| invalid(redacted_kind(&e.to_string())))?;
    config.connect_timeout = Some(Duration::from_secs(5));
    config.read_timeout = Some(read);
    config.write_timeout = Some(Duration::from_secs(30));
    let builder = kube::client::ClientBuilder::try_from(config).map_err(|e| invalid(redacted_kind(&e.to_string())))?;
    Ok(builder.with_layer(&crate::metrics::counted("member")).with_layer(&crate::fault::FaultLayer).build())
}

/// A logical cloud's user on one member: its name, default namespace, certificate and key (PEM).
pub struct User<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub certificate: &'a [u8],
    pub key: &'a [u8],
}

/// A kubeconfig for `user` on `cluster`: the server and CA of the cluster's own kubeconfig (never
/// taken from a tenant's Secret), the user's certificate and key.
fn user_kubeconfig(admin: &Kubeconfig, cluster: &str, user: &User) -> Result<Kubeconfig, String> {
    use base64::Engine;
    let current = admin.current_context.as_deref();
    let context_cluster = admin
        .contexts
        .iter()
        .find(|c| Some(c.name.as_str()) == current)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone());
    let server = admin
        .clusters
        .iter()
        .find(|c| Some(&c.name) == context_cluster.as_ref())
        .or(admin.clusters.first())
        .and_then(|c| c.cluster.clone())
        .ok_or("the cluster's kubeconfig names no server")?;
    let mut server = server;
    // A proxy URL may carry the platform's proxy credentials: the tenant gets none of them.
    if server.proxy_url.as_ref().is_some_and(|u| u.contains('@')) {
        server.proxy_url = None;
    }
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let doc = serde_json::json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": cluster, "cluster": server}],
        "users": [{"name": user.name, "user": {
            "client-certificate-data": b64(user.certificate), "client-key-data": b64(user.key)}}],
        "contexts": [{"name": format!("{}@{cluster}", user.name),
            "context": {"cluster": cluster, "user": user.name, "namespace": user.namespace}}],
        "current-context": format!("{}@{cluster}", user.name),
    });
    serde_json::from_value(doc).map_err(|_| "the user's kubeconfig does not assemble".to_string())
}

impl Members {
    fn admin_secret(&self, cluster: &Cluster) -> Result<Arc<Secret>, MemberError> {
        let r = kubeconfig_ref(cluster)?;
        if r.namespace != self.operator_namespace {
            return Err(MemberError::SecretOutsideOperatorNamespace {
                namespace: r.namespace.clone(),
                name: r.name.clone(),
                operator: self.operator_namespace.clone(),
            });
        }
        self.secrets
            .get(&ObjectRef::new(&r.name).within(&r.namespace))
            .ok_or_else(|| MemberError::SecretNotFound { namespace: r.namespace.clone(), name: r.name.clone() })
    }

    /// The kubeconfig of a logical cloud's user on `cluster`.
    fn user_config(&self, cluster: &Cluster, user: &User) -> Result<Kubeconfig, MemberError> {
        let admin = admin_kubeconfig(cluster, &*self.admin_secret(cluster)?)?;
        user_kubeconfig(&admin, &cluster.name_any(), user).map_err(|reason| invalid(cluster, reason))
    }

    /// The kubeconfig (YAML) a logical cloud's user works with on `cluster`.
    pub fn user_kubeconfig_yaml(&self, cluster: &Cluster, user: &User) -> Result<String, MemberError> {
        serde_saphyr::to_string(&self.user_config(cluster, user)?)
            .map_err(|_| invalid(cluster, "the user's kubeconfig does not serialize".into()))
    }

    /// A client acting as a logical cloud's user on `cluster`; cached under `version` (the
    /// version of the Secret holding the user's credentials).
    pub async fn user_client(&self, cluster: &Cluster, user: &User<'_>, version: &str) -> Result<Client, MemberError> {
        let key = format!("{}\u{0}{}\u{0}{version}", cluster.name_any(), user.name);
        if let Some(client) = self.users.lock().unwrap().get(&key) {
            return Ok(client.clone());
        }
        let client = client_from(cluster, self.user_config(cluster, user)?, REQUEST_READ_TIMEOUT).await?;
        let mut users = self.users.lock().unwrap();
        users.retain(|k, _| !k.starts_with(&format!("{}\u{0}{}\u{0}", cluster.name_any(), user.name)));
        users.insert(key, client.clone());
        Ok(client)
    }
}

fn invalid(cluster: &Cluster, reason: String) -> MemberError {
    match cluster.spec.kubeconfig_ref() {
        Some(r) => {
            MemberError::Invalid { namespace: r.namespace.clone(), name: r.name.clone(), key: r.key.clone(), reason }
        }
        None => MemberError::ReachedThroughGit { cluster: cluster.name_any() },
    }
}

fn kubeconfig_ref(cluster: &Cluster) -> Result<&crate::api::clm::SecretKeyRef, MemberError> {
    cluster.spec.kubeconfig_ref().ok_or_else(|| MemberError::ReachedThroughGit { cluster: cluster.name_any() })
}

impl Members {
    /// The repository credentials of a GitOps member, from the Secret its Cluster names (none
    /// named: the repository is read and written without credentials).
    pub fn git_credentials(&self, cluster: &Cluster) -> Result<Option<crate::gitops::Credentials>, MemberError> {
        let Some(r) = cluster.spec.git_ops.as_ref().and_then(|g| g.credentials.as_ref()).map(|c| &c.secret_ref) else {
            return Ok(None);
        };
        let (namespace, name) = (r.namespace.clone(), r.name.clone());
        if namespace != self.operator_namespace {
            return Err(MemberError::CredentialsNamespace {
                namespace,
                name,
                operator: self.operator_namespace.clone(),
            });
        }
        let secret = self
            .secrets
            .get(&ObjectRef::new(&name).within(&namespace))
            .ok_or_else(|| MemberError::CredentialsNotFound { namespace: namespace.clone(), name: name.clone() })?;
        let field =
            |k: &str| secret.data.as_ref().and_then(|d| d.get(k)).and_then(|b| String::from_utf8(b.0.clone()).ok());
        let password = field("password").or_else(|| field("token"));
        let Some(password) = password.filter(|p| !p.is_empty()) else {
            return Err(MemberError::CredentialsIncomplete { namespace, name });
        };
        Ok(Some(crate::gitops::Credentials { username: field("username").unwrap_or_else(|| "git".into()), password }))
    }
}

/// The first field of `kubeconfig` that would make the operator run a command, read a file or
/// ask a plugin: a kubeconfig from the hub is data, never instructions.
pub fn refused_field(kubeconfig: &Kubeconfig) -> Option<String> {
    for (i, c) in kubeconfig.clusters.iter().enumerate() {
        let Some(cluster) = &c.cluster else { continue };
        if cluster.certificate_authority.is_some() {
            return Some(format!("clusters[{i}].cluster.certificate-authority"));
        }
    }
    for (i, u) in kubeconfig.auth_infos.iter().enumerate() {
        let Some(user) = &u.auth_info else { continue };
        let fields = [
            ("exec", user.exec.is_some()),
            ("auth-provider", user.auth_provider.is_some()),
            ("tokenFile", user.token_file.is_some()),
            ("client-certificate", user.client_certificate.is_some()),
            ("client-key", user.client_key.is_some()),
        ];
        if let Some((field, _)) = fields.iter().find(|(_, set)| *set) {
            return Some(format!("users[{i}].user.{field}"));
        }
    }
    None
}

/// Keeps only the first clause of a config error (its kind), never data that may follow a colon.
fn redacted_kind(message: &str) -> String {
    message.split(':').next().unwrap_or("invalid").trim().to_string()
}
