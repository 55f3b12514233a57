//! The accounts server's bookkeeping, free of HTTP so it can be tested with a
//! frozen clock.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;

use rand::RngCore as _;
use serde::{Deserialize, Serialize};

use super::{
    Counters, DeviceCounters, DeviceDecision, DeviceInfo, DeviceTransfer, FakeZohoConfig, Stats, TokenInfo, TokenKind,
    TokenStatus,
};

/// The parameters of a token request, merged from the query string and the body.
#[derive(Debug, Default)]
pub(crate) struct TokenRequest {
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub refresh_token: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub access_type: Option<String>,
}

impl TokenRequest {
    /// Later pairs win, so pass the query string before the body. Empty values
    /// count as missing.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut request = Self::default();
        for (key, value) in pairs {
            let slot = match key.as_str() {
                "grant_type" => &mut request.grant_type,
                "client_id" => &mut request.client_id,
                "client_secret" => &mut request.client_secret,
                "refresh_token" => &mut request.refresh_token,
                "code" => &mut request.code,
                "redirect_uri" => &mut request.redirect_uri,
                "scope" => &mut request.scope,
                "access_type" => &mut request.access_type,
                _ => continue,
            };
            if !value.is_empty() {
                *slot = Some(value);
            }
        }
        request
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Issued(Issued),
    /// A Zoho error code, answered as `{"error": code}` with HTTP 200.
    Error(&'static str),
    Throttled,
    /// The device flow's `other_dc`: the user approved in another data center.
    OtherDc {
        location: String,
        accounts_server: String,
    },
}

/// A device-flow initiation, as the device code endpoint answers it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DeviceCodeIssued {
    pub device_code: String,
    pub user_code: String,
    pub interval_ms: u64,
    pub expires_in_ms: u64,
}

/// The device-flow feedback codes: answers to a poll that are not failures of the request.
const DEVICE_FEEDBACK: [&str; 4] = ["authorization_pending", "slow_down", "access_denied", "expired"];

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Issued {
    pub access_token: String,
    /// The refresh token the access token was minted from.
    pub refresh_token: String,
    /// Only the code grant hands out a refresh token; refreshes never rotate it.
    pub new_refresh_token: bool,
    pub scope: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownClient(pub String);

impl std::fmt::Display for UnknownClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "client {:?} is not registered", self.0)
    }
}

impl std::error::Error for UnknownClient {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownUserCode(pub String);

impl std::fmt::Display for UnknownUserCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no device authorization awaits the user code {:?}", self.0)
    }
}

impl std::error::Error for UnknownUserCode {}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct State {
    /// client id -> client secret
    clients: HashMap<String, String>,
    refresh_tokens: HashMap<String, RefreshToken>,
    access_tokens: HashMap<String, AccessToken>,
    codes: HashMap<String, Code>,
    totals: Counters,
    /// Keyed by the refresh token a request carried, known or not, so tests can
    /// see how often a revoked token was still tried.
    per_refresh_token: BTreeMap<String, Counters>,
    revocations: u64,
    /// By device code. Defaulted, so state files written before the device flow still load.
    #[serde(default)]
    devices: HashMap<String, Device>,
    #[serde(default)]
    device_counters: DeviceCounters,
}

/// One device authorization, from the initiation request until its tokens are handed out.
#[derive(Debug, Serialize, Deserialize)]
struct Device {
    client_id: String,
    scope: String,
    user_code: String,
    /// `access_type=offline`: the approval yields a refresh token.
    offline: bool,
    expires_at_ms: u64,
    last_poll_ms: Option<u64>,
    polls: u64,
    slow_downs: u64,
    decision: DeviceDecision,
}

#[derive(Debug, Serialize, Deserialize)]
struct RefreshToken {
    client_id: String,
    scope: String,
    revoked: bool,
    window: Option<Window>,
    /// Access tokens minted from this one and not yet known to be dead, oldest first.
    live: VecDeque<String>,
}

/// A fixed throttle window that opens with the first mint after the previous
/// window closed. Zoho blocks "for the rest of the ten minutes", which a
/// sliding window would not reproduce.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Window {
    start_ms: u64,
    mints: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct AccessToken {
    client_id: String,
    refresh_token: String,
    expires_at_ms: u64,
    ended: Option<TokenStatus>,
}

