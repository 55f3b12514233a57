//! Reading the token back from a target Secret (`secret::inspect`): anyone who may edit Secrets
//! in the namespace can put anything into its annotations and data.
//!
//! Invariants:
//! - ownership is decided by the first controller reference alone;
//! - a token read back is one the operator could have written: the data's `expires_at` and the
//!   expires-at annotation name the same instant, issued-at comes before it by a lifetime Zoho
//!   could have given (at most a day), both in whole seconds, and the access token and token type
//!   are non-empty UTF-8 text, taken from the dotted key when a template replaced the plain one;
//! - a Secret built by `secret::desired` reads back as the token it was built from, whatever the
//!   shape's labels, annotations and type and the template's keys, and is up to date with itself.

#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::{
    ByteString,
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use libfuzzer_sys::fuzz_target;
use secrecy::{ExposeSecret, SecretString};
use zoho_token_operator::{
    api::{
        ACCESS_TOKEN_KEY, API_DOMAIN_KEY, EXPIRES_AT_ANNOTATION, EXPIRES_AT_KEY, FINGERPRINT_ANNOTATION,
        ISSUED_AT_ANNOTATION, SecretShape, TOKEN_TYPE_KEY,
    },
    secret::{self, Target},
    zoho::IssuedToken,
};

const OWNER_UID: &str = "6f1c-owner";

#[derive(Arbitrary, Debug)]
struct Input {
    owners: Vec<Owner>,
    annotations: Vec<(Name, Text)>,
    data: Vec<(Name, Value)>,
    written: Written,
}

#[derive(Arbitrary, Debug)]
struct Owner {
    ours: bool,
    controller: Option<bool>,
}

/// Mostly the names the operator uses, so that mutations spend their time on the values.
#[derive(Arbitrary, Debug)]
enum Name {
    ExpiresAtAnnotation,
    IssuedAtAnnotation,
    FingerprintAnnotation,
    AccessToken,
    ApiDomain,
    TokenType,
    ExpiresAt,
    Dotted(Box<Name>),
    Other(String),
}

impl Name {
    fn key(&self) -> String {
        match self {
            Self::ExpiresAtAnnotation => EXPIRES_AT_ANNOTATION.into(),
            Self::IssuedAtAnnotation => ISSUED_AT_ANNOTATION.into(),
            Self::FingerprintAnnotation => FINGERPRINT_ANNOTATION.into(),
            Self::AccessToken => ACCESS_TOKEN_KEY.into(),
            Self::ApiDomain => API_DOMAIN_KEY.into(),
            Self::TokenType => TOKEN_TYPE_KEY.into(),
            Self::ExpiresAt => EXPIRES_AT_KEY.into(),
            Self::Dotted(name) => format!(".{}", name.key()),
            Self::Other(key) => key.clone(),
        }
    }
}

/// Text, or a time written as RFC 3339 in one of the ways a person might.
#[derive(Arbitrary, Debug)]
enum Text {
    Raw(String),
    Time {
        seconds: i64,
        nanos: u32,
        offset_minutes: i16,
    },
    /// Minutes from a fixed instant: few enough values that annotations and data often agree.
    Minutes(i16),
}

