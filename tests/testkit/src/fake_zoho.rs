//! A fake Zoho accounts server for tests and demos; never part of the
//! production image.
//!
//! It reproduces what `reference/zoho-oauth.md` documents about
//! `POST /oauth/v2/token` and `/oauth/v2/token/revoke`: refresh and code grants,
//! errors in the body of an HTTP 200, the 10-per-10-minutes throttle per refresh
//! token, the 15-live-token cap that evicts the oldest token, revocation, and the
//! legacy `expires_in_sec` format. It also plays Zoho's device flow ("limited
//! input devices", `POST /oauth/v3/device/code` and `/oauth/v3/device/token`):
//! pending, `slow_down`, `expired`, `access_denied` and `other_dc` answers, with
//! the user's decision taken through the test API, and another instance standing
//! in for the user's data center. Tests inspect and steer it through
//! [`FakeZoho`]'s methods or, when it runs as the `fake-zoho` process, through
//! the JSON API under `/_fake/` (see the `http` module for every endpoint).
//!
//! Where Zoho's behaviour is undocumented, the fake picks:
//! - The throttle window is fixed: it opens with the first mint after the
//!   previous window closed and blocks "for the rest of the ten minutes";
//!   throttled requests neither mint nor extend the block.
//! - A missing parameter answers `invalid_request`, an unknown `grant_type`
//!   `unsupported_grant_type`, a code whose registered `redirect_uri` differs from
//!   the request's `invalid_redirect_uri`; a code is burnt by its first attempt.
//! - A code made without offline access (see [`FakeZoho::make_code_online`])
//!   exchanges for an access token without `refresh_token`.
//! - Revoking an unknown token answers HTTP 400
//!   `{"status":"failure","error":"invalid_token"}`.
//! - Parameters are read from the query string and from an
//!   `application/x-www-form-urlencoded` (or untyped) body, the body winning.
//!   Multipart bodies, Basic auth and the `client_credentials` grant are not
//!   supported.
//!
//! The device flow, as Zoho's pages (initiation-request, polling-request,
//! multi-dc/limited-input-devices) describe it, and where they are silent:
//! - Documented: the parameters (`grant_type=device_request`, `client_id`,
//!   `scope`, `access_type`, `prompt`; then `grant_type=device_token`,
//!   `client_id`, `client_secret`, `code`), the answer's fields `user_code`,
//!   `device_code`, `verification_url`, `interval` and `expires_in`, the user
//!   code's validity of 5 minutes, the feedback codes, `slow_down` for "two
//!   polling requests within 30 seconds", a refresh token only with
//!   `access_type=offline`, and `other_dc` carrying `user_location` (`"eu"`).
//! - Zoho's older page gives `interval` and `expires_in` in milliseconds; its
//!   current one names no unit. The fake sends milliseconds.
//! - Feedback comes as HTTP 200 `{"error": code}`, like the token endpoint's
//!   errors; the real status code is not documented.
//! - `other_dc` also names the accounts server as `accounts-server` (Zoho's name
//!   for it in the authorization redirect); Zoho documents only
//!   `user_location`. It is how the fake points at another local instance.
//! - Every poll restarts the slow-down gap, a slowed-down one too. `expired`
//!   is answered once the validity has passed, whatever the user did; a device
//!   code whose tokens were handed out, or that is unknown, answers
//!   `invalid_code`. `prompt` is ignored.
//! - The verification URL is `{fake}/oauth/v3/device`, a text page; the user code
//!   is eight characters from `A-Z2-9` without look-alikes.

mod clock;
mod http;
mod state;

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use clock::Clock;
pub use state::{UnknownClient, UnknownUserCode};

use state::State;

#[derive(Clone, Debug)]
pub struct FakeZohoConfig {
    /// Port 0 picks a free port, which [`FakeZoho::restart`] then keeps.
    pub listen: SocketAddr,
    pub api_domain: String,
    /// The scope of every refresh token, echoed in token responses.
    pub scope: String,
    /// Responses state it in whole seconds.
    pub token_lifetime: Duration,
    /// Answer `"expires_in_sec": <s>, "expires_in": <ms>` as Zoho once did.
    pub legacy_expires: bool,
    pub throttle_window: Duration,
    /// Mints allowed per refresh token per window.
    pub throttle_limit: u32,
    /// Zoho has been seen answering the throttle with both 400 and 200.
    pub throttle_status: u16,
    /// Answer the throttle in Chinese, as Zoho does for some accounts.
    pub localized_throttle: bool,
    /// Live access tokens per refresh token; minting one more evicts the oldest.
    pub live_token_cap: usize,
    pub code_lifetime: Duration,
    /// The device flow's `interval`: how long a device is told to wait between polls.
    pub device_poll_interval: Duration,
    /// Polls of one device authorization closer together than this answer `slow_down`. Zoho
    /// documents 30 s; it is separate from the advertised interval so that tests can make a
    /// client that honours the interval meet `slow_down` anyway.
    pub device_min_poll_gap: Duration,
    /// How long a user has to act on a device authorization (Zoho: 5 minutes).
    pub device_code_lifetime: Duration,
    /// This server's data center as Zoho's lower-case location code (`us`, `eu`, ...), sent as
    /// `user_location` when another instance redirects a device here.
    pub location: String,
    pub clock: Clock,
    /// Keeps tokens and counters across process restarts. Loaded on start if
    /// it exists, rewritten after every change. Faults and the clock's skips are
    /// not kept.
    pub state_file: Option<PathBuf>,
}

