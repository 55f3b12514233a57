//! The target Secret: what the operator writes, and what it may trust or touch when it reads one.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::{
    ByteString,
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use secrecy::{ExposeSecret, SecretString};

use crate::{
    api::{
        ACCESS_TOKEN_KEY, API_DOMAIN_KEY, EXPIRES_AT_ANNOTATION, EXPIRES_AT_KEY, FINGERPRINT_ANNOTATION,
        ISSUED_AT_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, SecretShape, TOKEN_TYPE_KEY,
    },
    schedule::format_time,
    zoho::{IssuedToken, response::PLAUSIBLE_LIFETIME},
};

const STANDARD_KEYS: [&str; 4] = [ACCESS_TOKEN_KEY, API_DOMAIN_KEY, TOKEN_TYPE_KEY, EXPIRES_AT_KEY];

/// A token read back from a target Secret, with the fingerprint of the credentials that minted it.
#[derive(Clone, Debug)]
pub struct StoredToken {
    pub token: IssuedToken,
    pub fingerprint: Option<String>,
}

/// What the operator finds under the target Secret's name in one namespace.
#[derive(Debug)]
pub enum Target {
    /// No Secret of that name.
    Missing,
    /// A Secret this connection controls; it holds a token if its data and annotations are intact.
    Owned { stored: Option<StoredToken>, type_: Option<String> },
    /// A Secret that belongs to someone else: the operator must not touch it.
    Foreign { owner: Option<String> },
}

/// Classifies an existing Secret relative to the connection whose uid is `owner_uid`.
pub fn inspect(secret: Option<&Secret>, owner_uid: &str) -> Target {
    let Some(secret) = secret else { return Target::Missing };
    let controller = secret.metadata.owner_references.iter().flatten().find(|r| r.controller == Some(true));
    match controller {
        Some(owner) if owner.uid == owner_uid => {
            Target::Owned { stored: stored_token(secret), type_: secret.type_.clone() }
        }
        Some(owner) => Target::Foreign { owner: Some(format!("{} {}", owner.kind, owner.name)) },
        None => Target::Foreign { owner: None },
    }
}

fn annotation<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    secret.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

/// A standard key's value as the operator wrote it: under the key itself, or, where a template
/// replaced the key, under the same name with a leading dot.
fn standard<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    let data = secret.data.as_ref()?;
    let value = data.get(&format!(".{key}")).or_else(|| data.get(key))?;
    std::str::from_utf8(&value.0).ok().filter(|v| !v.is_empty())
}

/// Reads the token back from a Secret the operator wrote. A Secret whose data was emptied or edited
/// so that it no longer matches its annotations holds no trustworthy token.
fn stored_token(secret: &Secret) -> Option<StoredToken> {
    let expires_at: Timestamp = annotation(secret, EXPIRES_AT_ANNOTATION)?.parse().ok()?;
    let issued_at: Timestamp = annotation(secret, ISSUED_AT_ANNOTATION)?.parse().ok()?;
    let data_expiry: Timestamp = standard(secret, EXPIRES_AT_KEY)?.parse().ok()?;
    if data_expiry != expires_at || !written_by_the_operator(issued_at, expires_at) {
        return None;
    }
    let token = IssuedToken {
        access_token: SecretString::from(standard(secret, ACCESS_TOKEN_KEY)?.to_string()),
        api_domain: standard(secret, API_DOMAIN_KEY).map(str::to_string),
        token_type: standard(secret, TOKEN_TYPE_KEY)?.to_string(),
        issued_at,
        expires_at,
    };
    Some(StoredToken { token, fingerprint: annotation(secret, FINGERPRINT_ANNOTATION).map(str::to_string) })
}

/// Whether the two times can be ones the operator wrote: whole seconds, a lifetime Zoho gives.
/// Anything else was edited by hand, and a token whose expiry is a guess must not be served: a
/// far-future expiry would keep a dead token in the Secret, never renewed.
fn written_by_the_operator(issued_at: Timestamp, expires_at: Timestamp) -> bool {
    let lifetime = expires_at.duration_since(issued_at).as_secs();
    issued_at.subsec_nanosecond() == 0
        && expires_at.subsec_nanosecond() == 0
        && u64::try_from(lifetime).is_ok_and(|secs| PLAUSIBLE_LIFETIME.contains(&secs))
}

