//! Pure decisions about time: when to mint the next token and how long to wait after a failure.
//! Every function takes the current time as a parameter, so that tests can pin it.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

use crate::zoho::FailureClass;

/// Zoho blocks token creation "for the rest of the ten minutes" once a refresh token exceeds its
/// quota, so a throttled credential waits out a whole window.
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(600);
const TRANSIENT_BASE: Duration = Duration::from_secs(5);
const TRANSIENT_CAP: Duration = Duration::from_secs(300);
/// Problems only a person can fix wait for a change to the spec or the credentials, which the
/// watches report at once; this slow re-check catches fixes made elsewhere, such as a client
/// re-enabled at Zoho.
pub const PERMANENT_RECHECK: Duration = Duration::from_secs(3600);
const API_RETRY_BASE: Duration = Duration::from_secs(1);
const API_RETRY_CAP: Duration = Duration::from_secs(15);

/// When to mint the successor of a token issued at `issued_at` that expires at `expires_at`.
///
/// `refresh_before` defaults to a third of the lifetime and is capped at half of it: a larger
/// margin would mint more than twice per lifetime and eat into Zoho's quota.
pub fn refresh_at(issued_at: Timestamp, expires_at: Timestamp, refresh_before: Option<Duration>) -> Timestamp {
    let lifetime = expires_at.duration_since(issued_at).max(SignedDuration::ZERO);
    let margin = match refresh_before {
        Some(wanted) => SignedDuration::try_from(wanted).unwrap_or(SignedDuration::MAX).min(lifetime / 2),
        None => lifetime / 3,
    };
    expires_at - margin
}

/// RFC 3339 in UTC with whole seconds: the format of `expires_at`, of the annotations and of
/// every time in a message.
pub fn format_time(at: Timestamp) -> String {
    whole_seconds(at).to_string()
}

/// `at` rounded to the nearest second, or down where rounding up would pass the last
/// representable second. Times come from Secrets anyone in the namespace may edit, and must
/// never make the operator panic.
pub fn whole_seconds(at: Timestamp) -> Timestamp {
    at.round(jiff::Unit::Second).unwrap_or_else(|_| {
        let down = jiff::TimestampRound::new().smallest(jiff::Unit::Second).mode(jiff::RoundMode::Floor);
        at.round(down).expect("rounding down cannot pass the earliest timestamp, a whole second")
    })
}

/// A token is usable while it has not expired.
pub fn is_usable(expires_at: Timestamp, now: Timestamp) -> bool {
    expires_at > now
}

/// How long to wait before the next attempt after `failed_attempts` consecutive failures (at least
/// one). `jitter` in `[0, 1)` spreads retries of many connections so they do not arrive together.
pub fn retry_delay(class: FailureClass, failed_attempts: u32, jitter: f64) -> Duration {
    let jitter = unit_fraction(jitter);
    match class {
        FailureClass::Transient => exponential(TRANSIENT_BASE, TRANSIENT_CAP, failed_attempts, jitter),
        FailureClass::Throttled => THROTTLE_WINDOW + THROTTLE_WINDOW.mul_f64(0.1 * jitter),
        FailureClass::Permanent => PERMANENT_RECHECK + PERMANENT_RECHECK.mul_f64(0.1 * jitter),
    }
}

/// How long to wait before retrying after `failed_attempts` consecutive Kubernetes API errors. The
/// cap is short: an API server outage costs Zoho nothing, and the operator should be back soon
/// after the API server is.
pub fn api_retry_delay(failed_attempts: u32, jitter: f64) -> Duration {
    exponential(API_RETRY_BASE, API_RETRY_CAP, failed_attempts, jitter)
}

/// `base` doubled per attempt after the first, up to `cap`, with "equal jitter": never less than
/// half the full delay, so that the backoff keeps growing.
fn exponential(base: Duration, cap: Duration, failed_attempts: u32, jitter: f64) -> Duration {
    let exponent = failed_attempts.saturating_sub(1).min(16);
    let full = base.saturating_mul(1 << exponent).min(cap);
    full.div_f64(2.0) + full.div_f64(2.0).mul_f64(unit_fraction(jitter))
}

