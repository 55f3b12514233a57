//! What a connection's status says after a reconcile. Every function is pure and depends only on
//! its inputs, so that reconciling the same situation again produces the same status, writes
//! nothing, and sets off no further reconcile.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::{
    api::{ConnectionStatus, FALSE, READY_CONDITION, TOKEN_ISSUED, TRUE},
    error::Problem,
    policy::GRANT_CODE_INVALID,
    schedule::{self, format_time},
    zoho::{FailureClass, IssuedToken},
};

/// What every status of one reconcile has in common.
#[derive(Clone, Copy, Debug)]
pub struct Report<'a> {
    pub now: Timestamp,
    pub generation: Option<i64>,
    pub previous: &'a ConnectionStatus,
    /// The fingerprint of the credentials used, when they could be read.
    pub fingerprint: Option<&'a str>,
    /// Where the token lives, for messages, e.g. `Secret "crm-token"`.
    pub target: &'a str,
    /// Spreads the retries of many connections; stable across restarts (the connection's uid).
    pub jitter_seed: &'a str,
}

impl Report<'_> {
    /// The target holds `token`, and the next one is minted at `refresh_at`. `handled_request` is
    /// the refresh request this token answered, if any.
    pub fn served(
        &self,
        token: &IssuedToken,
        refresh_at: Timestamp,
        handled_request: Option<&str>,
    ) -> ConnectionStatus {
        let message = format!(
            "{} holds a token valid until {}; the next one will be minted at {}",
            self.target,
            format_time(token.expires_at),
            format_time(refresh_at)
        );
        ConnectionStatus {
            conditions: vec![self.condition(true, TOKEN_ISSUED, message)],
            observed_generation: self.generation,
            api_domain: token.api_domain.clone(),
            expires_at: Some(time(token.expires_at)),
            last_refresh_time: Some(time(token.issued_at)),
            next_refresh_time: Some(time(refresh_at)),
            failed_attempts: 0,
            last_failure_time: None,
            last_refresh_request: handled_request
                .map(str::to_string)
                .or_else(|| self.previous.last_refresh_request.clone()),
            credentials_fingerprint: self.fingerprint.map(str::to_string),
        }
    }

    /// The status after `problem`, and when to try again (`None`: when something changes). A
    /// usable token stays in the Secret and keeps the connection Ready through transient trouble;
    /// a permanent problem makes it not Ready, because the token cannot be renewed until someone
    /// acts. Only requests to Zoho count as attempts.
    pub fn problem(&self, problem: &Problem, usable: Option<&IssuedToken>) -> (ConnectionStatus, Option<Timestamp>) {
        let previous = self.previous;
        let (failed_attempts, last_failure_time, retry_at) = match problem {
            _ if problem.is_failed_request() => {
                let attempts = previous.failed_attempts.saturating_add(1);
                let retry_at = (problem.reason() != GRANT_CODE_INVALID).then(|| {
                    let attempts = attempts.unsigned_abs();
                    let jitter = schedule::stable_jitter(self.jitter_seed, attempts);
                    self.now + schedule::retry_delay(problem.class(), attempts, jitter)
                });
                (attempts, Some(time(self.now)), retry_at)
            }
            Problem::Deferred(deferral) => {
                (previous.failed_attempts, previous.last_failure_time.clone(), Some(deferral.until()))
            }
            _ => (previous.failed_attempts, previous.last_failure_time.clone(), None),
        };
        let ready = usable.is_some() && problem.class() != FailureClass::Permanent;
        let mut message = problem.to_string();
        if let Some(retry_at) = retry_at {
            message += &format!("; next attempt at {}", format_time(retry_at));
        }
        if let Some(token) = usable {
            message +=
                &format!(". {} keeps its current token, valid until {}", self.target, format_time(token.expires_at));
        }
        let status = ConnectionStatus {
            conditions: vec![self.condition(ready, problem.reason(), message)],
            observed_generation: self.generation,
            api_domain: usable.and_then(|t| t.api_domain.clone()),
            expires_at: usable.map(|t| time(t.expires_at)),
            last_refresh_time: usable.map(|t| time(t.issued_at)),
            next_refresh_time: retry_at.map(time),
            failed_attempts,
            last_failure_time,
            last_refresh_request: previous.last_refresh_request.clone(),
            credentials_fingerprint: self
                .fingerprint
                .map(str::to_string)
                .or_else(|| previous.credentials_fingerprint.clone()),
        };
        (status, retry_at)
    }

    /// The status during a wait it already records: unchanged, unless the token that kept the
    /// connection Ready is no longer usable, which makes it not Ready for the same reason.
    pub fn waiting(&self, usable: Option<&IssuedToken>, until: Timestamp) -> ConnectionStatus {
        let previous = self.previous;
        let Some(condition) = previous.ready_condition().filter(|c| c.status == TRUE && usable.is_none()) else {
            return previous.clone();
        };
        let expired_at =
            previous.expires_at.as_ref().map_or_else(|| "an earlier time".to_string(), |t| format_time(t.0));
        let next =
            if until == Timestamp::MAX { "after a change".to_string() } else { format!("at {}", format_time(until)) };
        let message = format!(
            "the token in {} expired at {expired_at} or was removed; it could not be renewed ({}), next attempt {next}",
            self.target, condition.reason
        );
        ConnectionStatus { conditions: vec![self.condition(false, &condition.reason, message)], ..previous.clone() }
    }

    fn condition(&self, ready: bool, reason: &str, message: String) -> Condition {
        let status = if ready { TRUE } else { FALSE };
        let last_transition_time = match self.previous.ready_condition() {
            Some(previous) if previous.status == status => previous.last_transition_time.clone(),
            _ => time(self.now),
        };
        Condition {
            type_: READY_CONDITION.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message,
            observed_generation: self.generation,
            last_transition_time,
        }
    }
}

