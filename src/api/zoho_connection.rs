use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema, ResourceExt};
use serde::{Deserialize, Serialize};

use super::{Connection, ConnectionStatus, SECRET_NAME_MESSAGE, SECRET_NAME_RULE, SecretShape, TokenSource};

/// A Zoho OAuth client whose access token the operator keeps fresh in a Secret of its namespace.
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
    #[serde(flatten)]
    pub source: TokenSource,

    /// The Secret the operator writes the access token into.
    #[serde(default)]
    pub target: TargetSecret,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TargetSecret {
    /// Name of the Secret to write; defaults to the ZohoConnection's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(SECRET_NAME_RULE).message(SECRET_NAME_MESSAGE))]
    pub secret_name: Option<String>,

    #[serde(flatten)]
    pub shape: SecretShape,
}

/// What the operator last did for the connection. It is the only memory of a connection that
/// survives a restart of the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ZohoConnectionStatus {
    #[serde(flatten)]
    pub common: ConnectionStatus,
    /// The Secret that holds the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
}

impl std::ops::Deref for ZohoConnectionStatus {
    type Target = ConnectionStatus;

    fn deref(&self) -> &ConnectionStatus {
        &self.common
    }
}

impl Connection for ZohoConnection {
    const NAMESPACED: bool = true;
    type Status = ZohoConnectionStatus;

    fn source(&self) -> &TokenSource {
        &self.spec.source
    }

    fn shape(&self) -> &SecretShape {
        &self.spec.target.shape
    }

    fn target_name(&self) -> String {
        self.spec.target.secret_name.clone().unwrap_or_else(|| self.name_any())
    }

    fn own_namespace(&self) -> Option<String> {
        self.namespace()
    }

    fn selects(&self, namespace: &str, _labels: &BTreeMap<String, String>) -> bool {
        self.metadata.namespace.as_deref() == Some(namespace)
    }

    fn common_status(&self) -> Option<&ConnectionStatus> {
        self.status.as_ref().map(|s| &s.common)
    }

    fn status(&self) -> Option<&ZohoConnectionStatus> {
        self.status.as_ref()
    }

    fn make_status(&self, common: ConnectionStatus, written: Vec<String>) -> ZohoConnectionStatus {
        ZohoConnectionStatus { common, secret_name: (!written.is_empty()).then(|| self.target_name()) }
    }
}
