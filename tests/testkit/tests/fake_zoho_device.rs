//! The fake's device flow and its other additions for the bootstrap command, over real HTTP:
//! Zoho's answers as its device-flow pages document them, and the test API that plays the user.

use std::time::Duration;

use serde_json::{Value, json};
use testkit::fake_zoho::{Clock, DeviceDecision, FakeZoho, FakeZohoConfig, Fault, FaultRule};

const CLIENT_ID: &str = "1000.SENTINELDEVICECLIENT";
const CLIENT_SECRET: &str = "SENTINEL-device-secret";
const SCOPE: &str = "ZohoCRM.modules.ALL,ZohoCRM.settings.READ";

fn start(config: FakeZohoConfig) -> FakeZoho {
    let zoho = FakeZoho::start(config);
    zoho.register_client(CLIENT_ID, CLIENT_SECRET);
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

async fn post(url: String, form: &[(&str, &str)]) -> (u16, Value) {
    let response = http().post(url).form(form).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn start_device(zoho: &FakeZoho, access_type: &str) -> Value {
    let form =
        [("client_id", CLIENT_ID), ("grant_type", "device_request"), ("scope", SCOPE), ("access_type", access_type)];
    let (status, body) = post(format!("{}/oauth/v3/device/code", zoho.url()), &form).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn poll_at(url: &str, device_code: &str) -> (u16, Value) {
    let form = [
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
        ("grant_type", "device_token"),
        ("code", device_code),
    ];
    post(format!("{url}/oauth/v3/device/token"), &form).await
}

async fn poll(zoho: &FakeZoho, device_code: &str) -> (u16, Value) {
    poll_at(&zoho.url(), device_code).await
}

fn str_of<'a>(body: &'a Value, key: &str) -> &'a str {
    body[key].as_str().unwrap_or_else(|| panic!("no {key} in {body}"))
}

fn keys(body: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

#[tokio::test]
async fn an_approved_device_gets_a_working_refresh_token_once() {
    let zoho = start(frozen());
    let started = start_device(&zoho, "offline").await;
    assert_eq!(keys(&started), ["device_code", "expires_in", "interval", "user_code", "verification_url"]);
    assert_eq!((started["interval"].as_u64(), started["expires_in"].as_u64()), (Some(30_000), Some(300_000)));
    assert_eq!(str_of(&started, "verification_url"), format!("{}/oauth/v3/device", zoho.url()));
    let page = http().get(str_of(&started, "verification_url")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("/_fake/device/approve"));

    let (device_code, user_code) = (str_of(&started, "device_code"), str_of(&started, "user_code"));
    assert_eq!(poll(&zoho, device_code).await, (200, json!({ "error": "authorization_pending" })));
    let devices = zoho.device_authorizations();
    assert_eq!(devices.len(), 1);
    assert_eq!(
        (devices[0].user_code.as_str(), devices[0].scope.as_str(), devices[0].offline),
        (user_code, SCOPE, true)
    );
    assert_eq!(devices[0].decision, DeviceDecision::Pending);

    zoho.approve_device(user_code).unwrap();
    zoho.advance_clock(Duration::from_secs(30));
    let (status, tokens) = poll(&zoho, device_code).await;
    assert_eq!(status, 200);
    assert_eq!(keys(&tokens), ["access_token", "api_domain", "expires_in", "refresh_token", "scope", "token_type"]);
    let refresh_token = str_of(&tokens, "refresh_token");
    assert!(zoho.is_live(refresh_token) && zoho.is_live(str_of(&tokens, "access_token")));
    assert_eq!(zoho.mints(refresh_token), 1);

    zoho.advance_clock(Duration::from_secs(30));
    assert_eq!(poll(&zoho, device_code).await, (200, json!({ "error": "invalid_code" })), "a device code is spent");
    let stats = zoho.stats();
    assert_eq!((stats.device.codes, stats.device.polls, stats.device.slow_downs), (1, 3, 0));
    assert_eq!(stats.totals.errors, 1, "only invalid_code is an error; pending is feedback");
}

#[tokio::test]
async fn without_offline_access_the_approval_yields_no_refresh_token() {
    let zoho = start(frozen());
    let started = start_device(&zoho, "online").await;
    zoho.approve_device(str_of(&started, "user_code")).unwrap();
    let (_, tokens) = poll(&zoho, str_of(&started, "device_code")).await;
    assert!(tokens["access_token"].is_string() && tokens.get("refresh_token").is_none(), "{tokens}");
}

#[tokio::test]
async fn polls_within_the_gap_slow_down_even_when_the_interval_allows_them() {
    let config = FakeZohoConfig {
        device_poll_interval: Duration::from_millis(200),
        device_min_poll_gap: Duration::from_secs(2),
        ..frozen()
    };
    let zoho = start(config);
    let started = start_device(&zoho, "offline").await;
    assert_eq!(started["interval"], 200);
    let device_code = str_of(&started, "device_code");
    assert_eq!(poll(&zoho, device_code).await.1, json!({ "error": "authorization_pending" }));
    zoho.advance_clock(Duration::from_millis(1_999));
    assert_eq!(poll(&zoho, device_code).await, (200, json!({ "error": "slow_down" })));
    zoho.advance_clock(Duration::from_millis(1_999));
    assert_eq!(poll(&zoho, device_code).await.1, json!({ "error": "slow_down" }), "the slowed-down poll counts too");
    zoho.advance_clock(Duration::from_secs(2));
    assert_eq!(poll(&zoho, device_code).await.1, json!({ "error": "authorization_pending" }));
    assert_eq!(zoho.device_authorizations()[0].slow_downs, 2);
}

#[tokio::test]
async fn an_ignored_device_authorization_expires_and_a_denied_one_says_so() {
    let zoho = start(frozen());
    let ignored = start_device(&zoho, "offline").await;
    zoho.advance_clock(Duration::from_secs(300));
    assert_eq!(poll(&zoho, str_of(&ignored, "device_code")).await.1, json!({ "error": "expired" }));

    let denied = start_device(&zoho, "offline").await;
    zoho.deny_device(str_of(&denied, "user_code")).unwrap();
    assert_eq!(poll(&zoho, str_of(&denied, "device_code")).await.1, json!({ "error": "access_denied" }));
    assert!(zoho.approve_device("NOSUCHCODE").is_err());
}

#[tokio::test]
async fn device_requests_are_checked_like_token_requests() {
    let zoho = start(frozen());
    let url = format!("{}/oauth/v3/device/code", zoho.url());
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[("client_id", "1000.UNKNOWN"), ("grant_type", "device_request"), ("scope", SCOPE)], "invalid_client"),
        (&[("client_id", CLIENT_ID), ("grant_type", "device_request")], "invalid_request"),
        (&[("client_id", CLIENT_ID), ("grant_type", "refresh_token"), ("scope", SCOPE)], "unsupported_grant_type"),
    ];
    for (form, error) in cases {
        assert_eq!(post(url.clone(), form).await, (200, json!({ "error": error })), "{form:?}");
    }
    let started = start_device(&zoho, "offline").await;
    let form = [
        ("client_id", CLIENT_ID),
        ("client_secret", "wrong"),
        ("grant_type", "device_token"),
        ("code", str_of(&started, "device_code")),
    ];
    let wrong_secret = post(format!("{}/oauth/v3/device/token", zoho.url()), &form).await;
    assert_eq!(wrong_secret, (200, json!({ "error": "invalid_client_secret" })));
}

