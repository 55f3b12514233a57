//! Reading a connection's OAuth credentials from their Secret, and writing back the refresh token
//! a grant code was exchanged for.

use hmac::{Hmac, Mac};
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sha2::Sha256;

use crate::{
    api::{CredentialsSource, FIELD_MANAGER, REDIRECT_URI_KEY},
    error::Problem,
    zoho::{AccountsUrl, Credentials, GrantCode},
};

/// Zoho's client ids, secrets, refresh tokens and grant codes are around 100 characters; a longer
/// value is a wrong file or key, and is not worth sending to Zoho, nor holding for every reconcile.
const MAX_VALUE_BYTES: usize = 4096;

/// What the credentials Secret holds: a refresh token to mint with, or a grant code to exchange
/// for one first.
#[derive(Clone, Debug)]
pub enum Credential {
    Refresh(Credentials),
    GrantCode(GrantCode),
}

impl Credential {
    /// A keyed digest that identifies the credential without revealing it. It is keyed with the
    /// client secret, so that someone who can read it cannot test guesses of the refresh token
    /// without the secret too; it changes whenever any part of the credential does.
    pub fn fingerprint(&self, accounts: &AccountsUrl) -> String {
        let (client_id, client_secret, token, kind) = match self {
            Self::Refresh(c) => (&c.client_id, &c.client_secret, &c.refresh_token, "refresh"),
            Self::GrantCode(g) => (&g.client_id, &g.client_secret, &g.code, "grant-code"),
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(client_secret.expose_secret().as_bytes())
            .expect("HMAC accepts keys of any length");
        // The refresh kind hashes exactly what earlier versions did, so that their Secrets stay trusted.
        let parts: &[&str] = match kind {
            "refresh" => &["zoho-token-operator/v1", accounts.as_str(), client_id, token.expose_secret()],
            _ => &["zoho-token-operator/v1", kind, accounts.as_str(), client_id, token.expose_secret()],
        };
        for part in parts {
            mac.update(part.as_bytes());
            mac.update(&[0]);
        }
        let digest = mac.finalize().into_bytes();
        format!("v1-{}", digest[..16].iter().map(|b| format!("{b:02x}")).collect::<String>())
    }
}

/// Extracts the credentials named by `source` from `secret`. A grant code, when present, wins over
/// a refresh token: it is the newer intent, and the operator removes it once exchanged. Surrounding
/// whitespace is dropped, because values pasted into `kubectl create secret --from-file` usually
/// end in a newline.
pub fn from_secret(
    source: &CredentialsSource,
    namespace: &str,
    secret: Option<&Secret>,
) -> Result<Credential, Problem> {
    let name = &source.secret_ref.name;
    let secret = secret
        .ok_or_else(|| Problem::CredentialsSecretNotFound { namespace: namespace.to_string(), name: name.clone() })?;
    let read = |key: &String| -> Result<Option<String>, Problem> {
        let Some(raw) = secret.data.as_ref().and_then(|data| data.get(key)) else { return Ok(None) };
        let invalid = |problem| Problem::InvalidCredentialsSecret { name: name.clone(), key: key.clone(), problem };
        if raw.0.len() > MAX_VALUE_BYTES {
            return Err(invalid("is longer than 4096 bytes, which no Zoho id, secret, token or code is"));
        }
        let text = std::str::from_utf8(&raw.0).map_err(|_| invalid("is not UTF-8 text"))?.trim();
        if text.is_empty() {
            return Err(invalid("is empty"));
        }
        if text.chars().any(char::is_control) {
            return Err(invalid("contains control characters"));
        }
        Ok(Some(text.to_string()))
    };
    let missing = |key: &String| Problem::CredentialsKeyMissing {
        name: name.clone(),
        key: key.clone(),
        grant_code_key: source.grant_code_key.clone(),
    };
    let required = |key: &String| read(key)?.ok_or_else(|| missing(key));
    let client_id = required(&source.client_id_key)?;
    let client_secret = SecretString::from(required(&source.client_secret_key)?);
    if let Some(code) = read(&source.grant_code_key)? {
        let redirect_uri = read(&REDIRECT_URI_KEY.to_string())?;
        return Ok(Credential::GrantCode(GrantCode {
            client_id,
            client_secret,
            code: SecretString::from(code),
            redirect_uri,
        }));
    }
    let refresh_token = SecretString::from(required(&source.refresh_token_key)?);
    Ok(Credential::Refresh(Credentials { client_id, client_secret, refresh_token }))
}

/// Writes the refresh token a grant code was exchanged for back into the credentials Secret and
/// removes the code, but only if the Secret is still the one the code was read from: the
/// resourceVersion is a precondition, so that a concurrent edit is never overwritten.
pub async fn write_back(
    secrets: &Api<Secret>,
    source: &CredentialsSource,
    resource_version: &str,
    refresh_token: &SecretString,
) -> Result<(), kube::Error> {
    let encoded = ByteString(refresh_token.expose_secret().as_bytes().to_vec());
    let patch = json!({
        "metadata": {"resourceVersion": resource_version},
        "data": {
            source.refresh_token_key.as_str(): encoded,
            source.grant_code_key.as_str(): null,
            REDIRECT_URI_KEY: null,
        },
    });
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_string()), ..PatchParams::default() };
    secrets.patch(&source.secret_ref.name, &params, &Patch::Merge(&patch)).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{api::SecretReference, zoho::DataCenter};

    fn source() -> CredentialsSource {
        CredentialsSource {
            secret_ref: SecretReference { name: "zoho-oauth".into() },
            client_id_key: "client_id".into(),
            client_secret_key: "client_secret".into(),
            refresh_token_key: "refresh_token".into(),
            grant_code_key: "grant_code".into(),
        }
    }

    fn secret(entries: &[(&str, &[u8])]) -> Secret {
        Secret {
            data: Some(entries.iter().map(|(k, v)| (k.to_string(), ByteString(v.to_vec()))).collect()),
            ..Secret::default()
        }
    }

    fn refresh(secret_value: &str, refresh_value: &str) -> Credential {
        Credential::Refresh(Credentials {
            client_id: "1000.CLIENT".into(),
            client_secret: SecretString::from(secret_value.to_string()),
            refresh_token: SecretString::from(refresh_value.to_string()),
        })
    }

    #[test]
    fn reads_and_trims_the_three_values() {
        let s =
            secret(&[("client_id", b"1000.ID\n"), ("client_secret", b" SENTINEL-s "), ("refresh_token", b"1000.r")]);
        let Credential::Refresh(credentials) = from_secret(&source(), "ns", Some(&s)).unwrap() else {
            panic!("a refresh token")
        };
        assert_eq!(credentials.client_id, "1000.ID");
        assert_eq!(credentials.client_secret.expose_secret(), "SENTINEL-s");
    }

    #[test]
    fn a_grant_code_wins_over_a_refresh_token() {
        let s = secret(&[
            ("client_id", b"1000.ID"),
            ("client_secret", b"s"),
            ("refresh_token", b"1000.old"),
            ("grant_code", b"1000.code\n"),
            ("redirect_uri", b"https://example.com/cb"),
        ]);
        let Credential::GrantCode(grant) = from_secret(&source(), "ns", Some(&s)).unwrap() else {
            panic!("a grant code")
        };
        assert_eq!(grant.code.expose_secret(), "1000.code");
        assert_eq!(grant.redirect_uri.as_deref(), Some("https://example.com/cb"));
    }

    #[test]
    fn each_problem_gets_its_own_reason_and_no_value_is_echoed() {
        let long = vec![b'x'; 1 << 20];
        let cases: [(Option<Secret>, &str); 7] = [
            (
                Some(secret(&[("client_id", b"id"), ("client_secret", b"s"), ("refresh_token", long.as_slice())])),
                "InvalidCredentialsSecret",
            ),
            (None, "CredentialsSecretNotFound"),
            (Some(secret(&[("client_id", b"id"), ("client_secret", b"SENTINEL-s")])), "CredentialsKeyMissing"),
            (
                Some(secret(&[("client_id", b"id"), ("client_secret", b"  \n"), ("refresh_token", b"r")])),
                "InvalidCredentialsSecret",
            ),
            (
                Some(secret(&[("client_id", b"id"), ("client_secret", b"SENTINEL\xff"), ("refresh_token", b"r")])),
                "InvalidCredentialsSecret",
            ),
            (
                Some(secret(&[("client_id", b"id"), ("client_secret", b"SENTINEL\x07x"), ("refresh_token", b"r")])),
                "InvalidCredentialsSecret",
            ),
            (
                Some(secret(&[("client_id", b"id"), ("client_secret", b"s"), ("grant_code", b"  ")])),
                "InvalidCredentialsSecret",
            ),
        ];
        for (secret, reason) in cases {
            let err = from_secret(&source(), "ns", secret.as_ref()).unwrap_err();
            assert_eq!(err.reason(), reason);
            assert!(!err.to_string().contains("SENTINEL"), "{err}");
        }
    }

    #[test]
    fn fingerprints_identify_credentials_without_revealing_them() {
        let eu = AccountsUrl::of(DataCenter::EU);
        let us = AccountsUrl::of(DataCenter::US);
        let a = refresh("SENTINEL-secret", "SENTINEL-refresh").fingerprint(&eu);
        assert_eq!(a, refresh("SENTINEL-secret", "SENTINEL-refresh").fingerprint(&eu));
        assert_ne!(a, refresh("SENTINEL-secret", "SENTINEL-refresh").fingerprint(&us));
        assert_ne!(a, refresh("SENTINEL-secret", "SENTINEL-refresh2").fingerprint(&eu));
        assert_ne!(a, refresh("SENTINEL-secret2", "SENTINEL-refresh").fingerprint(&eu));
        assert!(!a.contains("SENTINEL") && a.starts_with("v1-") && a.len() == 35, "{a}");
        let code = Credential::GrantCode(GrantCode {
            client_id: "1000.CLIENT".into(),
            client_secret: SecretString::from("SENTINEL-secret"),
            code: SecretString::from("SENTINEL-refresh"),
            redirect_uri: None,
        });
        assert_ne!(code.fingerprint(&eu), a, "a grant code is another credential than an equal refresh token");
    }
}
