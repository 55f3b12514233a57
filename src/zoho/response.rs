//! Reading the token endpoint's answer. Zoho reports most errors with HTTP 200, so the body, not
//! the status code, decides: a body with an `access_token` is a success, anything else is not.

use std::time::Duration;

use jiff::Timestamp;
use secrecy::SecretString;
use serde::Deserialize;

use super::ZohoError;

/// Tokens shorter or longer than this are not what Zoho issues and indicate a garbled answer.
const PLAUSIBLE_LIFETIME: std::ops::RangeInclusive<u64> = 1..=86_400;

/// A freshly minted access token.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub access_token: SecretString,
    pub api_domain: Option<String>,
    pub token_type: String,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
}

#[derive(Deserialize)]
struct Body {
    access_token: Option<String>,
    api_domain: Option<String>,
    token_type: Option<String>,
    expires_in: Option<u64>,
    expires_in_sec: Option<u64>,
    error: Option<String>,
    status: Option<String>,
}

/// Interprets one answer of `POST /oauth/v2/token`. `requested_at` is when the request was sent,
/// so that the computed expiry errs on the early side.
pub fn parse(status: u16, body: &[u8], requested_at: Timestamp) -> Result<IssuedToken, ZohoError> {
    // Whole seconds, rounded down: the times are stored in RFC 3339 with second precision, and the
    // token held in memory must compare equal to the one read back from the Secret.
    let requested_at = requested_at
        .round(jiff::TimestampRound::new().smallest(jiff::Unit::Second).mode(jiff::RoundMode::Trunc))
        .expect("truncating to seconds cannot overflow");
    let parsed = match serde_json::from_slice::<Body>(body) {
        Ok(parsed) => parsed,
        Err(err) => return Err(unparseable(status, body, &err)),
    };
    let lifetime = lifetime(&parsed);
    match parsed.access_token.filter(|token| !token.trim().is_empty()) {
        Some(token) => success(status, token, parsed.api_domain, parsed.token_type, lifetime, requested_at),
        None => Err(failure(status, parsed.error.as_deref(), parsed.status.as_deref())),
    }
}

/// Old answers carried `expires_in_sec` in seconds next to `expires_in` in milliseconds; Zoho's own
/// SDKs still branch on it, and so must we.
fn lifetime(body: &Body) -> Option<u64> {
    match (body.expires_in, body.expires_in_sec) {
        (Some(millis), Some(_)) => Some(millis / 1000),
        (None, Some(secs)) | (Some(secs), None) => Some(secs),
        (None, None) => None,
    }
}

fn success(
    status: u16,
    token: String,
    api_domain: Option<String>,
    token_type: Option<String>,
    lifetime_secs: Option<u64>,
    requested_at: Timestamp,
) -> Result<IssuedToken, ZohoError> {
    let malformed = |reason: &str| ZohoError::MalformedResponse { status, reason: reason.to_string() };
    let secs = lifetime_secs.ok_or_else(|| malformed("access_token without expires_in"))?;
    if !PLAUSIBLE_LIFETIME.contains(&secs) {
        return Err(malformed("expires_in is outside 1 second to 1 day"));
    }
    let expires_at =
        requested_at.checked_add(Duration::from_secs(secs)).map_err(|_| malformed("expires_in overflows"))?;
    if api_domain.as_deref().is_some_and(|domain| !domain.starts_with("https://") && !domain.starts_with("http://")) {
        return Err(malformed("api_domain is not a URL"));
    }
    Ok(IssuedToken {
        access_token: SecretString::from(token),
        api_domain,
        token_type: token_type.filter(|t| !t.is_empty()).unwrap_or_else(|| "Bearer".to_string()),
        issued_at: requested_at,
        expires_at,
    })
}

fn failure(status: u16, error: Option<&str>, outcome: Option<&str>) -> ZohoError {
    // The throttle's `error` is human text that Zoho localizes ("Access Denied", "拒绝访问"), so it
    // is recognized by its shape: a `"status":"failure"` envelope, or HTTP 429.
    if outcome == Some("failure") || status == 429 {
        return ZohoError::Throttled;
    }
    match error {
        Some("invalid_client") => ZohoError::InvalidClient { code: "invalid_client" },
        Some("invalid_client_secret") => ZohoError::InvalidClient { code: "invalid_client_secret" },
        // On a refresh grant, invalid_code means the refresh token was revoked, evicted or never existed.
        Some("invalid_code") => ZohoError::RefreshTokenRevoked,
        Some("access_denied") | Some("Access Denied") => ZohoError::Throttled,
        Some(
            code @ ("invalid_request"
            | "unsupported_grant_type"
            | "invalid_redirect_uri"
            | "invalid_token"
            | "missing_org_info"
            | "invalid_scope"),
        ) => ZohoError::Rejected { code: code.to_string() },
        _ if status >= 500 => ZohoError::ServerError { status },
        Some(other) => {
            ZohoError::MalformedResponse { status, reason: format!("unrecognized error {}", sanitize(other)) }
        }
        None => ZohoError::MalformedResponse { status, reason: "neither access_token nor error".to_string() },
    }
}