/// Replaces the Ready condition with `problem`, keeping everything else: for a token that is
/// served, but not everywhere it should be.
pub fn with_problem(
    mut status: ConnectionStatus,
    report: &Report,
    problem: &Problem,
    detail: &str,
) -> ConnectionStatus {
    status.conditions = vec![report.condition(false, problem.reason(), format!("{problem}; {detail}"))];
    status
}

fn time(at: Timestamp) -> Time {
    Time(schedule::whole_seconds(at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{mint::Deferral, policy::fixtures::*, zoho::ZohoError};

    fn report<'a>(previous: &'a ConnectionStatus, now: i64) -> Report<'a> {
        Report {
            now: at(now),
            generation: Some(1),
            previous,
            fingerprint: Some(FINGERPRINT),
            target: "Secret \"crm\"",
            jitter_seed: "uid-1",
        }
    }

    fn ready(status: &ConnectionStatus) -> (String, String) {
        let condition = status.ready_condition().unwrap();
        (condition.status.clone(), condition.reason.clone())
    }

    #[test]
    fn serving_clears_failures_and_records_the_handled_request() {
        let previous = status(true, "AccountsServerError", Some(45), 3);
        let served = report(&previous, 45).served(&token("b", 45), at(85), Some("req-1"));
        assert_eq!(ready(&served), (TRUE.into(), TOKEN_ISSUED.into()));
        assert_eq!((served.failed_attempts, served.last_failure_time.is_none()), (0, true));
        assert_eq!(served.last_refresh_request.as_deref(), Some("req-1"));
        assert_eq!(served.next_refresh_time, Some(time(at(85))));
        assert_eq!(served.credentials_fingerprint.as_deref(), Some(FINGERPRINT));
    }

    #[test]
    fn the_same_situation_twice_gives_the_same_status() {
        let previous = ConnectionStatus::default();
        let first = report(&previous, 0).served(&token("a", 0), at(40), None);
        let second = report(&first, 3).served(&token("a", 0), at(40), None);
        assert_eq!(first, second, "an unchanged status is not written again");
        let (failed, _) = report(&first, 5).problem(&Problem::InvalidRefreshBefore("x".into()), None);
        assert_eq!(report(&failed, 9).problem(&Problem::InvalidRefreshBefore("x".into()), None).0, failed);
    }

    #[test]
    fn a_transient_failure_keeps_a_usable_token_ready_and_backs_off() {
        let previous = status(true, TOKEN_ISSUED, Some(40), 0);
        let error = Problem::Zoho(ZohoError::ServerError { status: 503 });
        let (failed, retry_at) = report(&previous, 40).problem(&error, Some(&token("a", 0)));
        assert_eq!(ready(&failed), (TRUE.into(), "AccountsServerError".into()));
        assert_eq!(failed.failed_attempts, 1);
        let retry_at = retry_at.unwrap();
        assert!(retry_at > at(40) && retry_at <= at(40) + std::time::Duration::from_secs(5), "{retry_at}");
        assert!(failed.ready_condition().unwrap().message.contains("keeps its current token"));
        assert_eq!(failed.last_transition_time(), previous.last_transition_time(), "still Ready: no transition");
        let (again, _) = report(&failed, 41).problem(&error, Some(&token("a", 0)));
        assert_eq!(again.failed_attempts, 2);
    }

    #[test]
    fn a_permanent_failure_is_not_ready_even_with_a_token() {
        let previous = status(true, TOKEN_ISSUED, Some(40), 0);
        let (failed, retry_at) =
            report(&previous, 40).problem(&Problem::Zoho(ZohoError::RefreshTokenRevoked), Some(&token("a", 0)));
        assert_eq!(ready(&failed), (FALSE.into(), "RefreshTokenRevoked".into()));
        assert!(retry_at.unwrap() >= at(100), "rechecked after an hour at the earliest");
        assert_eq!(failed.expires_at, Some(time(at(60))), "the token stays visible");
    }

    #[test]
    fn a_token_expiring_at_the_end_of_time_is_reported_without_panicking() {
        // Its expiry came from a hand-edited Secret; rounding the last half second up overflowed.
        let mut token = token("a", 0);
        token.expires_at = Timestamp::MAX;
        let served = report(&ConnectionStatus::default(), 0).served(&token, Timestamp::MAX, None);
        assert_eq!(served.expires_at.unwrap().0.to_string(), "9999-12-30T22:00:00Z");
    }

    #[test]
    fn a_deferral_is_no_failed_attempt() {
        let previous = status(true, TOKEN_ISSUED, Some(40), 0);
        let budget = Deferral::BudgetExhausted { max: 8, window: std::time::Duration::from_secs(600), until: at(47) };
        let (deferred, retry_at) = report(&previous, 40).problem(&Problem::Deferred(budget), Some(&token("a", 0)));
        assert_eq!(ready(&deferred), (TRUE.into(), "MintBudgetExhausted".into()));
        assert_eq!((deferred.failed_attempts, retry_at), (0, Some(at(47))));
        assert_eq!(deferred.next_refresh_time, Some(time(at(47))), "recorded, so that a restart waits too");
    }

    #[test]
    fn a_configuration_problem_records_no_retry() {
        let previous = ConnectionStatus::default();
        let problem = Problem::CredentialsSecretNotFound { namespace: "ns".into(), name: "zoho-oauth".into() };
        let (status, retry_at) = report(&previous, 0).problem(&problem, None);
        assert_eq!((ready(&status).0, retry_at, status.next_refresh_time), (FALSE.into(), None, None));
    }

    #[test]
    fn a_token_that_expires_during_a_backoff_turns_ready_false_for_the_same_reason() {
        let previous = status(true, "AccountsServerTimeout", Some(65), 6);
        assert_eq!(report(&previous, 59).waiting(Some(&token("a", 0)), at(65)), previous, "nothing to write yet");
        let expired = report(&previous, 61).waiting(None, at(65));
        assert_eq!(ready(&expired), (FALSE.into(), "AccountsServerTimeout".into()));
        assert!(expired.ready_condition().unwrap().message.contains("could not be renewed"));
        assert_eq!(expired.failed_attempts, 6);
        assert_eq!(report(&expired, 62).waiting(None, at(65)), expired, "flipped once");
    }

    #[test]
    fn a_refused_grant_code_records_no_retry() {
        let previous = ConnectionStatus::default();
        let problem = Problem::Zoho(ZohoError::Rejected { code: "x".into() });
        assert!(report(&previous, 0).problem(&problem, None).1.is_some(), "a plain rejection is rechecked");
        let (refused, retry_at) = report(&previous, 0).problem(&Problem::Zoho(ZohoError::GrantCodeInvalid), None);
        assert_eq!((retry_at, refused.failed_attempts), (None, 1));
        assert_eq!(ready(&refused), (FALSE.into(), GRANT_CODE_INVALID.into()));
        assert_eq!(report(&refused, 5).waiting(None, Timestamp::MAX), refused, "and nothing changes while it waits");
    }

    trait LastTransition {
        fn last_transition_time(&self) -> Option<Time>;
    }

    impl LastTransition for ConnectionStatus {
        fn last_transition_time(&self) -> Option<Time> {
            self.ready_condition().map(|c| c.last_transition_time.clone())
        }
    }
}