impl Default for FakeZohoConfig {
    /// Zoho's documented values.
    fn default() -> Self {
        Self {
            listen: (Ipv4Addr::LOCALHOST, 0).into(),
            api_domain: "https://www.zohoapis.com".to_owned(),
            scope: "ZohoCRM.modules.ALL".to_owned(),
            token_lifetime: Duration::from_secs(3600),
            legacy_expires: false,
            throttle_window: Duration::from_secs(600),
            throttle_limit: 10,
            throttle_status: 400,
            localized_throttle: false,
            live_token_cap: 15,
            code_lifetime: Duration::from_secs(120),
            device_poll_interval: Duration::from_secs(30),
            device_min_poll_gap: Duration::from_secs(30),
            device_code_lifetime: Duration::from_secs(300),
            location: "us".to_owned(),
            clock: Clock::system(),
            state_file: None,
        }
    }
}

/// Token-endpoint traffic, in total or for the requests carrying one refresh token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Every request that arrived, whatever became of it.
    pub requests: u64,
    /// Access tokens minted. A code grant counts for the refresh token it creates.
    pub mints: u64,
    pub throttled: u64,
    /// Answers with an `error` other than the throttle.
    pub errors: u64,
    /// Requests answered by an injected fault.
    pub faulted: u64,
    /// When the first and the last of `mints` happened, in milliseconds on the server's clock:
    /// with the count, the spacing of a refresh token's mints, e.g. to check one per period.
    #[serde(default)]
    pub first_mint_ms: Option<u64>,
    #[serde(default)]
    pub last_mint_ms: Option<u64>,
    /// The shortest and the longest time between two consecutive mints, in milliseconds.
    #[serde(default)]
    pub min_gap_ms: Option<u64>,
    #[serde(default)]
    pub max_gap_ms: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub totals: Counters,
    /// Successful revocations.
    pub revocations: u64,
    /// By the `refresh_token` parameter of the requests, known to the server or not.
    pub refresh_tokens: BTreeMap<String, Counters>,
    #[serde(default)]
    pub device: DeviceCounters,
}

/// Device-flow traffic. Feedback such as `authorization_pending` is not counted in
/// [`Counters::errors`]; an approved poll counts as a mint of the refresh token it creates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCounters {
    /// Device authorizations started.
    pub codes: u64,
    /// Polls of a known device code, whatever they were answered.
    pub polls: u64,
    /// Polls answered `slow_down`.
    pub slow_downs: u64,
}

/// Where a device authorization stands: what the user did at the verification URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeviceDecision {
    Pending,
    Approved,
    Denied,
    /// The user's account lives in another data center: polls answer `other_dc` with its
    /// location code and accounts server.
    OtherDc {
        location: String,
        accounts_server: String,
    },
    /// The tokens were handed out; the device code is spent.
    Redeemed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub user_code: String,
    pub client_id: String,
    pub scope: String,
    /// Requested with `access_type=offline`.
    pub offline: bool,
    pub polls: u64,
    pub slow_downs: u64,
    pub decision: DeviceDecision,
}

/// A device authorization handed to another instance, the user's data center, which then
/// answers polls with the same device code as approved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceTransfer {
    pub device_code: String,
    pub user_code: String,
    pub client_id: String,
    pub scope: String,
    pub offline: bool,
    pub expires_in_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    Access,
    Refresh,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenStatus {
    Live,
    Expired,
    /// Pushed out by a newer token beyond the live-token cap.
    Evicted,
    Revoked,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub kind: TokenKind,
    pub live: bool,
    pub status: TokenStatus,
    pub client_id: String,
    /// For an access token, the refresh token it was minted from.
    pub refresh_token: Option<String>,
    /// For an access token, milliseconds since the Unix epoch on the server's clock.
    pub expires_at_ms: Option<u64>,
}

