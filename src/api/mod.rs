//! The operator's API: `ZohoConnection`, `ClusterZohoConnection`, what they share, and the names
//! the operator writes into the cluster.

mod cluster_zoho_connection;
mod zoho_connection;

use std::collections::BTreeMap;

pub use cluster_zoho_connection::{
    ClusterTargetSecret, ClusterZohoConnection, ClusterZohoConnectionSpec, ClusterZohoConnectionStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{KubeSchema, Resource};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
pub use zoho_connection::{TargetSecret, ZohoConnection, ZohoConnectionSpec, ZohoConnectionStatus};

use crate::zoho::{AccountsUrl, DataCenter, ZohoError};

pub const FIELD_MANAGER: &str = "zoho-token-operator";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "zoho-token-operator";

/// Annotations on the target Secret. They let a restarted operator trust the token it finds there
/// instead of minting a new one.
pub const EXPIRES_AT_ANNOTATION: &str = "zoho-operator.dev/expires-at";
pub const ISSUED_AT_ANNOTATION: &str = "zoho-operator.dev/issued-at";
pub const FINGERPRINT_ANNOTATION: &str = "zoho-operator.dev/credentials-fingerprint";

/// On a connection: each new value asks for one new token.
pub const REFRESH_REQUESTED_AT_ANNOTATION: &str = "zoho-operator.dev/refresh-requested-at";
/// Holds a deleted connection until its token has been revoked at Zoho.
pub const REVOKE_FINALIZER: &str = "zoho-operator.dev/revoke-token";

/// Keys of the target Secret.
pub const ACCESS_TOKEN_KEY: &str = "access_token";
pub const API_DOMAIN_KEY: &str = "api_domain";
pub const TOKEN_TYPE_KEY: &str = "token_type";
pub const EXPIRES_AT_KEY: &str = "expires_at";
/// The optional key of the credentials Secret that goes with a grant code.
pub const REDIRECT_URI_KEY: &str = "redirect_uri";

pub const READY_CONDITION: &str = "Ready";
/// The `Ready` reason of a connection whose Secret holds a token that is being renewed on time.
pub const TOKEN_ISSUED: &str = "TokenIssued";

/// The values of a condition's `status`.
pub const TRUE: &str = "True";
pub const FALSE: &str = "False";

const SECRET_NAME_RULE: &str =
    "size(self) <= 253 && self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')";
const SECRET_NAME_MESSAGE: &str = "must be a valid Secret name (lower-case DNS subdomain)";
const SECRET_KEY_RULE: &str = "size(self) <= 253 && self.matches('^[-._a-zA-Z0-9]+$')";
const SECRET_KEY_MESSAGE: &str = "must be a valid Secret key: letters, digits, '-', '_' or '.'";

/// Where a connection's token comes from and when to renew it: the part of the spec both kinds share.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TokenSource {
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

    /// How long before expiry to mint the next token, as a Go duration such as `20m` or `1h`.
    /// Defaults to a third of the token's lifetime; at most half of the lifetime is honoured, so
    /// that each token serves at least half its life and Zoho's quota is respected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$')").message("must be a Go duration such as 20m, 90s or 1h30m"))]
    pub refresh_before: Option<String>,

    /// Revoke the connection's access token at Zoho when the connection is deleted (never the
    /// refresh token, and never a token another connection still serves).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revoke_on_delete: bool,
}

impl TokenSource {
    /// The accounts server: `accountsUrl`, else the data center's.
    pub fn accounts(&self) -> Result<AccountsUrl, ZohoError> {
        match &self.accounts_url {
            Some(url) => AccountsUrl::parse(url),
            None => Ok(AccountsUrl::of(self.data_center)),
        }
    }
}