impl AccessToken {
    fn status(&self, now_ms: u64) -> TokenStatus {
        match self.ended {
            Some(status) => status,
            None if now_ms >= self.expires_at_ms => TokenStatus::Expired,
            None => TokenStatus::Live,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Code {
    client_id: String,
    redirect_uri: Option<String>,
    scope: String,
    expires_at_ms: u64,
    used: bool,
    /// Made with `access_type=offline`, so that its exchange yields a refresh token. Defaulted for
    /// state files written before codes could be made without.
    #[serde(default = "offline_by_default")]
    offline: bool,
}

fn offline_by_default() -> bool {
    true
}

/// Shaped like Zoho's tokens: `1000.<32 hex>.<32 hex>`.
pub(crate) fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let mut token = String::from("1000.");
    for (i, byte) in bytes.iter().enumerate() {
        if i == 16 {
            token.push('.');
        }
        let _ = write!(token, "{byte:02x}");
    }
    token
}

/// Eight characters from an alphabet without look-alikes (0/O, 1/I), as a user would type them.
/// Zoho's own format is not documented.
fn new_user_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect()
}

impl State {
    pub fn register_client(&mut self, client_id: &str, client_secret: &str) {
        self.clients.insert(client_id.to_owned(), client_secret.to_owned());
    }

    /// Idempotent for a token that is already active for the same client, so a
    /// restarted process can re-apply its flags over a loaded state file; anything
    /// else (revoked, or another client's) starts afresh.
    pub fn register_refresh_token(&mut self, client_id: &str, token: &str, scope: &str) -> Result<(), UnknownClient> {
        if !self.clients.contains_key(client_id) {
            return Err(UnknownClient(client_id.to_owned()));
        }
        if self.refresh_tokens.get(token).is_some_and(|rt| !rt.revoked && rt.client_id == client_id) {
            return Ok(());
        }
        self.refresh_tokens.insert(
            token.to_owned(),
            RefreshToken {
                client_id: client_id.to_owned(),
                scope: scope.to_owned(),
                revoked: false,
                window: None,
                live: VecDeque::new(),
            },
        );
        Ok(())
    }

    pub fn register_code(
        &mut self,
        cfg: &FakeZohoConfig,
        now_ms: u64,
        client_id: &str,
        code: &str,
        redirect_uri: Option<&str>,
        scope: &str,
    ) -> Result<(), UnknownClient> {
        if !self.clients.contains_key(client_id) {
            return Err(UnknownClient(client_id.to_owned()));
        }
        self.codes.insert(
            code.to_owned(),
            Code {
                client_id: client_id.to_owned(),
                redirect_uri: redirect_uri.map(str::to_owned),
                scope: scope.to_owned(),
                expires_at_ms: now_ms + cfg.code_lifetime.as_millis() as u64,
                used: false,
                offline: true,
            },
        );
        Ok(())
    }

    /// Makes a code's exchange answer without a refresh token, as Zoho does for a code made with
    /// `access_type=online`. False for an unknown code.
    pub fn make_code_online(&mut self, code: &str) -> bool {
        self.codes.get_mut(code).map(|code| code.offline = false).is_some()
    }

    /// Counts a request on arrival, before faults or latency can swallow it.
    pub fn count_request(&mut self, refresh_token: Option<&str>) {
        self.count(refresh_token, |c| c.requests += 1);
    }

    pub fn count_fault(&mut self, refresh_token: Option<&str>) {
        self.count(refresh_token, |c| c.faulted += 1);
    }

    fn count_mint(&mut self, refresh_token: &str, now_ms: u64) {
        self.count(Some(refresh_token), |c| {
            c.mints += 1;
            c.first_mint_ms.get_or_insert(now_ms);
            if let Some(gap) = c.last_mint_ms.map(|last| now_ms.saturating_sub(last)) {
                c.min_gap_ms = Some(c.min_gap_ms.map_or(gap, |min| min.min(gap)));
                c.max_gap_ms = Some(c.max_gap_ms.map_or(gap, |max| max.max(gap)));
            }
            c.last_mint_ms = Some(now_ms);
        });
    }

    fn count(&mut self, refresh_token: Option<&str>, bump: impl Fn(&mut Counters)) {
        bump(&mut self.totals);
        if let Some(token) = refresh_token {
            bump(self.per_refresh_token.entry(token.to_owned()).or_default());
        }
    }

