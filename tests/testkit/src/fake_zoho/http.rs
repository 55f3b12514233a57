//! The HTTP face of the fake: Zoho's endpoints, the test API and the server thread.
//!
//! Zoho's endpoints:
//! - `POST /oauth/v2/token`: grants `refresh_token` and `authorization_code`.
//! - `POST /oauth/v3/device/code`: starts a device authorization (`client_id`,
//!   `grant_type=device_request`, `scope`, `access_type`) →
//!   `{"user_code","device_code","verification_url","expires_in","interval"}`,
//!   both durations in milliseconds.
//! - `POST /oauth/v3/device/token` (`client_id`, `client_secret`,
//!   `grant_type=device_token`, `code`): the tokens once approved, else HTTP 200
//!   with `{"error": …}`: `authorization_pending`, `slow_down`, `access_denied`,
//!   `expired`, or `other_dc` with `user_location` and `accounts-server`.
//! - `GET /oauth/v3/device`: the verification URL, a plain-text page saying how
//!   to approve through the test API.
//! - `POST /oauth/v2/token/revoke?token=…` (or `token` in a form body).
//!
//! Injected faults and latency apply to the three `POST`s that issue tokens
//! and to revocation, not to the verification page.
//!
//! The test API, JSON in and out; a 204 answers a change that returns nothing,
//! a 404 `{"error": …}` an unknown client or token:
//! - `GET /_fake/health` → `ok`
//! - `POST /_fake/clients` `{"client_id","client_secret"}` → 204
//! - `POST /_fake/refresh-tokens` `{"client_id","refresh_token"?}` → `{"refresh_token"}`
//! - `POST /_fake/codes` `{"client_id","code"?,"redirect_uri"?,"offline"?}` →
//!   `{"code"}`; `"offline": false` makes its exchange yield no refresh token
//! - `POST /_fake/revoke?token=…` → `{"revoked":bool}`, bypassing faults
//! - `GET /_fake/tokens/live?token=…` → `{"live":bool}`
//! - `GET /_fake/tokens/info?token=…` → `TokenInfo`
//! - `GET /_fake/live-tokens?refresh_token=…` → `{"access_tokens":[…]}`, oldest first
//! - `GET /_fake/stats` → `Stats`; `POST /_fake/stats/reset` → 204
//! - `GET /_fake/faults` → `Faults`; `POST /_fake/faults` `FaultRule` → 204 (e.g.
//!   `{"kind":"custom","status":200,"body":"{\"expires_in\":\"3600\"}"}`);
//!   `DELETE /_fake/faults` → 204, clearing the latency too
//! - `PUT /_fake/faults/latency` `{"ms"}` → 204
//! - `POST /_fake/clock/advance` `{"ms"}` → `{"now_ms"}`
//! - `GET /_fake/device` → `[DeviceInfo]`, by user code
//! - `POST /_fake/device/approve` `{"user_code"}` → 204; `POST /_fake/device/deny`
//!   `{"user_code"}` → 204
//! - `POST /_fake/device/other-dc` `{"user_code","accounts_server","location"}` →
//!   `DeviceTransfer`: polls here answer `other_dc`; post the transfer to the
//!   other instance's `POST /_fake/device/import` (→ 204), which then answers them
//!   with tokens

use std::convert::Infallible;
use std::fmt;
use std::future::IntoFuture as _;
use std::io;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Json, Query, RawQuery, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use tokio::sync::oneshot;

use super::state::{DeviceCodeIssued, Outcome, TokenRequest, new_token};
use super::{Core, DeviceDecision, DeviceTransfer, FakeZohoConfig, Fault, FaultRule, Faults, Shared};

const JSON: &str = "application/json;charset=UTF-8";

/// The server on a thread with its own runtime: stopping it drops the runtime,
/// which cancels every connection at once, like killing a process.
#[derive(Debug)]
pub(super) struct Server {
    shutdown: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Server {
    pub fn spawn(listener: std::net::TcpListener, shared: Shared) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let (shutdown, stopped) = oneshot::channel::<()>();
        let app = router(shared);
        let thread = std::thread::Builder::new().name("fake-zoho".to_owned()).spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    result = axum::serve(listener, app).into_future() => {
                        if let Err(error) = result {
                            tracing::error!(%error, "fake-zoho stopped serving");
                        }
                    }
                    _ = stopped => {}
                }
            });
        })?;
        Ok(Self { shutdown, thread })
    }

    /// Returns once the port is closed.
    pub fn stop(self) {
        let _ = self.shutdown.send(());
        let _ = self.thread.join();
    }
}

