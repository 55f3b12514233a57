//! The target Secret: what the operator writes, and what it may trust or touch when it reads one.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::{
    ByteString,
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use kube::Resource;
use secrecy::{ExposeSecret, SecretString};

use crate::{
    api::{
        ACCESS_TOKEN_KEY, API_DOMAIN_KEY, EXPIRES_AT_ANNOTATION, EXPIRES_AT_KEY, FINGERPRINT_ANNOTATION,
        ISSUED_AT_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, TOKEN_TYPE_KEY, ZohoConnection,
    },
    zoho::IssuedToken,
};

/// What the operator finds under the target Secret's name.
#[derive(Debug)]
pub enum Target {
    /// No Secret of that name.
    Missing,
    /// A Secret this connection controls; it holds a token if its data and annotations are intact.
    Owned { token: Option<IssuedToken>, fingerprint: Option<String> },
    /// A Secret that belongs to someone else: the operator must not touch it.
    Foreign { owner: Option<String> },
}

/// Classifies an existing Secret relative to the connection `owner_uid`.
pub fn inspect(secret: Option<&Secret>, owner_uid: &str) -> Target {
    let Some(secret) = secret else { return Target::Missing };
    let controller = secret.metadata.owner_references.iter().flatten().find(|r| r.controller == Some(true));
    match controller {
        Some(owner) if owner.uid == owner_uid => Target::Owned {
            token: stored_token(secret),
            fingerprint: annotation(secret, FINGERPRINT_ANNOTATION).map(str::to_string),
        },
        Some(owner) => Target::Foreign { owner: Some(format!("{} {}", owner.kind, owner.name)) },
        None => Target::Foreign { owner: None },
    }
}

fn annotation<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    secret.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

fn data<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    let value = secret.data.as_ref()?.get(key)?;
    std::str::from_utf8(&value.0).ok().filter(|v| !v.is_empty())
}

/// Reads the token back from a Secret the operator wrote. A Secret whose data was emptied or edited
/// so that it no longer matches its annotations holds no trustworthy token.
fn stored_token(secret: &Secret) -> Option<IssuedToken> {
    let expires_at: Timestamp = annotation(secret, EXPIRES_AT_ANNOTATION)?.parse().ok()?;
    let issued_at: Timestamp = annotation(secret, ISSUED_AT_ANNOTATION)?.parse().ok()?;
    let data_expiry: Timestamp = data(secret, EXPIRES_AT_KEY)?.parse().ok()?;
    if data_expiry != expires_at {
        return None;
    }
    Some(IssuedToken {
        access_token: SecretString::from(data(secret, ACCESS_TOKEN_KEY)?.to_string()),
        api_domain: data(secret, API_DOMAIN_KEY).map(str::to_string),
        token_type: data(secret, TOKEN_TYPE_KEY)?.to_string(),
        issued_at,
        expires_at,
    })
}

/// RFC 3339 in UTC with whole seconds, the format of `expires_at` and of the annotations.
pub fn format_time(at: Timestamp) -> String {
    at.round(jiff::Unit::Second).expect("rounding to seconds cannot overflow").to_string()
}

/// The complete Secret the operator applies for `connection`.
pub fn desired(connection: &ZohoConnection, token: &IssuedToken, api_domain: &str, fingerprint: &str) -> Secret {
    let target = &connection.spec.target;
    let mut labels = target.labels.clone();
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into());
    let mut annotations = target.annotations.clone();
    annotations.insert(EXPIRES_AT_ANNOTATION.into(), format_time(token.expires_at));
    annotations.insert(ISSUED_AT_ANNOTATION.into(), format_time(token.issued_at));
    annotations.insert(FINGERPRINT_ANNOTATION.into(), fingerprint.into());
    let data: BTreeMap<String, ByteString> = [
        (ACCESS_TOKEN_KEY, token.access_token.expose_secret()),
        (API_DOMAIN_KEY, api_domain),
        (TOKEN_TYPE_KEY, token.token_type.as_str()),
        (EXPIRES_AT_KEY, format_time(token.expires_at).as_str()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), ByteString(value.as_bytes().to_vec())))
    .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(connection.target_secret_name()),
            namespace: connection.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner_reference(connection)]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Secret::default()
    }
}

fn owner_reference(connection: &ZohoConnection) -> OwnerReference {
    connection.controller_owner_ref(&()).expect("a ZohoConnection read from the API server has a name and uid")
}

