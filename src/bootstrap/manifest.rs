//! The manifests the bootstrap command hands out: the credentials Secret, and a ZohoConnection
//! that uses it.

use std::collections::BTreeMap;

use k8s_openapi::{ByteString, api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::zoho::AccountsUrl;

/// The keys a ZohoConnection reads by default (`spec.credentials.*Key`).
pub(super) const CLIENT_ID_KEY: &str = "client_id";
pub(super) const CLIENT_SECRET_KEY: &str = "client_secret";
pub(super) const REFRESH_TOKEN_KEY: &str = "refresh_token";

/// What goes into the credentials Secret.
pub(super) struct Credentials<'a> {
    pub name: &'a str,
    pub namespace: Option<&'a str>,
    pub client_id: &'a str,
    pub client_secret: &'a SecretString,
    pub refresh_token: &'a SecretString,
    /// Where the refresh token lives: every refresh must go there.
    pub accounts: &'a AccountsUrl,
}

impl Credentials<'_> {
    /// The Secret as the API server takes it, for server-side apply.
    pub fn secret(&self) -> Secret {
        let data = [
            (CLIENT_ID_KEY, self.client_id),
            (CLIENT_SECRET_KEY, self.client_secret.expose_secret()),
            (REFRESH_TOKEN_KEY, self.refresh_token.expose_secret()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), ByteString(value.as_bytes().to_vec())))
        .collect::<BTreeMap<_, _>>();
        Secret {
            metadata: ObjectMeta {
                name: Some(self.name.to_string()),
                namespace: self.namespace.map(str::to_string),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".to_string()),
            data: Some(data),
            ..Secret::default()
        }
    }

    /// The Secret as YAML for `kubectl apply -f`, readable (`stringData`), with a comment naming
    /// the data center the refresh token belongs to.
    pub fn yaml(&self) -> String {
        let string_data: BTreeMap<String, String> = [
            (CLIENT_ID_KEY, self.client_id),
            (CLIENT_SECRET_KEY, self.client_secret.expose_secret()),
            (REFRESH_TOKEN_KEY, self.refresh_token.expose_secret()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(self.name.to_string()),
                namespace: self.namespace.map(str::to_string),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".to_string()),
            string_data: Some(string_data),
            ..Secret::default()
        };
        format!(
            "# Zoho OAuth credentials for {}.\n# Made by `zoho-token-operator bootstrap`. It holds a live refresh token: keep it out of version control.\n{}",
            describe(self.accounts),
            serde_saphyr::to_string(&secret).expect("a Secret serializes")
        )
    }
}

/// "data center EU (accounts server https://accounts.zoho.eu)", or the bare server when it is
/// not one of Zoho's.
pub(super) fn describe(accounts: &AccountsUrl) -> String {
    match accounts.data_center() {
        Some(dc) => format!("data center {} (accounts server {accounts})", dc.code()),
        None => format!("accounts server {accounts} (not an official Zoho data center)"),
    }
}

/// A ZohoConnection that reads the Secret, pinned to the accounts server that issued the refresh
/// token: a refresh anywhere else fails with invalid_client.
pub(super) fn connection_yaml(
    name: &str,
    namespace: Option<&str>,
    secret_name: &str,
    accounts: &AccountsUrl,
) -> String {
    let mut spec = serde_json::Map::new();
    let mut comment = String::new();
    match accounts.data_center() {
        Some(dc) => {
            spec.insert("dataCenter".into(), json!(dc.code()));
        }
        None => {
            spec.insert("accountsUrl".into(), json!(accounts.as_str()));
            comment =
                format!("# The operator must be started with --allow-accounts-url {accounts} to use this server.\n");
        }
    }
    spec.insert("credentials".into(), json!({"secretRef": {"name": secret_name}}));
    let mut metadata = serde_json::Map::new();
    metadata.insert("name".into(), json!(name));
    if let Some(namespace) = namespace {
        metadata.insert("namespace".into(), json!(namespace));
    }
    let connection = json!({
        "apiVersion": "zoho-operator.dev/v1alpha1",
        "kind": "ZohoConnection",
        "metadata": metadata,
        "spec": spec,
    });
    format!("{comment}{}", serde_saphyr::to_string(&connection).expect("JSON serializes as YAML"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{api::ZohoConnection, zoho::DataCenter};

    fn credentials<'a>(
        accounts: &'a AccountsUrl,
        secret: &'a SecretString,
        refresh: &'a SecretString,
    ) -> Credentials<'a> {
        Credentials {
            name: "zoho-oauth",
            namespace: Some("sales"),
            client_id: "1000.CLIENT",
            client_secret: secret,
            refresh_token: refresh,
            accounts,
        }
    }

    #[test]
    fn the_secret_manifest_reads_back_with_the_three_keys_and_names_the_data_center() {
        let eu = AccountsUrl::of(DataCenter::EU);
        let (secret, refresh) = (SecretString::from("s: \"e#c"), SecretString::from("1000.rt.x"));
        let yaml = credentials(&eu, &secret, &refresh).yaml();
        assert!(
            yaml.starts_with("# Zoho OAuth credentials for data center EU (accounts server https://accounts.zoho.eu).")
        );
        let parsed: Secret = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(parsed.metadata.name.as_deref(), Some("zoho-oauth"));
        assert_eq!(parsed.metadata.namespace.as_deref(), Some("sales"));
        let data = parsed.string_data.unwrap();
        assert_eq!(data.keys().collect::<Vec<_>>(), ["client_id", "client_secret", "refresh_token"]);
        assert_eq!(data["client_secret"], "s: \"e#c", "YAML quoting survives awkward characters");
        assert_eq!(data["refresh_token"], "1000.rt.x");
        let applied = credentials(&eu, &secret, &refresh).secret();
        assert_eq!(applied.data.unwrap()["refresh_token"], ByteString(b"1000.rt.x".to_vec()));
    }

    #[test]
    fn the_connection_names_the_data_center_or_the_server() {
        let yaml = connection_yaml("crm", Some("sales"), "zoho-oauth", &AccountsUrl::of(DataCenter::CA));
        let connection: ZohoConnection = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(connection.spec.source.data_center, DataCenter::CA);
        assert_eq!(connection.spec.source.accounts_url, None);
        assert_eq!(connection.spec.source.credentials.secret_ref.name, "zoho-oauth");
        assert!(yaml.contains("apiVersion: zoho-operator.dev/v1alpha1"), "{yaml}");

        let local = AccountsUrl::parse("http://127.0.0.1:8123").unwrap();
        let yaml = connection_yaml("crm", None, "zoho-oauth", &local);
        assert!(yaml.starts_with("# The operator must be started with --allow-accounts-url http://127.0.0.1:8123"));
        let connection: ZohoConnection = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(connection.spec.source.accounts_url.as_deref(), Some("http://127.0.0.1:8123"));
    }
}