    pub fn token_request(&mut self, cfg: &FakeZohoConfig, now_ms: u64, request: &TokenRequest) -> Outcome {
        let outcome = match request.grant_type.as_deref() {
            Some("refresh_token") => self.refresh_grant(cfg, now_ms, request),
            Some("authorization_code") => self.code_grant(cfg, now_ms, request),
            Some(_) => Outcome::Error("unsupported_grant_type"),
            None => Outcome::Error("invalid_request"),
        };
        match &outcome {
            Outcome::Issued(issued) => self.count_mint(&issued.refresh_token, now_ms),
            Outcome::Throttled => self.count(request.refresh_token.as_deref(), |c| c.throttled += 1),
            Outcome::Error(_) | Outcome::OtherDc { .. } => {
                self.count(request.refresh_token.as_deref(), |c| c.errors += 1)
            }
        }
        outcome
    }

    /// `POST /oauth/v3/device/code`: starts a device authorization.
    pub fn device_code(
        &mut self,
        cfg: &FakeZohoConfig,
        now_ms: u64,
        request: &TokenRequest,
    ) -> Result<DeviceCodeIssued, &'static str> {
        let result = self.start_device(cfg, now_ms, request);
        match &result {
            Ok(_) => self.device_counters.codes += 1,
            Err(_) => self.count(None, |c| c.errors += 1),
        }
        result
    }