/// Whether applying `desired` would change anything the operator manages in `existing`. Skipping
/// no-op writes keeps re-lists and restarts from touching every Secret.
pub fn is_up_to_date(existing: &Secret, desired: &Secret) -> bool {
    let subset = |want: &Option<BTreeMap<String, String>>, have: &Option<BTreeMap<String, String>>| {
        want.iter().flatten().all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    let want_data = desired.data.iter().flatten();
    subset(&desired.metadata.labels, &existing.metadata.labels)
        && subset(&desired.metadata.annotations, &existing.metadata.annotations)
        && want_data.into_iter().all(|(k, v)| existing.data.as_ref().and_then(|d| d.get(k)) == Some(v))
        && existing.metadata.owner_references == desired.metadata.owner_references
        && existing.type_ == desired.type_
}

#[cfg(test)]
mod tests {
    use kube::api::ObjectMeta;

    use super::*;
    use crate::api::{CredentialsSource, SecretReference, ZohoConnectionSpec};

    fn connection() -> ZohoConnection {
        let mut zc = ZohoConnection::new(
            "crm",
            ZohoConnectionSpec {
                data_center: Default::default(),
                accounts_url: None,
                credentials: CredentialsSource {
                    secret_ref: SecretReference { name: "zoho-oauth".into() },
                    client_id_key: "client_id".into(),
                    client_secret_key: "client_secret".into(),
                    refresh_token_key: "refresh_token".into(),
                },
                target: Default::default(),
                refresh_before: None,
            },
        );
        zc.metadata = ObjectMeta {
            name: Some("crm".into()),
            namespace: Some("sales".into()),
            uid: Some("uid-1".into()),
            ..ObjectMeta::default()
        };
        zc
    }

    fn token() -> IssuedToken {
        IssuedToken {
            access_token: SecretString::from("1000.token"),
            api_domain: None,
            token_type: "Bearer".into(),
            issued_at: "2026-11-28T10:00:00.4Z".parse().unwrap(),
            expires_at: "2026-11-28T11:00:00.4Z".parse().unwrap(),
        }
    }

    #[test]
    fn desired_secret_is_owned_labelled_and_round_trips_its_token() {
        let zc = connection();
        let secret = desired(&zc, &token(), "https://www.zohoapis.com", "v1-abc");
        assert_eq!(secret.metadata.labels.as_ref().unwrap()[MANAGED_BY_LABEL], MANAGED_BY_VALUE);
        assert_eq!(data(&secret, EXPIRES_AT_KEY), Some("2026-11-28T11:00:00Z"));
        match inspect(Some(&secret), "uid-1") {
            Target::Owned { token: Some(stored), fingerprint } => {
                assert_eq!(stored.access_token.expose_secret(), "1000.token");
                assert_eq!(stored.expires_at, "2026-11-28T11:00:00Z".parse::<Timestamp>().unwrap());
                assert_eq!(fingerprint.as_deref(), Some("v1-abc"));
            }
            other => panic!("expected an owned Secret with a token, got {other:?}"),
        }
        assert!(is_up_to_date(&secret, &secret));
    }

    #[test]
    fn secrets_of_other_owners_are_foreign() {
        let zc = connection();
        let mut secret = desired(&zc, &token(), "https://www.zohoapis.com", "v1-abc");
        assert!(matches!(inspect(Some(&secret), "uid-2"), Target::Foreign { owner: Some(_) }));
        secret.metadata.owner_references = None;
        assert!(matches!(inspect(Some(&secret), "uid-1"), Target::Foreign { owner: None }));
        assert!(matches!(inspect(None, "uid-1"), Target::Missing));
    }

    #[test]
    fn an_edited_or_emptied_secret_holds_no_token_and_is_not_up_to_date() {
        let zc = connection();
        let good = desired(&zc, &token(), "https://www.zohoapis.com", "v1-abc");
        let mut emptied = good.clone();
        emptied.data.as_mut().unwrap().insert(ACCESS_TOKEN_KEY.into(), ByteString(vec![]));
        let mut edited = good.clone();
        edited.data.as_mut().unwrap().insert(EXPIRES_AT_KEY.into(), ByteString(b"2030-01-01T00:00:00Z".to_vec()));
        for secret in [emptied, edited] {
            assert!(matches!(inspect(Some(&secret), "uid-1"), Target::Owned { token: None, .. }));
            assert!(!is_up_to_date(&secret, &good));
        }
    }
}
