//! The target template (`template::check` and `template::render`): whoever may edit a connection
//! writes it, and the operator renders it with a live access token.
//!
//! Input layout, so that seeds can be written by hand: 4 bytes of signed seconds for `expires_at`
//! (from 2026-11-28T10:00:00Z; a set high bit in a fifth byte picks the edges of time instead),
//! then text split at NUL: a suffix for the access token, the API domain, the token type, and up
//! to 8 templates under the keys `k0` to `k7`.
//!
//! Invariants:
//! - neither function panics, and both return (fuel bounds the work; libFuzzer's -timeout catches
//!   a template that runs away anyway);
//! - every rendered value is at most 64 KiB, every key of the template is rendered, and
//!   rendering the same token twice gives the same Secret;
//! - a template sees the token's fields and nothing else: a sentinel in the environment, and one
//!   in a file, which an include could name, never reach the output;
//! - an error from rendering a real token never quotes it, and says which key failed.

#![no_main]

use std::sync::Once;

use jiff::{SignedDuration, Timestamp};
use libfuzzer_sys::fuzz_target;
use secrecy::{ExposeSecret, SecretString};
use zoho_token_operator::{
    api::SecretTemplate,
    template::{self, TokenFields},
};

/// The access token starts with this; `~` cannot occur in a key, so a message that contains it
/// quotes a field's value.
const TOKEN_PREFIX: &str = "1000.~TOKENSENTINEL~";
const ENV_NAME: &str = "ZOHO_FUZZ_ENV_SENTINEL";
const ENV_SENTINEL: &str = "ENVSENTINEL-3f9d";
const FILE_SENTINEL: &str = "FILESENTINEL-a41c";
/// Seeds include this path; see `setup`.
const SENTINEL_FILE: &str = "/tmp/zoho-token-operator-fuzz-sentinel";
const MAX_RENDERED_BYTES: usize = 64 * 1024;

fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: set once, before any template is rendered, while nothing else reads the
        // environment.
        unsafe { std::env::set_var(ENV_NAME, ENV_SENTINEL) };
        std::fs::write(SENTINEL_FILE, FILE_SENTINEL).expect("write the sentinel file");
    });
}

fuzz_target!(|data: &[u8]| {
    setup();
    if data.len() < 5 {
        return;
    }
    let expires_at = expires_at(data[4], i32::from_be_bytes(data[..4].try_into().unwrap()));
    let text = String::from_utf8_lossy(&data[5..]);
    let mut parts = text.split('\0');
    let (suffix, api_domain, token_type) =
        (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let template = SecretTemplate {
        data: parts.take(8).enumerate().map(|(i, source)| (format!("k{i}"), source.to_string())).collect(),
    };
    let access_token = SecretString::from(format!("{TOKEN_PREFIX}{suffix}"));
    let fields = TokenFields { access_token: &access_token, api_domain, token_type, expires_at };

    if let Err(problem) = template::check(&template) {
        assert_eq!(problem.reason(), "InvalidTemplate");
        assert!(!problem.to_string().contains("~TOKENSENTINEL~"), "check never sees the token");
    }
    match template::render(&template, &fields) {
        Ok(rendered) => {
            assert_eq!(rendered.keys().collect::<Vec<_>>(), template.data.keys().collect::<Vec<_>>());
            for (key, value) in &rendered {
                assert!(value.len() <= MAX_RENDERED_BYTES, "{key} rendered to {} bytes", value.len());
                for sentinel in [ENV_SENTINEL, FILE_SENTINEL] {
                    let source = &template.data[key];
                    if !source.contains(sentinel) && !fields_contain(&fields, sentinel) {
                        assert!(!value.contains(sentinel), "{key} reveals {sentinel}: {source:?}");
                    }
                }
            }
            let again = template::render(&template, &fields).expect("a template that rendered renders again");
            assert_eq!(rendered, again, "rendering is not deterministic");
        }
        Err(problem) => {
            assert_eq!(problem.reason(), "InvalidTemplate");
            let message = problem.to_string();
            assert!(!message.contains(access_token.expose_secret()), "the error quotes the token: {message}");
            assert!(!message.contains("~TOKENSENTINEL~"), "the error quotes the token: {message}");
            assert!(message.contains("template.data[\"k"), "the error names no key: {message}");
            assert!(message.len() <= 300, "a {}-byte message", message.len());
        }
    }
});

fn fields_contain(fields: &TokenFields, needle: &str) -> bool {
    [fields.access_token.expose_secret(), fields.api_domain, fields.token_type].iter().any(|f| f.contains(needle))
}

/// Mostly times near now; a set high bit picks the edges of what a timestamp can hold.
fn expires_at(selector: u8, seconds: i32) -> Timestamp {
    let base = match selector & 0x83 {
        0x80 => Timestamp::MAX,
        0x81 => Timestamp::MIN,
        0x82 => Timestamp::UNIX_EPOCH,
        _ => "2026-11-28T10:00:00Z".parse().unwrap(),
    };
    let offset = SignedDuration::new(i64::from(seconds), i32::from(selector & 0x7c) * 10_000_000);
    base.checked_add(offset).unwrap_or(base)
}
