//! The fake Zoho accounts server against the behaviour documented in
//! `reference/zoho-oauth.md`, over real HTTP.

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::fake_zoho::{Clock, FakeZoho, FakeZohoConfig, Fault, FaultRule, TokenKind, TokenStatus};

const CLIENT_ID: &str = "1000.SENTINELCLIENT";
const CLIENT_SECRET: &str = "SENTINEL-secret-7f3a";
const REFRESH_TOKEN: &str = "SENTINEL-refresh-token-1";

const THROTTLE_BODY: &str = r#"{"error_description":"You have made too many requests continuously. Please try again after some time.","error":"Access Denied","status":"failure"}"#;

fn start(config: FakeZohoConfig) -> FakeZoho {
    let zoho = FakeZoho::start(config);
    zoho.register_client(CLIENT_ID, CLIENT_SECRET);
    zoho.register_refresh_token(CLIENT_ID, REFRESH_TOKEN);
    zoho
}

fn frozen() -> FakeZohoConfig {
    FakeZohoConfig { clock: Clock::frozen(), ..FakeZohoConfig::default() }
}

fn http() -> reqwest::Client {
    // In a workspace build, cargo unifies in the operator's reqwest features, which bring rustls
    // without a crypto provider; reqwest then needs one installed, even for plain HTTP.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn refresh_form(refresh_token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "refresh_token".to_owned()),
        ("client_id", CLIENT_ID.to_owned()),
        ("client_secret", CLIENT_SECRET.to_owned()),
        ("refresh_token", refresh_token.to_owned()),
    ]
}

async fn post_form(zoho: &FakeZoho, form: &[(&str, String)]) -> reqwest::Response {
    http().post(zoho.token_url()).form(form).send().await.unwrap()
}

/// Status and JSON body of a token request.
async fn token_request(zoho: &FakeZoho, form: &[(&str, String)]) -> (u16, Value) {
    let response = post_form(zoho, form).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn refresh(zoho: &FakeZoho) -> (u16, Value) {
    token_request(zoho, &refresh_form(REFRESH_TOKEN)).await
}

async fn mint(zoho: &FakeZoho) -> String {
    let (status, body) = refresh(zoho).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap_or_else(|| panic!("no token in {body}")).to_owned()
}

fn keys(body: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

#[tokio::test]
async fn refresh_success_has_zoho_shape_without_refresh_token() {
    let zoho = start(FakeZohoConfig::default());
    let (status, body) = refresh(&zoho).await;

    assert_eq!(status, 200);
    assert_eq!(keys(&body), ["access_token", "api_domain", "expires_in", "scope", "token_type"]);
    let token = body["access_token"].as_str().unwrap();
    assert!(token.starts_with("1000."), "{token}");
    assert_eq!(body["api_domain"], "https://www.zohoapis.com");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "ZohoCRM.modules.ALL");

    let info = zoho.token_info(token).unwrap();
    assert_eq!(info.kind, TokenKind::Access);
    assert!(info.live);
    assert_eq!(info.refresh_token.as_deref(), Some(REFRESH_TOKEN));
    assert_eq!(info.client_id, CLIENT_ID);
    let counters = zoho.counters(REFRESH_TOKEN);
    assert_eq!((counters.requests, counters.mints), (1, 1));
}

#[tokio::test]
async fn params_in_the_query_string_work_and_api_domain_is_configurable() {
    let zoho = start(FakeZohoConfig { api_domain: "https://www.zohoapis.eu".to_owned(), ..FakeZohoConfig::default() });
    let response = http().post(zoho.token_url()).query(&refresh_form(REFRESH_TOKEN)).send().await.unwrap();
    let body: Value = response.json().await.unwrap();
    assert!(zoho.is_live(body["access_token"].as_str().unwrap()), "{body}");
    assert_eq!(body["api_domain"], "https://www.zohoapis.eu");
}

#[tokio::test]
async fn errors_come_in_the_body_with_http_200() {
    let zoho = start(FakeZohoConfig::default());
    let with = |key: &'static str, value: &str| {
        let mut form = refresh_form(REFRESH_TOKEN);
        form.retain(|(k, _)| *k != key);
        if !value.is_empty() {
            form.push((key, value.to_owned()));
        }
        form
    };
    let cases = [
        (with("client_id", "1000.UNKNOWN"), "invalid_client"),
        (with("client_secret", "wrong"), "invalid_client_secret"),
        (with("refresh_token", "1000.unknown.token"), "invalid_code"),
        (with("refresh_token", ""), "invalid_request"),
        (with("client_secret", ""), "invalid_request"),
        (with("grant_type", ""), "invalid_request"),
        (with("grant_type", "password"), "unsupported_grant_type"),
    ];
    for (form, error) in &cases {
        let (status, body) = token_request(&zoho, form).await;
        assert_eq!((status, body), (200, json!({ "error": error })), "{form:?}");
    }
    assert_eq!(zoho.stats().totals.errors, cases.len() as u64);
    assert_eq!(zoho.stats().totals.mints, 0);
}

