//! `orchestrator.emco.io` Controller: an external placement or action controller the orchestrator
//! calls over HTTP(S) during the controller stage (EMCO controller registration). The exchange is
//! `docs/controllers.md`.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A registered external controller; DIGs name it (its object name) in their `intents`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "orchestrator.emco.io",
    version = "v1alpha1",
    kind = "Controller",
    category = "emco",
    shortname = "emcoctl",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Priority", type_ = "integer", json_path = ".spec.priority"),
    printcolumn(name = "URL", type_ = "string", json_path = ".spec.endpoint.url"),
    status = "crate::api::condition::InputStatus",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = 1,
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ControllerSpec {
    /// Placement controllers run before action controllers.
    #[serde(rename = "type")]
    pub type_: ControllerType,
    /// Lower runs first within its type (built-ins: hpa placement 100; gac 1000, hpa action 1100).
    #[serde(default = "default_priority")]
    #[schemars(range(min = 1, max = 1000000))]
    pub priority: u32,
    pub endpoint: Endpoint,
    /// How long one call may take, answer included.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 60))]
    pub timeout_seconds: u32,
}

fn default_priority() -> u32 {
    500
}

fn default_timeout() -> u32 {
    5
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ControllerType {
    Placement,
    Action,
}

/// Where the controller listens: HTTPS, or plain HTTP on the loopback address only.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    #[x_kube(validation = kube::core::Rule::new(r"self.startsWith('https://') || self.matches('^http://(127\\.0\\.0\\.1|localhost|\\[::1\\])(:[0-9]+)?(/.*)?$')").message("the endpoint must be https://, or http:// on the loopback address"))]
    #[schemars(length(min = 8, max = 2048))]
    pub url: String,
    /// PEM certificates (base64, as in webhook configurations) that sign the endpoint's
    /// certificate; the system roots are not trusted when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "byte_schema")]
    pub ca_bundle: Option<k8s_openapi::ByteString>,
}

fn byte_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "format": "byte", "maxLength": 65536})
}

impl Endpoint {
    /// Why the orchestrator will not call this endpoint, if it will not.
    pub fn refused(&self) -> Option<String> {
        let url = match reqwest::Url::parse(&self.url) {
            Ok(url) => url,
            Err(e) => return Some(format!("endpoint {}: {e}", self.url)),
        };
        let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
        match url.scheme() {
            "https" => None,
            "http" if loopback => None,
            _ => Some(format!("endpoint {} is neither https nor http on the loopback address", url)),
        }
    }
}