/// What the server answers instead of processing an `/oauth/` request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// This status with an HTML body, as a gateway would send.
    HttpStatus { status: u16 },
    /// HTTP 200 with an HTML page.
    Garbage,
    /// HTTP 200 with JSON cut off mid-string.
    TruncatedJson,
    /// HTTP 200 with an empty body.
    Empty,
    /// HTTP 200 streaming a JSON-looking body of this many bytes.
    HugeBody {
        #[serde(default = "Fault::default_huge_body_bytes")]
        bytes: u64,
    },
    /// Never answers; the connection stays open until the client gives up.
    Hang,
    /// This status with this JSON body, verbatim: answers Zoho is not known to send, such as a
    /// token whose `expires_in` is a string.
    Custom { status: u16, body: String },
}

impl Fault {
    pub const DEFAULT_HUGE_BODY_BYTES: u64 = 50 << 20;

    fn default_huge_body_bytes() -> u64 {
        Self::DEFAULT_HUGE_BODY_BYTES
    }

    pub fn huge_body() -> Self {
        Self::HugeBody { bytes: Self::DEFAULT_HUGE_BODY_BYTES }
    }
}

/// A fault with how long it applies. As JSON:
/// `{"kind":"http_status","status":503,"times":2,"after_processing":false}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRule {
    #[serde(flatten)]
    pub fault: Fault,
    /// How many requests it answers; `None` until the faults are cleared.
    #[serde(default)]
    pub times: Option<u32>,
    /// Process the request first (it may mint) and then answer with the fault,
    /// like a response lost on the way back.
    #[serde(default)]
    pub after_processing: bool,
}

impl FaultRule {
    /// Applies until cleared.
    pub fn new(fault: Fault) -> Self {
        Self { fault, times: None, after_processing: false }
    }

    #[must_use]
    pub fn times(mut self, times: u32) -> Self {
        self.times = Some(times);
        self
    }

    #[must_use]
    pub fn after_processing(mut self) -> Self {
        self.after_processing = true;
        self
    }
}

impl From<Fault> for FaultRule {
    fn from(fault: Fault) -> Self {
        Self::new(fault)
    }
}

/// The injected faults: a latency for every `/oauth/` request, and rules
/// applied first to last, each until it is used up.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Faults {
    pub latency_ms: u64,
    pub rules: VecDeque<FaultRule>,
}

impl Faults {
    fn take(&mut self) -> Option<FaultRule> {
        let rule = self.rules.front_mut()?;
        let taken = rule.clone();
        if let Some(times) = &mut rule.times {
            *times -= 1;
            if *times == 0 {
                self.rules.pop_front();
            }
        }
        Some(taken)
    }
}

/// Everything the server knows, behind one lock that is never held across an
/// `.await`, so the handle works from sync and async tests alike.
#[derive(Debug)]
struct Core {
    config: FakeZohoConfig,
    state: State,
    faults: Faults,
    /// `http://127.0.0.1:PORT` once bound, for the verification URL.
    url: String,
}

impl Core {
    fn now_ms(&self) -> u64 {
        self.config.clock.now_ms()
    }

    fn register_refresh_token(&mut self, client_id: &str, token: &str) -> Result<(), UnknownClient> {
        self.state.register_refresh_token(client_id, token, &self.config.scope)
    }

    fn register_code(&mut self, client_id: &str, code: &str, redirect_uri: Option<&str>) -> Result<(), UnknownClient> {
        let now_ms = self.now_ms();
        self.state.register_code(&self.config, now_ms, client_id, code, redirect_uri, &self.config.scope)
    }

    fn revoke(&mut self, token: &str) -> bool {
        let now_ms = self.now_ms();
        self.state.revoke(token, now_ms)
    }

    fn token_info(&self, token: &str) -> Option<TokenInfo> {
        self.state.token_info(token, self.now_ms())
    }

    fn live_tokens(&self, refresh_token: &str) -> Vec<String> {
        self.state.live_tokens(refresh_token, self.now_ms())
    }

    fn inject_fault(&mut self, rule: FaultRule) {
        if rule.times != Some(0) {
            self.faults.rules.push_back(rule);
        }
    }

    fn persist(&self) {
        let Some(path) = &self.config.state_file else {
            return;
        };
        if let Err(error) = write_state(path, &self.state) {
            tracing::warn!(path = %path.display(), %error, "cannot write the state file");
        }
    }
}