/// `jitter` clamped to `[0, 1]`. `Duration::mul_f64` panics on NaN, which `clamp` passes through.
fn unit_fraction(jitter: f64) -> f64 {
    if jitter.is_nan() { 0.0 } else { jitter.clamp(0.0, 1.0) }
}

/// A jitter fraction in `[0, 1)` derived from a stable seed, so that the retry time computed
/// before a restart is the one computed after it.
pub fn stable_jitter(seed: &str, failed_attempts: u32) -> f64 {
    let digest = Sha256::new().chain_update(seed.as_bytes()).chain_update(failed_attempts.to_be_bytes()).finalize();
    let bits = u64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 digest has 32 bytes"));
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Parses a Go-style duration such as `20m`, `1h30m` or `1.5h`, the format `refreshBefore` uses.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("{text:?} is not a duration such as 20m, 90s or 1h30m");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(invalid)?;
        let value: f64 = rest[..number_len].parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        total += value * seconds_per_unit;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn default_refresh_is_a_third_of_the_lifetime_before_expiry() {
        let at = refresh_at(ts("2026-11-28T10:00:00Z"), ts("2026-11-28T11:00:00Z"), None);
        assert_eq!(at, ts("2026-11-28T10:40:00Z"));
    }

    #[test]
    fn explicit_refresh_before_is_honoured_up_to_half_the_lifetime() {
        let issued = ts("2026-11-28T10:00:00Z");
        let expires = ts("2026-11-28T11:00:00Z");
        assert_eq!(refresh_at(issued, expires, Some(Duration::from_secs(600))), ts("2026-11-28T10:50:00Z"));
        assert_eq!(refresh_at(issued, expires, Some(Duration::from_secs(7200))), ts("2026-11-28T10:30:00Z"));
        assert_eq!(refresh_at(issued, expires, Some(Duration::ZERO)), expires);
    }

    #[test]
    fn times_at_the_edges_of_the_calendar_format_without_panicking() {
        // Found by the template fuzz target: rounding the last half second of time up overflowed.
        assert_eq!(format_time(Timestamp::MAX), "9999-12-30T22:00:00Z");
        assert_eq!(format_time(Timestamp::MIN), Timestamp::MIN.to_string());
        assert_eq!(format_time(ts("2026-11-28T10:00:00.5Z")), "2026-11-28T10:00:01Z");
    }

    #[test]
    fn a_token_is_usable_strictly_before_its_expiry() {
        let expires = ts("2026-11-28T11:00:00Z");
        assert!(is_usable(expires, ts("2026-11-28T10:59:59Z")));
        assert!(!is_usable(expires, expires));
    }

    #[test]
    fn transient_backoff_doubles_from_seconds_to_a_cap_of_five_minutes() {
        let delays: Vec<u64> = (1..=10).map(|n| retry_delay(FailureClass::Transient, n, 1.0).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300, 300]);
        assert_eq!(retry_delay(FailureClass::Transient, 1, 0.0), Duration::from_millis(2500));
        assert_eq!(retry_delay(FailureClass::Transient, u32::MAX, 0.0), Duration::from_secs(150));
    }

    #[test]
    fn throttling_waits_out_the_whole_window() {
        assert!(retry_delay(FailureClass::Throttled, 1, 0.0) >= THROTTLE_WINDOW);
        assert!(retry_delay(FailureClass::Throttled, 1, 0.99) < THROTTLE_WINDOW + Duration::from_secs(61));
    }

    #[test]
    fn permanent_failures_are_rechecked_only_slowly() {
        assert!(retry_delay(FailureClass::Permanent, 1, 0.0) >= Duration::from_secs(3600));
    }

    #[test]
    fn api_errors_back_off_from_one_second_to_fifteen() {
        let delays: Vec<u64> = (1..=6).map(|n| api_retry_delay(n, 1.0).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 15, 15]);
        assert_eq!(api_retry_delay(1, 0.0), Duration::from_millis(500));
    }

    #[test]
    fn a_jitter_that_is_not_a_number_counts_as_none() {
        for class in [FailureClass::Transient, FailureClass::Throttled, FailureClass::Permanent] {
            assert_eq!(retry_delay(class, 3, f64::NAN), retry_delay(class, 3, 0.0), "{class:?}");
        }
        assert_eq!(api_retry_delay(3, f64::NAN), api_retry_delay(3, 0.0));
        assert_eq!(api_retry_delay(3, f64::INFINITY), api_retry_delay(3, 1.0));
    }

    #[test]
    fn stable_jitter_is_deterministic_and_in_range() {
        let a = stable_jitter("uid-1", 3);
        assert_eq!(a, stable_jitter("uid-1", 3));
        assert_ne!(a, stable_jitter("uid-1", 4));
        assert!((0.0..1.0).contains(&a));
    }

    #[test]
    fn go_durations_parse_like_go() {
        let cases = [("20m", 1200.0), ("90s", 90.0), ("1h30m", 5400.0), ("1.5h", 5400.0), ("500ms", 0.5)];
        for (text, secs) in cases {
            assert_eq!(parse_go_duration(text).unwrap(), Duration::from_secs_f64(secs), "{text}");
        }
        for text in ["", "20", "m", "20x", "-5m", "1h 30m"] {
            assert!(parse_go_duration(text).is_err(), "{text}");
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn class() -> impl Strategy<Value = FailureClass> {
            prop_oneof![Just(FailureClass::Transient), Just(FailureClass::Throttled), Just(FailureClass::Permanent)]
        }

        proptest! {
            #[test]
            fn the_refresh_falls_between_half_the_lifetime_and_expiry(
                issued in -10_000_000_000i64..10_000_000_000,
                lifetime_ms in 0i64..(3 * 86_400_000),
                refresh_before in proptest::option::of(prop_oneof![
                    Just(Duration::ZERO),
                    Just(Duration::MAX),
                    (0u64..(4 * 86_400_000)).prop_map(Duration::from_millis),
                ]),
            ) {
                let issued_at = Timestamp::from_second(issued).unwrap();
                let expires_at = issued_at + SignedDuration::from_millis(lifetime_ms);
                let at = refresh_at(issued_at, expires_at, refresh_before);
                let half = SignedDuration::from_millis(lifetime_ms) / 2;
                prop_assert!(issued_at <= at && at <= expires_at, "{at} outside [{issued_at}, {expires_at}]");
                prop_assert!(at >= issued_at + half, "{at} is before half of the lifetime");
                if refresh_before == Some(Duration::ZERO) {
                    prop_assert_eq!(at, expires_at);
                }
                if refresh_before.is_none() {
                    prop_assert_eq!(at, expires_at - SignedDuration::from_millis(lifetime_ms) / 3);
                }
            }

            #[test]
            fn backoff_never_shrinks_as_failures_add_up_and_is_capped(
                class in class(),
                attempts in 0u32..64,
                jitter in 0.0f64..1.0,
            ) {
                let (this, next) = (retry_delay(class, attempts, jitter), retry_delay(class, attempts + 1, jitter));
                prop_assert!(this <= next, "{class:?}: {this:?} after {attempts}, {next:?} after one more");
                let cap = match class {
                    FailureClass::Transient => TRANSIENT_CAP,
                    FailureClass::Throttled => THROTTLE_WINDOW.mul_f64(1.1),
                    FailureClass::Permanent => PERMANENT_RECHECK.mul_f64(1.1),
                };
                prop_assert!(next <= cap, "{class:?}: {next:?} beyond {cap:?}");
                prop_assert!(this >= TRANSIENT_BASE / 2, "{class:?}: {this:?} retries too soon");

                let (this, next) = (api_retry_delay(attempts, jitter), api_retry_delay(attempts + 1, jitter));
                prop_assert!(this <= next && next <= API_RETRY_CAP, "API: {this:?}, then {next:?}");
                prop_assert!(this >= API_RETRY_BASE / 2);
            }

            #[test]
            fn any_jitter_gives_a_delay_within_the_caps(
                class in class(),
                attempts in any::<u32>(),
                jitter in proptest::num::f64::ANY,
            ) {
                prop_assert!(retry_delay(class, attempts, jitter) <= PERMANENT_RECHECK.mul_f64(1.1));
                prop_assert!(api_retry_delay(attempts, jitter) <= API_RETRY_CAP);
            }
        }
    }
}
