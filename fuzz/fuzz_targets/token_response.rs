//! Zoho's token-endpoint answers, as the operator (refresh) and `bootstrap` (code exchange, device
//! poll) read them: any HTTP status, any bytes.
//!
//! Input layout, so that seeds can be written by hand: 2 bytes HTTP status (big-endian), 1 byte
//! clock selector, 4 bytes signed seconds and 4 bytes nanoseconds for `requested_at`, then the body.
//!
//! Invariants:
//! - classification is total: every answer is a token or an error whose reason is one a parser
//!   can give, with the class that reason implies, and a short, printable message;
//! - a token expires after `requested_at`, within Zoho's plausible lifetime, and was issued no
//!   later than it was asked for (whole seconds, at most one second earlier);
//! - the value of `access_token` (and of `refresh_token`) never appears in an error's message or
//!   debug output, nor in a token's debug output. Checked by putting sentinels in place of the
//!   body's own values, so that a short value that happens to spell a word of a message is no
//!   false alarm.

#![no_main]

use jiff::{SignedDuration, Timestamp};
use libfuzzer_sys::fuzz_target;
use secrecy::ExposeSecret;
use serde_json::Value;
use zoho_token_operator::{
    fuzzing,
    zoho::{DevicePoll, FailureClass, IssuedToken, ZohoError},
};

const ACCESS_SENTINEL: &str = "1000.FUZZACCESS7c1e.0b5d";
const REFRESH_SENTINEL: &str = "1000.FUZZREFRESH93aa.41f0";
/// Long enough for a sanitized error code (40 characters) and the fixed text around it.
const MAX_MESSAGE_CHARS: usize = 400;

fuzz_target!(|data: &[u8]| {
    if data.len() < 11 {
        return;
    }
    let status = u16::from_be_bytes([data[0], data[1]]);
    let requested_at = requested_at(data[2], &data[3..11]);
    let body = &data[11..];

    let refresh = fuzzing::parse_refresh(status, body, requested_at);
    match &refresh {
        Ok(token) => check_token(token, requested_at),
        Err(err) => {
            check_error(err, &["GrantCodeInvalid", "RefreshTokenNotIssued"]);
            check_status_rules(status, body, err);
        }
    }
    match fuzzing::parse_code_exchange(status, body, requested_at) {
        Ok(exchange) => {
            check_token(&exchange.token, requested_at);
            assert!(!exchange.refresh_token.expose_secret().trim().is_empty(), "a blank refresh token was accepted");
        }
        Err(err) => check_error(&err, &[]),
    }
    match fuzzing::parse_device_poll(status, body, requested_at) {
        Ok(DevicePoll::Granted(exchange)) => check_token(&exchange.token, requested_at),
        Ok(_) => {}
        Err(err) => check_error(&err, &[]),
    }

    // The same answer with sentinels for its secrets. Where the body already spells a sentinel
    // elsewhere, such as in `error`, which is quoted by design, a sighting would prove nothing.
    if [ACCESS_SENTINEL, REFRESH_SENTINEL].iter().any(|sentinel| contains(body, core(sentinel).as_bytes())) {
        return;
    }
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(body) else { return };
    if !object.contains_key("access_token") && !object.contains_key("refresh_token") {
        return;
    }
    if object.contains_key("access_token") {
        object.insert("access_token".into(), Value::from(ACCESS_SENTINEL));
    }
    if object.contains_key("refresh_token") {
        object.insert("refresh_token".into(), Value::from(REFRESH_SENTINEL));
    }
    let body = serde_json::to_vec(&object).expect("a JSON object serializes");
    match fuzzing::parse_refresh(status, &body, requested_at) {
        Ok(token) => {
            assert_eq!(token.access_token.expose_secret(), ACCESS_SENTINEL, "the token is the body's");
            assert_no_secret("token debug output", &format!("{token:?}"));
        }
        Err(err) => assert_no_secret_in_error(&err),
    }
    match fuzzing::parse_code_exchange(status, &body, requested_at) {
        Ok(exchange) => assert_no_secret("code exchange debug output", &format!("{exchange:?}")),
        Err(err) => assert_no_secret_in_error(&err),
    }
    match fuzzing::parse_device_poll(status, &body, requested_at) {
        Ok(poll) => assert_no_secret("device poll debug output", &format!("{poll:?}")),
        Err(err) => assert_no_secret_in_error(&err),
    }
});

