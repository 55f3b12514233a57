//! One minter per credential. Zoho counts every minted token against a refresh token's quota (10
//! per 10 minutes, 15 alive at once), so connections that share a credential share its tokens,
//! mint one at a time, and stay within a budget below Zoho's limit.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use jiff::Timestamp;
use secrecy::ExposeSecret;

use crate::{
    metrics::Metrics,
    schedule::{self, format_time},
    zoho::{AccountsClient, AccountsUrl, CodeExchange, Credentials, FailureClass, GrantCode, IssuedToken, ZohoError},
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

/// The reasons of the deferrals that involve no failure of the connection's own.
pub const THROTTLED: &str = "Throttled";
pub const BUDGET_EXHAUSTED: &str = "MintBudgetExhausted";

/// Why Zoho is not asked for a token now, although a connection needs one. None of these sends
/// anything to Zoho.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Deferral {
    /// A permanent rejection of this very credential, seen by any connection that uses it.
    #[error("{error}")]
    Rejected { error: ZohoError, until: Timestamp },
    #[error("Zoho throttled this credential; the next request waits until {}", format_time(*until))]
    Throttled { until: Timestamp },
    #[error(
        "this credential has used its budget of {max} new tokens per {}s; the next one may be minted at {}",
        window.as_secs(),
        format_time(*until)
    )]
    BudgetExhausted { max: usize, window: Duration, until: Timestamp },
}

impl Deferral {
    /// When asking Zoho can make sense again.
    pub fn until(&self) -> Timestamp {
        match self {
            Self::Rejected { until, .. } | Self::Throttled { until } | Self::BudgetExhausted { until, .. } => *until,
        }
    }

    pub fn class(&self) -> FailureClass {
        match self {
            Self::Rejected { error, .. } => error.class(),
            Self::Throttled { .. } => FailureClass::Throttled,
            // Waiting for budget is a delay, not a failure.
            Self::BudgetExhausted { .. } => FailureClass::Transient,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            Self::Rejected { error, .. } => error.reason(),
            Self::Throttled { .. } => THROTTLED,
            Self::BudgetExhausted { .. } => BUDGET_EXHAUSTED,
        }
    }
}

/// What the process knows about one credential: the same for every connection that uses it.
#[derive(Clone, Debug, Default)]
pub struct CredentialView {
    /// The newest token minted for (or seen with) this credential.
    pub latest: Option<IssuedToken>,
    /// When the tokens of the current budget window were minted, oldest first.
    pub recent_mints: VecDeque<Timestamp>,
    pub throttled_until: Option<Timestamp>,
    /// A permanent rejection and when it came, so that connections sharing a revoked credential
    /// do not each ask Zoho again.
    pub rejected: Option<(ZohoError, Timestamp)>,
}

/// Whether the credential may ask Zoho for a new token at `now`.
pub fn admit(view: &CredentialView, budget: MintBudget, now: Timestamp) -> Result<(), Deferral> {
    if let Some((error, at)) = &view.rejected {
        // A grant code works once: once refused, it is never sent again.
        let until = match error {
            ZohoError::GrantCodeInvalid => Timestamp::MAX,
            _ => *at + schedule::retry_delay(FailureClass::Permanent, 1, 0.0),
        };
        if now < until {
            return Err(Deferral::Rejected { error: error.clone(), until });
        }
    }
    if let Some(until) = view.throttled_until.filter(|until| now < *until) {
        return Err(Deferral::Throttled { until });
    }
    let window_start = now - budget.window;
    let in_window = view.recent_mints.iter().filter(|at| **at > window_start);
    if let Some(oldest) = in_window.clone().next()
        && in_window.count() >= budget.max_mints
    {
        return Err(Deferral::BudgetExhausted {
            max: budget.max_mints,
            window: budget.window,
            until: *oldest + budget.window,
        });
    }
    Ok(())
}

/// A grant code's exchange, and when Zoho answered it: the refresh token it holds exists only
/// in memory until it is written back.
#[derive(Clone, Debug)]
pub struct Exchanged {
    pub exchange: CodeExchange,
    pub at: std::time::Instant,
}

/// A token obtained for a connection.
#[derive(Clone, Debug)]
pub struct Obtained {
    pub token: IssuedToken,
    /// Whether a request to Zoho created it, as opposed to a token another connection shared.
    pub minted: bool,
}

/// Why [`MintCoordinator::obtain`] returned no token.
#[derive(Clone, Debug)]
pub enum MintFailure {
    /// Another connection changed what is known about the credential first.
    Deferred(Deferral),
    Zoho(ZohoError),
}

struct Credential {
    view: Mutex<CredentialView>,
    /// For a grant code: what Zoho gave for it, until the refresh token is safely written back.
    /// The code cannot be exchanged twice, so this memory is all there is to retry the write with.
    exchanged: Mutex<Option<Exchanged>>,
    /// Held while a request for this credential is in flight, so that connections sharing it
    /// cause one mint, not many.
    minting: tokio::sync::Mutex<()>,
}

