use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{
    CustomResource, KubeSchema,
    core::{Selector, SelectorExt},
};
use serde::{Deserialize, Serialize};

use super::{Connection, ConnectionStatus, SECRET_NAME_MESSAGE, SECRET_NAME_RULE, SecretShape, TokenSource};

/// One Zoho OAuth client whose access token the operator writes into many namespaces. Its
/// credentials live in the operator's cluster resource namespace, so only the one-hour access
/// token travels.
// The printer columns repeat `type_ = "string"`, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "zoho-operator.dev",
    version = "v1alpha1",
    kind = "ClusterZohoConnection",
    plural = "clusterzohoconnections",
    shortname = "czc",
    category = "zoho",
    status = "ClusterZohoConnectionStatus",
    doc = "A Zoho OAuth client whose access token the operator mints once and writes into every selected namespace.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Secret", type_ = "string", json_path = ".spec.target.secretName"),
    printcolumn(name = "Namespaces", type_ = "integer", json_path = ".status.namespaceCount"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.expiresAt"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Data Center", type_ = "string", json_path = ".spec.dataCenter", priority = "1"),
    printcolumn(name = "API Domain", type_ = "string", json_path = ".status.apiDomain", priority = "1")
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterZohoConnectionSpec {
    /// `credentials.secretRef` names a Secret in the operator's cluster resource namespace.
    #[serde(flatten)]
    pub source: TokenSource,

    /// The Secret the operator writes in every selected namespace.
    pub target: ClusterTargetSecret,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.namespaceSelector) || (has(self.namespaces) && size(self.namespaces) > 0)").message("select namespaces with namespaceSelector, namespaces, or both"))]
pub struct ClusterTargetSecret {
    /// The Secret's name in every selected namespace.
    #[x_kube(validation = Rule::new(SECRET_NAME_RULE).message(SECRET_NAME_MESSAGE))]
    pub secret_name: String,

    /// Namespaces whose labels match; `{}` selects every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Namespaces selected by name, in addition to `namespaceSelector`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000), inner(length(max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")))]
    pub namespaces: Vec<String>,

    #[serde(flatten)]
    pub shape: SecretShape,
}

/// What the operator last did for the connection. It is the only memory of a connection that
/// survives a restart of the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterZohoConnectionStatus {
    #[serde(flatten)]
    pub common: ConnectionStatus,
    /// The namespaces that hold the Secret now, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub namespace_count: i32,
}

impl std::ops::Deref for ClusterZohoConnectionStatus {
    type Target = ConnectionStatus;

    fn deref(&self) -> &ConnectionStatus {
        &self.common
    }
}

impl Connection for ClusterZohoConnection {
    const NAMESPACED: bool = false;
    type Status = ClusterZohoConnectionStatus;

    fn source(&self) -> &TokenSource {
        &self.spec.source
    }

    fn shape(&self) -> &SecretShape {
        &self.spec.target.shape
    }

    fn target_name(&self) -> String {
        self.spec.target.secret_name.clone()
    }

    fn own_namespace(&self) -> Option<String> {
        None
    }

    fn selects(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        let target = &self.spec.target;
        // A selector the API server would reject selects nothing rather than everything.
        let by_labels = target
            .namespace_selector
            .clone()
            .and_then(|selector| Selector::try_from(selector).ok())
            .is_some_and(|selector| selector.matches(labels));
        by_labels || target.namespaces.iter().any(|listed| listed == namespace)
    }

    fn common_status(&self) -> Option<&ConnectionStatus> {
        self.status.as_ref().map(|s| &s.common)
    }

    fn status(&self) -> Option<&ClusterZohoConnectionStatus> {
        self.status.as_ref()
    }

    fn make_status(&self, common: ConnectionStatus, written: Vec<String>) -> ClusterZohoConnectionStatus {
        let namespace_count = i32::try_from(written.len()).unwrap_or(i32::MAX);
        ClusterZohoConnectionStatus { common, namespaces: written, namespace_count }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn connection(target: serde_json::Value) -> ClusterZohoConnection {
        serde_json::from_value(json!({
            "apiVersion": "zoho-operator.dev/v1alpha1", "kind": "ClusterZohoConnection",
            "metadata": {"name": "crm"},
            "spec": {"credentials": {"secretRef": {"name": "zoho-oauth"}}, "target": target},
        }))
        .unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn namespaces_are_the_union_of_the_selector_and_the_list() {
        let czc = connection(json!({
            "secretName": "crm-token",
            "namespaceSelector": {"matchLabels": {"zoho": "yes"}},
            "namespaces": ["sales"],
        }));
        assert!(czc.selects("sales", &labels(&[])));
        assert!(czc.selects("support", &labels(&[("zoho", "yes")])));
        assert!(!czc.selects("support", &labels(&[("zoho", "no")])));
    }

    #[test]
    fn an_empty_selector_selects_all_and_a_missing_one_none() {
        assert!(connection(json!({"secretName": "t", "namespaceSelector": {}})).selects("any", &labels(&[])));
        assert!(!connection(json!({"secretName": "t", "namespaces": ["a"]})).selects("b", &labels(&[])));
    }

    #[test]
    fn match_expressions_are_honoured() {
        let czc = connection(json!({"secretName": "t", "namespaceSelector": {"matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["prod", "staging"]},
            {"key": "legacy", "operator": "DoesNotExist"},
        ]}}));
        assert!(czc.selects("a", &labels(&[("tier", "prod")])));
        assert!(!czc.selects("a", &labels(&[("tier", "prod"), ("legacy", "1")])));
        assert!(!czc.selects("a", &labels(&[("tier", "dev")])));
    }
}