fn router(shared: Shared) -> Router {
    Router::new()
        .route("/oauth/v2/token", post(token))
        .route("/oauth/v2/token/revoke", post(revoke))
        .route("/oauth/v3/device/code", post(device_code))
        .route("/oauth/v3/device/token", post(device_token))
        .route("/oauth/v3/device", get(verification_page))
        .route("/_fake/health", get(|| async { "ok" }))
        .route("/_fake/clients", post(add_client))
        .route("/_fake/refresh-tokens", post(add_refresh_token))
        .route("/_fake/codes", post(add_code))
        .route("/_fake/revoke", post(revoke_directly))
        .route("/_fake/tokens/live", get(token_live))
        .route("/_fake/tokens/info", get(token_info))
        .route("/_fake/live-tokens", get(live_tokens))
        .route("/_fake/stats", get(stats))
        .route("/_fake/stats/reset", post(reset_stats))
        .route("/_fake/faults", get(faults).post(add_fault).delete(clear_faults))
        .route("/_fake/faults/latency", put(set_latency))
        .route("/_fake/clock/advance", post(advance_clock))
        .route("/_fake/device", get(device_authorizations))
        .route("/_fake/device/approve", post(approve_device))
        .route("/_fake/device/deny", post(deny_device))
        .route("/_fake/device/other-dc", post(redirect_device))
        .route("/_fake/device/import", post(import_device))
        .with_state(shared)
}

/// Query pairs first, then the body's, so the body wins. A body without a
/// content type is read as a form, as `curl -d` and some clients send it.
fn params(query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> =
        form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
    let is_form = headers.get(CONTENT_TYPE).is_none_or(|value| {
        value
            .to_str()
            .is_ok_and(|value| value.trim_start().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"))
    });
    if is_form {
        pairs.extend(form_urlencoded::parse(body).into_owned());
    }
    pairs
}

/// A short, stable stand-in for a secret in the logs.
struct Fingerprint<'a>(Option<&'a str>);

impl fmt::Display for Fingerprint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("-"),
            Some(value) => {
                let digest = Sha256::digest(value.as_bytes());
                digest[..4].iter().try_for_each(|byte| write!(f, "{byte:02x}"))
            }
        }
    }
}

fn log_token_request(request: &TokenRequest, outcome: &str, fault: Option<&FaultRule>) {
    tracing::info!(
        grant_type = %request.grant_type.as_deref().unwrap_or("-"),
        client = %Fingerprint(request.client_id.as_deref()),
        refresh_token = %Fingerprint(request.refresh_token.as_deref()),
        code = %Fingerprint(request.code.as_deref()),
        %outcome,
        fault = %fault.map_or("-", |rule| fault_label(&rule.fault)),
        "token request"
    );
}

fn fault_label(fault: &Fault) -> &'static str {
    match fault {
        Fault::HttpStatus { .. } => "http_status",
        Fault::Garbage => "garbage",
        Fault::TruncatedJson => "truncated_json",
        Fault::Empty => "empty",
        Fault::HugeBody { .. } => "huge_body",
        Fault::Hang => "hang",
        Fault::Custom { .. } => "custom",
    }
}

/// Counts the request and applies latency and faults around `handle`, which runs under the lock.
/// A fault that applies before processing answers instead of it; one that applies after
/// processing lets it happen (it may mint) and answers in its place, like a lost response.
async fn with_faults(
    shared: &Shared,
    refresh_token: Option<&str>,
    log_faulted: impl FnOnce(&FaultRule),
    handle: impl FnOnce(&mut Core, Option<&FaultRule>) -> Response,
) -> Response {
    let (latency, fault) = shared.write(|core| {
        core.state.count_request(refresh_token);
        let fault = core.faults.take();
        if fault.is_some() {
            core.state.count_fault(refresh_token);
        }
        (Duration::from_millis(core.faults.latency_ms), fault)
    });
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(rule) = fault.as_ref().filter(|rule| !rule.after_processing) {
        log_faulted(rule);
        return fault_response(&rule.fault).await;
    }
    let response = shared.write(|core| handle(core, fault.as_ref()));
    match fault {
        Some(rule) => fault_response(&rule.fault).await,
        None => response,
    }
}

fn outcome_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Issued(_) => "issued",
        Outcome::Throttled => "throttled",
        Outcome::Error(code) => code,
        Outcome::OtherDc { .. } => "other_dc",
    }
}

