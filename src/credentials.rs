//! Reading a connection's OAuth credentials from its Secret.

use k8s_openapi::api::core::v1::Secret;
use secrecy::SecretString;

use crate::{api::CredentialsSource, error::Error, zoho::Credentials};

/// Extracts the credentials named by `source` from `secret`. Surrounding whitespace is dropped,
/// because values pasted into `kubectl create secret --from-file` usually end in a newline.
pub fn from_secret(source: &CredentialsSource, secret: Option<&Secret>) -> Result<Credentials, Error> {
    let name = &source.secret_ref.name;
    let secret = secret.ok_or_else(|| Error::CredentialsSecretNotFound { name: name.clone() })?;
    let value = |key: &String| -> Result<String, Error> {
        let raw = secret
            .data
            .as_ref()
            .and_then(|data| data.get(key))
            .ok_or_else(|| Error::CredentialsKeyMissing { name: name.clone(), key: key.clone() })?;
        let invalid = |problem| Error::InvalidCredentialsSecret { name: name.clone(), key: key.clone(), problem };
        let text = std::str::from_utf8(&raw.0).map_err(|_| invalid("is not UTF-8 text"))?.trim();
        if text.is_empty() {
            return Err(invalid("is empty"));
        }
        if text.chars().any(char::is_control) {
            return Err(invalid("contains control characters"));
        }
        Ok(text.to_string())
    };
    Ok(Credentials {
        client_id: value(&source.client_id_key)?,
        client_secret: SecretString::from(value(&source.client_secret_key)?),
        refresh_token: SecretString::from(value(&source.refresh_token_key)?),
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;
    use secrecy::ExposeSecret;

    use super::*;
    use crate::api::SecretReference;

    fn source() -> CredentialsSource {
        CredentialsSource {
            secret_ref: SecretReference { name: "zoho-oauth".into() },
            client_id_key: "client_id".into(),
            client_secret_key: "client_secret".into(),
            refresh_token_key: "refresh_token".into(),
        }
    }

    fn secret(entries: &[(&str, &[u8])]) -> Secret {
        Secret {
            data: Some(entries.iter().map(|(k, v)| (k.to_string(), ByteString(v.to_vec()))).collect()),
            ..Secret::default()
        }
    }

    #[test]
    fn reads_and_trims_the_three_values() {
        let s =
            secret(&[("client_id", b"1000.ID\n"), ("client_secret", b" SENTINEL-s "), ("refresh_token", b"1000.r")]);
        let credentials = from_secret(&source(), Some(&s)).unwrap();
        assert_eq!(credentials.client_id, "1000.ID");
        assert_eq!(credentials.client_secret.expose_secret(), "SENTINEL-s");
    }

    #[test]
    fn each_problem_gets_its_own_reason_and_no_value_is_echoed() {
        let cases: [(Option<Secret>, &str); 5] = [
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
        ];
        for (secret, reason) in cases {
            let err = from_secret(&source(), secret.as_ref()).unwrap_err();
            assert_eq!(err.reason(), reason);
            assert!(!err.to_string().contains("SENTINEL"), "{err}");
        }
    }
}