    fn start_device(
        &mut self,
        cfg: &FakeZohoConfig,
        now_ms: u64,
        request: &TokenRequest,
    ) -> Result<DeviceCodeIssued, &'static str> {
        match request.grant_type.as_deref() {
            Some("device_request") => {}
            Some(_) => return Err("unsupported_grant_type"),
            None => return Err("invalid_request"),
        }
        let (Some(client_id), Some(scope)) = (&request.client_id, &request.scope) else {
            return Err("invalid_request");
        };
        if !self.clients.contains_key(client_id) {
            return Err("invalid_client");
        }
        let device_code = new_token();
        let user_code = new_user_code();
        let expires_in_ms = cfg.device_code_lifetime.as_millis() as u64;
        self.devices.insert(
            device_code.clone(),
            Device {
                client_id: client_id.clone(),
                scope: scope.clone(),
                user_code: user_code.clone(),
                offline: request.access_type.as_deref() == Some("offline"),
                expires_at_ms: now_ms + expires_in_ms,
                last_poll_ms: None,
                polls: 0,
                slow_downs: 0,
                decision: DeviceDecision::Pending,
            },
        );
        Ok(DeviceCodeIssued {
            device_code,
            user_code,
            interval_ms: cfg.device_poll_interval.as_millis() as u64,
            expires_in_ms,
        })
    }

    /// `POST /oauth/v3/device/token`: one poll for a device authorization's outcome.
    pub fn device_token(&mut self, cfg: &FakeZohoConfig, now_ms: u64, request: &TokenRequest) -> Outcome {
        let outcome = self.poll_device(cfg, now_ms, request);
        match &outcome {
            Outcome::Issued(issued) => self.count_mint(&issued.refresh_token, now_ms),
            Outcome::Error(code) if DEVICE_FEEDBACK.contains(code) => {}
            Outcome::OtherDc { .. } => {}
            Outcome::Error(_) => self.count(None, |c| c.errors += 1),
            Outcome::Throttled => self.count(None, |c| c.throttled += 1),
        }
        outcome
    }

    fn poll_device(&mut self, cfg: &FakeZohoConfig, now_ms: u64, request: &TokenRequest) -> Outcome {
        match request.grant_type.as_deref() {
            Some("device_token") => {}
            Some(_) => return Outcome::Error("unsupported_grant_type"),
            None => return Outcome::Error("invalid_request"),
        }
        let Some(device_code) = &request.code else {
            return Outcome::Error("invalid_request");
        };
        if let Err(error) = self.authenticate(request) {
            return Outcome::Error(error);
        }
        let Some(device) =
            self.devices.get_mut(device_code).filter(|device| Some(&device.client_id) == request.client_id.as_ref())
        else {
            return Outcome::Error("invalid_code");
        };
        self.device_counters.polls += 1;
        device.polls += 1;
        if device.decision == DeviceDecision::Redeemed {
            return Outcome::Error("invalid_code");
        }
        if now_ms >= device.expires_at_ms {
            return Outcome::Error("expired");
        }
        // Zoho: "Two polling requests have come within 30 seconds." Every poll counts, a
        // slowed-down one too, so a client that keeps hammering stays slowed down.
        let gap_ms = cfg.device_min_poll_gap.as_millis() as u64;
        let too_soon = device.last_poll_ms.is_some_and(|last| now_ms.saturating_sub(last) < gap_ms);
        device.last_poll_ms = Some(now_ms);
        if too_soon {
            device.slow_downs += 1;
            self.device_counters.slow_downs += 1;
            return Outcome::Error("slow_down");
        }
        match device.decision.clone() {
            DeviceDecision::Pending => Outcome::Error("authorization_pending"),
            DeviceDecision::Denied => Outcome::Error("access_denied"),
            DeviceDecision::OtherDc { location, accounts_server } => Outcome::OtherDc { location, accounts_server },
            DeviceDecision::Redeemed => Outcome::Error("invalid_code"),
            DeviceDecision::Approved => {
                device.decision = DeviceDecision::Redeemed;
                let (client_id, scope, offline) = (device.client_id.clone(), device.scope.clone(), device.offline);
                let refresh_token = new_token();
                self.register_refresh_token(&client_id, &refresh_token, &scope)
                    .expect("the device's client is registered");
                self.mint(cfg, now_ms, &refresh_token, offline)
            }
        }
    }

    /// What the user does at the verification URL. Fails for an unknown user code or one whose
    /// tokens were already handed out.
    pub fn decide_device(&mut self, user_code: &str, decision: DeviceDecision) -> Result<(), UnknownUserCode> {
        let device = self
            .devices
            .values_mut()
            .find(|device| device.user_code == user_code && device.decision != DeviceDecision::Redeemed)
            .ok_or_else(|| UnknownUserCode(user_code.to_owned()))?;
        device.decision = decision;
        Ok(())
    }

    /// What another data center needs to know to answer the polls of this authorization.
    pub fn device_transfer(&self, user_code: &str, now_ms: u64) -> Result<DeviceTransfer, UnknownUserCode> {
        self.devices
            .iter()
            .find(|(_, device)| device.user_code == user_code && device.decision != DeviceDecision::Redeemed)
            .map(|(device_code, device)| DeviceTransfer {
                device_code: device_code.clone(),
                user_code: device.user_code.clone(),
                client_id: device.client_id.clone(),
                scope: device.scope.clone(),
                offline: device.offline,
                expires_in_ms: device.expires_at_ms.saturating_sub(now_ms),
            })
            .ok_or_else(|| UnknownUserCode(user_code.to_owned()))
    }

    /// Takes over an authorization that the user approved while the device asked another data
    /// center: polls here with the same device code get the tokens.
    pub fn import_device(&mut self, transfer: &DeviceTransfer, now_ms: u64) -> Result<(), UnknownClient> {
        if !self.clients.contains_key(&transfer.client_id) {
            return Err(UnknownClient(transfer.client_id.clone()));
        }
        self.devices.insert(
            transfer.device_code.clone(),
            Device {
                client_id: transfer.client_id.clone(),
                scope: transfer.scope.clone(),
                user_code: transfer.user_code.clone(),
                offline: transfer.offline,
                expires_at_ms: now_ms + transfer.expires_in_ms,
                last_poll_ms: None,
                polls: 0,
                slow_downs: 0,
                decision: DeviceDecision::Approved,
            },
        );
        Ok(())
    }

    /// Every device authorization, by user code.
    pub fn devices(&self) -> Vec<DeviceInfo> {
        let mut devices: Vec<DeviceInfo> = self
            .devices
            .values()
            .map(|device| DeviceInfo {
                user_code: device.user_code.clone(),
                client_id: device.client_id.clone(),
                scope: device.scope.clone(),
                offline: device.offline,
                polls: device.polls,
                slow_downs: device.slow_downs,
                decision: device.decision.clone(),
            })
            .collect();
        devices.sort_by(|a, b| a.user_code.cmp(&b.user_code));
        devices
    }

    fn authenticate(&self, request: &TokenRequest) -> Result<(), &'static str> {
        let (Some(client_id), Some(secret)) = (&request.client_id, &request.client_secret) else {
            return Err("invalid_request");
        };
        match self.clients.get(client_id) {
            None => Err("invalid_client"),
            Some(expected) if expected != secret => Err("invalid_client_secret"),
            Some(_) => Ok(()),
        }
    }

    fn refresh_grant(&mut self, cfg: &FakeZohoConfig, now_ms: u64, request: &TokenRequest) -> Outcome {
        let Some(token) = &request.refresh_token else {
            return Outcome::Error("invalid_request");
        };
        if let Err(error) = self.authenticate(request) {
            return Outcome::Error(error);
        }
        match self.refresh_tokens.get(token) {
            Some(rt) if !rt.revoked && Some(&rt.client_id) == request.client_id.as_ref() => {
                self.mint(cfg, now_ms, token, false)
            }
            _ => Outcome::Error("invalid_code"),
        }
    }

    fn code_grant(&mut self, cfg: &FakeZohoConfig, now_ms: u64, request: &TokenRequest) -> Outcome {
        let Some(code_value) = &request.code else {
            return Outcome::Error("invalid_request");
        };
        if let Err(error) = self.authenticate(request) {
            return Outcome::Error(error);
        }
        let Some(code) =
            self.codes.get_mut(code_value).filter(|code| Some(&code.client_id) == request.client_id.as_ref())
        else {
            return Outcome::Error("invalid_code");
        };
        // One-time means one attempt: a replay fails even if the first one did.
        let first_use = !std::mem::replace(&mut code.used, true);
        if !first_use || now_ms >= code.expires_at_ms {
            return Outcome::Error("invalid_code");
        }
        if code.redirect_uri.is_some() && code.redirect_uri != request.redirect_uri {
            return Outcome::Error("invalid_redirect_uri");
        }
        let (client_id, scope, offline) = (code.client_id.clone(), code.scope.clone(), code.offline);
        // Without offline access Zoho keeps the grant to itself: the refresh token exists (the
        // access token needs one to be minted from) but is never handed out.
        let refresh_token = new_token();
        self.register_refresh_token(&client_id, &refresh_token, &scope).expect("the code's client is registered");
        self.mint(cfg, now_ms, &refresh_token, offline)
    }

    fn mint(&mut self, cfg: &FakeZohoConfig, now_ms: u64, refresh_token: &str, new_refresh_token: bool) -> Outcome {
        let rt = self.refresh_tokens.get_mut(refresh_token).expect("minting from a registered refresh token");

        let window_ms = cfg.throttle_window.as_millis() as u64;
        let mut window = match rt.window {
            Some(window) if now_ms < window.start_ms + window_ms => window,
            _ => Window { start_ms: now_ms, mints: 0 },
        };
        if window.mints >= cfg.throttle_limit {
            rt.window = Some(window);
            return Outcome::Throttled;
        }
        window.mints += 1;
        rt.window = Some(window);

        let access_tokens = &mut self.access_tokens;
        rt.live.retain(|t| access_tokens.get(t).is_some_and(|a| a.status(now_ms) == TokenStatus::Live));
        while rt.live.len() >= cfg.live_token_cap.max(1) {
            let oldest = rt.live.pop_front().expect("live is not empty");
            if let Some(evicted) = access_tokens.get_mut(&oldest) {
                evicted.ended = Some(TokenStatus::Evicted);
            }
        }

        let access_token = new_token();
        access_tokens.insert(
            access_token.clone(),
            AccessToken {
                client_id: rt.client_id.clone(),
                refresh_token: refresh_token.to_owned(),
                expires_at_ms: now_ms + cfg.token_lifetime.as_millis() as u64,
                ended: None,
            },
        );
        rt.live.push_back(access_token.clone());
        Outcome::Issued(Issued {
            access_token,
            refresh_token: refresh_token.to_owned(),
            new_refresh_token,
            scope: rt.scope.clone(),
        })
    }

    /// Revokes a refresh token (with every access token minted from it) or a
    /// single access token. False if the token is unknown or already dead.
    pub fn revoke(&mut self, token: &str, now_ms: u64) -> bool {
        if let Some(rt) = self.refresh_tokens.get_mut(token).filter(|rt| !rt.revoked) {
            rt.revoked = true;
            for access_token in rt.live.drain(..) {
                if let Some(at) = self.access_tokens.get_mut(&access_token) {
                    at.ended = Some(TokenStatus::Revoked);
                }
            }
        } else if let Some(at) = self
            .access_tokens
            .get_mut(token)
            .filter(|at| matches!(at.status(now_ms), TokenStatus::Live | TokenStatus::Expired))
        {
            at.ended = Some(TokenStatus::Revoked);
            if let Some(rt) = self.refresh_tokens.get_mut(&at.refresh_token) {
                rt.live.retain(|t| t != token);
            }
        } else {
            return false;
        }
        self.revocations += 1;
        true
    }

    pub fn token_info(&self, token: &str, now_ms: u64) -> Option<TokenInfo> {
        if let Some(at) = self.access_tokens.get(token) {
            let status = at.status(now_ms);
            return Some(TokenInfo {
                kind: TokenKind::Access,
                live: status == TokenStatus::Live,
                status,
                client_id: at.client_id.clone(),
                refresh_token: Some(at.refresh_token.clone()),
                expires_at_ms: Some(at.expires_at_ms),
            });
        }
        self.refresh_tokens.get(token).map(|rt| {
            let status = if rt.revoked { TokenStatus::Revoked } else { TokenStatus::Live };
            TokenInfo {
                kind: TokenKind::Refresh,
                live: status == TokenStatus::Live,
                status,
                client_id: rt.client_id.clone(),
                refresh_token: None,
                expires_at_ms: None,
            }
        })
    }

    pub fn is_live(&self, token: &str, now_ms: u64) -> bool {
        self.token_info(token, now_ms).is_some_and(|info| info.live)
    }

    /// The live access tokens minted from `refresh_token`, oldest first.
    pub fn live_tokens(&self, refresh_token: &str, now_ms: u64) -> Vec<String> {
        self.refresh_tokens
            .get(refresh_token)
            .map_or_else(Vec::new, |rt| rt.live.iter().filter(|t| self.is_live(t, now_ms)).cloned().collect())
    }

    pub fn stats(&self) -> Stats {
        Stats {
            totals: self.totals,
            revocations: self.revocations,
            refresh_tokens: self.per_refresh_token.clone(),
            device: self.device_counters,
        }
    }

    pub fn reset_stats(&mut self) {
        self.totals = Counters::default();
        self.per_refresh_token.clear();
        self.revocations = 0;
        self.device_counters = DeviceCounters::default();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const CLIENT: &str = "1000.CLIENT";
    const SECRET: &str = "client-secret";
    const RT: &str = "SENTINEL-refresh-1";

    fn setup() -> (State, FakeZohoConfig) {
        let mut state = State::default();
        state.register_client(CLIENT, SECRET);
        state.register_refresh_token(CLIENT, RT, "ZohoCRM.modules.ALL").unwrap();
        (state, FakeZohoConfig::default())
    }

    fn refresh(rt: &str) -> TokenRequest {
        TokenRequest {
            grant_type: Some("refresh_token".into()),
            client_id: Some(CLIENT.into()),
            client_secret: Some(SECRET.into()),
            refresh_token: Some(rt.into()),
            ..TokenRequest::default()
        }
    }

    fn minted(outcome: Outcome) -> Issued {
        match outcome {
            Outcome::Issued(issued) => issued,
            other => panic!("expected a token, got {other:?}"),
        }
    }

    #[test]
    fn tokens_look_like_zoho_tokens() {
        let token = new_token();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts[0], "1000");
        assert_eq!(parts.len(), 3);
        assert!(parts[1..].iter().all(|p| p.len() == 32 && p.chars().all(|c| c.is_ascii_hexdigit())));
        assert_ne!(new_token(), token);
    }

    #[test]
    fn body_params_override_query_params_and_empty_is_missing() {
        let pairs = [("client_id", "from-query"), ("code", "q"), ("client_id", "from-body"), ("code", "")];
        let request = TokenRequest::from_pairs(pairs.map(|(k, v)| (k.to_owned(), v.to_owned())));
        assert_eq!(request.client_id.as_deref(), Some("from-body"));
        assert_eq!(request.code.as_deref(), Some("q"));
    }

    #[test]
    fn throttle_blocks_for_the_rest_of_the_window() {
        let (mut state, cfg) = setup();
        let t0 = 1_000_000;
        for i in 0..10 {
            minted(state.token_request(&cfg, t0 + i * 1000, &refresh(RT)));
        }
        assert_eq!(state.token_request(&cfg, t0 + 11_000, &refresh(RT)), Outcome::Throttled);
        // Still inside the ten minutes that started with the first mint.
        assert_eq!(state.token_request(&cfg, t0 + 599_999, &refresh(RT)), Outcome::Throttled);
        minted(state.token_request(&cfg, t0 + 600_000, &refresh(RT)));

        let counters = state.stats().refresh_tokens[RT];
        assert_eq!((counters.mints, counters.throttled, counters.requests), (11, 2, 0));
    }

    #[test]
    fn throttled_requests_do_not_extend_the_block() {
        let (mut state, mut cfg) = setup();
        cfg.throttle_limit = 1;
        cfg.throttle_window = Duration::from_secs(10);
        minted(state.token_request(&cfg, 0, &refresh(RT)));
        for t in (1_000..10_000).step_by(1_000) {
            assert_eq!(state.token_request(&cfg, t, &refresh(RT)), Outcome::Throttled);
        }
        minted(state.token_request(&cfg, 10_000, &refresh(RT)));
    }

    #[test]
    fn the_sixteenth_live_token_evicts_the_oldest() {
        let (mut state, mut cfg) = setup();
        cfg.throttle_limit = 100;
        let tokens: Vec<String> =
            (0..16).map(|i| minted(state.token_request(&cfg, i, &refresh(RT))).access_token).collect();
        assert!(!state.is_live(&tokens[0], 20));
        assert_eq!(state.token_info(&tokens[0], 20).unwrap().status, TokenStatus::Evicted);
        assert!(tokens[1..].iter().all(|t| state.is_live(t, 20)));
        assert_eq!(state.live_tokens(RT, 20), tokens[1..].to_vec());
    }

    #[test]
    fn expired_tokens_do_not_count_against_the_cap() {
        let (mut state, mut cfg) = setup();
        cfg.throttle_limit = 100;
        cfg.token_lifetime = Duration::from_secs(6);
        let first = minted(state.token_request(&cfg, 0, &refresh(RT))).access_token;
        for i in 0..14 {
            minted(state.token_request(&cfg, 1_000 + i, &refresh(RT)));
        }
        // `first` expired at 6 s, so this is the 15th live token and evicts nothing.
        minted(state.token_request(&cfg, 6_500, &refresh(RT)));
        assert_eq!(state.token_info(&first, 6_500).unwrap().status, TokenStatus::Expired);
        assert_eq!(state.live_tokens(RT, 6_500).len(), 15);
    }

    #[test]
    fn tokens_expire_after_their_lifetime() {
        let (mut state, mut cfg) = setup();
        cfg.token_lifetime = Duration::from_secs(6);
        let token = minted(state.token_request(&cfg, 0, &refresh(RT))).access_token;
        assert!(state.is_live(&token, 5_999));
        assert!(!state.is_live(&token, 6_000));
    }

    #[test]
    fn revoking_a_refresh_token_kills_its_access_tokens() {
        let (mut state, cfg) = setup();
        let token = minted(state.token_request(&cfg, 0, &refresh(RT))).access_token;
        assert!(state.revoke(RT, 1));
        assert!(!state.is_live(&token, 1));
        assert!(!state.is_live(RT, 1));
        assert_eq!(state.token_request(&cfg, 2, &refresh(RT)), Outcome::Error("invalid_code"));
        assert!(!state.revoke(RT, 3), "a second revocation finds nothing");
    }

    #[test]
    fn a_code_expires_and_is_single_use() {
        let (mut state, cfg) = setup();
        let exchange = |code: &str| TokenRequest {
            grant_type: Some("authorization_code".into()),
            code: Some(code.into()),
            ..refresh("unused")
        };
        state.register_code(&cfg, 0, CLIENT, "code-1", None, "ZohoCRM.modules.ALL").unwrap();
        state.register_code(&cfg, 0, CLIENT, "code-2", None, "ZohoCRM.modules.ALL").unwrap();

        let issued = minted(state.token_request(&cfg, 1_000, &exchange("code-1")));
        assert!(issued.new_refresh_token);
        assert!(state.is_live(&issued.refresh_token, 1_000));
        assert_eq!(state.token_request(&cfg, 1_001, &exchange("code-1")), Outcome::Error("invalid_code"));
        // Default lifetime: two minutes.
        assert_eq!(state.token_request(&cfg, 120_000, &exchange("code-2")), Outcome::Error("invalid_code"));
    }

    #[test]
    fn refresh_token_of_another_client_is_invalid_code() {
        let (mut state, cfg) = setup();
        state.register_client("1000.OTHER", "other-secret");
        let request = TokenRequest {
            client_id: Some("1000.OTHER".into()),
            client_secret: Some("other-secret".into()),
            ..refresh(RT)
        };
        assert_eq!(state.token_request(&cfg, 0, &request), Outcome::Error("invalid_code"));
    }

    #[test]
    fn re_registering_an_active_token_keeps_its_window() {
        let (mut state, mut cfg) = setup();
        cfg.throttle_limit = 1;
        minted(state.token_request(&cfg, 0, &refresh(RT)));
        state.register_refresh_token(CLIENT, RT, "ZohoCRM.modules.ALL").unwrap();
        assert_eq!(state.token_request(&cfg, 1, &refresh(RT)), Outcome::Throttled);
        assert_eq!(state.register_refresh_token("1000.NOPE", RT, ""), Err(UnknownClient("1000.NOPE".into())));
    }

    fn device_request(access_type: Option<&str>) -> TokenRequest {
        TokenRequest {
            grant_type: Some("device_request".into()),
            client_id: Some(CLIENT.into()),
            scope: Some("ZohoCRM.modules.ALL".into()),
            access_type: access_type.map(Into::into),
            ..TokenRequest::default()
        }
    }

    fn device_poll(device_code: &str) -> TokenRequest {
        TokenRequest {
            grant_type: Some("device_token".into()),
            client_id: Some(CLIENT.into()),
            client_secret: Some(SECRET.into()),
            code: Some(device_code.into()),
            ..TokenRequest::default()
        }
    }

    #[test]
    fn a_device_authorization_is_pending_until_approved_and_then_spent() {
        let (mut state, cfg) = setup();
        let issued = state.device_code(&cfg, 0, &device_request(Some("offline"))).unwrap();
        assert_eq!((issued.interval_ms, issued.expires_in_ms), (30_000, 300_000));
        let poll = device_poll(&issued.device_code);
        assert_eq!(state.device_token(&cfg, 30_000, &poll), Outcome::Error("authorization_pending"));
        state.decide_device(&issued.user_code, DeviceDecision::Approved).unwrap();
        let minted = minted(state.device_token(&cfg, 60_000, &poll));
        assert!(minted.new_refresh_token, "access_type=offline hands out the refresh token");
        assert!(state.is_live(&minted.refresh_token, 60_000));
        assert_eq!(state.device_token(&cfg, 90_000, &poll), Outcome::Error("invalid_code"), "spent");
        assert!(state.decide_device(&issued.user_code, DeviceDecision::Denied).is_err());
        let counters = state.stats().device;
        assert_eq!((counters.codes, counters.polls, counters.slow_downs), (1, 3, 0));
    }

    #[test]
    fn polls_within_the_gap_slow_down_and_every_poll_restarts_it() {
        let (mut state, cfg) = setup();
        let issued = state.device_code(&cfg, 0, &device_request(Some("offline"))).unwrap();
        let poll = device_poll(&issued.device_code);
        assert_eq!(state.device_token(&cfg, 1_000, &poll), Outcome::Error("authorization_pending"));
        assert_eq!(state.device_token(&cfg, 30_999, &poll), Outcome::Error("slow_down"));
        assert_eq!(
            state.device_token(&cfg, 60_000, &poll),
            Outcome::Error("slow_down"),
            "30 s after the last poll only"
        );
        assert_eq!(state.device_token(&cfg, 90_999, &poll), Outcome::Error("authorization_pending"));
        assert_eq!(state.stats().device.slow_downs, 2);
    }

    #[test]
    fn a_device_authorization_expires_and_denial_is_reported() {
        let (mut state, cfg) = setup();
        let first = state.device_code(&cfg, 0, &device_request(Some("offline"))).unwrap();
        assert_eq!(state.device_token(&cfg, 300_000, &device_poll(&first.device_code)), Outcome::Error("expired"));
        let second = state.device_code(&cfg, 0, &device_request(Some("offline"))).unwrap();
        state.decide_device(&second.user_code, DeviceDecision::Denied).unwrap();
        assert_eq!(state.device_token(&cfg, 1, &device_poll(&second.device_code)), Outcome::Error("access_denied"));
        assert_eq!(state.device_token(&cfg, 2, &device_poll("1000.unknown")), Outcome::Error("invalid_code"));
    }

    #[test]
    fn without_offline_access_no_refresh_token_is_handed_out() {
        let (mut state, cfg) = setup();
        let issued = state.device_code(&cfg, 0, &device_request(None)).unwrap();
        state.decide_device(&issued.user_code, DeviceDecision::Approved).unwrap();
        assert!(!minted(state.device_token(&cfg, 1, &device_poll(&issued.device_code))).new_refresh_token);
    }

    #[test]
    fn device_requests_check_their_parameters() {
        let (mut state, cfg) = setup();
        let bad = [
            (TokenRequest { grant_type: None, ..device_request(None) }, "invalid_request"),
            (TokenRequest { grant_type: Some("device".into()), ..device_request(None) }, "unsupported_grant_type"),
            (TokenRequest { scope: None, ..device_request(None) }, "invalid_request"),
            (TokenRequest { client_id: Some("1000.NOPE".into()), ..device_request(None) }, "invalid_client"),
        ];
        for (request, code) in bad {
            assert_eq!(state.device_code(&cfg, 0, &request), Err(code), "{request:?}");
        }
        let issued = state.device_code(&cfg, 0, &device_request(None)).unwrap();
        let wrong_secret = TokenRequest { client_secret: Some("wrong".into()), ..device_poll(&issued.device_code) };
        assert_eq!(state.device_token(&cfg, 0, &wrong_secret), Outcome::Error("invalid_client_secret"));
    }
}
