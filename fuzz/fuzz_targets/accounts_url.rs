//! `AccountsUrl::parse` and `AllowList::check`: where the operator may send credentials. A
//! ZohoConnection's author chooses `spec.accountsUrl`; only Zoho's official accounts servers and
//! what the administrator allowed may receive a client secret and refresh token.
//!
//! The allowed set is written out here, not taken from the code under test: the `https` origins
//! of `DataCenter::ALL` and one loopback entry, as `--allow-accounts-url` would add it.
//!
//! Invariants, for any text:
//! - whatever the list admits normalizes to exactly one allowed origin, and the token endpoint
//!   built from it reaches that origin's scheme, host and port and nothing else;
//! - the raw text itself names that same scheme, host and port, with no user information, path,
//!   query or fragment: normalization never turns one destination into another;
//! - plain `http` is admitted only for the loopback entry;
//! - normalization is a fixpoint: parsing a normalized origin gives it back;
//! - every refusal has its reason, and a parse error quotes at most 200 characters of the input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use url::Url;
use zoho_token_operator::zoho::{AccountsUrl, AllowList, DataCenter};

const LOOPBACK: &str = "http://127.0.0.1:8080";

/// (origin, scheme, host, port) of everything that may receive credentials.
fn allowed() -> Vec<(String, &'static str, String, u16)> {
    let mut allowed: Vec<_> = DataCenter::ALL
        .iter()
        .map(|dc| {
            let host = dc.accounts_url().strip_prefix("https://").expect("official servers are https").to_string();
            (format!("https://{host}"), "https", host, 443)
        })
        .collect();
    allowed.push((LOOPBACK.to_string(), "http", "127.0.0.1".to_string(), 8080));
    allowed
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let allowed = allowed();
    let list = AllowList::new(vec![AccountsUrl::parse(LOOPBACK).expect("the loopback entry parses")]);

    let parsed = match AccountsUrl::parse(raw) {
        Ok(parsed) => parsed,
        Err(err) => {
            assert_eq!(err.reason(), "InvalidAccountsUrl");
            let quoted = err.to_string().chars().count();
            assert!(quoted <= 200 * 10 + 200, "the message quotes {quoted} characters of input");
            return;
        }
    };
    assert_eq!(AccountsUrl::parse(parsed.as_str()).as_ref().ok(), Some(&parsed), "normalization is no fixpoint");
    let origin = Url::parse(parsed.as_str()).expect("a normalized origin is a URL");
    assert!(matches!(origin.scheme(), "https" | "http"));
    assert!(origin.username().is_empty() && origin.password().is_none());
    assert!(origin.path() == "/" && origin.query().is_none() && origin.fragment().is_none());

    let admitted = match list.check(&parsed) {
        Ok(()) => true,
        Err(err) => {
            assert_eq!(err.reason(), "AccountsUrlNotAllowed");
            assert!(err.to_string().contains(parsed.as_str()), "the refusal names the origin");
            false
        }
    };
    let matches: Vec<_> = allowed.iter().filter(|(allowed, ..)| allowed == parsed.as_str()).collect();
    assert_eq!(admitted, !matches.is_empty(), "{raw:?} normalized to {parsed}, admitted: {admitted}");
    let Some((_, scheme, host, port)) = matches.first() else { return };
    assert_eq!(matches.len(), 1, "the allowed origins are distinct");

    // Where a request would really go: the endpoint URL the client posts to.
    let endpoint = Url::parse(&format!("{parsed}/oauth/v2/token")).expect("the endpoint is a URL");
    let destination = (endpoint.scheme(), endpoint.host_str(), endpoint.port_or_known_default());
    assert_eq!(destination, (*scheme, Some(host.as_str()), Some(*port)), "{raw:?} posts elsewhere");
    assert!(endpoint.username().is_empty() && endpoint.password().is_none());
    assert_eq!(endpoint.path(), "/oauth/v2/token");

    // What the text names, read independently of the normalization.
    let named = Url::parse(raw.trim()).expect("admitted text is a URL");
    assert_eq!((named.scheme(), named.host_str(), named.port_or_known_default()), destination, "{raw:?}");
    assert!(named.username().is_empty() && named.password().is_none(), "{raw:?} carries user information");
    assert!(named.path() == "/" && named.query().is_none() && named.fragment().is_none(), "{raw:?}");

    match *scheme {
        "http" => assert!(parsed.is_loopback() && parsed.data_center().is_none(), "plain http beyond loopback"),
        _ => assert!(!parsed.is_loopback() && parsed.data_center().is_some(), "{parsed} is no data center's"),
    }
});
