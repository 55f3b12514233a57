//! Reading the accounts server's answers. Zoho reports most errors with HTTP 200, so the body, not
//! the status code, decides: a body with an `access_token` is a success, anything else is not.

use std::time::Duration;

use jiff::Timestamp;
use secrecy::SecretString;
use serde::Deserialize;

use super::{AccountsUrl, DataCenter, ZohoError};

/// Tokens shorter or longer than this are not what Zoho issues and indicate a garbled answer, or,
/// read back from a Secret, a hand edit.
pub(crate) const PLAUSIBLE_LIFETIME: std::ops::RangeInclusive<u64> = 1..=86_400;

/// Zoho asks devices to poll at most once per 30 seconds; that is the interval when it names none.
pub(super) const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(30);
/// A larger interval is more likely a misread unit than Zoho's intent, and `slow_down` corrects a
/// too-short one anyway.
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(60);
/// Zoho documents a user code as valid for 5 minutes.
const DEFAULT_DEVICE_VALIDITY: Duration = Duration::from_secs(300);

/// Which grant a token request used. The same error code means different things per grant:
/// `invalid_code` is a dead refresh token on a refresh, and a spent code on a code exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Grant {
    Refresh,
    Code,
    Device,
}

/// A freshly minted access token.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub access_token: SecretString,
    pub api_domain: Option<String>,
    pub token_type: String,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
}

/// What a successful code exchange (or an approved device authorization) yields: an access token,
/// and the refresh token that the operator keeps minting with.
#[derive(Clone, Debug)]
pub struct CodeExchange {
    pub token: IssuedToken,
    pub refresh_token: SecretString,
}

/// The answer to a device-flow initiation request (`POST /oauth/v3/device/code`).
///
/// Field names as Zoho documents them. `interval` and `expires_in` are in milliseconds according
/// to Zoho's older device-flow page; its current page shows no unit, and community clients read
/// them both ways. The two readings differ a thousandfold, so the size decides: an interval
/// under 100 is seconds (nobody asks for polls 100 s apart), larger is milliseconds; a validity
/// under 10,000 is seconds (2.7 hours), larger is milliseconds.
#[derive(Clone, Debug)]
pub struct DeviceAuthorization {
    /// Shown to the user, who types it in at `verification_url`; short-lived and useless without
    /// the device code, so it is not treated as a secret.
    pub user_code: String,
    pub verification_url: String,
    /// Identifies this authorization when polling; with the client secret it yields the tokens.
    pub device_code: SecretString,
    /// How long to wait between polls.
    pub interval: Duration,
    /// How long the user has to approve.
    pub expires_in: Duration,
}

/// One answer to a device-flow poll (`POST /oauth/v3/device/token`).
#[derive(Clone, Debug)]
pub enum DevicePoll {
    /// `authorization_pending`: the user has not acted yet; poll again after the interval.
    Pending,
    /// `slow_down`: two polls came within Zoho's minimum gap (30 s, documented); poll less often.
    SlowDown,
    /// `other_dc`: the user approved, but their account lives in another data center; further
    /// polls, and every later refresh, go to that accounts server.
    OtherDataCenter {
        accounts: AccountsUrl,
        /// Zoho's `user_location` code (`eu`, ...), when it sent one.
        location: Option<String>,
    },
    /// `access_denied`: the user declined.
    Denied,
    /// `expired`: nobody acted within the validity of the user code.
    Expired,
    /// The user approved: the tokens.
    Granted(CodeExchange),
}

#[derive(Deserialize)]
struct Body {
    access_token: Option<String>,
    refresh_token: Option<String>,
    api_domain: Option<String>,
    token_type: Option<String>,
    expires_in: Option<u64>,
    expires_in_sec: Option<u64>,
    error: Option<String>,
    status: Option<String>,
    /// With `other_dc`: the user's location code, such as `eu` (documented).
    user_location: Option<String>,
    /// With `other_dc`: the user's accounts server. Not documented for the device flow; it is the
    /// name Zoho gives the same fact in the authorization redirect, and the fake sends it.
    #[serde(rename = "accounts-server", alias = "accounts_server")]
    accounts_server: Option<String>,
}