#[tokio::test]
async fn revoked_refresh_token_answers_invalid_code_and_kills_its_tokens() {
    let zoho = start(FakeZohoConfig::default());
    let token = mint(&zoho).await;

    let revoke =
        |token: &str| http().post(format!("{}/oauth/v2/token/revoke", zoho.url())).query(&[("token", token)]).send();
    let response = revoke(REFRESH_TOKEN).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({ "status": "success" }));
    assert!(!zoho.is_live(&token));
    assert_eq!(zoho.token_info(&token).unwrap().status, TokenStatus::Revoked);
    assert!(!zoho.is_live(REFRESH_TOKEN));

    assert_eq!(refresh(&zoho).await, (200, json!({ "error": "invalid_code" })));
    assert_eq!(revoke("1000.never.issued").await.unwrap().status(), 400);
    assert_eq!(revoke(REFRESH_TOKEN).await.unwrap().status(), 400, "already revoked");
    assert_eq!(zoho.stats().revocations, 1);
}

#[tokio::test]
async fn revoking_one_access_token_in_a_form_body() {
    let zoho = start(FakeZohoConfig::default());
    let (doomed, kept) = (mint(&zoho).await, mint(&zoho).await);
    let response =
        http().post(format!("{}/oauth/v2/token/revoke", zoho.url())).form(&[("token", &doomed)]).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(!zoho.is_live(&doomed));
    assert!(zoho.is_live(&kept));
    assert!(zoho.is_live(REFRESH_TOKEN));
}

#[tokio::test]
async fn eleventh_mint_in_a_window_is_throttled_until_the_window_ends() {
    let zoho = start(frozen());
    for _ in 0..10 {
        mint(&zoho).await;
    }
    let response = post_form(&zoho, &refresh_form(REFRESH_TOKEN)).await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.text().await.unwrap(), THROTTLE_BODY);

    let counters = zoho.counters(REFRESH_TOKEN);
    assert_eq!((counters.requests, counters.mints, counters.throttled), (11, 10, 1));
    assert_eq!(zoho.live_tokens(REFRESH_TOKEN).len(), 10, "throttled requests do not mint");

    zoho.advance_clock(Duration::from_secs(599));
    assert_eq!(refresh(&zoho).await.0, 400);
    zoho.advance_clock(Duration::from_secs(1));
    mint(&zoho).await;
}

#[tokio::test]
async fn throttle_can_answer_200_and_in_chinese() {
    let zoho = start(FakeZohoConfig { throttle_limit: 1, throttle_status: 200, ..frozen() });
    mint(&zoho).await;
    assert_eq!(refresh(&zoho).await, (200, serde_json::from_str(THROTTLE_BODY).unwrap()));

    zoho.update_config(|config| config.localized_throttle = true);
    let response = post_form(&zoho, &refresh_form(REFRESH_TOKEN)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"error_description":"您已连续提出过多请求，请稍后再试。","error":"拒绝访问","status":"failure"}"#
    );
}