async fn token(State(shared): State<Shared>, RawQuery(query): RawQuery, headers: HeaderMap, body: Bytes) -> Response {
    let request = TokenRequest::from_pairs(params(query.as_deref(), &headers, &body));
    with_faults(
        &shared,
        request.refresh_token.as_deref(),
        |rule| log_token_request(&request, "-", Some(rule)),
        |core, fault| {
            let now_ms = core.now_ms();
            let outcome = core.state.token_request(&core.config, now_ms, &request);
            log_token_request(&request, outcome_label(&outcome), fault);
            token_response(&core.config, outcome)
        },
    )
    .await
}

async fn device_code(
    State(shared): State<Shared>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = TokenRequest::from_pairs(params(query.as_deref(), &headers, &body));
    with_faults(
        &shared,
        None,
        |rule| log_token_request(&request, "-", Some(rule)),
        |core, fault| {
            let now_ms = core.now_ms();
            match core.state.device_code(&core.config, now_ms, &request) {
                Ok(issued) => {
                    log_token_request(&request, "device_code", fault);
                    device_code_response(&core.url, issued)
                }
                Err(code) => {
                    log_token_request(&request, code, fault);
                    json_response(StatusCode::OK, &json!({ "error": code }))
                }
            }
        },
    )
    .await
}

/// Field order as in Zoho's documentation; both durations in milliseconds, as its older
/// device-flow page states them.
#[derive(Serialize)]
struct DeviceCodeBody<'a> {
    user_code: &'a str,
    device_code: &'a str,
    verification_url: String,
    expires_in: u64,
    interval: u64,
}

fn device_code_response(base_url: &str, issued: DeviceCodeIssued) -> Response {
    json_response(
        StatusCode::OK,
        &DeviceCodeBody {
            user_code: &issued.user_code,
            device_code: &issued.device_code,
            verification_url: format!("{base_url}/oauth/v3/device"),
            expires_in: issued.expires_in_ms,
            interval: issued.interval_ms,
        },
    )
}

async fn device_token(
    State(shared): State<Shared>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = TokenRequest::from_pairs(params(query.as_deref(), &headers, &body));
    with_faults(
        &shared,
        None,
        |rule| log_token_request(&request, "-", Some(rule)),
        |core, fault| {
            let now_ms = core.now_ms();
            let outcome = core.state.device_token(&core.config, now_ms, &request);
            log_token_request(&request, outcome_label(&outcome), fault);
            token_response(&core.config, outcome)
        },
    )
    .await
}

async fn verification_page() -> &'static str {
    "fake-zoho: this stands for Zoho's device verification page. Approve a user code with\n\
     POST /_fake/device/approve {\"user_code\": \"...\"} (or /_fake/device/deny).\n"
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    let body = serde_json::to_vec(body).expect("response bodies serialize");
    (status, [(CONTENT_TYPE, JSON)], body).into_response()
}

#[derive(Serialize)]
struct TokenBody<'a> {
    access_token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    scope: &'a str,
    api_domain: &'a str,
    token_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_in_sec: Option<u64>,
    expires_in: u64,
}

/// Field order as Zoho sends it.
#[derive(Serialize)]
struct ThrottleBody {
    error_description: &'static str,
    error: &'static str,
    status: &'static str,
}

fn token_response(config: &FakeZohoConfig, outcome: Outcome) -> Response {
    match outcome {
        Outcome::Issued(issued) => {
            let seconds = config.token_lifetime.as_secs();
            let (expires_in_sec, expires_in) = if config.legacy_expires {
                (Some(seconds), config.token_lifetime.as_millis() as u64)
            } else {
                (None, seconds)
            };
            json_response(
                StatusCode::OK,
                &TokenBody {
                    access_token: &issued.access_token,
                    refresh_token: issued.new_refresh_token.then_some(issued.refresh_token.as_str()),
                    scope: &issued.scope,
                    api_domain: &config.api_domain,
                    token_type: "Bearer",
                    expires_in_sec,
                    expires_in,
                },
            )
        }
        Outcome::Error(code) => json_response(StatusCode::OK, &json!({ "error": code })),
        Outcome::OtherDc { location, accounts_server } => json_response(
            StatusCode::OK,
            &json!({ "user_location": location, "error": "other_dc", "accounts-server": accounts_server }),
        ),
        Outcome::Throttled => {
            let body = if config.localized_throttle {
                ThrottleBody {
                    error_description: "您已连续提出过多请求，请稍后再试。",
                    error: "拒绝访问",
                    status: "failure",
                }
            } else {
                ThrottleBody {
                    error_description: "You have made too many requests continuously. Please try again after some time.",
                    error: "Access Denied",
                    status: "failure",
                }
            };
            let status = StatusCode::from_u16(config.throttle_status).unwrap_or(StatusCode::BAD_REQUEST);
            json_response(status, &body)
        }
    }
}

