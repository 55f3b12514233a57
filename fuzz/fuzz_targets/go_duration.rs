//! `spec.refreshBefore`: the operator's Go-duration parser against a reference written here.
//!
//! The first byte picks how the rest is used: as text as it is; as the recipe of a duration that
//! is in the grammar by construction; or as a duration to print the way Go does and read back.
//!
//! The supported grammar is Go's `time.ParseDuration` without a sign and without the bare `0`
//! (the CRD's pattern admits neither) and with `µs` as the only micro sign (the CRD's, U+00B5):
//! one or more of `digits[.digits]` or `.digits` followed by `ns`, `us`, `µs`, `ms`, `s`, `m` or
//! `h`, surrounding whitespace ignored. The reference computes in exact integer nanoseconds, as
//! Go does, where the parser under test adds up `f64` seconds; the two must agree on what is a
//! duration and, within rounding, on its length.
//!
//! Invariants: no panic; a result is finite and non-negative; the parser accepts exactly what the
//! reference accepts (below ~10^19 s, where `Duration` ends) and to within a nanosecond plus 2^-52 of
//! the value per component; what Go prints, the parser reads back.

#![no_main]

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use zoho_token_operator::schedule::parse_go_duration;

const UNITS: [(&str, u128); 7] =
    [("ns", 1), ("us", 1_000), ("µs", 1_000), ("ms", 1_000_000), ("s", NANOS), ("m", 60 * NANOS), ("h", 3600 * NANOS)];
const NANOS: u128 = 1_000_000_000;
/// `Duration` holds up to 2^64 seconds; the parser must accept below this and reject above the next.
const SURELY_REPRESENTABLE: u128 = 18 * 10u128.pow(27);
const SURELY_NOT: u128 = 19 * 10u128.pow(27);

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 3 {
        0 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                compare(text);
            }
        }
        1 => {
            if let Ok(recipe) = Recipe::arbitrary_take_rest(Unstructured::new(rest)) {
                compare(&recipe.text());
            }
        }
        _ => {
            let mut bytes = [0u8; 8];
            let n = rest.len().min(8);
            bytes[..n].copy_from_slice(&rest[..n]);
            round_trip(Duration::from_nanos(u64::from_le_bytes(bytes)));
        }
    }
});

fn compare(text: &str) {
    let parsed = parse_go_duration(text);
    if let Ok(duration) = parsed {
        assert!(duration.as_secs_f64().is_finite(), "{text:?} parsed to {duration:?}");
    }
    if let Err(message) = &parsed {
        assert!(message.contains("is not a duration"), "{text:?}: {message}");
    }
    match reference(text) {
        Reference::Invalid => assert!(parsed.is_err(), "{text:?} is no Go duration, yet parsed to {parsed:?}"),
        Reference::TooLong => assert!(parsed.is_err(), "{text:?} is beyond any Duration, yet parsed to {parsed:?}"),
        Reference::Nanos { nanos, components } => {
            if nanos > SURELY_NOT {
                assert!(parsed.is_err(), "{text:?} exceeds Duration, yet parsed to {parsed:?}");
            } else if nanos <= SURELY_REPRESENTABLE {
                let duration = parsed.unwrap_or_else(|err| panic!("{text:?} is {nanos} ns, yet: {err}"));
                let got = duration.as_nanos();
                // Each component rounds to the nanosecond; each f64 addition and product rounds to
                // 2^-53 of the running total.
                let tolerance = components as u128 + 1 + (components as u128 + 2) * (nanos >> 52);
                assert!(got.abs_diff(nanos) <= tolerance, "{text:?}: parsed {got} ns, reference {nanos} ns");
            }
        }
    }
}

enum Reference {
    Invalid,
    TooLong,
    /// The exact value, with each component's fraction of a nanosecond dropped, as Go does.
    Nanos {
        nanos: u128,
        components: usize,
    },
}

