//! The HTTP face of the fake: Zoho's endpoints, the test API and the server thread.
//!
//! Zoho's endpoints:
//! - `POST /oauth/v2/token`: grants `refresh_token` and `authorization_code`.
//!   Injected faults and latency apply here only.
//! - `POST /oauth/v2/token/revoke?token=…` (or `token` in a form body).
//!
//! The test API, JSON in and out; a 204 answers a change that returns nothing,
//! a 404 `{"error": …}` an unknown client or token:
//! - `GET /_fake/health` → `ok`
//! - `POST /_fake/clients` `{"client_id","client_secret"}` → 204
//! - `POST /_fake/refresh-tokens` `{"client_id","refresh_token"?}` → `{"refresh_token"}`
//! - `POST /_fake/codes` `{"client_id","code"?,"redirect_uri"?}` → `{"code"}`
//! - `POST /_fake/revoke?token=…` → `{"revoked":bool}`, bypassing faults
//! - `GET /_fake/tokens/live?token=…` → `{"live":bool}`
//! - `GET /_fake/tokens/info?token=…` → `TokenInfo`
//! - `GET /_fake/live-tokens?refresh_token=…` → `{"access_tokens":[…]}`, oldest first
//! - `GET /_fake/stats` → `Stats`; `POST /_fake/stats/reset` → 204
//! - `GET /_fake/faults` → `Faults`; `POST /_fake/faults` `FaultRule` → 204;
//!   `DELETE /_fake/faults` → 204, clearing the latency too
//! - `PUT /_fake/faults/latency` `{"ms"}` → 204
//! - `POST /_fake/clock/advance` `{"ms"}` → `{"now_ms"}`

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

use super::state::{Outcome, TokenRequest, new_token};
use super::{FakeZohoConfig, Fault, FaultRule, Faults, Shared};

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
    }
}

async fn token(State(shared): State<Shared>, RawQuery(query): RawQuery, headers: HeaderMap, body: Bytes) -> Response {
    let request = TokenRequest::from_pairs(params(query.as_deref(), &headers, &body));
    let refresh_token = request.refresh_token.as_deref();
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
        log_token_request(&request, "-", Some(rule));
        return fault_response(&rule.fault).await;
    }

    let response = shared.write(|core| {
        let now_ms = core.now_ms();
        let outcome = core.state.token_request(&core.config, now_ms, &request);
        let label = match &outcome {
            Outcome::Issued(_) => "issued",
            Outcome::Throttled => "throttled",
            Outcome::Error(code) => code,
        };
        log_token_request(&request, label, fault.as_ref());
        token_response(&core.config, outcome)
    });
    match fault {
        Some(rule) => fault_response(&rule.fault).await,
        None => response,
    }
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
    match *fault {
        Fault::HttpStatus { status } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let page = format!(
                "<html><head><title>{status}</title></head><body><center><h1>{status}</h1></center></body></html>\n"
            );
            (status, html, page).into_response()
        }
        Fault::Garbage => (StatusCode::OK, html, GARBAGE_PAGE).into_response(),
        Fault::TruncatedJson => (StatusCode::OK, json, r#"{"access_token":"1000.3b1f0c9a"#).into_response(),
        Fault::Empty => (StatusCode::OK, json).into_response(),
        Fault::HugeBody { bytes } => (StatusCode::OK, json, huge_body(bytes)).into_response(),
        Fault::Hang => std::future::pending().await,
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
        pairs.iter().rev().find(|(key, value)| key == "token" && !value.is_empty()).map(|(_, value)| value.as_str());
    let revoked = token.is_some_and(|token| shared.write(|core| core.revoke(token)));
    tracing::info!(token = %Fingerprint(token), revoked, "revoke request");
    if revoked {
        json_response(StatusCode::OK, &json!({ "status": "success" }))
    } else {
        json_response(StatusCode::BAD_REQUEST, &json!({ "status": "failure", "error": "invalid_token" }))
    }
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
}

async fn add_code(State(shared): State<Shared>, Json(new): Json<NewCode>) -> Response {
    let code = new.code.unwrap_or_else(new_token);
    match shared.write(|core| core.register_code(&new.client_id, &code, new.redirect_uri.as_deref())) {
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
