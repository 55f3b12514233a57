//! One minter per credential. Zoho counts every minted token against a refresh token's quota (10
//! per 10 minutes, 15 alive at once), so connections that share a credential share its tokens,
//! mint one at a time, and stay within a budget below Zoho's limit.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use hmac::{Hmac, Mac};
use jiff::Timestamp;
use secrecy::ExposeSecret;
use sha2::Sha256;

use crate::{
    metrics::Metrics,
    schedule,
    zoho::{AccountsClient, AccountsUrl, Credentials, FailureClass, IssuedToken, ZohoError},
};

/// How many tokens one credential may mint within `window`.
#[derive(Clone, Copy, Debug)]
pub struct MintBudget {
    pub max_mints: usize,
    pub window: Duration,
}

impl Default for MintBudget {
    /// Two below Zoho's 10 per 10 minutes, leaving room for a client outside the cluster.
    fn default() -> Self {
        Self { max_mints: 8, window: Duration::from_secs(600) }
    }
}

/// A keyed digest that identifies a credential without revealing it. It is keyed with the client
/// secret, so that someone who can read it cannot test guesses of the refresh token without the
/// secret too; it changes whenever any part of the credential does.
pub fn fingerprint(accounts: &AccountsUrl, credentials: &Credentials) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(credentials.client_secret.expose_secret().as_bytes())
        .expect("HMAC accepts keys of any length");
    for part in
        ["zoho-token-operator/v1", accounts.as_str(), &credentials.client_id, credentials.refresh_token.expose_secret()]
    {
        mac.update(part.as_bytes());
        mac.update(&[0]);
    }
    let digest = mac.finalize().into_bytes();
    format!("v1-{}", digest[..16].iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Why no token could be had right now.
#[derive(Clone, Debug, thiserror::Error)]
pub enum MintError {
    #[error(transparent)]
    Zoho(#[from] ZohoError),
    #[error(
        "this credential has used its budget of {max} new tokens per {window:?}; the next one may be minted at {until}"
    )]
    BudgetExhausted { max: usize, window: Duration, until: Timestamp },
    #[error("Zoho throttled this credential; the next request waits until {until}")]
    ThrottledUntil { until: Timestamp },
}

impl MintError {
    /// When asking again can make sense, if Zoho or the budget dictates it.
    pub fn retry_not_before(&self) -> Option<Timestamp> {
        match self {
            Self::BudgetExhausted { until, .. } | Self::ThrottledUntil { until } => Some(*until),
            Self::Zoho(_) => None,
        }
    }

    pub fn class(&self) -> FailureClass {
        match self {
            Self::Zoho(err) => err.class(),
            Self::ThrottledUntil { .. } => FailureClass::Throttled,
            // Waiting for budget is a delay, not a failure.
            Self::BudgetExhausted { .. } => FailureClass::Transient,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            Self::Zoho(err) => err.reason(),
            Self::BudgetExhausted { .. } => "MintBudgetExhausted",
            Self::ThrottledUntil { .. } => "Throttled",
        }
    }
}

/// A token obtained for a connection.
#[derive(Clone, Debug)]
pub struct Obtained {
    pub token: IssuedToken,
    /// Whether a request to Zoho created it, as opposed to a token another connection shared.
    pub minted: bool,
}

#[derive(Default)]
struct CredentialState {
    /// The newest token minted for (or seen with) this credential.
    latest: Option<IssuedToken>,
    recent_mints: VecDeque<Timestamp>,
    throttled_until: Option<Timestamp>,
    /// A permanent rejection and when it came, so that connections sharing a revoked credential
    /// do not each ask Zoho again.
    rejected: Option<(ZohoError, Timestamp)>,
}

/// Coordinates all token requests of the process.
pub struct MintCoordinator {
    client: AccountsClient,
    budget: MintBudget,
    metrics: Arc<Metrics>,
    credentials: Mutex<HashMap<String, Arc<tokio::sync::Mutex<CredentialState>>>>,
}

impl MintCoordinator {
    pub fn new(client: AccountsClient, budget: MintBudget, metrics: Arc<Metrics>) -> Self {
        Self { client, budget, metrics, credentials: Mutex::default() }
    }

    pub fn accounts_client(&self) -> &AccountsClient {
        &self.client
    }