impl Text {
    fn render(&self) -> String {
        match self {
            Self::Raw(text) => text.clone(),
            Self::Time { seconds, nanos, offset_minutes } => {
                let at = Timestamp::new(seconds % 253_402_207_200, (*nanos % 1_000_000_000) as i32)
                    .unwrap_or(Timestamp::UNIX_EPOCH);
                let offset = jiff::tz::Offset::from_seconds(i32::from(*offset_minutes % 1080) * 60)
                    .unwrap_or(jiff::tz::Offset::UTC);
                at.display_with_offset(offset).to_string()
            }
            Self::Minutes(minutes) => {
                let at = Timestamp::from_second(1_795_860_000 + 60 * i64::from(*minutes)).unwrap();
                at.to_string()
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Value {
    Text(Text),
    Bytes(Vec<u8>),
}

/// A token as the operator mints it, and the shape it is written with.
#[derive(Arbitrary, Debug)]
struct Written {
    access_token: String,
    api_domain: String,
    token_type: String,
    issued_at: u32,
    lifetime: u32,
    fingerprint: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    type_: Option<String>,
    rendered: BTreeMap<String, String>,
}

fuzz_target!(|input: Input| {
    let secret = secret_of(&input);
    check_inspect(&secret);
    round_trip(&input.written);
});

fn secret_of(input: &Input) -> Secret {
    let owner_references = input
        .owners
        .iter()
        .map(|owner| OwnerReference {
            api_version: "zoho-operator.dev/v1alpha1".into(),
            kind: "ZohoConnection".into(),
            name: "crm".into(),
            uid: if owner.ours { OWNER_UID.into() } else { "someone-else".into() },
            controller: owner.controller,
            block_owner_deletion: None,
        })
        .collect();
    Secret {
        metadata: ObjectMeta {
            annotations: Some(input.annotations.iter().map(|(name, text)| (name.key(), text.render())).collect()),
            owner_references: Some(owner_references),
            ..ObjectMeta::default()
        },
        data: Some(
            input
                .data
                .iter()
                .map(|(name, value)| {
                    let bytes = match value {
                        Value::Text(text) => text.render().into_bytes(),
                        Value::Bytes(bytes) => bytes.clone(),
                    };
                    (name.key(), ByteString(bytes))
                })
                .collect(),
        ),
        ..Secret::default()
    }
}

fn check_inspect(secret: &Secret) {
    assert!(matches!(secret::inspect(None, OWNER_UID), Target::Missing));
    let controller = secret.metadata.owner_references.iter().flatten().find(|r| r.controller == Some(true));
    let stored = match secret::inspect(Some(secret), OWNER_UID) {
        Target::Owned { stored, .. } => {
            assert_eq!(controller.map(|r| r.uid.as_str()), Some(OWNER_UID), "owned without being the controller");
            stored
        }
        Target::Foreign { owner } => {
            assert_ne!(controller.map(|r| r.uid.as_str()), Some(OWNER_UID), "the controller's Secret is foreign");
            assert_eq!(owner.is_some(), controller.is_some());
            return;
        }
        Target::Missing => panic!("an existing Secret is missing"),
    };
    let Some(stored) = stored else { return };
    let token = &stored.token;
    let annotation = |key: &str| secret.metadata.annotations.as_ref().and_then(|a| a.get(key)).cloned();
    let data = |key: &str| {
        let data = secret.data.as_ref()?;
        let value = data.get(&format!(".{key}")).or_else(|| data.get(key))?;
        String::from_utf8(value.0.clone()).ok()
    };
    let time = |text: Option<String>| text.and_then(|t| t.parse::<Timestamp>().ok());
    assert_eq!(time(annotation(EXPIRES_AT_ANNOTATION)), Some(token.expires_at), "expiry annotation");
    assert_eq!(time(data(EXPIRES_AT_KEY)), Some(token.expires_at), "expires_at in the data");
    assert_eq!(time(annotation(ISSUED_AT_ANNOTATION)), Some(token.issued_at), "issued-at annotation");
    assert!(token.issued_at < token.expires_at, "issued {} at or after expiry {}", token.issued_at, token.expires_at);
    let lifetime = token.expires_at.duration_since(token.issued_at);
    assert!(lifetime <= SignedDuration::from_hours(24), "a token living {lifetime:?} is trusted");
    assert_eq!((token.issued_at.subsec_nanosecond(), token.expires_at.subsec_nanosecond()), (0, 0));
    let access_token = token.access_token.expose_secret();
    assert!(!access_token.is_empty(), "an empty access token is trusted");
    assert_eq!(data(ACCESS_TOKEN_KEY).as_deref(), Some(access_token));
    assert!(!token.token_type.is_empty());
    assert_eq!(data(TOKEN_TYPE_KEY).as_deref(), Some(token.token_type.as_str()));
    assert_eq!(data(API_DOMAIN_KEY).filter(|d| !d.is_empty()), token.api_domain);
    assert_eq!(annotation(FINGERPRINT_ANNOTATION), stored.fingerprint);
    // What was trusted can be written again unchanged.
    secret::desired(&our_owner(), "crm", "ns", &SecretShape::default(), token, "fp", &BTreeMap::new());
}

fn our_owner() -> OwnerReference {
    OwnerReference {
        api_version: "zoho-operator.dev/v1alpha1".into(),
        kind: "ZohoConnection".into(),
        name: "crm".into(),
        uid: OWNER_UID.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Only what the operator can be asked to write: a token as Zoho issues it (non-blank, with an
/// API domain, a type and a lifetime of up to a day, in whole seconds), and template keys as the
/// CRD admits them (never starting with a dot, which is reserved for the standard keys).
fn round_trip(written: &Written) {
    let admissible_key = |key: &String| {
        let mut chars = key.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    if written.access_token.trim().is_empty() || written.api_domain.is_empty() || written.token_type.is_empty() {
        return;
    }
    let issued_at = Timestamp::from_second(1_700_000_000 + i64::from(written.issued_at)).unwrap();
    let token = IssuedToken {
        access_token: SecretString::from(written.access_token.clone()),
        api_domain: Some(written.api_domain.clone()),
        token_type: written.token_type.clone(),
        issued_at,
        expires_at: issued_at + SignedDuration::from_secs(1 + i64::from(written.lifetime % 86_400)),
    };
    let shape = SecretShape {
        labels: written.labels.clone(),
        annotations: written.annotations.clone(),
        type_: written.type_.clone(),
        template: None,
    };
    let rendered: BTreeMap<String, String> =
        written.rendered.iter().filter(|(key, _)| admissible_key(key)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let secret = secret::desired(&our_owner(), "crm", "ns", &shape, &token, &written.fingerprint, &rendered);
    assert!(secret::is_up_to_date(&secret, &secret));
    let Target::Owned { stored: Some(stored), type_ } = secret::inspect(Some(&secret), OWNER_UID) else {
        panic!("the operator's own Secret does not read back: {:?}", secret.metadata.annotations)
    };
    assert_eq!(type_.as_deref(), Some(secret::secret_type(&shape)));
    let back = &stored.token;
    assert_eq!(back.access_token.expose_secret(), token.access_token.expose_secret());
    assert_eq!((&back.api_domain, &back.token_type), (&token.api_domain, &token.token_type));
    assert_eq!((back.issued_at, back.expires_at), (token.issued_at, token.expires_at));
    assert_eq!(stored.fingerprint.as_deref(), Some(written.fingerprint.as_str()));
    check_inspect(&secret);
}