/// How long an exchanged grant code's refresh token is kept in memory for its write-back.
const PENDING_EXCHANGE_KEPT: Duration = Duration::from_secs(24 * 3600);

/// The memory the process shares between connections: per credential, the latest token, the
/// budget, throttling and rejection. Everything a single connection must remember lives in its
/// status instead.
pub struct MintCoordinator {
    client: AccountsClient,
    budget: MintBudget,
    metrics: Arc<Metrics>,
    credentials: Mutex<HashMap<String, Arc<Credential>>>,
}

impl MintCoordinator {
    pub fn new(client: AccountsClient, budget: MintBudget, metrics: Arc<Metrics>) -> Self {
        Self { client, budget, metrics, credentials: Mutex::default() }
    }

    pub fn accounts_client(&self) -> &AccountsClient {
        &self.client
    }

    pub fn budget(&self) -> MintBudget {
        self.budget
    }

    fn credential(&self, fingerprint: &str) -> Arc<Credential> {
        let mut all = self.credentials.lock().expect("never poisoned");
        all.entry(fingerprint.to_string())
            .or_insert_with(|| {
                Arc::new(Credential {
                    view: Mutex::default(),
                    exchanged: Mutex::default(),
                    minting: tokio::sync::Mutex::new(()),
                })
            })
            .clone()
    }

    /// A snapshot of what is known about the credential, for the policy to decide on.
    pub fn view(&self, fingerprint: &str) -> CredentialView {
        self.credential(fingerprint).view.lock().expect("never poisoned").clone()
    }

    /// Records a token found in a target Secret, so that connections sharing its credential reuse
    /// it after a restart instead of minting their own.
    pub fn remember(&self, fingerprint: &str, token: &IssuedToken) {
        let credential = self.credential(fingerprint);
        let mut view = credential.view.lock().expect("never poisoned");
        if view.latest.as_ref().is_none_or(|latest| latest.expires_at < token.expires_at) {
            view.latest = Some(token.clone());
        }
    }

    /// Drops a token that must not be served any more, such as one just revoked.
    pub fn forget_token(&self, fingerprint: &str, token: &IssuedToken) {
        let credential = self.credential(fingerprint);
        let mut view = credential.view.lock().expect("never poisoned");
        if view
            .latest
            .as_ref()
            .is_some_and(|latest| latest.access_token.expose_secret() == token.access_token.expose_secret())
        {
            view.latest = None;
        }
    }

    /// Forgets credentials with nothing left worth remembering at `now`: no live token, no
    /// budget in use, no throttle or rejection pending.
    pub fn forget_idle(&self, now: Timestamp) {
        let budget = self.budget;
        self.credentials.lock().expect("never poisoned").retain(|_, credential| {
            // A refresh token not yet written back exists nowhere else, and its code cannot be
            // exchanged again: it is kept well past its access token's hour, while the write is
            // retried, and dropped only once nobody has come for it in a day (its code replaced).
            let exchanged = credential.exchanged.lock().expect("never poisoned");
            let pending = exchanged.as_ref().is_some_and(|e| e.exchange.token.issued_at > now - PENDING_EXCHANGE_KEPT);
            let view = credential.view.lock().expect("never poisoned");
            let live_token = view.latest.as_ref().is_some_and(|t| schedule::is_usable(t.expires_at, now));
            pending
                || live_token
                || admit(&view, budget, now).is_err()
                || view.recent_mints.back().is_some_and(|at| *at > now - budget.window)
        });
    }

    /// Trades a grant code for a refresh token, once: the answer is kept until
    /// [`MintCoordinator::written_back`] says the refresh token is safe, and returned again to
    /// whoever asks meanwhile. A refusal is remembered for good.
    pub async fn exchange(
        &self,
        accounts: &AccountsUrl,
        grant: &GrantCode,
        fingerprint: &str,
    ) -> Result<Exchanged, MintFailure> {
        let credential = self.credential(fingerprint);
        let _minting = credential.minting.lock().await;
        if let Some(exchanged) = credential.exchanged.lock().expect("never poisoned").clone() {
            return Ok(exchanged);
        }
        let now = Timestamp::now();
        admit(&credential.view.lock().expect("never poisoned"), self.budget, now).map_err(MintFailure::Deferred)?;
        let started = std::time::Instant::now();
        let result = self.client.exchange_code(accounts, grant).await;
        self.metrics.observe_mint(result.as_ref().err().map(ZohoError::class), started.elapsed());
        match result {
            Ok(exchange) => {
                let exchanged = Exchanged { exchange, at: std::time::Instant::now() };
                *credential.exchanged.lock().expect("never poisoned") = Some(exchanged.clone());
                Ok(exchanged)
            }
            Err(err) => {
                let mut view = credential.view.lock().expect("never poisoned");
                match err.class() {
                    FailureClass::Throttled => view.throttled_until = Some(now + schedule::THROTTLE_WINDOW),
                    FailureClass::Permanent => view.rejected = Some((err.clone(), now)),
                    FailureClass::Transient => {}
                }
                Err(MintFailure::Zoho(err))
            }
        }
    }