    fn state(&self, fingerprint: &str) -> Arc<tokio::sync::Mutex<CredentialState>> {
        let mut all = self.credentials.lock().expect("the credentials map is never poisoned");
        all.entry(fingerprint.to_string()).or_default().clone()
    }

    /// Records a token found in a target Secret, so that connections sharing its credential reuse
    /// it after a restart instead of minting their own.
    pub async fn remember(&self, fingerprint: &str, token: &IssuedToken) {
        let state = self.state(fingerprint);
        let mut state = state.lock().await;
        if state.latest.as_ref().is_none_or(|latest| latest.expires_at < token.expires_at) {
            state.latest = Some(token.clone());
        }
    }

    /// The newest token known for the credential, whether or not it is due for refresh.
    pub async fn latest(&self, fingerprint: &str) -> Option<IssuedToken> {
        self.state(fingerprint).lock().await.latest.clone()
    }

    /// Returns a token for the credential that `still_fresh` accepts: the one most recently minted for
    /// it when that qualifies, or a newly minted one. Callers sharing a credential are served one at a
    /// time, so concurrent requests cause one mint, not many.
    pub async fn obtain(
        &self,
        accounts: &AccountsUrl,
        credentials: &Credentials,
        fingerprint: &str,
        still_fresh: impl Fn(&IssuedToken) -> bool,
    ) -> Result<Obtained, MintError> {
        let state = self.state(fingerprint);
        let mut state = state.lock().await;
        if let Some(token) = state.latest.as_ref().filter(|token| still_fresh(token)) {
            return Ok(Obtained { token: token.clone(), minted: false });
        }
        let now = Timestamp::now();
        if let Some((err, at)) = &state.rejected {
            let recheck_at = *at + schedule::retry_delay(FailureClass::Permanent, 1, 0.0);
            if now < recheck_at {
                return Err(err.clone().into());
            }
        }
        if let Some(until) = state.throttled_until.filter(|until| now < *until) {
            return Err(MintError::ThrottledUntil { until });
        }
        let window_start = now - self.budget.window;
        while state.recent_mints.front().is_some_and(|at| *at <= window_start) {
            state.recent_mints.pop_front();
        }
        if state.recent_mints.len() >= self.budget.max_mints {
            self.metrics.mint_deferred();
            let oldest = *state.recent_mints.front().expect("the budget is at least one mint");
            return Err(MintError::BudgetExhausted {
                max: self.budget.max_mints,
                window: self.budget.window,
                until: oldest + self.budget.window,
            });
        }

        // Counted before the answer: a request that timed out may still have minted at Zoho.
        state.recent_mints.push_back(now);
        let started = std::time::Instant::now();
        let result = self.client.refresh(accounts, credentials).await;
        self.metrics.observe_mint(result.as_ref().err().map(ZohoError::class), started.elapsed());
        match result {
            Ok(token) => {
                state.rejected = None;
                state.throttled_until = None;
                state.latest = Some(token.clone());
                Ok(Obtained { token, minted: true })
            }
            Err(err) => {
                match err.class() {
                    FailureClass::Throttled => state.throttled_until = Some(now + schedule::THROTTLE_WINDOW),
                    FailureClass::Permanent => state.rejected = Some((err.clone(), now)),
                    FailureClass::Transient => {}
                }
                Err(err.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    fn credentials(secret: &str, refresh: &str) -> Credentials {
        Credentials {
            client_id: "1000.CLIENT".into(),
            client_secret: SecretString::from(secret.to_string()),
            refresh_token: SecretString::from(refresh.to_string()),
        }
    }

    mod against_the_fake {
        use testkit::fake_zoho::{FakeZoho, FakeZohoConfig};

        use super::*;
        use crate::zoho::AllowList;

        fn setup(budget: MintBudget) -> (FakeZoho, Arc<MintCoordinator>, AccountsUrl, Credentials, String) {
            let fake = FakeZoho::start(FakeZohoConfig { throttle_limit: 100, ..FakeZohoConfig::default() });
            fake.register_client("1000.CLIENT", "s");
            fake.register_refresh_token("1000.CLIENT", "r");
            let url = AccountsUrl::parse(&fake.url()).unwrap();
            let client =
                AccountsClient::new(AllowList::new(vec![url.clone()]), Duration::from_secs(1), Duration::from_secs(2));
            let coordinator = Arc::new(MintCoordinator::new(client, budget, Arc::default()));
            let credentials = credentials("s", "r");
            let fingerprint = fingerprint(&url, &credentials);
            (fake, coordinator, url, credentials, fingerprint)
        }

        #[tokio::test]
        async fn concurrent_requests_for_one_credential_cause_one_mint() {
            let (fake, coordinator, url, credentials, fingerprint) = setup(MintBudget::default());
            let requests = (0..50).map(|_| {
                let (coordinator, url, credentials, fingerprint) =
                    (coordinator.clone(), url.clone(), credentials.clone(), fingerprint.clone());
                tokio::spawn(async move {
                    let now = Timestamp::now();
                    coordinator.obtain(&url, &credentials, &fingerprint, |t| now < t.expires_at).await.unwrap()
                })
            });
            let results = futures::future::join_all(requests).await;
            let minted = results.iter().filter(|r| r.as_ref().unwrap().minted).count();
            assert_eq!((minted, fake.mints("r")), (1, 1));
        }

        #[tokio::test]
        async fn the_budget_defers_mints_beyond_it_without_asking_zoho() {
            let budget = MintBudget { max_mints: 3, window: Duration::from_secs(600) };
            let (fake, coordinator, url, credentials, fingerprint) = setup(budget);
            for _ in 0..3 {
                coordinator.obtain(&url, &credentials, &fingerprint, |_| false).await.unwrap();
            }
            let err = coordinator.obtain(&url, &credentials, &fingerprint, |_| false).await.unwrap_err();
            let MintError::BudgetExhausted { until, .. } = err else { panic!("expected a deferral, got {err}") };
            assert!(until > Timestamp::now() + Duration::from_secs(590));
            assert_eq!(fake.stats().totals.requests, 3);
        }

        #[tokio::test]
        async fn throttling_and_permanent_rejections_are_remembered_per_credential() {
            let (fake, coordinator, url, credentials, fingerprint) = setup(MintBudget::default());
            fake.update_config(|c| c.throttle_limit = 1);
            coordinator.obtain(&url, &credentials, &fingerprint, |_| false).await.unwrap();
            assert_eq!(
                coordinator.obtain(&url, &credentials, &fingerprint, |_| false).await.unwrap_err().reason(),
                "Throttled"
            );
            let err = coordinator.obtain(&url, &credentials, &fingerprint, |_| false).await.unwrap_err();
            assert!(matches!(err, MintError::ThrottledUntil { .. }), "{err}");
            assert_eq!(fake.stats().totals.requests, 2, "the throttled credential waits without asking again");

            let revoked = super::credentials("s", "revoked");
            fake.register_refresh_token("1000.CLIENT", "revoked");
            fake.revoke("revoked");
            let revoked_fingerprint = super::fingerprint(&url, &revoked);
            for _ in 0..3 {
                let err = coordinator.obtain(&url, &revoked, &revoked_fingerprint, |_| false).await.unwrap_err();
                assert_eq!(err.reason(), "RefreshTokenRevoked");
            }
            assert_eq!(fake.requests("revoked"), 1, "a revoked credential is asked once, not once per connection");
        }
    }

    #[test]
    fn fingerprints_identify_credentials_without_revealing_them() {
        let eu = AccountsUrl::of(crate::zoho::DataCenter::EU);
        let us = AccountsUrl::of(crate::zoho::DataCenter::US);
        let a = fingerprint(&eu, &credentials("SENTINEL-secret", "SENTINEL-refresh"));
        assert_eq!(a, fingerprint(&eu, &credentials("SENTINEL-secret", "SENTINEL-refresh")));
        assert_ne!(a, fingerprint(&us, &credentials("SENTINEL-secret", "SENTINEL-refresh")));
        assert_ne!(a, fingerprint(&eu, &credentials("SENTINEL-secret", "SENTINEL-refresh2")));
        assert_ne!(a, fingerprint(&eu, &credentials("SENTINEL-secret2", "SENTINEL-refresh")));
        assert!(!a.contains("SENTINEL") && a.starts_with("v1-") && a.len() == 35, "{a}");
    }
}