#[tokio::test]
async fn throttle_window_and_limit_shrink_for_tests() {
    let zoho = start(FakeZohoConfig { throttle_limit: 2, throttle_window: Duration::from_secs(5), ..frozen() });
    mint(&zoho).await;
    mint(&zoho).await;
    assert_eq!(refresh(&zoho).await.0, 400);
    zoho.advance_clock(Duration::from_secs(5));
    mint(&zoho).await;
}

#[tokio::test]
async fn sixteenth_live_token_evicts_the_oldest() {
    let zoho = start(FakeZohoConfig { throttle_limit: 100, ..frozen() });
    let mut tokens = Vec::new();
    for _ in 0..15 {
        tokens.push(mint(&zoho).await);
    }
    assert!(tokens.iter().all(|t| zoho.is_live(t)));

    tokens.push(mint(&zoho).await);
    assert!(!zoho.is_live(&tokens[0]));
    assert_eq!(zoho.token_info(&tokens[0]).unwrap().status, TokenStatus::Evicted);
    assert!(tokens[1..].iter().all(|t| zoho.is_live(t)));
    assert_eq!(zoho.live_tokens(REFRESH_TOKEN), tokens[1..]);
}

#[tokio::test]
async fn legacy_format_gives_seconds_and_milliseconds() {
    let zoho = start(FakeZohoConfig {
        legacy_expires: true,
        token_lifetime: Duration::from_secs(6),
        ..FakeZohoConfig::default()
    });
    let (_, body) = refresh(&zoho).await;
    assert_eq!(body["expires_in_sec"], 6);
    assert_eq!(body["expires_in"], 6000);
}

#[tokio::test]
async fn token_dies_at_the_end_of_its_lifetime() {
    let zoho = start(FakeZohoConfig { token_lifetime: Duration::from_secs(6), ..frozen() });
    let (_, body) = refresh(&zoho).await;
    assert_eq!(body["expires_in"], 6);
    let token = body["access_token"].as_str().unwrap();

    zoho.advance_clock(Duration::from_millis(5_999));
    assert!(zoho.is_live(token));
    zoho.advance_clock(Duration::from_millis(1));
    assert!(!zoho.is_live(token));
    assert_eq!(zoho.token_info(token).unwrap().status, TokenStatus::Expired);
}

#[tokio::test]
async fn token_expires_in_real_time_too() {
    let zoho = start(FakeZohoConfig { token_lifetime: Duration::from_secs(1), ..FakeZohoConfig::default() });
    let token = mint(&zoho).await;
    assert!(zoho.is_live(&token));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(!zoho.is_live(&token));
}

fn code_form(code: &str, redirect_uri: Option<&str>) -> Vec<(&'static str, String)> {
    let mut form = vec![
        ("grant_type", "authorization_code".to_owned()),
        ("client_id", CLIENT_ID.to_owned()),
        ("client_secret", CLIENT_SECRET.to_owned()),
        ("code", code.to_owned()),
    ];
    if let Some(uri) = redirect_uri {
        form.push(("redirect_uri", uri.to_owned()));
    }
    form
}

#[tokio::test]
async fn grant_code_is_one_time_and_returns_a_working_refresh_token() {
    let zoho = start(frozen());
    let redirect = "https://app.example/callback";
    let code = zoho.issue_code(CLIENT_ID, Some(redirect));

    let (status, body) = token_request(&zoho, &code_form(&code, Some(redirect))).await;
    assert_eq!(status, 200);
    assert_eq!(keys(&body), ["access_token", "api_domain", "expires_in", "refresh_token", "scope", "token_type"]);
    let refresh_token = body["refresh_token"].as_str().unwrap();
    assert!(zoho.is_live(body["access_token"].as_str().unwrap()));
    assert_eq!(zoho.mints(refresh_token), 1);

    assert_eq!(
        token_request(&zoho, &code_form(&code, Some(redirect))).await,
        (200, json!({ "error": "invalid_code" })),
        "a code works once"
    );

    let mut form = refresh_form(refresh_token);
    form.push(("redirect_uri", redirect.to_owned()));
    let (_, body) = token_request(&zoho, &form).await;
    assert!(body["access_token"].is_string(), "{body}");
    assert!(body.get("refresh_token").is_none());
}