fn reference(text: &str) -> Reference {
    let mut rest = text.trim();
    if rest.is_empty() {
        return Reference::Invalid;
    }
    let (mut total, mut components, mut too_long) = (0u128, 0usize, false);
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int, after) = rest.split_at(int_len);
        let (frac, after) = match after.strip_prefix('.') {
            Some(after) => {
                let frac_len = after.bytes().take_while(u8::is_ascii_digit).count();
                after.split_at(frac_len)
            }
            None => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return Reference::Invalid;
        }
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let Some(&(_, unit)) = UNITS.iter().find(|(name, _)| *name == &after[..unit_len]) else {
            return Reference::Invalid;
        };
        rest = &after[unit_len..];
        components += 1;
        let int = int.trim_start_matches('0');
        // 20 digits are finer than a thousandth of a nanosecond of an hour.
        let frac = &frac[..frac.len().min(20)];
        let frac_nanos = match frac {
            "" => 0,
            _ => frac.parse::<u128>().unwrap() * unit / 10u128.pow(frac.len() as u32),
        };
        let int: Option<u128> = match int {
            "" => Some(0),
            _ if int.len() > 38 => None,
            _ => int.parse().ok(),
        };
        match int.and_then(|int| int.checked_mul(unit)).and_then(|n| n.checked_add(frac_nanos)) {
            Some(nanos) => total = total.saturating_add(nanos),
            None => too_long = true,
        }
    }
    if too_long || total == u128::MAX {
        return Reference::TooLong;
    }
    Reference::Nanos { nanos: total, components }
}

/// A duration in the grammar, built from parts, so that the comparison is not limited to what
/// mutations of text happen to reach.
#[derive(Arbitrary, Debug)]
struct Recipe {
    parts: Vec<Part>,
    leading_space: bool,
}

#[derive(Arbitrary, Debug)]
struct Part {
    int: Option<u64>,
    leading_zeros: u8,
    frac: Option<u64>,
    frac_zeros: u8,
    unit: u8,
}

impl Recipe {
    fn text(&self) -> String {
        let mut text = if self.leading_space { " ".to_string() } else { String::new() };
        for part in self.parts.iter().take(8) {
            if let Some(int) = part.int {
                text += &"0".repeat(usize::from(part.leading_zeros % 4));
                text += &int.to_string();
            }
            if let Some(frac) = part.frac.or(part.int.is_none().then_some(0)) {
                text.push('.');
                text += &"0".repeat(usize::from(part.frac_zeros % 12));
                text += &frac.to_string();
            }
            text += UNITS[usize::from(part.unit) % UNITS.len()].0;
        }
        text
    }
}

/// Go's `Duration.String()`, e.g. `1h2m3.5s`, `1.5ms`, `0s`.
fn go_string(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    let fraction = |value: u128, digits: u32| {
        let scale = 10u128.pow(digits);
        let (whole, frac) = (value / scale, value % scale);
        match frac {
            0 => whole.to_string(),
            _ => format!("{whole}.{}", format!("{frac:0width$}", width = digits as usize).trim_end_matches('0')),
        }
    };
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", fraction(nanos, 3));
    }
    if nanos < NANOS {
        return format!("{}ms", fraction(nanos, 6));
    }
    let (hours, rest) = (nanos / (3600 * NANOS), nanos % (3600 * NANOS));
    let (minutes, rest) = (rest / (60 * NANOS), rest % (60 * NANOS));
    let seconds = format!("{}s", fraction(rest, 9));
    match (hours, minutes) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

fn round_trip(duration: Duration) {
    let text = go_string(duration);
    let parsed = parse_go_duration(&text).unwrap_or_else(|err| panic!("Go prints {duration:?} as {text:?}: {err}"));
    let (want, got) = (duration.as_nanos(), parsed.as_nanos());
    assert!(got.abs_diff(want) <= 3 + want / (1u128 << 50), "{text:?}: read back {got} ns, wrote {want} ns");
    compare(&text);
}