const GARBAGE_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>Zoho Accounts</title></head>\
<body><h1>We'll be back soon</h1><p>Zoho Accounts is undergoing maintenance.</p></body></html>\n";

async fn fault_response(fault: &Fault) -> Response {
    let html = [(CONTENT_TYPE, "text/html;charset=UTF-8")];
    let json = [(CONTENT_TYPE, JSON)];
    match fault {
        Fault::HttpStatus { status } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let page = format!(
                "<html><head><title>{status}</title></head><body><center><h1>{status}</h1></center></body></html>\n"
            );
            (status, html, page).into_response()
        }
        Fault::Garbage => (StatusCode::OK, html, GARBAGE_PAGE).into_response(),
        Fault::TruncatedJson => (StatusCode::OK, json, r#"{"access_token":"1000.3b1f0c9a"#).into_response(),
        Fault::Empty => (StatusCode::OK, json).into_response(),
        Fault::HugeBody { bytes } => (StatusCode::OK, json, huge_body(*bytes)).into_response(),
        Fault::Hang => std::future::pending().await,
        Fault::Custom { status, body } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, json, body.clone()).into_response()
        }
    }
}

/// Streamed, so the server never holds it in memory; it starts like a token
/// response so a client cannot reject it from the first bytes.
fn huge_body(bytes: u64) -> Body {
    const CHUNK: usize = 64 * 1024;
    static FILLER: [u8; CHUNK] = [b'7'; CHUNK];
    const PREFIX: &[u8] = br#"{"access_token":"1000."#;

    let mut remaining = bytes;
    let mut first = true;
    let chunks = std::iter::from_fn(move || {
        let source: &'static [u8] = if std::mem::take(&mut first) { PREFIX } else { &FILLER };
        let len = source.len().min(usize::try_from(remaining).unwrap_or(usize::MAX));
        remaining -= len as u64;
        (len > 0).then(|| Ok::<_, Infallible>(Bytes::from_static(&source[..len])))
    });
    Body::from_stream(futures_util::stream::iter(chunks))
}

async fn revoke(State(shared): State<Shared>, RawQuery(query): RawQuery, headers: HeaderMap, body: Bytes) -> Response {
    let pairs = params(query.as_deref(), &headers, &body);
    let token =
        pairs.iter().rev().find(|(key, value)| key == "token" && !value.is_empty()).map(|(_, value)| value.to_owned());
    with_faults(
        &shared,
        None,
        |rule| tracing::info!(token = %Fingerprint(token.as_deref()), fault = fault_label(&rule.fault), "revoke request"),
        |core, _fault| {
            let revoked = token.as_deref().is_some_and(|token| core.revoke(token));
            tracing::info!(token = %Fingerprint(token.as_deref()), revoked, "revoke request");
            if revoked {
                json_response(StatusCode::OK, &json!({ "status": "success" }))
            } else {
                json_response(StatusCode::BAD_REQUEST, &json!({ "status": "failure", "error": "invalid_token" }))
            }
        },
    )
    .await
}

fn not_found(error: impl fmt::Display) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": error.to_string() }))).into_response()
}

#[derive(Deserialize)]
struct NewClient {
    client_id: String,
    client_secret: String,
}