#[tokio::test]
async fn a_user_in_another_data_center_is_served_there() {
    let us = start(frozen());
    let eu = start(FakeZohoConfig { location: "eu".to_owned(), ..frozen() });
    let started = start_device(&us, "offline").await;
    let device_code = str_of(&started, "device_code");
    us.approve_device_in(str_of(&started, "user_code"), &eu).unwrap();

    let (status, answer) = poll(&us, device_code).await;
    assert_eq!(status, 200);
    assert_eq!(answer, json!({ "error": "other_dc", "user_location": "eu", "accounts-server": eu.url() }));
    let (status, tokens) = poll_at(str_of(&answer, "accounts-server"), device_code).await;
    assert_eq!(status, 200, "{tokens}");
    let refresh_token = str_of(&tokens, "refresh_token");
    assert!(eu.is_live(refresh_token));
    assert!(!us.is_live(refresh_token), "tokens live in the user's data center only");
}

#[tokio::test]
async fn the_test_api_plays_the_user_over_http() {
    let us = start(frozen());
    let eu = start(FakeZohoConfig { location: "eu".to_owned(), ..frozen() });
    let api = |zoho: &FakeZoho, path: &str| format!("{}/_fake/{path}", zoho.url());

    let approved = start_device(&us, "offline").await;
    let response = http()
        .post(api(&us, "device/approve"))
        .json(&json!({ "user_code": approved["user_code"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let denied = start_device(&us, "offline").await;
    let response =
        http().post(api(&us, "device/deny")).json(&json!({ "user_code": denied["user_code"] })).send().await.unwrap();
    assert_eq!(response.status(), 204);
    let unknown = http().post(api(&us, "device/deny")).json(&json!({ "user_code": "NOPE" })).send().await.unwrap();
    assert_eq!(unknown.status(), 404);

    let moved = start_device(&us, "offline").await;
    let transfer: Value = http()
        .post(api(&us, "device/other-dc"))
        .json(&json!({ "user_code": moved["user_code"], "accounts_server": eu.url(), "location": "eu" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(transfer["device_code"], moved["device_code"]);
    eu.register_client(CLIENT_ID, CLIENT_SECRET);
    let response = http().post(api(&eu, "device/import")).json(&transfer).send().await.unwrap();
    assert_eq!(response.status(), 204);

    let listed: Value = http().get(api(&us, "device")).send().await.unwrap().json().await.unwrap();
    let decisions: Vec<&str> =
        listed.as_array().unwrap().iter().map(|d| d["decision"]["kind"].as_str().unwrap()).collect();
    let mut sorted = decisions.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["approved", "denied", "other_dc"]);
    assert_eq!(poll(&us, str_of(&moved, "device_code")).await.1["error"], "other_dc");
    assert!(poll(&eu, str_of(&moved, "device_code")).await.1["refresh_token"].is_string());
}

#[tokio::test]
async fn faults_and_latency_apply_to_the_device_endpoints() {
    let zoho = start(frozen());
    zoho.inject_fault(FaultRule::new(Fault::HttpStatus { status: 503 }).times(1));
    let form = [("client_id", CLIENT_ID), ("grant_type", "device_request"), ("scope", SCOPE)];
    let response = http().post(format!("{}/oauth/v3/device/code", zoho.url())).form(&form).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let started = start_device(&zoho, "offline").await;
    zoho.inject_fault(FaultRule::new(Fault::Garbage).times(1));
    let response = http()
        .post(format!("{}/oauth/v3/device/token", zoho.url()))
        .form(&[
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("grant_type", "device_token"),
            ("code", str_of(&started, "device_code")),
        ])
        .send()
        .await
        .unwrap();
    assert!(response.text().await.unwrap().starts_with("<!DOCTYPE html>"));
    assert_eq!(zoho.stats().totals.faulted, 2);
}

#[tokio::test]
async fn a_code_made_without_offline_access_exchanges_without_a_refresh_token() {
    let zoho = start(FakeZohoConfig::default());
    let online = zoho.issue_code(CLIENT_ID, None);
    zoho.make_code_online(&online);
    let created: Value = http()
        .post(format!("{}/_fake/codes", zoho.url()))
        .json(&json!({ "client_id": CLIENT_ID, "offline": false }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for code in [online.as_str(), str_of(&created, "code")] {
        let form = [
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("grant_type", "authorization_code"),
            ("code", code),
        ];
        let (status, body) = post(format!("{}/oauth/v2/token", zoho.url()), &form).await;
        assert_eq!(status, 200);
        assert!(zoho.is_live(str_of(&body, "access_token")));
        assert!(body.get("refresh_token").is_none(), "{body}");
    }
}