    /// A grant code's exchange that still waits for its refresh token to be written back.
    pub fn pending_exchange(&self, code_fingerprint: &str) -> Option<Exchanged> {
        self.credential(code_fingerprint).exchanged.lock().expect("never poisoned").clone()
    }

    /// The refresh token from the exchange of `code_fingerprint` is in the credentials Secret now,
    /// as the credential `fingerprint`: its access token counts as that credential's first mint.
    pub fn written_back(&self, code_fingerprint: &str, fingerprint: &str, token: &IssuedToken) {
        *self.credential(code_fingerprint).exchanged.lock().expect("never poisoned") = None;
        let credential = self.credential(fingerprint);
        let mut view = credential.view.lock().expect("never poisoned");
        view.recent_mints.push_back(token.issued_at);
        view.latest = Some(token.clone());
    }

    /// Returns a token for the credential that `accept` takes: the one most recently minted for it
    /// when that qualifies, or a newly minted one. Callers sharing a credential are served one at a
    /// time, so concurrent requests cause one mint, not many.
    pub async fn obtain(
        &self,
        accounts: &AccountsUrl,
        credentials: &Credentials,
        fingerprint: &str,
        accept: impl Fn(&IssuedToken) -> bool,
    ) -> Result<Obtained, MintFailure> {
        let credential = self.credential(fingerprint);
        let _minting = credential.minting.lock().await;
        let now = Timestamp::now();
        {
            let mut view = credential.view.lock().expect("never poisoned");
            if let Some(token) = view.latest.as_ref().filter(|token| accept(token)) {
                return Ok(Obtained { token: token.clone(), minted: false });
            }
            if let Err(deferral) = admit(&view, self.budget, now) {
                return Err(MintFailure::Deferred(deferral));
            }
            // Counted before the answer: a request that timed out may still have minted at Zoho.
            let window_start = now - self.budget.window;
            while view.recent_mints.front().is_some_and(|at| *at <= window_start) {
                view.recent_mints.pop_front();
            }
            view.recent_mints.push_back(now);
        }
        let started = std::time::Instant::now();
        let result = self.client.refresh(accounts, credentials).await;
        self.metrics.observe_mint(result.as_ref().err().map(ZohoError::class), started.elapsed());
        let mut view = credential.view.lock().expect("never poisoned");
        match result {
            Ok(token) => {
                view.rejected = None;
                view.throttled_until = None;
                view.latest = Some(token.clone());
                Ok(Obtained { token, minted: true })
            }
            Err(err) => {
                match err.class() {
                    FailureClass::Throttled => view.throttled_until = Some(now + schedule::THROTTLE_WINDOW),
                    FailureClass::Permanent => view.rejected = Some((err.clone(), now)),
                    FailureClass::Transient => {}
                }
                Err(MintFailure::Zoho(err))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    fn at(minutes: i64) -> Timestamp {
        "2026-11-28T10:00:00Z".parse::<Timestamp>().unwrap() + jiff::SignedDuration::from_mins(minutes)
    }

    #[test]
    fn admission_checks_rejection_then_throttle_then_budget() {
        let budget = MintBudget { max_mints: 2, window: Duration::from_secs(600) };
        let reason = |view: &CredentialView, now| admit(view, budget, at(now)).map_err(|d| (d.reason(), d.until()));
        let mut view = CredentialView::default();
        assert_eq!(reason(&view, 0), Ok(()));
        view.recent_mints = VecDeque::from([at(-9), at(-2)]);
        assert_eq!(reason(&view, 0), Err(("MintBudgetExhausted", at(1))));
        assert_eq!(reason(&view, 1), Ok(()), "the oldest mint left the window");
        view.throttled_until = Some(at(5));
        assert_eq!(reason(&view, 0), Err(("Throttled", at(5))));
        view.rejected = Some((ZohoError::RefreshTokenRevoked, at(-1)));
        assert_eq!(reason(&view, 0), Err(("RefreshTokenRevoked", at(59))));
        view.throttled_until = None;
        view.recent_mints.clear();
        assert_eq!(reason(&view, 59), Ok(()), "rechecked after an hour");
    }

    #[test]
    fn idle_credentials_are_forgotten_but_a_pending_exchange_is_kept_for_a_day() {
        let coordinator = MintCoordinator::new(
            AccountsClient::new(crate::zoho::AllowList::new(vec![]), Duration::from_secs(1), Duration::from_secs(1)),
            MintBudget::default(),
            Arc::default(),
        );
        let token = IssuedToken {
            access_token: SecretString::from("a"),
            api_domain: None,
            token_type: "Bearer".into(),
            issued_at: at(0),
            expires_at: at(60),
        };
        coordinator.view("idle");
        *coordinator.credential("code").exchanged.lock().unwrap() = Some(Exchanged {
            exchange: CodeExchange { token, refresh_token: SecretString::from("r") },
            at: std::time::Instant::now(),
        });
        let known = |coordinator: &MintCoordinator| {
            let mut keys: Vec<String> = coordinator.credentials.lock().unwrap().keys().cloned().collect();
            keys.sort();
            keys
        };
        coordinator.forget_idle(at(2 * 60));
        assert_eq!(known(&coordinator), ["code"], "an hour after its token expired, the exchange is still pending");
        coordinator.forget_idle(at(24 * 60 + 1));
        assert!(known(&coordinator).is_empty(), "a day later nobody came for it");
    }

    mod against_the_fake {
        use testkit::fake_zoho::{FakeZoho, FakeZohoConfig};

        use super::*;
        use crate::{credentials::Credential, zoho::AllowList};

        fn credentials(refresh: &str) -> Credentials {
            Credentials {
                client_id: "1000.CLIENT".into(),
                client_secret: SecretString::from("s"),
                refresh_token: SecretString::from(refresh.to_string()),
            }
        }

        fn setup(budget: MintBudget) -> (FakeZoho, Arc<MintCoordinator>, AccountsUrl, Credentials, String) {
            let fake = FakeZoho::start(FakeZohoConfig { throttle_limit: 100, ..FakeZohoConfig::default() });
            fake.register_client("1000.CLIENT", "s");
            fake.register_refresh_token("1000.CLIENT", "r");
            let url = AccountsUrl::parse(&fake.url()).unwrap();
            let client =
                AccountsClient::new(AllowList::new(vec![url.clone()]), Duration::from_secs(1), Duration::from_secs(2));
            let coordinator = Arc::new(MintCoordinator::new(client, budget, Arc::default()));
            let credentials = credentials("r");
            let fingerprint = Credential::Refresh(credentials.clone()).fingerprint(&url);
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
            assert!(coordinator.view(&fingerprint).latest.is_some(), "the view shows the shared token");
        }

        #[tokio::test]
        async fn the_budget_defers_mints_beyond_it_without_asking_zoho() {
            let budget = MintBudget { max_mints: 3, window: Duration::from_secs(600) };
            let (fake, coordinator, url, credentials, fingerprint) = setup(budget);
            for _ in 0..3 {
                coordinator.obtain(&url, &credentials, &fingerprint, |_| false).await.unwrap();
            }
            let err = coordinator.obtain(&url, &credentials, &fingerprint, |_| false).await.unwrap_err();
            let MintFailure::Deferred(Deferral::BudgetExhausted { until, .. }) = err else {
                panic!("expected a deferral, got {err:?}")
            };
            assert!(until > Timestamp::now() + Duration::from_secs(590));
            assert_eq!(fake.stats().totals.requests, 3);
        }

        #[tokio::test]
        async fn throttling_and_permanent_rejections_are_remembered_per_credential() {
            let (fake, coordinator, url, credentials, fingerprint) = setup(MintBudget::default());
            fake.update_config(|c| c.throttle_limit = 1);
            coordinator.obtain(&url, &credentials, &fingerprint, |_| false).await.unwrap();
            let err = coordinator.obtain(&url, &credentials, &fingerprint, |_| false).await.unwrap_err();
            assert!(matches!(err, MintFailure::Zoho(ZohoError::Throttled)), "{err:?}");
            let err = coordinator.obtain(&url, &credentials, &fingerprint, |_| false).await.unwrap_err();
            assert!(matches!(err, MintFailure::Deferred(Deferral::Throttled { .. })), "{err:?}");
            assert_eq!(fake.stats().totals.requests, 2, "the throttled credential waits without asking again");

            let revoked = self::credentials("revoked");
            fake.register_refresh_token("1000.CLIENT", "revoked");
            fake.revoke("revoked");
            let revoked_fingerprint = Credential::Refresh(revoked.clone()).fingerprint(&url);
            for _ in 0..3 {
                let err = coordinator.obtain(&url, &revoked, &revoked_fingerprint, |_| false).await.unwrap_err();
                let reason = match err {
                    MintFailure::Zoho(err) => err.reason(),
                    MintFailure::Deferred(deferral) => deferral.reason(),
                };
                assert_eq!(reason, "RefreshTokenRevoked");
            }
            assert_eq!(fake.requests("revoked"), 1, "a revoked credential is asked once, not once per connection");
        }
    }
}
