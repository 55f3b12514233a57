//! Extra keys of the target Secret, rendered from the token with Jinja syntax (minijinja).
//!
//! A template sees the token's fields and nothing else: no environment, no files, no other
//! templates. Rendering is bounded in time (fuel) and size, because a template is written by
//! whoever may edit a connection, and a hostile one must not stall the operator.

use std::{collections::BTreeMap, panic::AssertUnwindSafe};

use jiff::Timestamp;
use minijinja::{
    AutoEscape, Environment, Error, ErrorKind, Output, State, UndefinedBehavior, Value, context, value::ValueKind,
};
use secrecy::{ExposeSecret, SecretString};

use crate::{api::SecretTemplate, error::Problem, schedule::format_time, zoho::IssuedToken};

/// Instructions one key may take; a few thousand suffice for any sensible template.
const FUEL: u64 = 50_000;
/// The rendered value of one key; a Secret holds at most 1 MiB in all.
const MAX_RENDERED_BYTES: usize = 64 * 1024;
/// Items of lists and maps one `{{ ... }}` may print. minijinja charges fuel per item when a loop
/// or filter walks a list, but not when it prints one: in a release build `{{ [1] * 100000000 }}`
/// took 8 seconds of CPU (19 with the token) before fuel stopped it, blocking a runtime thread.
const MAX_PRINTED_ITEMS: usize = 10_000;

/// The variables a template sees.
pub struct TokenFields<'a> {
    pub access_token: &'a SecretString,
    pub api_domain: &'a str,
    pub token_type: &'a str,
    pub expires_at: Timestamp,
}

impl<'a> From<&'a IssuedToken> for TokenFields<'a> {
    fn from(token: &'a IssuedToken) -> Self {
        Self {
            access_token: &token.access_token,
            api_domain: token.api_domain.as_deref().unwrap_or_default(),
            token_type: &token.token_type,
            expires_at: token.expires_at,
        }
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_fuel(Some(FUEL));
    // minijinja 3.1's printf-style `format` panics on a format string with a non-ASCII character
    // after `%(` (found by the template fuzz target); `~` joins strings without it.
    env.remove_filter("format");
    env.set_formatter(|out: &mut Output, state: &mut State, value: &Value| {
        let mut budget = MAX_PRINTED_ITEMS;
        if !printable_within(value, &mut budget) {
            let message = format!("a list or map of more than {MAX_PRINTED_ITEMS} items cannot be printed");
            return Err(Error::new(ErrorKind::InvalidOperation, message));
        }
        minijinja::escape_formatter(out, state, value)
    });
    env
}

/// Whether printing `value` visits at most `budget` items, nested ones included. It stops
/// counting at the budget, so that the check itself stays cheap for a list of any length.
fn printable_within(value: &Value, budget: &mut usize) -> bool {
    if !matches!(value.kind(), ValueKind::Seq | ValueKind::Map | ValueKind::Iterable) {
        return true;
    }
    let Ok(items) = value.try_iter() else { return true };
    for item in items {
        let Some(left) = budget.checked_sub(1) else { return false };
        *budget = left;
        let nested = match value.kind() {
            ValueKind::Map => value.get_item(&item).unwrap_or_default(),
            _ => item,
        };
        if !printable_within(&nested, budget) {
            return false;
        }
    }
    true
}

/// Checks every template by rendering it with stand-in values, so that a broken template is
/// reported, with its details, before a token is minted for it.
pub fn check(template: &SecretTemplate) -> Result<(), Problem> {
    let stand_in = SecretString::from("1000.0123456789abcdef.0123456789abcdef");
    let fields = TokenFields {
        access_token: &stand_in,
        api_domain: "https://www.zohoapis.com",
        token_type: "Bearer",
        expires_at: "2026-01-01T00:00:00Z".parse().expect("a valid time"),
    };
    render_all(template, &fields, true).map(drop)
}

/// Renders every key of `template` for a real token. Errors name the key and the kind of
/// failure, never a value: minijinja's details could quote the token.
pub fn render(template: &SecretTemplate, fields: &TokenFields) -> Result<BTreeMap<String, String>, Problem> {
    render_all(template, fields, false)
}

fn render_all(
    template: &SecretTemplate,
    fields: &TokenFields,
    detailed_errors: bool,
) -> Result<BTreeMap<String, String>, Problem> {
    render_with(&environment(), template, fields, detailed_errors)
}