/// Mostly times near now; a set high bit picks the edges of the representable range, where
/// adding a lifetime overflows.
fn requested_at(selector: u8, bytes: &[u8]) -> Timestamp {
    let seconds = i32::from_be_bytes(bytes[..4].try_into().unwrap());
    let nanos = u32::from_be_bytes(bytes[4..8].try_into().unwrap()) % 1_000_000_000;
    let base = match selector & 0x83 {
        0x80 => Timestamp::MAX,
        0x81 => Timestamp::MIN,
        0x82 => Timestamp::UNIX_EPOCH,
        _ => "2026-11-28T10:00:00Z".parse().unwrap(),
    };
    let offset = SignedDuration::new(i64::from(seconds), nanos as i32);
    base.checked_add(offset).unwrap_or(base)
}

fn check_token(token: &IssuedToken, requested_at: Timestamp) {
    assert!(!token.access_token.expose_secret().trim().is_empty(), "a blank access token was accepted");
    assert!(token.expires_at > requested_at, "expires {} at or before the request {requested_at}", token.expires_at);
    assert!(token.issued_at <= requested_at, "issued {} after the request {requested_at}", token.issued_at);
    assert!(
        requested_at.duration_since(token.issued_at) < SignedDuration::from_secs(1),
        "issued {} more than a second before the request {requested_at}",
        token.issued_at
    );
    assert_eq!(token.issued_at.subsec_nanosecond(), 0, "issued_at has whole seconds, as stored in the Secret");
    let lifetime = token.expires_at.duration_since(token.issued_at);
    assert!(
        lifetime >= SignedDuration::from_secs(1) && lifetime <= SignedDuration::from_hours(24),
        "implausible lifetime {lifetime:?}"
    );
    assert!(!token.token_type.is_empty(), "an empty token type");
    if let Some(domain) = &token.api_domain {
        assert!(domain.starts_with("https://") || domain.starts_with("http://"), "api_domain {domain:?}");
    }
}

/// The reasons a parser may give, and the class each implies. Reasons about the URL or the
/// transport can only come from elsewhere.
fn expected_class(reason: &str) -> Option<FailureClass> {
    match reason {
        "InvalidClient"
        | "RefreshTokenRevoked"
        | "GrantCodeInvalid"
        | "RefreshTokenNotIssued"
        | "TokenRequestRejected" => Some(FailureClass::Permanent),
        "Throttled" => Some(FailureClass::Throttled),
        "AccountsServerError" | "MalformedResponse" => Some(FailureClass::Transient),
        _ => None,
    }
}

fn check_error(err: &ZohoError, impossible: &[&str]) {
    let reason = err.reason();
    let class = expected_class(reason).unwrap_or_else(|| panic!("a parser gave reason {reason}: {err}"));
    assert_eq!(err.class(), class, "{reason}");
    assert!(!impossible.contains(&reason), "reason {reason} for this grant: {err}");
    let message = err.to_string();
    assert!(!message.is_empty());
    assert!(message.chars().count() <= MAX_MESSAGE_CHARS, "a {}-character message: {message}", message.len());
    assert!(!message.chars().any(char::is_control), "control characters reach a condition: {message:?}");
}

/// What the HTTP status alone decides, whatever the body says, as long as it offers no token.
fn check_status_rules(status: u16, body: &[u8], err: &ZohoError) {
    // As lenient as the operator's reader: unknown fields are skipped unread, even invalid UTF-8.
    let syntax_error = serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err();
    #[derive(serde::Deserialize)]
    struct Offer {
        access_token: Option<String>,
    }
    let offers_token = serde_json::from_slice::<Offer>(body)
        .is_ok_and(|offer| offer.access_token.is_some_and(|token| !token.trim().is_empty()));
    if syntax_error && status >= 500 {
        assert_eq!(err.reason(), "AccountsServerError", "HTTP {status} with a body that is not JSON");
    }
    if status == 429 && !offers_token {
        assert_eq!(err.reason(), "Throttled", "HTTP 429 without a token");
    }
}

fn assert_no_secret_in_error(err: &ZohoError) {
    assert_no_secret("error message", &err.to_string());
    assert_no_secret("error debug output", &format!("{err:?}"));
}

fn assert_no_secret(place: &str, text: &str) {
    for (name, sentinel) in [("access token", ACCESS_SENTINEL), ("refresh token", REFRESH_SENTINEL)] {
        assert!(!text.contains(core(sentinel)), "{place} reveals the {name}: {text}");
    }
}

/// The distinctive middle of a sentinel, so that a truncated or sanitized copy is caught too.
fn core(sentinel: &str) -> &str {
    &sentinel[5..sentinel.len() - 5]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}