#[derive(Deserialize)]
struct DeviceCodeBody {
    user_code: Option<String>,
    device_code: Option<String>,
    #[serde(alias = "verification_uri")]
    verification_url: Option<String>,
    interval: Option<u64>,
    expires_in: Option<u64>,
    error: Option<String>,
    status: Option<String>,
}

/// Whole seconds, rounded down: the times are stored in RFC 3339 with second precision, and the
/// token held in memory must compare equal to the one read back from the Secret. Down means
/// toward the past (`Floor`), also before 1970, where `Trunc` would round toward the future.
fn truncate(requested_at: Timestamp) -> Timestamp {
    requested_at
        .round(jiff::TimestampRound::new().smallest(jiff::Unit::Second).mode(jiff::RoundMode::Floor))
        .expect("rounding down to seconds cannot overflow: the earliest timestamp is a whole second")
}

fn read<'a, T: Deserialize<'a>>(status: u16, body: &'a [u8]) -> Result<T, ZohoError> {
    serde_json::from_slice::<T>(body).map_err(|err| unparseable(status, body, &err))
}

fn non_blank(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

/// Interprets one answer of a refresh (`POST /oauth/v2/token`, grant_type=refresh_token).
/// `requested_at` is when the request was sent, so that the computed expiry errs on the early side.
pub fn parse(status: u16, body: &[u8], requested_at: Timestamp) -> Result<IssuedToken, ZohoError> {
    // Refreshes never rotate the refresh token; one in the answer would be ignored by Zoho's SDKs too.
    issued(status, read(status, body)?, requested_at, Grant::Refresh).map(|(token, _)| token)
}

/// Interprets one answer of a code exchange (grant_type=authorization_code).
pub(crate) fn parse_code_exchange(
    status: u16,
    body: &[u8],
    requested_at: Timestamp,
) -> Result<CodeExchange, ZohoError> {
    let (token, refresh_token) = issued(status, read(status, body)?, requested_at, Grant::Code)?;
    with_refresh_token(token, refresh_token)
}

fn with_refresh_token(token: IssuedToken, refresh_token: Option<String>) -> Result<CodeExchange, ZohoError> {
    let refresh_token = refresh_token.ok_or(ZohoError::RefreshTokenNotIssued)?;
    Ok(CodeExchange { token, refresh_token: SecretString::from(refresh_token) })
}

fn issued(
    status: u16,
    parsed: Body,
    requested_at: Timestamp,
    grant: Grant,
) -> Result<(IssuedToken, Option<String>), ZohoError> {
    let lifetime = lifetime(&parsed);
    let Body { access_token, refresh_token, api_domain, token_type, error, status: outcome, .. } = parsed;
    match non_blank(access_token) {
        Some(token) => {
            let token = success(status, token, api_domain, token_type, lifetime, truncate(requested_at))?;
            Ok((token, non_blank(refresh_token)))
        }
        None => Err(failure(status, error.as_deref(), outcome.as_deref(), grant)),
    }
}

/// Interprets the answer to a device-flow initiation request.
pub(super) fn parse_device_authorization(status: u16, body: &[u8]) -> Result<DeviceAuthorization, ZohoError> {
    let parsed: DeviceCodeBody = read(status, body)?;
    let malformed = |reason: &str| ZohoError::MalformedResponse { status, reason: reason.to_string() };
    let (Some(user_code), Some(device_code), Some(verification_url)) =
        (non_blank(parsed.user_code), non_blank(parsed.device_code), non_blank(parsed.verification_url))
    else {
        return Err(match parsed.error {
            Some(error) => failure(status, Some(&error), parsed.status.as_deref(), Grant::Device),
            None if status >= 500 => ZohoError::ServerError { status },
            None => malformed("no user_code, device_code and verification_url"),
        });
    };
    // Both are printed to a terminal for the user to act on: only plain, printable text.
    if user_code.len() > 64 || !user_code.chars().all(|c| c.is_ascii_graphic()) {
        return Err(malformed("user_code is not short printable text"));
    }
    let url_ok = url::Url::parse(&verification_url).is_ok_and(|url| matches!(url.scheme(), "https" | "http"));
    if verification_url.len() > 512 || !url_ok || !verification_url.chars().all(|c| c.is_ascii_graphic()) {
        return Err(malformed("verification_url is not an http(s) URL"));
    }
    let interval = match parsed.interval {
        None | Some(0) => DEFAULT_POLL_INTERVAL,
        Some(n) if n < 100 => Duration::from_secs(n),
        Some(n) => Duration::from_millis(n),
    };
    let expires_in = match parsed.expires_in {
        None | Some(0) => DEFAULT_DEVICE_VALIDITY,
        Some(n) if n < 10_000 => Duration::from_secs(n),
        Some(n) => Duration::from_millis(n),
    };
    Ok(DeviceAuthorization {
        user_code,
        verification_url,
        device_code: SecretString::from(device_code),
        interval: interval.min(MAX_POLL_INTERVAL),
        expires_in,
    })
}

/// Interprets one answer to a device-flow poll.
pub(crate) fn parse_device_poll(status: u16, body: &[u8], requested_at: Timestamp) -> Result<DevicePoll, ZohoError> {
    let parsed: Body = read(status, body)?;
    if non_blank(parsed.access_token.clone()).is_none() {
        // Checked before the throttle's shape: whether Zoho wraps this feedback in a
        // `"status":"failure"` envelope is not documented, and it must not read as a throttle.
        match parsed.error.as_deref() {
            Some("authorization_pending") => return Ok(DevicePoll::Pending),
            Some("slow_down") => return Ok(DevicePoll::SlowDown),
            Some("access_denied") => return Ok(DevicePoll::Denied),
            Some("expired") => return Ok(DevicePoll::Expired),
            Some("other_dc") => return other_data_center(status, &parsed),
            _ => {}
        }
    }
    let (token, refresh_token) = issued(status, parsed, requested_at, Grant::Device)?;
    Ok(DevicePoll::Granted(with_refresh_token(token, refresh_token)?))
}

/// The accounts server named by an `other_dc` answer. Where it points is checked against the
/// allow-list by the next request, like every other accounts URL.
fn other_data_center(status: u16, parsed: &Body) -> Result<DevicePoll, ZohoError> {
    let malformed = |reason: String| ZohoError::MalformedResponse { status, reason };
    let location = parsed
        .user_location
        .as_deref()
        .map(|code| code.chars().filter(char::is_ascii_alphanumeric).take(8).collect::<String>().to_ascii_lowercase());
    let accounts = match (parsed.accounts_server.as_deref(), &location) {
        (Some(server), _) => AccountsUrl::parse(server)
            .map_err(|_| malformed("other_dc names an accounts server that is not a URL".to_string()))?,
        (None, Some(code)) => match DataCenter::from_code(code) {
            Some(dc) => AccountsUrl::of(dc),
            None => return Err(malformed(format!("other_dc names an unknown location {}", sanitize(code)))),
        },
        (None, None) => return Err(malformed("other_dc without user_location".to_string())),
    };
    Ok(DevicePoll::OtherDataCenter { accounts, location })
}

#[derive(Deserialize)]
struct RevokeBody {
    status: Option<String>,
    error: Option<String>,
}

/// Interprets the answer to `POST /oauth/v2/token/revoke`. Zoho documents `{"status":"success"}`,
/// and HTTP 400 for a token that is invalid; either way the token is dead, which is all a caller
/// wants. The body of that 400 is not documented: the fake sends
/// `{"status":"failure","error":"invalid_token"}`.
pub(super) fn parse_revoke(status: u16, body: &[u8]) -> Result<(), ZohoError> {
    let parsed: RevokeBody = read(status, body)?;
    if parsed.status.as_deref() == Some("success") {
        return Ok(());
    }
    let error = parsed.error.as_deref();
    // A code such as invalid_token is Zoho saying "no such live token"; human text in `error` is
    // the throttle's envelope, which passes by itself.
    let is_code = |code: &str| !code.is_empty() && code.chars().all(|c| c.is_ascii_lowercase() || c == '_');
    match error {
        Some("invalid_token") => Ok(()),
        _ if status == 400 && error.is_none_or(is_code) => Ok(()),
        _ => Err(failure(status, error, parsed.status.as_deref(), Grant::Refresh)),
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

fn failure(status: u16, error: Option<&str>, outcome: Option<&str>, grant: Grant) -> ZohoError {
    // The throttle's `error` is human text that Zoho localizes ("Access Denied", "拒绝访问"), so it
    // is recognized by its shape: a `"status":"failure"` envelope, or HTTP 429.
    if outcome == Some("failure") || status == 429 {
        return ZohoError::Throttled;
    }
    match error {
        Some("invalid_client") => ZohoError::InvalidClient { code: "invalid_client" },
        Some("invalid_client_secret") => ZohoError::InvalidClient { code: "invalid_client_secret" },
        Some("invalid_code") => match grant {
            // On a refresh grant, invalid_code means the refresh token was revoked, evicted or never existed.
            Grant::Refresh => ZohoError::RefreshTokenRevoked,
            Grant::Code => ZohoError::GrantCodeInvalid,
            // A device code that is unknown, spent or another client's: the flow must start over.
            Grant::Device => ZohoError::Rejected { code: "invalid_code".to_string() },
        },
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
    let reason = if (300..400).contains(&status) {
        // Following it would carry the form body, credentials included, to an address the
        // allow-list never saw; the client never does.
        "a redirect, which is not followed: set spec.accountsUrl to the server that answers".to_string()
    } else if body.is_empty() {
        "empty body".to_string()
    } else if looks_like_html {
        "HTML instead of JSON".to_string()
    } else if let Some(field) = mistyped_field(body) {
        field
    } else {
        // serde's message names a line and column, never the content.
        format!("invalid JSON ({})", err.classify_message())
    };
    ZohoError::MalformedResponse { status, reason }
}

/// Which known field of a JSON object has the wrong type, named but never quoted: its value may
/// be a token. serde's own message would quote it.
fn mistyped_field(body: &[u8]) -> Option<String> {
    const COUNTS: [&str; 3] = ["expires_in", "expires_in_sec", "interval"];
    const TEXTS: [&str; 13] = [
        "access_token",
        "refresh_token",
        "api_domain",
        "token_type",
        "error",
        "status",
        "user_location",
        "accounts-server",
        "accounts_server",
        "user_code",
        "device_code",
        "verification_url",
        "verification_uri",
    ];
    let serde_json::Value::Object(fields) = serde_json::from_slice(body).ok()? else { return None };
    let wrong =
        |name: &str, fits: fn(&serde_json::Value) -> bool| fields.get(name).is_some_and(|v| !v.is_null() && !fits(v));
    if let Some(name) = COUNTS.into_iter().find(|name| wrong(name, serde_json::Value::is_u64)) {
        return Some(format!("{name} is not a non-negative integer"));
    }
    TEXTS.into_iter().find(|name| wrong(name, serde_json::Value::is_string)).map(|name| format!("{name} is not text"))
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
    fn a_redirect_says_it_is_not_followed() {
        for (status, body) in [(302, ""), (301, "<html>Moved</html>"), (307, "not json")] {
            let err = parse_str(status, body).unwrap_err();
            assert_eq!(err.reason(), "MalformedResponse", "{status}");
            assert!(err.to_string().contains("a redirect, which is not followed"), "{status}: {err}");
        }
    }

    #[test]
    fn a_field_of_the_wrong_type_is_named_without_its_value() {
        let cases = [
            (r#"{"access_token":"1000.a","expires_in":"SENTINEL"}"#, "expires_in is not a non-negative integer"),
            (r#"{"access_token":"1000.a","expires_in":-3600}"#, "expires_in is not a non-negative integer"),
            (r#"{"access_token":"1000.a","expires_in":3600.5}"#, "expires_in is not a non-negative integer"),
            (r#"{"access_token":["1000.SENTINEL"],"expires_in":3600}"#, "access_token is not text"),
            (r#"{"access_token":"1000.a","expires_in":0}"#, "expires_in is outside 1 second to 1 day"),
            (r#"{"access_token":"1000.a","expires_in":1000000000000}"#, "expires_in is outside 1 second to 1 day"),
        ];
        for (body, reason) in cases {
            let err = parse_str(200, body).unwrap_err();
            let message = err.to_string();
            assert_eq!(err.reason(), "MalformedResponse", "{body}");
            assert!(message.contains(reason) && !message.contains("SENTINEL"), "{body}: {message}");
        }
    }

    #[test]
    fn the_issue_time_is_never_later_than_the_request() {
        // Found by the token_response fuzz target: before 1970, truncating rounded toward the future.
        for requested_at in ["1969-12-31T23:59:58.5Z", "2026-11-28T10:00:00.999999999Z"] {
            let requested_at: Timestamp = requested_at.parse().unwrap();
            let token = parse(200, br#"{"access_token":"1000.a","expires_in":3600}"#, requested_at).unwrap();
            assert!(token.issued_at <= requested_at, "issued {} for a request at {requested_at}", token.issued_at);
            assert!(requested_at.duration_since(token.issued_at) < jiff::SignedDuration::from_secs(1));
        }
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

    const CODE_SUCCESS: &str = r#"{"access_token":"1000.at","refresh_token":"1000.rt","scope":"ZohoCRM.modules.ALL","api_domain":"https://www.zohoapis.eu","token_type":"Bearer","expires_in":3600}"#;

    #[test]
    fn a_code_exchange_yields_the_refresh_token_next_to_the_access_token() {
        let exchange = parse_code_exchange(200, CODE_SUCCESS.as_bytes(), at()).unwrap();
        assert_eq!(exchange.refresh_token.expose_secret(), "1000.rt");
        assert_eq!(exchange.token.access_token.expose_secret(), "1000.at");
        assert_eq!(exchange.token.expires_at, "2026-11-28T11:00:00Z".parse::<Timestamp>().unwrap());
        // A refresh answer never carries one; should it, the refresh path ignores it.
        assert!(parse(200, CODE_SUCCESS.as_bytes(), at()).is_ok());
    }

    #[test]
    fn a_code_exchange_without_a_refresh_token_is_permanent_and_explains_offline_access() {
        for body in [
            r#"{"access_token":"1000.at","api_domain":"https://www.zohoapis.com","token_type":"Bearer","expires_in":3600}"#,
            r#"{"access_token":"1000.at","refresh_token":"","expires_in":3600}"#,
        ] {
            let err = parse_code_exchange(200, body.as_bytes(), at()).unwrap_err();
            assert_eq!((err.reason(), err.class()), ("RefreshTokenNotIssued", FailureClass::Permanent), "{body}");
            let message = err.to_string();
            assert!(message.contains("access_type=offline") && message.contains("prompt=consent"), "{message}");
            assert!(!message.contains("1000.at"), "{message}");
        }
    }

    #[test]
    fn invalid_code_means_what_the_grant_makes_it_mean() {
        let body = br#"{"error":"invalid_code"}"#;
        let refresh = parse(200, body, at()).unwrap_err();
        assert_eq!((refresh.reason(), refresh.class()), ("RefreshTokenRevoked", FailureClass::Permanent));
        let code = parse_code_exchange(200, body, at()).unwrap_err();
        assert_eq!((code.reason(), code.class()), ("GrantCodeInvalid", FailureClass::Permanent));
        let message = code.to_string();
        for hint in ["Generate Code", "bootstrap", "minutes", "once"] {
            assert!(message.contains(hint), "{hint:?} missing from {message}");
        }
        let device = parse_device_poll(200, body, at()).unwrap_err();
        assert_eq!((device.reason(), device.class()), ("TokenRequestRejected", FailureClass::Permanent));
    }

    #[test]
    fn code_exchange_errors_are_classified_like_refresh_errors() {
        let cases = [
            (200, r#"{"error":"invalid_client"}"#, "InvalidClient", FailureClass::Permanent),
            (200, r#"{"error":"invalid_client_secret"}"#, "InvalidClient", FailureClass::Permanent),
            (200, r#"{"error":"invalid_redirect_uri"}"#, "TokenRequestRejected", FailureClass::Permanent),
            (200, r#"{"error":"access_denied"}"#, "Throttled", FailureClass::Throttled),
            (400, r#"{"error":"Access Denied","status":"failure"}"#, "Throttled", FailureClass::Throttled),
            (502, "<html>Bad gateway</html>", "AccountsServerError", FailureClass::Transient),
        ];
        for (status, body, reason, class) in cases {
            let err = parse_code_exchange(status, body.as_bytes(), at()).unwrap_err();
            assert_eq!((err.reason(), err.class()), (reason, class), "{body}");
        }
    }

    fn device_code(status: u16, body: &str) -> Result<DeviceAuthorization, ZohoError> {
        parse_device_authorization(status, body.as_bytes())
    }

    #[test]
    fn a_device_authorization_reads_its_durations_in_either_unit() {
        let cases = [
            // Milliseconds, as Zoho's older page states them.
            (r#""interval":30000,"expires_in":300000"#, 30, 300),
            // Seconds, as RFC 8628 and some community clients have them.
            (r#""interval":5,"expires_in":300"#, 5, 300),
            (r#""interval":200,"expires_in":60000"#, 0, 60),
            // Missing: Zoho's documented 30 s between polls and 5 minutes of validity.
            ("\"x\":0", 30, 300),
            // An hour between polls is a misread, capped.
            (r#""interval":3600000,"expires_in":600"#, 60, 600),
        ];
        for (fields, interval, validity) in cases {
            let body = format!(
                r#"{{"user_code":"ABCD-1234","device_code":"1004.dc","verification_url":"https://accounts.zoho.com/oauth/v3/device",{fields}}}"#
            );
            let auth = device_code(200, &body).unwrap();
            assert_eq!(auth.user_code, "ABCD-1234");
            assert_eq!(auth.verification_url, "https://accounts.zoho.com/oauth/v3/device");
            assert_eq!(auth.device_code.expose_secret(), "1004.dc");
            assert_eq!(auth.interval.as_secs(), interval, "{fields}");
            assert_eq!(auth.expires_in.as_secs(), validity, "{fields}");
        }
        let auth = device_code(
            200,
            r#"{"user_code":"A","device_code":"d","verification_url":"https://x.test","interval":200}"#,
        );
        assert_eq!(auth.unwrap().interval, Duration::from_millis(200));
    }

    #[test]
    fn a_device_authorization_that_cannot_be_shown_or_used_is_rejected() {
        let cases = [
            (200, r#"{"error":"invalid_client"}"#, "InvalidClient"),
            (200, r#"{"error":"invalid_scope"}"#, "TokenRequestRejected"),
            (200, r#"{"error":"Access Denied","status":"failure"}"#, "Throttled"),
            (200, r#"{"user_code":"A","verification_url":"https://x.test"}"#, "MalformedResponse"),
            (
                200,
                r#"{"user_code":"A B[2J","device_code":"d","verification_url":"https://x.test"}"#,
                "MalformedResponse",
            ),
            (
                200,
                r#"{"user_code":"A","device_code":"d","verification_url":"javascript:alert(1)"}"#,
                "MalformedResponse",
            ),
            (503, "<html></html>", "AccountsServerError"),
        ];
        for (status, body, reason) in cases {
            assert_eq!(device_code(status, body).unwrap_err().reason(), reason, "{body}");
        }
        let printed = format!(
            "{:?}",
            device_code(200, r#"{"user_code":"A","device_code":"SENTINEL-dc","verification_url":"https://x.test"}"#)
                .unwrap()
        );
        assert!(!printed.contains("SENTINEL"), "{printed}");
    }

    fn poll(status: u16, body: &str) -> Result<DevicePoll, ZohoError> {
        parse_device_poll(status, body.as_bytes(), at())
    }

    #[test]
    fn each_documented_device_feedback_has_its_own_answer() {
        assert!(matches!(poll(200, r#"{"error":"authorization_pending"}"#), Ok(DevicePoll::Pending)));
        assert!(matches!(
            poll(400, r#"{"error":"authorization_pending","status":"failure"}"#),
            Ok(DevicePoll::Pending)
        ));
        assert!(matches!(poll(200, r#"{"error":"slow_down"}"#), Ok(DevicePoll::SlowDown)));
        assert!(matches!(poll(200, r#"{"error":"access_denied"}"#), Ok(DevicePoll::Denied)));
        assert!(matches!(poll(200, r#"{"error":"expired"}"#), Ok(DevicePoll::Expired)));
        match poll(200, CODE_SUCCESS) {
            Ok(DevicePoll::Granted(exchange)) => assert_eq!(exchange.refresh_token.expose_secret(), "1000.rt"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_dc_points_at_the_users_accounts_server() {
        // The documented shape: a location code.
        match poll(200, r#"{"user_location":"eu","error":"other_dc"}"#).unwrap() {
            DevicePoll::OtherDataCenter { accounts, location } => {
                assert_eq!(accounts.as_str(), "https://accounts.zoho.eu");
                assert_eq!(location.as_deref(), Some("eu"));
            }
            other => panic!("{other:?}"),
        }
        match poll(200, r#"{"user_location":"CA","error":"other_dc"}"#).unwrap() {
            DevicePoll::OtherDataCenter { accounts, .. } => {
                assert_eq!(accounts.as_str(), "https://accounts.zohocloud.ca")
            }
            other => panic!("{other:?}"),
        }
        // An explicit accounts server wins over the code.
        match poll(200, r#"{"error":"other_dc","user_location":"eu","accounts-server":"http://127.0.0.1:8123/"}"#)
            .unwrap()
        {
            DevicePoll::OtherDataCenter { accounts, .. } => assert_eq!(accounts.as_str(), "http://127.0.0.1:8123"),
            other => panic!("{other:?}"),
        }
        for body in [
            r#"{"error":"other_dc"}"#,
            r#"{"error":"other_dc","user_location":"mars"}"#,
            r#"{"error":"other_dc","accounts-server":"not a url"}"#,
        ] {
            assert_eq!(poll(200, body).unwrap_err().reason(), "MalformedResponse", "{body}");
        }
    }

    #[test]
    fn device_poll_errors_and_tokenless_grants_are_failures() {
        let cases = [
            (200, r#"{"error":"invalid_client"}"#, "InvalidClient"),
            (200, r#"{"error":"Access Denied","status":"failure"}"#, "Throttled"),
            (200, r#"{"access_token":"1000.at","expires_in":3600}"#, "RefreshTokenNotIssued"),
            (200, "<html></html>", "MalformedResponse"),
        ];
        for (status, body, reason) in cases {
            assert_eq!(poll(status, body).unwrap_err().reason(), reason, "{body}");
        }
    }

    #[test]
    fn a_revoked_or_already_invalid_token_counts_as_revoked() {
        for (status, body) in [
            (200, r#"{"status":"success"}"#),
            (400, r#"{"status":"failure","error":"invalid_token"}"#),
            (200, r#"{"status":"failure","error":"invalid_token"}"#),
            (400, r#"{}"#),
            (400, r#"{"error":"invalid_request"}"#),
        ] {
            assert!(parse_revoke(status, body.as_bytes()).is_ok(), "{status} {body}");
        }
        let cases = [
            (400, r#"{"error":"Access Denied","status":"failure"}"#, "Throttled"),
            (429, "", "Throttled"),
            (503, "<html></html>", "AccountsServerError"),
            (200, "<html></html>", "MalformedResponse"),
            (200, r#"{"status":"something"}"#, "MalformedResponse"),
        ];
        for (status, body, reason) in cases {
            assert_eq!(parse_revoke(status, body.as_bytes()).unwrap_err().reason(), reason, "{status} {body}");
        }
    }
}
