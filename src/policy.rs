//! The refresh policy: given what the operator knows at `now`, serve the token it has, mint a new
//! one, or wait. It is one pure function, an ordered chain of checks in the style of
//! cert-manager's issuance policies, so that every situation the operator can be in is a table
//! row in the tests below.
//!
//! Its memory is the connection's status, which survives restarts, and the process's shared view
//! of the credential, which does not and only ever makes the operator ask Zoho less.

use std::time::Duration;

use jiff::Timestamp;

use crate::{
    api::{ConnectionStatus, TOKEN_ISSUED},
    error::Problem,
    mint::{self, CredentialView, MintBudget},
    schedule,
    secret::StoredToken,
    zoho::IssuedToken,
};

/// The `Ready` reason of a grant code that Zoho refused. A code works once, so the same code is
/// never sent again, whatever the time.
pub const GRANT_CODE_INVALID: &str = "GrantCodeInvalid";

/// How far ahead of this replica's clock another replica's may be when it stamps a token.
const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// Everything the decision depends on.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    pub now: Timestamp,
    pub generation: Option<i64>,
    /// The connection's status: what it was last told, and what it waits for.
    pub status: &'a ConnectionStatus,
    /// The value of the `zoho-operator.dev/refresh-requested-at` annotation.
    pub refresh_request: Option<&'a str>,
    pub refresh_before: Option<Duration>,
    /// The fingerprint of the credentials, or the problem that keeps the operator from asking
    /// Zoho at all (a missing Secret, a foreign target, an accounts URL not allowed...).
    pub fingerprint: Result<&'a str, &'a Problem>,
    /// The token the target Secret holds, if it is intact.
    pub stored: Option<&'a StoredToken>,
    /// What the process knows about the credential, shared by every connection that uses it.
    pub shared: &'a CredentialView,
    pub budget: MintBudget,
}

#[derive(Clone, Debug)]
pub enum Decision {
    /// The target should hold `token`; nothing is due before `refresh_at`.
    Serve { token: IssuedToken, refresh_at: Timestamp },
    /// Ask Zoho for a new token now. `forced` when a refresh request asked for it, so that no
    /// token minted before the request can stand in.
    Mint { forced: bool },
    /// Send nothing to Zoho before `until`. A target that lost its token gets `restore` back.
    Wait { until: Timestamp, why: Why, restore: Option<IssuedToken> },
}

#[derive(Clone, Debug)]
pub enum Why {
    /// The status records a failed attempt or a deferral with these same inputs.
    Recorded,
    /// Something found now: a problem with the inputs, or a deferral the shared view dictates.
    Problem(Problem),
}

pub fn decide(facts: &Facts) -> Decision {
    let now = facts.now;
    let fingerprint = match facts.fingerprint {
        Ok(fingerprint) => fingerprint,
        Err(problem) => {
            return Decision::Wait {
                until: now + schedule::PERMANENT_RECHECK,
                why: Why::Problem(problem.clone()),
                restore: None,
            };
        }
    };
    let forced = refresh_requested(facts);
    let refresh_at =
        |token: &IssuedToken| schedule::refresh_at(token.issued_at, token.expires_at, facts.refresh_before);
    let serve = |token: &IssuedToken| Decision::Serve { token: token.clone(), refresh_at: refresh_at(token) };
    let current = |token: &IssuedToken| !forced && now < refresh_at(token);

    // The target's own token, minted with these credentials, not yet due, and not issued in the
    // future: that expiry was edited by hand and says nothing about when Zoho lets the token die.
    if let Some(stored) = facts.stored
        && stored.fingerprint.as_deref() == Some(fingerprint)
        && stored.token.issued_at <= now + CLOCK_SKEW
        && current(&stored.token)
    {
        return serve(&stored.token);
    }
    // A token another connection minted with the same credentials, or this one held in memory.
    if let Some(latest) = facts.shared.latest.as_ref().filter(|latest| current(latest)) {
        return serve(latest);
    }
    let restore = facts.shared.latest.clone().filter(|token| schedule::is_usable(token.expires_at, now));
    if let Some(until) = recorded_wait(facts, fingerprint) {
        return Decision::Wait { until, why: Why::Recorded, restore };
    }
    if let Err(deferral) = mint::admit(facts.shared, facts.budget, now) {
        return Decision::Wait { until: deferral.until(), why: Why::Problem(deferral.into()), restore };
    }
    Decision::Mint { forced }
}