fn unparseable(status: u16, body: &[u8], err: &serde_json::Error) -> ZohoError {
    if status >= 500 {
        return ZohoError::ServerError { status };
    }
    if status == 429 {
        return ZohoError::Throttled;
    }
    let looks_like_html = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<');
    let reason = if body.is_empty() {
        "empty body".to_string()
    } else if looks_like_html {
        "HTML instead of JSON".to_string()
    } else {
        // serde's message names a line and column, never the content.
        format!("invalid JSON ({})", err.classify_message())
    };
    ZohoError::MalformedResponse { status, reason }
}

trait ClassifyMessage {
    fn classify_message(&self) -> &'static str;
}

impl ClassifyMessage for serde_json::Error {
    fn classify_message(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Eof => "truncated",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected field types",
            serde_json::error::Category::Io => "read error",
        }
    }
}

/// Error codes come from a remote server; keep them short and printable before they reach
/// conditions and logs.
fn sanitize(code: &str) -> String {
    let clean: String =
        code.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ')).take(40).collect();
    if clean.is_empty() { "(non-ASCII)".to_string() } else { format!("{clean:?}") }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::zoho::FailureClass;

    fn at() -> Timestamp {
        "2026-11-28T10:00:00Z".parse().unwrap()
    }

    fn parse_str(status: u16, body: &str) -> Result<IssuedToken, ZohoError> {
        parse(status, body.as_bytes(), at())
    }

    #[test]
    fn refresh_success_keeps_token_domain_type_and_expiry() {
        let token = parse_str(
            200,
            r#"{"access_token":"1000.abc","api_domain":"https://www.zohoapis.eu","token_type":"Bearer","expires_in":3600}"#,
        )
        .unwrap();
        assert_eq!(token.access_token.expose_secret(), "1000.abc");
        assert_eq!(token.api_domain.as_deref(), Some("https://www.zohoapis.eu"));
        assert_eq!(token.token_type, "Bearer");
        assert_eq!(token.expires_at, "2026-11-28T11:00:00Z".parse::<Timestamp>().unwrap());
    }

    #[test]
    fn legacy_expires_in_sec_means_expires_in_is_milliseconds() {
        let token = parse_str(
            200,
            r#"{"access_token":"1000.abc","expires_in_sec":3600,"expires_in":3600000,"token_type":"Bearer"}"#,
        )
        .unwrap();
        assert_eq!(token.expires_at, "2026-11-28T11:00:00Z".parse::<Timestamp>().unwrap());
    }

    #[test]
    fn success_is_decided_by_the_body_even_with_an_error_status() {
        assert!(parse_str(400, r#"{"access_token":"1000.x","expires_in":60}"#).is_ok());
    }

    #[test]
    fn errors_returned_with_http_200_are_classified_by_their_code() {
        let cases = [
            (r#"{"error":"invalid_client"}"#, "InvalidClient", FailureClass::Permanent),
            (r#"{"error":"invalid_client_secret"}"#, "InvalidClient", FailureClass::Permanent),
            (r#"{"error":"invalid_code"}"#, "RefreshTokenRevoked", FailureClass::Permanent),
            (r#"{"error":"missing_org_info"}"#, "TokenRequestRejected", FailureClass::Permanent),
            (r#"{"error":"something_new"}"#, "MalformedResponse", FailureClass::Transient),
            (r#"{"token_type":"Bearer"}"#, "MalformedResponse", FailureClass::Transient),
        ];
        for (body, reason, class) in cases {
            let err = parse_str(200, body).unwrap_err();
            assert_eq!((err.reason(), err.class()), (reason, class), "{body}");
        }
    }

    #[test]
    fn throttle_is_recognized_in_english_and_localized_with_either_status() {
        let english = r#"{"error_description":"You have made too many requests continuously. Please try again after some time.","error":"Access Denied","status":"failure"}"#;
        let chinese =
            r#"{"error_description":"您已连续提出过多请求，请稍后再试。","error":"拒绝访问","status":"failure"}"#;
        for status in [200, 400] {
            for body in [english, chinese] {
                assert_eq!(parse_str(status, body).unwrap_err().class(), FailureClass::Throttled);
            }
        }
        assert_eq!(parse_str(429, "slow down").unwrap_err().class(), FailureClass::Throttled);
    }

    #[test]
    fn garbage_is_transient_and_its_content_is_not_echoed() {
        let cases = [
            (200, "<html><body>Maintenance 1000.leaked</body></html>", "HTML instead of JSON"),
            (200, r#"{"access_token":"1000.leaked","expi"#, "truncated"),
            (200, "", "empty body"),
            (502, "<html>Bad gateway</html>", "HTTP 502"),
        ];
        for (status, body, expected) in cases {
            let err = parse_str(status, body).unwrap_err();
            assert_eq!(err.class(), FailureClass::Transient);
            let message = err.to_string();
            assert!(message.contains(expected), "{message}");
            assert!(!message.contains("leaked"), "{message}");
        }
    }

    #[test]
    fn implausible_lifetimes_are_rejected() {
        for body in [
            r#"{"access_token":"1000.x","expires_in":0}"#,
            r#"{"access_token":"1000.x","expires_in":99999999}"#,
            r#"{"access_token":"1000.x"}"#,
        ] {
            assert_eq!(parse_str(200, body).unwrap_err().reason(), "MalformedResponse", "{body}");
        }
    }

    #[test]
    fn unrecognized_error_codes_are_sanitized() {
        let err = parse_str(200, r#"{"error":"<script>\u0007bad"}"#).unwrap_err();
        assert!(err.to_string().contains("\"scriptbad\""), "{err}");
    }
}