fn render_with(
    env: &Environment,
    template: &SecretTemplate,
    fields: &TokenFields,
    detailed_errors: bool,
) -> Result<BTreeMap<String, String>, Problem> {
    let context = context! {
        access_token => fields.access_token.expose_secret(),
        api_domain => fields.api_domain,
        token_type => fields.token_type,
        expires_at => format_time(fields.expires_at),
        expires_at_unix => fields.expires_at.as_second(),
    };
    template
        .data
        .iter()
        .map(|(key, source)| {
            let invalid = |detail: String| Problem::InvalidTemplate { key: key.clone(), detail };
            // A panic in the engine would end the reconcile and with it the whole process, for
            // every connection; it is this template's problem instead.
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| env.render_str(source, context.clone())))
                .map_err(|_| invalid("the template engine failed on it; simplify the template".to_string()))?;
            let rendered = outcome.map_err(|err| {
                let line = err.line().map(|line| format!(" at line {line}")).unwrap_or_default();
                match (detailed_errors, err.detail()) {
                    (true, Some(detail)) => invalid(format!("{}{line}: {detail}", err.kind())),
                    _ => invalid(format!("{}{line}", err.kind())),
                }
            })?;
            if rendered.len() > MAX_RENDERED_BYTES {
                return Err(invalid(format!("renders to more than {MAX_RENDERED_BYTES} bytes")));
            }
            Ok((key.clone(), rendered))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(pairs: &[(&str, &str)]) -> SecretTemplate {
        SecretTemplate { data: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }

    fn fields(token: &SecretString) -> TokenFields<'_> {
        TokenFields {
            access_token: token,
            api_domain: "https://www.zohoapis.eu",
            token_type: "Bearer",
            expires_at: "2026-11-28T11:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn every_variable_renders() {
        let token = SecretString::from("1000.abc");
        let rendered = render(
            &template(&[
                ("authorization", "Zoho-oauthtoken {{ access_token }}"),
                (
                    "zoho.json",
                    r#"{"token": {{ access_token|tojson }}, "api": "{{ api_domain }}", "type": "{{ token_type }}"}"#,
                ),
                ("expiry", "{{ expires_at }} {{ expires_at_unix }}"),
            ]),
            &fields(&token),
        )
        .unwrap();
        assert_eq!(rendered["authorization"], "Zoho-oauthtoken 1000.abc");
        assert_eq!(
            rendered["zoho.json"],
            r#"{"token": "1000.abc", "api": "https://www.zohoapis.eu", "type": "Bearer"}"#
        );
        assert_eq!(rendered["expiry"], "2026-11-28T11:00:00Z 1795863600");
    }

    #[test]
    fn short_lists_and_maps_still_print() {
        let token = SecretString::from("1000.abc");
        let source = "{{ [access_token, token_type] }} {{ {'t': access_token} }} {{ [1] * 3 }}";
        let rendered = render(&template(&[("k", source)]), &fields(&token)).unwrap();
        assert_eq!(rendered["k"], "['1000.abc', 'Bearer'] {'t': '1000.abc'} [1, 1, 1]");
    }

    #[test]
    fn html_characters_are_not_escaped() {
        let token = SecretString::from("1000.a&b<c>");
        let rendered = render(&template(&[("t.html", "{{ access_token }}")]), &fields(&token)).unwrap();
        assert_eq!(rendered["t.html"], "1000.a&b<c>");
    }

    #[test]
    fn broken_templates_name_the_key_and_the_cause() {
        for (source, expected) in [
            ("{{ access_token ", "syntax error"),
            ("{{ client_secret }}", "undefined"),
            ("{% for x in range(100000) %}{% for y in range(100000) %}{% endfor %}{% endfor %}", "fuel"),
            ("{{ 'x' * 70000 }}", "more than"),
            // Found by the template fuzz target: printing a lazily repeated list costs no fuel.
            ("{{ [access_token] * 100000000 }}", "cannot be printed"),
            ("{{ [[1] * 10000] * 10000 }}", "cannot be printed"),
            ("{{ {'a': [1] * 100000000} }}", "cannot be printed"),
        ] {
            let started = std::time::Instant::now();
            let err = check(&template(&[("bad", source)])).unwrap_err();
            assert!(started.elapsed() < std::time::Duration::from_secs(1), "{source} took {:?}", started.elapsed());
            assert_eq!(err.reason(), "InvalidTemplate");
            let message = err.to_string();
            assert!(message.contains("[\"bad\"]") && message.to_lowercase().contains(expected), "{source}: {message}");
        }
    }

    #[test]
    fn a_template_that_crashed_the_engine_is_an_error() {
        // `format` panicked on this; the filter is gone.
        let err = check(&template(&[("k", "{{ '%(é'|format(1) }}")])).unwrap_err();
        assert!(err.to_string().contains("unknown filter"), "{err}");
        // Any other panic in the engine is caught too.
        let mut env = environment();
        env.add_filter("explode", |_: String| -> String { panic!("a bug in a filter") });
        let token = SecretString::from("1000.SENTINEL");
        let err =
            render_with(&env, &template(&[("k", "{{ access_token|explode }}")]), &fields(&token), false).unwrap_err();
        assert_eq!(err.reason(), "InvalidTemplate");
        assert!(err.to_string().contains("the template engine failed on it"), "{err}");
    }

    #[test]
    fn errors_for_a_real_token_never_quote_it() {
        let token = SecretString::from("1000.SENTINEL");
        let err = render(&template(&[("n", "{{ access_token | int }}")]), &fields(&token)).unwrap_err();
        assert!(!err.to_string().contains("SENTINEL"), "{err}");
    }
}