/// Whether the refresh-requested-at annotation carries a value not acted on yet.
pub fn refresh_requested(facts: &Facts) -> bool {
    facts.refresh_request.is_some_and(|request| facts.status.last_refresh_request.as_deref() != Some(request))
}

/// The end of a wait the status records, if it still applies: a failed request or a deferral,
/// with the same credentials and spec as now. A change to either ends the wait, since the answer may
/// differ; a restart does not, since nothing changed.
fn recorded_wait(facts: &Facts, fingerprint: &str) -> Option<Timestamp> {
    let status = facts.status;
    let reason = status.ready_condition()?.reason.as_str();
    if reason == GRANT_CODE_INVALID && status.credentials_fingerprint.as_deref() == Some(fingerprint) {
        return Some(Timestamp::MAX);
    }
    // A status can also describe a token served with a problem, such as a foreign Secret in one
    // namespace; that is no wait.
    let is_wait = status.failed_attempts > 0 || matches!(reason, mint::THROTTLED | mint::BUDGET_EXHAUSTED);
    let same_inputs = status.credentials_fingerprint.as_deref() == Some(fingerprint)
        && status.observed_generation == facts.generation;
    if reason == TOKEN_ISSUED || !is_wait || !same_inputs {
        return None;
    }
    status.next_refresh_time.as_ref().map(|t| t.0).filter(|until| facts.now < *until)
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Small builders for the policy's and the status's table tests.

    use std::time::Duration;

    use jiff::Timestamp;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use secrecy::SecretString;

    use super::{Decision, Facts, decide};
    use crate::{
        api::{ConnectionStatus, FALSE, READY_CONDITION, TRUE},
        error::Problem,
        mint::{CredentialView, MintBudget},
        secret::StoredToken,
        zoho::IssuedToken,
    };

    pub const FINGERPRINT: &str = "v1-current";

    /// The facts of one decision, owned (`decide` borrows them), with everything a test does not
    /// name left empty.
    #[derive(Clone, Debug)]
    pub struct Row {
        pub now: i64,
        pub generation: i64,
        pub status: ConnectionStatus,
        pub refresh_request: Option<&'static str>,
        pub refresh_before: Option<Duration>,
        pub problem: Option<Problem>,
        pub stored: Option<StoredToken>,
        pub shared: CredentialView,
        pub max_mints: usize,
    }

    impl Default for Row {
        fn default() -> Self {
            Self {
                now: 0,
                generation: 1,
                status: ConnectionStatus::default(),
                refresh_request: None,
                refresh_before: None,
                problem: None,
                stored: None,
                shared: CredentialView::default(),
                max_mints: 2,
            }
        }
    }

    impl Row {
        pub fn decide(&self) -> Decision {
            let fingerprint = match &self.problem {
                Some(problem) => Err(problem),
                None => Ok(FINGERPRINT),
            };
            decide(&Facts {
                now: at(self.now),
                generation: Some(self.generation),
                status: &self.status,
                refresh_request: self.refresh_request,
                refresh_before: self.refresh_before,
                fingerprint,
                stored: self.stored.as_ref(),
                shared: &self.shared,
                budget: MintBudget { max_mints: self.max_mints, window: Duration::from_secs(600) },
            })
        }
    }

    /// Minutes after 10:00 on a fixed day, so that every time in a table reads at a glance.
    pub fn at(minutes: i64) -> Timestamp {
        "2026-11-28T10:00:00Z".parse::<Timestamp>().unwrap() + jiff::SignedDuration::from_mins(minutes)
    }

    /// A one-hour token issued at `issued` minutes; due at `issued + 40`.
    pub fn token(name: &str, issued: i64) -> IssuedToken {
        IssuedToken {
            access_token: SecretString::from(format!("1000.{name}")),
            api_domain: None,
            token_type: "Bearer".into(),
            issued_at: at(issued),
            expires_at: at(issued + 60),
        }
    }

    pub fn stored(name: &str, issued: i64, fingerprint: &str) -> StoredToken {
        StoredToken { token: token(name, issued), fingerprint: Some(fingerprint.into()) }
    }

    /// A status whose Ready condition has `reason`, waiting until `next` minutes.
    pub fn status(ready: bool, reason: &str, next: Option<i64>, attempts: i32) -> ConnectionStatus {
        ConnectionStatus {
            conditions: vec![Condition {
                type_: READY_CONDITION.into(),
                status: if ready { TRUE } else { FALSE }.into(),
                reason: reason.into(),
                message: String::new(),
                observed_generation: Some(1),
                last_transition_time: Time(at(0)),
            }],
            observed_generation: Some(1),
            next_refresh_time: next.map(|m| Time(at(m))),
            failed_attempts: attempts,
            credentials_fingerprint: Some(FINGERPRINT.into()),
            ..ConnectionStatus::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use secrecy::ExposeSecret;

    use super::{fixtures::*, *};
    use crate::zoho::ZohoError;

    fn served(decision: &Decision) -> Option<(String, Timestamp)> {
        match decision {
            Decision::Serve { token, refresh_at } => {
                Some((token.access_token.expose_secret().to_string(), *refresh_at))
            }
            _ => None,
        }
    }

    fn waits(decision: &Decision) -> Option<(Timestamp, String, Option<String>)> {
        match decision {
            Decision::Wait { until, why, restore } => Some((
                *until,
                match why {
                    Why::Recorded => "recorded".to_string(),
                    Why::Problem(problem) => problem.reason().to_string(),
                },
                restore.as_ref().map(|t| t.access_token.expose_secret().to_string()),
            )),
            _ => None,
        }
    }

    fn mints(decision: &Decision) -> Option<bool> {
        match decision {
            Decision::Mint { forced } => Some(*forced),
            _ => None,
        }
    }

    fn shared_latest(name: &str, issued: i64) -> CredentialView {
        CredentialView { latest: Some(token(name, issued)), ..CredentialView::default() }
    }

    fn issued_status() -> ConnectionStatus {
        status(true, TOKEN_ISSUED, Some(40), 0)
    }

    #[test]
    fn a_new_connection_mints() {
        assert_eq!(mints(&Row::default().decide()), Some(false));
    }

    #[test]
    fn a_token_not_yet_due_is_served_and_refreshed_at_two_thirds_of_its_life() {
        let row = Row { now: 39, status: issued_status(), stored: Some(stored("a", 0, FINGERPRINT)), ..Row::default() };
        assert_eq!(served(&row.decide()), Some(("1000.a".into(), at(40))));
    }

    #[test]
    fn a_due_token_is_replaced() {
        let row = Row { now: 40, status: issued_status(), stored: Some(stored("a", 0, FINGERPRINT)), ..Row::default() };
        assert_eq!(mints(&row.decide()), Some(false));
    }

    #[test]
    fn a_restart_or_relist_reuses_the_stored_token_with_nothing_in_memory() {
        let row = Row { now: 5, status: issued_status(), stored: Some(stored("a", 0, FINGERPRINT)), ..Row::default() };
        assert_eq!(served(&row.decide()).map(|(t, _)| t), Some("1000.a".into()));
    }

    #[test]
    fn a_label_edit_does_not_mint() {
        let row = Row {
            now: 5,
            generation: 2,
            status: issued_status(),
            stored: Some(stored("a", 0, FINGERPRINT)),
            ..Row::default()
        };
        assert!(served(&row.decide()).is_some());
    }

    #[test]
    fn changed_credentials_mint_even_though_the_stored_token_is_fresh() {
        let row = Row { now: 5, status: issued_status(), stored: Some(stored("a", 0, "v1-old")), ..Row::default() };
        assert_eq!(mints(&row.decide()), Some(false));
    }

    #[test]
    fn a_stored_token_without_a_fingerprint_is_not_vouched_for() {
        let mut stored = stored("a", 0, FINGERPRINT);
        stored.fingerprint = None;
        let row = Row { now: 5, status: issued_status(), stored: Some(stored), ..Row::default() };
        assert_eq!(mints(&row.decide()), Some(false));
    }

    #[test]
    fn a_stored_token_issued_in_the_future_is_not_vouched_for() {
        // Annotations moved a day ahead together keep a plausible lifetime, but the token they
        // describe dies at Zoho an hour after its real mint.
        let row =
            Row { now: 5, status: issued_status(), stored: Some(stored("a", 24 * 60, FINGERPRINT)), ..Row::default() };
        assert_eq!(mints(&row.decide()), Some(false));
        let skewed =
            Row { now: 5, status: issued_status(), stored: Some(stored("a", 9, FINGERPRINT)), ..Row::default() };
        assert!(served(&skewed.decide()).is_some(), "another replica's clock may run a few minutes ahead");
    }

    #[test]
    fn a_lost_target_gets_the_token_held_in_memory() {
        let row = Row { now: 5, status: issued_status(), shared: shared_latest("a", 0), ..Row::default() };
        assert_eq!(served(&row.decide()), Some(("1000.a".into(), at(40))));
    }

    #[test]
    fn a_lost_target_with_nothing_in_memory_mints() {
        let row = Row { now: 5, status: issued_status(), ..Row::default() };
        assert_eq!(mints(&row.decide()), Some(false));
    }

    #[test]
    fn connections_sharing_a_credential_share_its_newest_token() {
        // This connection's token is due; another connection already minted the next one.
        let row = Row {
            now: 41,
            status: issued_status(),
            stored: Some(stored("a", 0, FINGERPRINT)),
            shared: shared_latest("b", 41),
            ..Row::default()
        };
        assert_eq!(served(&row.decide()), Some(("1000.b".into(), at(81))));
    }

    #[test]
    fn beyond_the_budget_the_mint_is_deferred_not_failed() {
        let shared = CredentialView { recent_mints: VecDeque::from([at(-5), at(-1)]), ..CredentialView::default() };
        let row = Row { now: 0, shared, ..Row::default() };
        assert_eq!(waits(&row.decide()), Some((at(5), "MintBudgetExhausted".into(), None)));
    }

    #[test]
    fn mints_older_than_the_window_do_not_count() {
        let shared = CredentialView { recent_mints: VecDeque::from([at(-11), at(-1)]), ..CredentialView::default() };
        assert_eq!(mints(&Row { shared, ..Row::default() }.decide()), Some(false));
    }

    #[test]
    fn a_throttled_credential_waits_out_the_window_and_restores_a_lost_target() {
        let shared =
            CredentialView { latest: Some(token("a", -45)), throttled_until: Some(at(8)), ..CredentialView::default() };
        let row = Row { now: 0, status: issued_status(), shared, ..Row::default() };
        assert_eq!(waits(&row.decide()), Some((at(8), "Throttled".into(), Some("1000.a".into()))));
    }

    #[test]
    fn a_credential_zoho_rejected_is_not_asked_again_before_the_recheck() {
        let shared =
            CredentialView { rejected: Some((ZohoError::RefreshTokenRevoked, at(-10))), ..CredentialView::default() };
        let row = Row { now: 0, shared: shared.clone(), ..Row::default() };
        assert_eq!(waits(&row.decide()), Some((at(50), "RefreshTokenRevoked".into(), None)));
        assert_eq!(mints(&Row { now: 50, shared, ..Row::default() }.decide()), Some(false));
    }

    #[test]
    fn problems_found_before_asking_send_nothing_and_are_rechecked_hourly() {
        for problem in [
            Problem::TargetSecretNotOwned { namespace: "ns".into(), name: "t".into(), owner: "no controller".into() },
            Problem::Zoho(ZohoError::AccountsUrlNotAllowed { origin: "http://169.254.169.254".into() }),
            Problem::CredentialsSecretNotFound { namespace: "ns".into(), name: "zoho-oauth".into() },
        ] {
            let reason = problem.reason().to_string();
            let row = Row { problem: Some(problem), stored: Some(stored("a", -50, FINGERPRINT)), ..Row::default() };
            assert_eq!(waits(&row.decide()), Some((at(60), reason, None)));
        }
    }

    mod recorded_waits {
        //! Each kind of wait, as a restarted operator finds it: in the status, with nothing in memory.

        use super::*;

        #[test]
        fn a_transient_backoff_is_honoured_after_a_restart_and_ends_on_time() {
            let status = status(true, "AccountsServerError", Some(42), 2);
            let stored = Some(stored("a", 0, FINGERPRINT));
            let row = Row { now: 41, status: status.clone(), stored: stored.clone(), ..Row::default() };
            assert_eq!(waits(&row.decide()), Some((at(42), "recorded".into(), None)));
            assert_eq!(mints(&Row { now: 42, status, stored, ..Row::default() }.decide()), Some(false));
        }

        #[test]
        fn a_throttle_is_honoured_after_a_restart() {
            let row = Row { now: 45, status: status(true, "Throttled", Some(51), 1), ..Row::default() };
            assert_eq!(waits(&row.decide()), Some((at(51), "recorded".into(), None)));
        }

        #[test]
        fn a_budget_deferral_is_honoured_after_a_restart_that_forgot_the_budget() {
            let row = Row { now: 45, status: status(true, "MintBudgetExhausted", Some(47), 0), ..Row::default() };
            assert_eq!(waits(&row.decide()), Some((at(47), "recorded".into(), None)));
        }

        #[test]
        fn a_permanent_rejection_is_honoured_after_a_restart_until_the_recheck() {
            let row = Row { now: 30, status: status(false, "RefreshTokenRevoked", Some(60), 1), ..Row::default() };
            assert_eq!(waits(&row.decide()), Some((at(60), "recorded".into(), None)));
        }

        #[test]
        fn a_refused_grant_code_is_never_sent_again() {
            let row = Row { now: 10_000, status: status(false, GRANT_CODE_INVALID, None, 1), ..Row::default() };
            assert_eq!(waits(&row.decide()).map(|(until, ..)| until), Some(Timestamp::MAX));
            // Not even after a spec change, nor by a connection that only saw another's refusal.
            let row = Row { generation: 2, status: status(false, GRANT_CODE_INVALID, None, 0), ..Row::default() };
            assert_eq!(waits(&row.decide()).map(|(until, ..)| until), Some(Timestamp::MAX));
            let shared =
                CredentialView { rejected: Some((ZohoError::GrantCodeInvalid, at(-120))), ..CredentialView::default() };
            assert_eq!(
                waits(&Row { shared, ..Row::default() }.decide()).map(|(until, ..)| until),
                Some(Timestamp::MAX)
            );
        }

        #[test]
        fn new_credentials_or_a_spec_change_end_the_wait() {
            let mut new_credentials = status(false, "RefreshTokenRevoked", Some(60), 1);
            new_credentials.credentials_fingerprint = Some("v1-old".into());
            assert_eq!(mints(&Row { now: 30, status: new_credentials, ..Row::default() }.decide()), Some(false));
            let spec_changed =
                Row { now: 30, generation: 2, status: status(true, "Throttled", Some(51), 1), ..Row::default() };
            assert_eq!(mints(&spec_changed.decide()), Some(false));
        }

        #[test]
        fn a_problem_status_records_no_wait() {
            let row = Row { now: 1, status: status(false, "CredentialsKeyMissing", None, 0), ..Row::default() };
            assert_eq!(mints(&row.decide()), Some(false));
            // A token served with a conflict in some namespace shows its refresh time, not a wait.
            let row = Row {
                now: 1,
                status: status(false, "TargetSecretNotOwned", Some(40), 0),
                refresh_request: Some("now"),
                ..Row::default()
            };
            assert_eq!(mints(&row.decide()), Some(true));
        }

        #[test]
        fn the_token_may_expire_during_a_backoff_without_a_request() {
            // Issued at 0, expired at 60; the backoff lasts until 65.
            let row = Row {
                now: 61,
                status: status(true, "AccountsServerTimeout", Some(65), 6),
                stored: Some(stored("a", 0, FINGERPRINT)),
                ..Row::default()
            };
            assert_eq!(waits(&row.decide()), Some((at(65), "recorded".into(), None)));
        }

        #[test]
        fn memory_restores_a_lost_target_during_a_backoff_but_never_an_expired_token() {
            let row = |shared| Row {
                now: 45,
                status: status(true, "AccountsServerError", Some(50), 1),
                shared,
                ..Row::default()
            };
            assert_eq!(waits(&row(shared_latest("a", 0)).decide()).and_then(|w| w.2), Some("1000.a".into()));
            assert_eq!(waits(&row(shared_latest("a", -20)).decide()).and_then(|w| w.2), None);
        }
    }

    mod forced_refresh {
        use super::*;

        fn requested(status: ConnectionStatus, request: &'static str) -> Row {
            Row {
                now: 5,
                status,
                refresh_request: Some(request),
                stored: Some(stored("a", 0, FINGERPRINT)),
                shared: shared_latest("a", 0),
                ..Row::default()
            }
        }

        #[test]
        fn a_new_request_mints_although_the_token_is_fresh() {
            assert_eq!(mints(&requested(issued_status(), "2026-11-28T10:05:00Z").decide()), Some(true));
        }

        #[test]
        fn a_request_already_acted_on_mints_nothing() {
            let mut status = issued_status();
            status.last_refresh_request = Some("2026-11-28T10:05:00Z".into());
            assert!(served(&requested(status, "2026-11-28T10:05:00Z").decide()).is_some());
        }

        #[test]
        fn a_request_beyond_the_budget_waits_for_it() {
            let mut row = requested(issued_status(), "again");
            row.shared.recent_mints = VecDeque::from([at(0), at(4)]);
            assert_eq!(waits(&row.decide()), Some((at(10), "MintBudgetExhausted".into(), Some("1000.a".into()))));
        }

        #[test]
        fn a_request_waits_out_a_recorded_backoff() {
            let row = requested(status(true, "AccountsServerError", Some(6), 1), "again");
            assert_eq!(waits(&row.decide()).map(|w| w.1), Some("recorded".into()));
        }
    }
}

#[cfg(test)]
mod properties {
    //! The promises of `decide` over generated facts, built with the table tests' fixtures.

    use std::collections::VecDeque;

    use jiff::SignedDuration;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use proptest::prelude::*;

    use super::{fixtures::*, *};
    use crate::{mint::CredentialView, zoho::ZohoError};

    const REASONS: [&str; 7] = [
        TOKEN_ISSUED,
        "AccountsServerError",
        "Throttled",
        "MintBudgetExhausted",
        "RefreshTokenRevoked",
        "TargetSecretNotOwned",
        GRANT_CODE_INVALID,
    ];

    impl Row {
        /// The status records a wait with these very inputs that has not ended.
        fn pending_wait(&self) -> bool {
            let Some(condition) = self.status.ready_condition() else { return false };
            let reason = condition.reason.as_str();
            let waits = self.status.failed_attempts > 0 || matches!(reason, "Throttled" | "MintBudgetExhausted");
            let until = self.status.next_refresh_time.as_ref().map(|t| t.0);
            let open = reason == GRANT_CODE_INVALID || until.is_some_and(|until| at(self.now) < until);
            reason != TOKEN_ISSUED
                && waits
                && open
                && self.status.credentials_fingerprint.as_deref() == Some(FINGERPRINT)
                && self.status.observed_generation == Some(self.generation)
        }
    }

    /// A token of any lifetime up to two hours, also expired, also not yet issued.
    fn any_token() -> impl Strategy<Value = IssuedToken> {
        (-200i64..200, 0i64..7200).prop_map(|(issued, lifetime)| {
            let mut token = token(&format!("t{issued}-{lifetime}"), issued);
            token.expires_at = token.issued_at + SignedDuration::from_secs(lifetime);
            token
        })
    }

    fn any_status() -> impl Strategy<Value = ConnectionStatus> {
        (
            any::<bool>(),
            proptest::sample::select(REASONS.to_vec()),
            proptest::option::of(-100i64..200),
            0i32..4,
            prop_oneof![Just(FINGERPRINT), Just("v1-old")],
            1i64..=2,
            proptest::option::of(prop_oneof![Just("a"), Just("b")]),
        )
            .prop_map(|(ready, reason, next, attempts, fingerprint, generation, handled)| {
                let mut status = status(ready, reason, next, attempts);
                status.credentials_fingerprint = Some(fingerprint.into());
                status.observed_generation = Some(generation);
                status.last_refresh_request = handled.map(str::to_string);
                status
            })
    }

    fn any_problem() -> impl Strategy<Value = Problem> {
        prop_oneof![
            Just(Problem::CredentialsSecretNotFound { namespace: "ns".into(), name: "zoho-oauth".into() }),
            Just(Problem::TargetSecretNotOwned { namespace: "ns".into(), name: "t".into(), owner: "x".into() }),
            Just(Problem::Zoho(ZohoError::AccountsUrlNotAllowed { origin: "http://169.254.169.254".into() })),
            Just(Problem::InvalidRefreshBefore("20 minutes".into())),
        ]
    }

    fn any_view() -> impl Strategy<Value = CredentialView> {
        (
            proptest::option::of(any_token()),
            proptest::collection::vec(-30i64..30, 0..10),
            proptest::option::of(-30i64..30),
            proptest::option::of(-90i64..30),
        )
            .prop_map(|(latest, mut mints, throttled, rejected)| {
                mints.sort_unstable();
                CredentialView {
                    latest,
                    recent_mints: mints.into_iter().map(at).collect::<VecDeque<_>>(),
                    throttled_until: throttled.map(at),
                    rejected: rejected.map(|minutes| (ZohoError::RefreshTokenRevoked, at(minutes))),
                }
            })
    }

    prop_compose! {
        fn any_facts()(
            now in -100i64..200,
            generation in 1i64..=2,
            status in any_status(),
            refresh_request in proptest::option::of(prop_oneof![Just("a"), Just("b")]),
            refresh_before in proptest::option::of((0u64..7200).prop_map(Duration::from_secs)),
            problem in proptest::option::of(any_problem()),
            stored in proptest::option::of((any_token(), prop_oneof![Just(FINGERPRINT), Just("v1-old")])),
            shared in any_view(),
            max_mints in 1usize..5,
        ) -> Row {
            let stored = stored.map(|(token, fingerprint)| StoredToken { token, fingerprint: Some(fingerprint.into()) });
            Row { now, generation, status, refresh_request, refresh_before, problem, stored, shared, max_mints }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn a_decision_never_serves_an_expired_token_nor_waits_for_the_past(facts in any_facts()) {
            let now = at(facts.now);
            match facts.decide() {
                Decision::Serve { token, refresh_at } => {
                    prop_assert!(token.expires_at > now, "serves a token that expired at {}", token.expires_at);
                    prop_assert!(refresh_at > now, "serves a token due at {refresh_at}");
                }
                Decision::Wait { until, restore, .. } => {
                    prop_assert!(until > now, "waits until {until}, which is not after {now}");
                    if let Some(token) = restore {
                        prop_assert!(token.expires_at > now, "restores a token that expired at {}", token.expires_at);
                    }
                }
                Decision::Mint { .. } => {}
            }
        }

        #[test]
        fn a_problem_never_mints(facts in any_facts(), problem in any_problem()) {
            let facts = Row { problem: Some(problem), ..facts };
            let decision = facts.decide();
            prop_assert!(!matches!(decision, Decision::Mint { .. }), "mints despite a problem: {decision:?}");
        }

        #[test]
        fn a_pending_recorded_wait_never_mints(facts in any_facts(), until in 1i64..100, attempts in 1i32..4) {
            let mut facts = Row { problem: None, ..facts };
            if !facts.pending_wait() {
                // Make the generated status one that records an open wait for these inputs.
                facts.status.failed_attempts = attempts;
                facts.status.next_refresh_time = Some(Time(at(facts.now + until)));
                facts.status.credentials_fingerprint = Some(FINGERPRINT.into());
                facts.status.observed_generation = Some(facts.generation);
                if facts.status.ready_condition().is_some_and(|c| c.reason == TOKEN_ISSUED) {
                    facts.status.conditions[0].reason = "AccountsServerError".into();
                }
            }
            prop_assert!(facts.pending_wait());
            let decision = facts.decide();
            prop_assert!(!matches!(decision, Decision::Mint { .. }), "mints during a recorded wait: {decision:?}");
        }
    }
}
