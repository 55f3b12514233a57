//! The `ZohoConnection` API and the names the operator writes into the cluster.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::zoho::DataCenter;

pub const FIELD_MANAGER: &str = "zoho-token-operator";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "zoho-token-operator";

/// Annotations on the target Secret. They let a restarted operator trust the token it finds there
/// instead of minting a new one.
pub const EXPIRES_AT_ANNOTATION: &str = "zoho-operator.dev/expires-at";
pub const ISSUED_AT_ANNOTATION: &str = "zoho-operator.dev/issued-at";
pub const FINGERPRINT_ANNOTATION: &str = "zoho-operator.dev/credentials-fingerprint";

/// Keys of the target Secret.
pub const ACCESS_TOKEN_KEY: &str = "access_token";
pub const API_DOMAIN_KEY: &str = "api_domain";
pub const TOKEN_TYPE_KEY: &str = "token_type";
pub const EXPIRES_AT_KEY: &str = "expires_at";

pub const READY_CONDITION: &str = "Ready";

const SECRET_NAME_RULE: &str =
    "size(self) <= 253 && self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')";
const SECRET_NAME_MESSAGE: &str = "must be a valid Secret name (lower-case DNS subdomain)";
const SECRET_KEY_RULE: &str = "size(self) <= 253 && self.matches('^[-._a-zA-Z0-9]+$')";
const SECRET_KEY_MESSAGE: &str = "must be a valid Secret key: letters, digits, '-', '_' or '.'";

/// A Zoho OAuth client whose access token the operator keeps fresh in a Secret.
// The printer columns repeat `type_ = "string"`, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "zoho-operator.dev",
    version = "v1alpha1",
    kind = "ZohoConnection",
    plural = "zohoconnections",
    shortname = "zc",
    category = "zoho",
    namespaced,
    status = "ZohoConnectionStatus",
    doc = "A Zoho OAuth client whose access token the operator mints and keeps fresh in a Secret.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Secret", type_ = "string", json_path = ".status.secretName"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.expiresAt"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Data Center", type_ = "string", json_path = ".spec.dataCenter", priority = "1"),
    printcolumn(name = "API Domain", type_ = "string", json_path = ".status.apiDomain", priority = "1")
)]
#[serde(rename_all = "camelCase")]
pub struct ZohoConnectionSpec {
    /// The Zoho data center that issued the refresh token. Refreshes must go to its accounts server.
    #[serde(default)]
    pub data_center: DataCenter,

    /// Overrides the data center's accounts server, e.g. `https://accounts.zoho.eu`. It must be one of
    /// Zoho's official accounts servers or be allowed by the operator's `--allow-accounts-url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getScheme() in ['https', 'http'] && url(self).getEscapedPath() in ['', '/'] && url(self).getQuery().size() == 0").message("must be an http(s) origin such as https://accounts.zoho.eu, without a path or query"))]
    pub accounts_url: Option<String>,

    /// Where the OAuth client's credentials are.
    pub credentials: CredentialsSource,

    /// The Secret the operator writes the access token into.
    #[serde(default)]
    pub target: TargetSecret,

    /// How long before expiry to mint the next token, as a Go duration such as `20m` or `1h`.
    /// Defaults to a third of the token's lifetime; at most half of the lifetime is honoured, so
    /// that each token serves at least half its life and Zoho's quota is respected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$')").message("must be a Go duration such as 20m, 90s or 1h30m"))]
    pub refresh_before: Option<String>,
}

/// A Secret, in the ZohoConnection's own namespace, holding the OAuth client's credentials.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSource {
    pub secret_ref: SecretReference,

    #[serde(default = "default_client_id_key")]
    #[x_kube(validation = Rule::new(SECRET_KEY_RULE).message(SECRET_KEY_MESSAGE))]
    pub client_id_key: String,

    #[serde(default = "default_client_secret_key")]
    #[x_kube(validation = Rule::new(SECRET_KEY_RULE).message(SECRET_KEY_MESSAGE))]
    pub client_secret_key: String,

    #[serde(default = "default_refresh_token_key")]
    #[x_kube(validation = Rule::new(SECRET_KEY_RULE).message(SECRET_KEY_MESSAGE))]
    pub refresh_token_key: String,
}

/// A Secret in the same namespace. Cross-namespace references are deliberately impossible.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SecretReference {
    #[x_kube(validation = Rule::new(SECRET_NAME_RULE).message(SECRET_NAME_MESSAGE))]
    pub name: String,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TargetSecret {
    /// Name of the Secret to write; defaults to the ZohoConnection's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(SECRET_NAME_RULE).message(SECRET_NAME_MESSAGE))]
    pub secret_name: Option<String>,

    /// Labels copied onto the target Secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,

    /// Annotations copied onto the target Secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

fn default_client_id_key() -> String {
    "client_id".into()
}
fn default_client_secret_key() -> String {
    "client_secret".into()
}
fn default_refresh_token_key() -> String {
    "refresh_token".into()
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ZohoConnectionStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_domain: Option<String>,
    /// When the token in the target Secret expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// When the token in the target Secret was minted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refresh_time: Option<Time>,
    /// When the operator will mint the next token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_refresh_time: Option<Time>,
    /// Consecutive failed attempts; it drives the backoff and survives restarts.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub failed_attempts: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_time: Option<Time>,
}

impl ZohoConnection {
    pub fn target_secret_name(&self) -> String {
        self.spec.target.secret_name.clone().unwrap_or_else(|| self.metadata.name.clone().unwrap_or_default())
    }

    pub fn ready_condition(&self) -> Option<&Condition> {
        self.status.as_ref()?.conditions.iter().find(|c| c.type_ == READY_CONDITION)
    }
}