async fn add_client(State(shared): State<Shared>, Json(client): Json<NewClient>) -> StatusCode {
    shared.write(|core| core.state.register_client(&client.client_id, &client.client_secret));
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct NewRefreshToken {
    client_id: String,
    refresh_token: Option<String>,
}

async fn add_refresh_token(State(shared): State<Shared>, Json(new): Json<NewRefreshToken>) -> Response {
    let token = new.refresh_token.unwrap_or_else(new_token);
    match shared.write(|core| core.register_refresh_token(&new.client_id, &token)) {
        Ok(()) => Json(json!({ "refresh_token": token })).into_response(),
        Err(error) => not_found(error),
    }
}

#[derive(Deserialize)]
struct NewCode {
    client_id: String,
    code: Option<String>,
    redirect_uri: Option<String>,
    /// False makes a code whose exchange yields no refresh token.
    #[serde(default)]
    offline: Option<bool>,
}

async fn add_code(State(shared): State<Shared>, Json(new): Json<NewCode>) -> Response {
    let code = new.code.unwrap_or_else(new_token);
    let registered: Result<(), super::UnknownClient> = shared.write(|core| {
        core.register_code(&new.client_id, &code, new.redirect_uri.as_deref())?;
        if new.offline == Some(false) {
            core.state.make_code_online(&code);
        }
        Ok(())
    });
    match registered {
        Ok(()) => Json(json!({ "code": code })).into_response(),
        Err(error) => not_found(error),
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    token: String,
}

async fn revoke_directly(State(shared): State<Shared>, Query(query): Query<TokenQuery>) -> Json<serde_json::Value> {
    let revoked = shared.write(|core| core.revoke(&query.token));
    Json(json!({ "revoked": revoked }))
}

async fn token_live(State(shared): State<Shared>, Query(query): Query<TokenQuery>) -> Json<serde_json::Value> {
    let live = shared.read(|core| core.token_info(&query.token)).is_some_and(|info| info.live);
    Json(json!({ "live": live }))
}

async fn token_info(State(shared): State<Shared>, Query(query): Query<TokenQuery>) -> Response {
    match shared.read(|core| core.token_info(&query.token)) {
        Some(info) => Json(info).into_response(),
        None => not_found("unknown token"),
    }
}

#[derive(Deserialize)]
struct RefreshTokenQuery {
    refresh_token: String,
}

async fn live_tokens(State(shared): State<Shared>, Query(query): Query<RefreshTokenQuery>) -> Json<serde_json::Value> {
    let tokens = shared.read(|core| core.live_tokens(&query.refresh_token));
    Json(json!({ "access_tokens": tokens }))
}

async fn stats(State(shared): State<Shared>) -> Response {
    Json(shared.read(|core| core.state.stats())).into_response()
}

async fn reset_stats(State(shared): State<Shared>) -> StatusCode {
    shared.write(|core| core.state.reset_stats());
    StatusCode::NO_CONTENT
}

async fn faults(State(shared): State<Shared>) -> Json<Faults> {
    Json(shared.read(|core| core.faults.clone()))
}

async fn add_fault(State(shared): State<Shared>, Json(rule): Json<FaultRule>) -> StatusCode {
    shared.write(|core| core.inject_fault(rule));
    StatusCode::NO_CONTENT
}

async fn clear_faults(State(shared): State<Shared>) -> StatusCode {
    shared.write(|core| core.faults = Faults::default());
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct Millis {
    ms: u64,
}

async fn set_latency(State(shared): State<Shared>, Json(latency): Json<Millis>) -> StatusCode {
    shared.write(|core| core.faults.latency_ms = latency.ms);
    StatusCode::NO_CONTENT
}

async fn advance_clock(State(shared): State<Shared>, Json(by): Json<Millis>) -> Json<serde_json::Value> {
    let clock = shared.read(|core| core.config.clock.clone());
    clock.advance(Duration::from_millis(by.ms));
    Json(json!({ "now_ms": clock.now_ms() }))
}

async fn device_authorizations(State(shared): State<Shared>) -> Response {
    Json(shared.read(|core| core.state.devices())).into_response()
}

#[derive(Deserialize)]
struct UserCode {
    user_code: String,
}

fn decide(shared: &Shared, user_code: &str, decision: DeviceDecision) -> Response {
    match shared.write(|core| core.state.decide_device(user_code, decision)) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => not_found(error),
    }
}

async fn approve_device(State(shared): State<Shared>, Json(code): Json<UserCode>) -> Response {
    decide(&shared, &code.user_code, DeviceDecision::Approved)
}

async fn deny_device(State(shared): State<Shared>, Json(code): Json<UserCode>) -> Response {
    decide(&shared, &code.user_code, DeviceDecision::Denied)
}

#[derive(Deserialize)]
struct Redirect {
    user_code: String,
    accounts_server: String,
    location: String,
}

async fn redirect_device(State(shared): State<Shared>, Json(redirect): Json<Redirect>) -> Response {
    let result = shared.write(|core| {
        let transfer = core.state.device_transfer(&redirect.user_code, core.now_ms())?;
        let decision =
            DeviceDecision::OtherDc { location: redirect.location.clone(), accounts_server: redirect.accounts_server };
        core.state.decide_device(&redirect.user_code, decision).map(|()| transfer)
    });
    match result {
        Ok(transfer) => Json(transfer).into_response(),
        Err(error) => not_found(error),
    }
}

async fn import_device(State(shared): State<Shared>, Json(transfer): Json<DeviceTransfer>) -> Response {
    match shared.write(|core| {
        let now_ms = core.now_ms();
        core.state.import_device(&transfer, now_ms)
    }) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => not_found(error),
    }
}