fn write_state(path: &Path, state: &State) -> io::Result<()> {
    // Written aside and renamed, so a process killed mid-write leaves the old state.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, serde_json::to_vec(state)?)?;
    std::fs::rename(&tmp, path)
}

fn read_state(path: &Path) -> io::Result<State> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(e),
    }
}

#[derive(Clone, Debug)]
struct Shared(Arc<Mutex<Core>>);

impl Shared {
    fn read<R>(&self, f: impl FnOnce(&Core) -> R) -> R {
        f(&self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn write<R>(&self, f: impl FnOnce(&mut Core) -> R) -> R {
        let mut core = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let result = f(&mut core);
        core.persist();
        result
    }
}

/// A running fake accounts server. Dropping it stops the server.
///
/// Methods that register something panic when given an unregistered client,
/// because that is a bug in the test.
#[derive(Debug)]
pub struct FakeZoho {
    shared: Shared,
    addr: SocketAddr,
    server: Option<http::Server>,
}

impl FakeZoho {
    /// # Panics
    /// If the server cannot start; see [`FakeZoho::try_start`].
    pub fn start(config: FakeZohoConfig) -> Self {
        Self::try_start(config).unwrap_or_else(|e| panic!("fake-zoho cannot start: {e}"))
    }

    /// Binds `config.listen` and serves on a thread of its own, so the caller
    /// needs no runtime and cannot starve it.
    pub fn try_start(config: FakeZohoConfig) -> io::Result<Self> {
        let state = match &config.state_file {
            Some(path) => read_state(path)?,
            None => State::default(),
        };
        let addr = config.listen;
        let mut zoho = Self {
            shared: Shared(Arc::new(Mutex::new(Core { config, state, faults: Faults::default(), url: String::new() }))),
            addr,
            server: None,
        };
        zoho.bind()?;
        Ok(zoho)
    }

    fn bind(&mut self) -> io::Result<()> {
        let listener = std::net::TcpListener::bind(self.addr)?;
        self.addr = listener.local_addr()?;
        let url = self.url();
        self.shared.write(|core| core.url = url);
        self.server = Some(http::Server::spawn(listener, self.shared.clone())?);
        Ok(())
    }

    /// `http://127.0.0.1:PORT`, the accounts server URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn token_url(&self) -> String {
        format!("{}/oauth/v2/token", self.url())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn is_running(&self) -> bool {
        self.server.is_some()
    }

    /// Closes the port and drops every open connection, hanging ones included,
    /// as if the process had been killed. The state stays for [`FakeZoho::restart`].
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }

    /// Serves again on the same port, with tokens, counters and faults intact.
    ///
    /// # Panics
    /// If the port cannot be bound again; see [`FakeZoho::try_restart`].
    pub fn restart(&mut self) {
        self.try_restart().unwrap_or_else(|e| panic!("fake-zoho cannot restart on {}: {e}", self.addr));
    }

    pub fn try_restart(&mut self) -> io::Result<()> {
        self.stop();
        self.bind()
    }

    pub fn config(&self) -> FakeZohoConfig {
        self.shared.read(|core| core.config.clone())
    }

    /// Takes effect from the next request; a changed `listen` from the next restart.
    pub fn update_config(&self, update: impl FnOnce(&mut FakeZohoConfig)) {
        self.shared.write(|core| update(&mut core.config));
    }

    pub fn clock(&self) -> Clock {
        self.shared.read(|core| core.config.clock.clone())
    }

    pub fn advance_clock(&self, by: Duration) {
        self.clock().advance(by);
    }

    /// Adds the client, or changes its secret.
    pub fn register_client(&self, client_id: &str, client_secret: &str) {
        self.shared.write(|core| core.state.register_client(client_id, client_secret));
    }

    /// A fresh refresh token for the client.
    pub fn issue_refresh_token(&self, client_id: &str) -> String {
        let token = state::new_token();
        self.register_refresh_token(client_id, &token);
        token
    }

    /// Makes `refresh_token` a valid refresh token of the client: caller-chosen
    /// values such as sentinels work. A no-op if it already is one; a revoked
    /// token comes back to life with a fresh throttle window.
    pub fn register_refresh_token(&self, client_id: &str, refresh_token: &str) {
        self.shared
            .write(|core| core.register_refresh_token(client_id, refresh_token))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// A fresh grant code for the client, valid for `code_lifetime`. With a
    /// `redirect_uri`, the exchange must present the same one.
    pub fn issue_code(&self, client_id: &str, redirect_uri: Option<&str>) -> String {
        let code = state::new_token();
        self.register_code(client_id, &code, redirect_uri);
        code
    }

    pub fn register_code(&self, client_id: &str, code: &str, redirect_uri: Option<&str>) {
        self.shared.write(|core| core.register_code(client_id, code, redirect_uri)).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Makes the exchange of `code` answer without a refresh token, as Zoho does for a code made
    /// without `access_type=offline`.
    ///
    /// # Panics
    /// If the code was never issued.
    pub fn make_code_online(&self, code: &str) {
        assert!(self.shared.write(|core| core.state.make_code_online(code)), "no code {code:?} was issued");
    }

    /// Device authorizations started here, with what became of them.
    pub fn device_authorizations(&self) -> Vec<DeviceInfo> {
        self.shared.read(|core| core.state.devices())
    }

    /// The user approves at the verification URL: the next poll (outside the slow-down gap) gets
    /// the tokens.
    pub fn approve_device(&self, user_code: &str) -> Result<(), UnknownUserCode> {
        self.shared.write(|core| core.state.decide_device(user_code, DeviceDecision::Approved))
    }

    /// The user declines: polls answer `access_denied`.
    pub fn deny_device(&self, user_code: &str) -> Result<(), UnknownUserCode> {
        self.shared.write(|core| core.state.decide_device(user_code, DeviceDecision::Denied))
    }

    /// The user approves, but their account lives in the data center that `user_dc` plays: polls
    /// here answer `other_dc` naming it, and `user_dc` answers the same device code with tokens.
    ///
    /// # Panics
    /// If `user_dc` does not know the client, which is a bug in the test.
    pub fn approve_device_in(&self, user_code: &str, user_dc: &FakeZoho) -> Result<(), UnknownUserCode> {
        let transfer = self.shared.read(|core| core.state.device_transfer(user_code, core.now_ms()))?;
        user_dc.import_device(&transfer);
        let location = user_dc.config().location;
        let decision = DeviceDecision::OtherDc { location, accounts_server: user_dc.url() };
        self.shared.write(|core| core.state.decide_device(user_code, decision))
    }

    /// Takes over a device authorization approved in another data center; see
    /// [`FakeZoho::approve_device_in`].
    ///
    /// # Panics
    /// If the client is not registered here.
    pub fn import_device(&self, transfer: &DeviceTransfer) {
        self.shared
            .write(|core| {
                let now_ms = core.now_ms();
                core.state.import_device(transfer, now_ms)
            })
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// As the revoke endpoint does, without faults: a refresh token takes its
    /// access tokens with it. False if the token is unknown or already dead.
    pub fn revoke(&self, token: &str) -> bool {
        self.shared.write(|core| core.revoke(token))
    }

    /// Whether an access token would be accepted right now (or a refresh token
    /// is still valid).
    pub fn is_live(&self, token: &str) -> bool {
        self.token_info(token).is_some_and(|info| info.live)
    }

    pub fn token_info(&self, token: &str) -> Option<TokenInfo> {
        self.shared.read(|core| core.token_info(token))
    }

    /// Live access tokens minted from `refresh_token`, oldest first.
    pub fn live_tokens(&self, refresh_token: &str) -> Vec<String> {
        self.shared.read(|core| core.live_tokens(refresh_token))
    }

    pub fn stats(&self) -> Stats {
        self.shared.read(|core| core.state.stats())
    }

    /// The traffic of the requests that carried `refresh_token`.
    pub fn counters(&self, refresh_token: &str) -> Counters {
        self.stats().refresh_tokens.get(refresh_token).copied().unwrap_or_default()
    }

    /// Access tokens minted from `refresh_token`.
    pub fn mints(&self, refresh_token: &str) -> u64 {
        self.counters(refresh_token).mints
    }

    /// Token requests that carried `refresh_token`, failed and throttled ones included.
    pub fn requests(&self, refresh_token: &str) -> u64 {
        self.counters(refresh_token).requests
    }

    /// Zeroes the counters; tokens and throttle windows stay.
    pub fn reset_stats(&self) {
        self.shared.write(|core| core.state.reset_stats());
    }

    pub fn inject_fault(&self, rule: impl Into<FaultRule>) {
        let rule = rule.into();
        self.shared.write(|core| core.inject_fault(rule));
    }

    /// Delays every `/oauth/` request, faulty or not.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.write(|core| core.faults.latency_ms = latency.as_millis() as u64);
    }

    /// Removes every fault and the latency.
    pub fn clear_faults(&self) {
        self.shared.write(|core| core.faults = Faults::default());
    }

    pub fn faults(&self) -> Faults {
        self.shared.read(|core| core.faults.clone())
    }
}

impl Drop for FakeZoho {
    fn drop(&mut self) {
        self.stop();
    }
}