/// A Secret holding the OAuth client's credentials: in the ZohoConnection's own namespace, or in
/// the operator's cluster resource namespace for a ClusterZohoConnection.
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

    /// A one-time Self Client grant code, which the operator exchanges for a refresh token, writes
    /// back under `refreshTokenKey`, and removes.
    #[serde(default = "default_grant_code_key")]
    #[x_kube(validation = Rule::new(SECRET_KEY_RULE).message(SECRET_KEY_MESSAGE))]
    pub grant_code_key: String,
}

/// A Secret in the namespace the kind prescribes. Cross-namespace references are deliberately impossible.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SecretReference {
    #[x_kube(validation = Rule::new(SECRET_NAME_RULE).message(SECRET_NAME_MESSAGE))]
    pub name: String,
}

/// How the target Secret looks, besides its name: the part of the target both kinds share.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretShape {
    /// Labels copied onto the target Secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,

    /// Annotations copied onto the target Secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,

    /// The Secret's type; default `Opaque`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("size(self) <= 253 && self.matches('^[-._a-zA-Z0-9/]+$')").message("must be a Secret type such as Opaque"))]
    pub type_: Option<String>,

    /// Extra keys rendered from the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<SecretTemplate>,
}

/// Extra keys of the target Secret, rendered with Jinja syntax from the variables `access_token`,
/// `api_domain`, `token_type`, `expires_at` (RFC 3339) and `expires_at_unix`. A key named like a
/// standard key replaces it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct SecretTemplate {
    /// Keys and their templates. Keys starting with `.` are reserved: a template that replaces a
    /// standard key leaves the original value under the key's name with a leading dot.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = Rule::new("self.all(key, size(key) <= 253 && key.matches('^[-_a-zA-Z0-9][-._a-zA-Z0-9]*$'))").message("keys must be valid Secret keys that do not start with '.'"))]
    pub data: BTreeMap<String, String>,
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
fn default_grant_code_key() -> String {
    "grant_code".into()
}

/// The status both kinds share. It is the only memory of a connection that survives a restart of
/// the operator, so it records everything a restarted operator needs to honour a pending wait.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_domain: Option<String>,
    /// When the token in the target Secret expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// When the token in the target Secret was minted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refresh_time: Option<Time>,
    /// When the operator will mint the next token, or try again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_refresh_time: Option<Time>,
    /// Consecutive failed requests to Zoho; it drives the backoff.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub failed_attempts: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_time: Option<Time>,
    /// The last value of the `zoho-operator.dev/refresh-requested-at` annotation that was acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refresh_request: Option<String>,
    /// A keyed fingerprint (HMAC) of the credentials this status is about, never the credentials
    /// themselves. A wait recorded here ends early when the credentials change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_fingerprint: Option<String>,
}

impl ConnectionStatus {
    pub fn ready_condition(&self) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == READY_CONDITION)
    }

    pub fn is_ready(&self) -> bool {
        self.ready_condition().is_some_and(|c| c.status == TRUE)
    }
}

/// What the reconciler needs of either kind. Everything else about them is the same code.
pub trait Connection:
    Resource<DynamicType = ()> + Clone + std::fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
    type Status: Serialize + PartialEq + Send;
    /// Whether objects of the kind live in a namespace.
    const NAMESPACED: bool;

    fn source(&self) -> &TokenSource;
    fn shape(&self) -> &SecretShape;
    /// The name of the target Secret, in every namespace it is written to.
    fn target_name(&self) -> String;
    /// `Some(namespace)` for a namespaced connection, whose Secrets all live in its own namespace.
    fn own_namespace(&self) -> Option<String>;
    /// Whether a ClusterZohoConnection selects this namespace; a namespaced kind selects only its own.
    fn selects(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool;
    fn common_status(&self) -> Option<&ConnectionStatus>;
    fn status(&self) -> Option<&Self::Status>;

    fn ready_condition(&self) -> Option<&Condition> {
        self.common_status()?.ready_condition()
    }
    /// The status from the shared part and the namespaces that hold the connection's Secret now.
    fn make_status(&self, common: ConnectionStatus, written: Vec<String>) -> Self::Status;
}