#[tokio::test]
async fn grant_code_expires_and_checks_its_redirect_uri() {
    let zoho = start(frozen());
    let self_client_code = zoho.issue_code(CLIENT_ID, None);
    let web_code = zoho.issue_code(CLIENT_ID, Some("https://app.example/callback"));

    assert_eq!(
        token_request(&zoho, &code_form(&web_code, Some("https://evil.example/"))).await,
        (200, json!({ "error": "invalid_redirect_uri" }))
    );
    zoho.advance_clock(Duration::from_secs(120));
    assert_eq!(
        token_request(&zoho, &code_form(&self_client_code, None)).await,
        (200, json!({ "error": "invalid_code" })),
        "codes last two minutes by default"
    );

    zoho.register_code(CLIENT_ID, "SENTINEL-code", None);
    zoho.advance_clock(Duration::from_secs(119));
    let (_, body) = token_request(&zoho, &code_form("SENTINEL-code", None)).await;
    assert!(body["refresh_token"].is_string(), "{body}");
}

#[tokio::test]
async fn http_status_faults_answer_the_next_requests_then_stop() {
    let zoho = start(FakeZohoConfig::default());
    for status in [500, 502, 503] {
        zoho.inject_fault(FaultRule::new(Fault::HttpStatus { status }).times(2));
        for _ in 0..2 {
            let response = post_form(&zoho, &refresh_form(REFRESH_TOKEN)).await;
            assert_eq!(response.status().as_u16(), status);
            assert!(response.text().await.unwrap().contains("<html>"));
        }
        mint(&zoho).await;
    }
    let counters = zoho.counters(REFRESH_TOKEN);
    assert_eq!((counters.requests, counters.faulted, counters.mints), (9, 6, 3));
}

#[tokio::test]
async fn a_fault_without_count_lasts_until_cleared() {
    let zoho = start(FakeZohoConfig::default());
    zoho.inject_fault(Fault::HttpStatus { status: 503 });
    for _ in 0..3 {
        assert_eq!(post_form(&zoho, &refresh_form(REFRESH_TOKEN)).await.status(), 503);
    }
    zoho.clear_faults();
    mint(&zoho).await;
}