/// The complete Secret the operator applies. `rendered` holds the template's keys; a template key
/// that replaces a standard key keeps the standard value under a dotted name, so that a restarted
/// operator can still read the token back instead of minting a new one.
pub fn desired(
    owner: &OwnerReference,
    name: &str,
    namespace: &str,
    shape: &SecretShape,
    token: &IssuedToken,
    fingerprint: &str,
    rendered: &BTreeMap<String, String>,
) -> Secret {
    let mut labels = shape.labels.clone();
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into());
    let mut annotations = shape.annotations.clone();
    annotations.insert(EXPIRES_AT_ANNOTATION.into(), format_time(token.expires_at));
    annotations.insert(ISSUED_AT_ANNOTATION.into(), format_time(token.issued_at));
    annotations.insert(FINGERPRINT_ANNOTATION.into(), fingerprint.into());
    let expires_at = format_time(token.expires_at);
    let standard = [
        (ACCESS_TOKEN_KEY, token.access_token.expose_secret()),
        (API_DOMAIN_KEY, token.api_domain.as_deref().unwrap_or_default()),
        (TOKEN_TYPE_KEY, token.token_type.as_str()),
        (EXPIRES_AT_KEY, expires_at.as_str()),
    ];
    let mut data: BTreeMap<String, ByteString> = BTreeMap::new();
    for (key, value) in standard {
        let key = if rendered.contains_key(key) { format!(".{key}") } else { key.to_string() };
        data.insert(key, ByteString(value.as_bytes().to_vec()));
    }
    for (key, value) in rendered {
        data.insert(key.clone(), ByteString(value.as_bytes().to_vec()));
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner.clone()]),
            ..ObjectMeta::default()
        },
        type_: Some(secret_type(shape).to_string()),
        data: Some(data),
        ..Secret::default()
    }
}

pub fn secret_type(shape: &SecretShape) -> &str {
    shape.type_.as_deref().unwrap_or("Opaque")
}