#[tokio::test]
async fn garbage_truncated_and_empty_bodies() {
    let zoho = start(FakeZohoConfig::default());
    zoho.inject_fault(FaultRule::new(Fault::Garbage).times(1));
    zoho.inject_fault(FaultRule::new(Fault::TruncatedJson).times(1));
    zoho.inject_fault(FaultRule::new(Fault::Empty).times(1));

    let response = post_form(&zoho, &refresh_form(REFRESH_TOKEN)).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(response.text().await.unwrap().starts_with("<!DOCTYPE html>"));

    let response = post_form(&zoho, &refresh_form(REFRESH_TOKEN)).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.starts_with(r#"{"access_token":"#), "{text}");
    assert!(serde_json::from_str::<Value>(&text).is_err());

    let response = post_form(&zoho, &refresh_form(REFRESH_TOKEN)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "");

    assert_eq!(zoho.stats().totals.mints, 0, "faults answer before processing");
    mint(&zoho).await;
}

#[tokio::test]
async fn a_custom_body_is_answered_verbatim_with_its_status() {
    let zoho = start(FakeZohoConfig::default());
    let body = r#"{"access_token":"1000.x","expires_in":"3600"}"#;
    zoho.inject_fault(FaultRule::new(Fault::Custom { status: 202, body: body.to_owned() }).times(1));
    let response = post_form(&zoho, &refresh_form(REFRESH_TOKEN)).await;
    assert_eq!(response.status(), 202);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    assert_eq!(response.text().await.unwrap(), body);
    assert_eq!(zoho.stats().totals.mints, 0, "the fault answers before processing");
    let rule: FaultRule = serde_json::from_value(json!({"kind": "custom", "status": 200, "body": "{}"})).unwrap();
    assert_eq!(rule.fault, Fault::Custom { status: 200, body: "{}".to_owned() });
    mint(&zoho).await;
}

#[tokio::test]
async fn huge_body_streams_fifty_mebibytes() {
    let zoho = start(FakeZohoConfig::default());
    zoho.inject_fault(FaultRule::new(Fault::huge_body()).times(1));
    let mut response = post_form(&zoho, &refresh_form(REFRESH_TOKEN)).await;
    assert_eq!(response.status(), 200);
    let mut received = 0u64;
    let mut first = None;
    while let Some(chunk) = response.chunk().await.unwrap() {
        first.get_or_insert_with(|| chunk.clone());
        received += chunk.len() as u64;
    }
    assert_eq!(received, 50 << 20);
    assert!(first.unwrap().starts_with(br#"{"access_token":"1000."#));
}

#[tokio::test]
async fn hang_never_answers() {
    let zoho = start(FakeZohoConfig::default());
    zoho.inject_fault(FaultRule::new(Fault::Hang).times(1));
    let started = Instant::now();
    let error = http()
        .post(zoho.token_url())
        .form(&refresh_form(REFRESH_TOKEN))
        .timeout(Duration::from_millis(500))
        .send()
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(zoho.counters(REFRESH_TOKEN).faulted, 1);
    mint(&zoho).await;
}

#[tokio::test]
async fn latency_delays_every_token_request() {
    let zoho = start(FakeZohoConfig::default());
    zoho.set_latency(Duration::from_millis(300));
    let started = Instant::now();
    mint(&zoho).await;
    assert!(started.elapsed() >= Duration::from_millis(300));

    zoho.clear_faults();
    let started = Instant::now();
    mint(&zoho).await;
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn after_processing_fault_mints_but_loses_the_answer() {
    let zoho = start(FakeZohoConfig::default());
    zoho.inject_fault(FaultRule::new(Fault::HttpStatus { status: 502 }).times(1).after_processing());
    assert_eq!(post_form(&zoho, &refresh_form(REFRESH_TOKEN)).await.status(), 502);
    assert_eq!(zoho.mints(REFRESH_TOKEN), 1);
    assert_eq!(zoho.live_tokens(REFRESH_TOKEN).len(), 1);
}

#[tokio::test]
async fn test_api_over_http() {
    let zoho = FakeZoho::start(frozen());
    let api = |path: &str| format!("{}/_fake/{path}", zoho.url());
    let http = http();

    assert_eq!(http.get(api("health")).send().await.unwrap().text().await.unwrap(), "ok");
    let response = http
        .post(api("clients"))
        .json(&json!({ "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let response = http
        .post(api("refresh-tokens"))
        .json(&json!({ "client_id": CLIENT_ID, "refresh_token": REFRESH_TOKEN }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.json::<Value>().await.unwrap(), json!({ "refresh_token": REFRESH_TOKEN }));
    let response = http.post(api("refresh-tokens")).json(&json!({ "client_id": "1000.NOBODY" })).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let issued: Value = http
        .post(api("refresh-tokens"))
        .json(&json!({ "client_id": CLIENT_ID }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(zoho.is_live(issued["refresh_token"].as_str().unwrap()));

    let token = mint(&zoho).await;
    let get_json = |url: String| {
        let http = http.clone();
        async move { http.get(url).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let live = |token: &str| get_json(api(&format!("tokens/live?token={token}")));
    assert_eq!(live(&token).await, json!({ "live": true }));
    assert_eq!(live("1000.unknown").await, json!({ "live": false }));
    let info = get_json(api(&format!("tokens/info?token={token}"))).await;
    assert_eq!(info["refresh_token"], REFRESH_TOKEN);
    assert_eq!(info["client_id"], CLIENT_ID);
    assert_eq!(info["status"], "live");
    assert_eq!(
        get_json(api(&format!("live-tokens?refresh_token={REFRESH_TOKEN}"))).await,
        json!({ "access_tokens": [token] })
    );
    let stats = get_json(api("stats")).await;
    assert_eq!(stats["totals"]["mints"], 1);
    assert_eq!(stats["refresh_tokens"][REFRESH_TOKEN]["requests"], 1);

    let response = http
        .post(api("faults"))
        .json(&json!({ "kind": "http_status", "status": 503, "times": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    http.put(api("faults/latency")).json(&json!({ "ms": 5 })).send().await.unwrap();
    let faults = get_json(api("faults")).await;
    assert_eq!(faults["latency_ms"], 5);
    assert_eq!(faults["rules"][0]["status"], 503);
    assert_eq!(post_form(&zoho, &refresh_form(REFRESH_TOKEN)).await.status(), 503);
    http.delete(api("faults")).send().await.unwrap();
    assert_eq!(zoho.faults(), Default::default());

    let now: Value =
        http.post(api("clock/advance")).json(&json!({ "ms": 3_600_000 })).send().await.unwrap().json().await.unwrap();
    assert!(now["now_ms"].is_u64());
    assert_eq!(live(&token).await, json!({ "live": false }));

    let revoked =
        http.post(api(&format!("revoke?token={REFRESH_TOKEN}"))).send().await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(revoked, json!({ "revoked": true }));
    http.post(api("stats/reset")).send().await.unwrap();
    assert_eq!(zoho.stats(), Default::default());
}

#[tokio::test]
async fn restart_keeps_the_port_and_the_state_and_drops_hanging_connections() {
    let mut zoho = start(FakeZohoConfig::default());
    let url = zoho.url();
    let token = mint(&zoho).await;

    zoho.inject_fault(FaultRule::new(Fault::Hang).times(1));
    let hanging = tokio::spawn(post_form_owned(zoho.token_url()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    zoho.stop();
    assert!(!zoho.is_running());
    let error = tokio::time::timeout(Duration::from_secs(5), hanging)
        .await
        .expect("stop drops open connections")
        .unwrap()
        .unwrap_err();
    assert!(!error.is_timeout(), "{error}");
    assert!(http().post(zoho.token_url()).send().await.is_err(), "port closed");

    zoho.restart();
    assert_eq!(zoho.url(), url);
    assert!(zoho.is_live(&token));
    mint(&zoho).await;
    assert_eq!(zoho.mints(REFRESH_TOKEN), 2);
}

async fn post_form_owned(url: String) -> reqwest::Result<reqwest::Response> {
    http().post(url).form(&refresh_form(REFRESH_TOKEN)).send().await
}

#[test]
fn handle_works_without_a_runtime() {
    let zoho = start(FakeZohoConfig::default());
    let body = format!(
        "grant_type=refresh_token&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}&refresh_token={REFRESH_TOKEN}"
    );
    let mut stream = std::net::TcpStream::connect(zoho.addr()).unwrap();
    write!(
        stream,
        "POST /oauth/v2/token HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        zoho.addr(),
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(zoho.mints(REFRESH_TOKEN), 1);
}

#[tokio::test]
async fn state_file_carries_state_to_a_new_server() {
    let dir = tempfile::tempdir().unwrap();
    let config = FakeZohoConfig { state_file: Some(dir.path().join("state.json")), ..FakeZohoConfig::default() };
    let first = start(config.clone());
    let token = mint(&first).await;
    drop(first);

    let second = FakeZoho::start(config);
    assert!(second.is_live(&token));
    assert_eq!(second.mints(REFRESH_TOKEN), 1);
    mint(&second).await;
    assert_eq!(second.live_tokens(REFRESH_TOKEN).len(), 2);
}