/// Whether applying `desired` would change anything the operator manages in `existing`. Skipping
/// no-op writes keeps re-lists and restarts from touching every Secret.
pub fn is_up_to_date(existing: &Secret, desired: &Secret) -> bool {
    let subset = |want: &Option<BTreeMap<String, String>>, have: &Option<BTreeMap<String, String>>| {
        want.iter().flatten().all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    let data = |secret: &Secret| secret.data.clone().unwrap_or_default();
    // Every key the operator writes, and no standard key it no longer writes.
    let (want, have) = (data(desired), data(existing));
    let stale_standard = STANDARD_KEYS
        .iter()
        .flat_map(|key| [key.to_string(), format!(".{key}")])
        .any(|key| have.contains_key(&key) && !want.contains_key(&key));
    subset(&desired.metadata.labels, &existing.metadata.labels)
        && subset(&desired.metadata.annotations, &existing.metadata.annotations)
        && want.iter().all(|(k, v)| have.get(k) == Some(v))
        && !stale_standard
        && existing.metadata.owner_references == desired.metadata.owner_references
        && existing.type_ == desired.type_
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(uid: &str) -> OwnerReference {
        OwnerReference {
            api_version: "zoho-operator.dev/v1alpha1".into(),
            kind: "ZohoConnection".into(),
            name: "crm".into(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn token() -> IssuedToken {
        IssuedToken {
            access_token: SecretString::from("1000.token"),
            api_domain: Some("https://www.zohoapis.com".into()),
            token_type: "Bearer".into(),
            issued_at: "2026-11-28T10:00:00Z".parse().unwrap(),
            expires_at: "2026-11-28T11:00:00Z".parse().unwrap(),
        }
    }

    fn secret(rendered: &[(&str, &str)]) -> Secret {
        let rendered = rendered.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        desired(&owner("uid-1"), "crm", "sales", &SecretShape::default(), &token(), "v1-abc", &rendered)
    }

    fn data(secret: &Secret, key: &str) -> Option<String> {
        secret.data.as_ref()?.get(key).map(|v| String::from_utf8(v.0.clone()).unwrap())
    }

    fn read_back(secret: &Secret) -> StoredToken {
        match inspect(Some(secret), "uid-1") {
            Target::Owned { stored: Some(stored), .. } => stored,
            other => panic!("expected an owned Secret with a token, got {other:?}"),
        }
    }

    #[test]
    fn desired_secret_is_owned_labelled_and_round_trips_its_token() {
        let secret = secret(&[]);
        assert_eq!(secret.metadata.labels.as_ref().unwrap()[MANAGED_BY_LABEL], MANAGED_BY_VALUE);
        assert_eq!(secret.type_.as_deref(), Some("Opaque"));
        assert_eq!(data(&secret, EXPIRES_AT_KEY).as_deref(), Some("2026-11-28T11:00:00Z"));
        let stored = read_back(&secret);
        assert_eq!(stored.token.access_token.expose_secret(), "1000.token");
        assert_eq!(stored.token.expires_at, token().expires_at);
        assert_eq!(stored.fingerprint.as_deref(), Some("v1-abc"));
        assert!(is_up_to_date(&secret, &secret));
    }

    #[test]
    fn a_replaced_standard_key_keeps_the_token_readable_under_a_dotted_name() {
        let secret = secret(&[("access_token", "Zoho-oauthtoken 1000.token"), ("extra", "x")]);
        assert_eq!(data(&secret, "access_token").as_deref(), Some("Zoho-oauthtoken 1000.token"));
        assert_eq!(data(&secret, ".access_token").as_deref(), Some("1000.token"));
        assert_eq!(data(&secret, ".api_domain"), None, "only replaced keys move");
        assert_eq!(read_back(&secret).token.access_token.expose_secret(), "1000.token");
        assert!(!is_up_to_date(&secret, &self::secret(&[("extra", "x")])), "the dotted key must go");
    }

    #[test]
    fn secrets_of_other_owners_are_foreign() {
        let mut secret = secret(&[]);
        assert!(matches!(inspect(Some(&secret), "uid-2"), Target::Foreign { owner: Some(_) }));
        secret.metadata.owner_references = None;
        assert!(matches!(inspect(Some(&secret), "uid-1"), Target::Foreign { owner: None }));
        assert!(matches!(inspect(None, "uid-1"), Target::Missing));
    }

    #[test]
    fn an_edited_or_emptied_secret_holds_no_token_and_is_not_up_to_date() {
        let good = secret(&[]);
        let edit = |key: &str, value: &[u8]| {
            let mut edited = good.clone();
            edited.data.as_mut().unwrap().insert(key.into(), ByteString(value.to_vec()));
            edited
        };
        for edited in [
            edit(ACCESS_TOKEN_KEY, b""),
            edit(EXPIRES_AT_KEY, b"2030-01-01T00:00:00Z"),
            edit(ACCESS_TOKEN_KEY, b"\xff\xfe"),
        ] {
            assert!(matches!(inspect(Some(&edited), "uid-1"), Target::Owned { stored: None, .. }));
            assert!(!is_up_to_date(&edited, &good));
        }
    }

    #[test]
    fn an_expiry_the_operator_cannot_have_written_is_not_trusted() {
        // Found by the stored_token fuzz target: annotations and data edited alike were trusted,
        // whatever lifetime they claimed. The second row, trusted, crashed the operator when the
        // status rounded its expiry up (tests/e2e/badinput.rs, case end-of-time).
        let good = secret(&[]);
        let retimed = |issued: &str, expires: &str| {
            let mut edited = good.clone();
            let annotations = edited.metadata.annotations.as_mut().unwrap();
            annotations.insert(ISSUED_AT_ANNOTATION.into(), issued.into());
            annotations.insert(EXPIRES_AT_ANNOTATION.into(), expires.into());
            edited.data.as_mut().unwrap().insert(EXPIRES_AT_KEY.into(), ByteString(expires.as_bytes().to_vec()));
            edited
        };
        for (issued, expires) in [
            ("2026-11-28T10:00:00Z", "2100-01-01T00:00:00Z"),
            ("9999-12-30T21:00:00Z", "9999-12-30T22:00:00.9Z"),
            ("2026-11-28T10:00:00.5Z", "2026-11-28T11:00:00.5Z"),
            ("2026-11-28T10:59:59Z", "2026-11-28T10:59:59Z"),
        ] {
            let edited = retimed(issued, expires);
            assert!(matches!(inspect(Some(&edited), "uid-1"), Target::Owned { stored: None, .. }), "{expires}");
        }
        let day = retimed("2026-11-28T10:00:00Z", "2026-11-29T10:00:00Z");
        assert!(matches!(inspect(Some(&day), "uid-1"), Target::Owned { stored: Some(_), .. }), "a day is plausible");
    }
}
