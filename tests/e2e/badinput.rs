//! Bad input, end to end: whatever a user, a Secret editor or the accounts server hands the
//! operator, it reports a clear Ready condition, keeps running, does not loop, leaks no secret,
//! and loses no token that is still valid. README.md's "Bad input" table lists these tests.
//!
//! A hot loop is measured on the operator's own counter: `zoho_operator_reconciles_total` at the
//! start and end of a 30-second window in which nothing changes.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::TcpListener,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use base64::Engine;
use k8s_openapi::{
    api::core::v1::{ConfigMap, Secret},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api, ResourceExt,
    api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use testkit::fake_zoho::{FakeZoho, FakeZohoConfig, Fault};
use zoho_token_operator::api::{
    EXPIRES_AT_ANNOTATION, FINGERPRINT_ANNOTATION, ISSUED_AT_ANNOTATION, REFRESH_REQUESTED_AT_ANNOTATION,
    ZohoConnection,
};

use crate::support::*;

/// How long nothing may change for the hot-loop check.
const WINDOW: Duration = Duration::from_secs(30);
/// Reconciles allowed in the window when the input is static: the answer to it has been written,
/// and only the hourly recheck would look again.
const STATIC_BOUND: f64 = 5.0;

fn reconciles(operator: &Operator) -> f64 {
    operator.metric("zoho_operator_reconciles_total").expect("the operator serves its metrics")
}

/// Waits out the window and returns how many reconciles it saw. It starts a few seconds after
/// the last condition was seen, when the reconcile that the last status write set off is over.
async fn reconciles_over_window(operator: &Operator) -> f64 {
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = reconciles(operator);
    tokio::time::sleep(WINDOW).await;
    reconciles(operator) - before
}

/// Everything a user or an attacker could read: the log, the metrics and every connection.
async fn readable(operator: &Operator, connections: &Api<ZohoConnection>) -> Vec<(&'static str, String)> {
    let listed = connections.list(&ListParams::default()).await.expect("list connections").items;
    vec![
        ("operator log", operator.logs()),
        ("metrics", operator.metrics()),
        ("ZohoConnection objects", serde_json::to_string(&listed).unwrap()),
    ]
}

/// As tests/e2e/leaks.rs does: the distinctive middle of each value, raw and as it would look
/// base64- or URL-encoded.
fn assert_no_secret(haystacks: &[(&str, String)], needles: &[&str]) {
    for needle in needles {
        let core = &needle[needle.len() / 4..needle.len() * 3 / 4];
        let encoded = base64::engine::general_purpose::STANDARD.encode(needle);
        let forms = [core.to_string(), encoded[4..encoded.len() - 4].to_string(), core.replace('.', "%2E")];
        for (place, haystack) in haystacks {
            for form in &forms {
                assert!(!haystack.contains(form.as_str()), "{place} contains a secret ({needle:.12}…)");
            }
        }
    }
}

fn condition(zc: &ZohoConnection) -> (String, String, String) {
    let condition = zc.ready_condition().expect("a Ready condition");
    (condition.status.clone(), condition.reason.clone(), condition.message.clone())
}

/// The expiry the fake gave `token`, as the operator writes it.
fn fake_expiry(fake: &FakeZoho, token: &str) -> jiff::Timestamp {
    let millis = fake.token_info(token).and_then(|info| info.expires_at_ms).expect("a token the fake issued");
    jiff::Timestamp::from_millisecond(millis as i64).unwrap()
}

/// The Secret's token, if its annotations and data agree with each other and with the fake's
/// record of that token: the only state in which the operator may leave it.
fn vouched_token(secret: &Secret, fake: &FakeZoho) -> Option<String> {
    let token = string_data(secret, "access_token").filter(|t| fake.is_live(t))?;
    let annotations = secret.annotations();
    let expires: jiff::Timestamp = annotations.get(EXPIRES_AT_ANNOTATION)?.parse().ok()?;
    let issued: jiff::Timestamp = annotations.get(ISSUED_AT_ANNOTATION)?.parse().ok()?;
    let data_expiry: jiff::Timestamp = string_data(secret, "expires_at")?.parse().ok()?;
    let real = fake_expiry(fake, &token);
    let agrees = expires == data_expiry
        && issued < expires
        && (expires.as_second() - real.as_second()).abs() <= 3
        && annotations.contains_key(FINGERPRINT_ANNOTATION);
    agrees.then_some(token)
}

/// One edit of a target Secret's annotations and data.
struct AnnotationCase {
    name: &'static str,
    annotations: serde_json::Value,
    data: serde_json::Value,
}

fn annotation_cases(other_fingerprint: &str) -> Vec<AnnotationCase> {
    let times = |issued: &str, expires: &str| {
        (json!({ISSUED_AT_ANNOTATION: issued, EXPIRES_AT_ANNOTATION: expires}), json!({"expires_at": expires}))
    };
    let case =
        |name, (annotations, data): (serde_json::Value, serde_json::Value)| AnnotationCase { name, annotations, data };
    let mut blank = times("2099-12-31T23:00:00Z", "2100-01-01T00:00:00Z");
    blank.1["access_token"] = json!("");
    vec![
        case(
            "garbage",
            (json!({EXPIRES_AT_ANNOTATION: "next tuesday", ISSUED_AT_ANNOTATION: "\u{0}\u{7f}"}), json!({})),
        ),
        case("past-expiry", times("2020-01-01T00:00:00Z", "2020-01-01T01:00:00Z")),
        case("far-future-blank-token", blank),
        case("far-future-expiry", times("2026-01-01T00:00:00Z", "2100-01-01T00:00:00Z")),
        case("issued-in-the-future", times("2100-01-01T00:00:00Z", "2100-01-01T01:00:00Z")),
        case("end-of-time", times("9999-12-30T21:00:00Z", "9999-12-30T22:00:00.9Z")),
        case("other-fingerprint", (json!({FINGERPRINT_ANNOTATION: other_fingerprint}), json!({}))),
    ]
}

async fn edit(secrets: &Api<Secret>, name: &str, case: &AnnotationCase) {
    let patch = json!({"metadata": {"annotations": case.annotations}, "stringData": case.data});
    secrets.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("edit the target Secret");
}

#[tokio::test]
async fn badinput_target_annotations_edited_are_never_served() {
    let world = World::shared("bad-annotations", FakeZohoConfig::default()).await;
    let mut operator = world.operator(&[]);
    // Each case has a credential of its own, so that its mints are counted apart.
    let names: Vec<&str> = annotation_cases("").iter().map(|case| case.name).collect();
    let refresh = |name: &str| format!("1000.SENTINEL-refresh-{name}");
    for name in &names {
        world.fake.register_refresh_token(CLIENT_ID, &refresh(name));
        create(&world.secrets, &credentials_secret(&format!("creds-{name}"), CLIENT_ID, CLIENT_SECRET, &refresh(name)))
            .await;
        create(&world.connections, &connection(name, &format!("creds-{name}"), &world.fake, json!({}))).await;
    }
    let mut first = BTreeMap::new();
    for name in &names {
        first.insert(*name, world.live_token(name).await);
    }
    let other_fingerprint = world.secrets.get(names[0]).await.unwrap().annotations()[FINGERPRINT_ANNOTATION].clone();
    let cases = annotation_cases(&other_fingerprint);

    // With the token in memory: the edit is undone, and nothing is minted.
    for case in &cases {
        edit(&world.secrets, case.name, case).await;
    }
    for case in &cases {
        let restored = eventually(SETTLE, &format!("{}: the edit to be undone", case.name), || async {
            vouched_token(&world.secrets.get_opt(case.name).await.ok()??, &world.fake)
        })
        .await;
        assert_eq!(restored, first[case.name], "{}: the token in memory is restored", case.name);
        assert_eq!(world.fake.mints(&refresh(case.name)), 1, "{}: nothing is minted", case.name);
    }

    // With nothing in memory: a restarted operator finds only the edited Secret, cannot vouch for
    // it, and mints once.
    operator.kill();
    for case in &cases {
        edit(&world.secrets, case.name, case).await;
    }
    let operator = world.operator(&[]);
    for case in &cases {
        let second = eventually(SETTLE, &format!("{}: a token the operator can vouch for", case.name), || async {
            vouched_token(&world.secrets.get_opt(case.name).await.ok()??, &world.fake)
                .filter(|token| *token != first[case.name])
        })
        .await;
        let zc = wait_ready(&world.connections, case.name, "True", "TokenIssued", SETTLE).await;
        let expires = zc.status.unwrap().common.expires_at.unwrap().0;
        assert!((expires.as_second() - fake_expiry(&world.fake, &second).as_second()).abs() <= 3, "{}", case.name);
    }
    let reconciled = reconciles_over_window(&operator).await;
    for case in &cases {
        assert_eq!(world.fake.mints(&refresh(case.name)), 2, "{}: re-minted once, and only once", case.name);
    }
    assert!(reconciled <= STATIC_BOUND, "{reconciled} reconciles in {WINDOW:?}: a hot loop");
    assert!(operator.is_running(), "the operator survived every edit:\n{}", operator.logs());
    let mut needles: Vec<String> = names.iter().map(|name| refresh(name)).collect();
    needles.push(CLIENT_SECRET.to_string());
    needles.extend(first.values().cloned());
    assert_no_secret(
        &readable(&operator, &world.connections).await,
        &needles.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    eprintln!("measured: {} annotation edits, {reconciled} reconciles in {WINDOW:?} after settling", cases.len());
    world.namespace.delete().await.ok();
}

/// A credentials Secret with raw JSON values, which the typed API cannot express (null).
async fn raw_secret(world: &World<'_>, name: &str, data: serde_json::Value) {
    let client = world.cluster.client().await.unwrap();
    let secrets: Api<DynamicObject> =
        Api::namespaced_with(client, world.namespace.name(), &ApiResource::erase::<Secret>(&()));
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": data,
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &object).await.expect("create the credentials Secret");
}

#[tokio::test]
async fn badinput_credentials_that_cannot_be_used_are_never_sent() {
    let world = World::shared("bad-credentials", FakeZohoConfig::default()).await;
    let operator = world.operator(&[]);
    let b64 = |value: &[u8]| base64::engine::general_purpose::STANDARD.encode(value);
    let secret = b64(b"SENTINEL-badcred-client-secret");
    let refresh = b64(b"1000.SENTINEL-badcred-refresh");
    let long = b64(&vec![b'7'; (1 << 20) - 1024]);
    // (connection, data, reason, what the message must say)
    let cases = [
        (
            "empty",
            json!({"client_id": b64(b"1000.ID"), "client_secret": "", "refresh_token": refresh}),
            "InvalidCredentialsSecret",
            "\"client_secret\" is empty",
        ),
        (
            "whitespace",
            json!({"client_id": b64(b"1000.ID"), "client_secret": secret, "refresh_token": b64(b" \n\t ")}),
            "InvalidCredentialsSecret",
            "\"refresh_token\" is empty",
        ),
        (
            "not-utf8",
            json!({"client_id": b64(b"\xff\xfe1000"), "client_secret": secret, "refresh_token": refresh}),
            "InvalidCredentialsSecret",
            "\"client_id\" is not UTF-8 text",
        ),
        (
            "nearly-1mib",
            json!({"client_id": b64(b"1000.ID"), "client_secret": secret, "refresh_token": long}),
            "InvalidCredentialsSecret",
            "\"refresh_token\" is longer than 4096 bytes",
        ),
        (
            "null",
            json!({"client_id": b64(b"1000.ID"), "client_secret": secret, "refresh_token": null}),
            "InvalidCredentialsSecret",
            "\"refresh_token\" is empty",
        ),
        (
            "key-missing",
            json!({"client_id": b64(b"1000.ID"), "client_secret": secret}),
            "CredentialsKeyMissing",
            "neither key \"refresh_token\"",
        ),
    ];
    for (name, data, ..) in &cases {
        raw_secret(&world, &format!("creds-{name}"), data.clone()).await;
        create(&world.connections, &connection(name, &format!("creds-{name}"), &world.fake, json!({}))).await;
    }
    for (name, _, reason, says) in &cases {
        let zc = wait_ready(&world.connections, name, "False", reason, SETTLE).await;
        let (_, _, message) = condition(&zc);
        assert!(message.contains(&format!("creds-{name}")) && message.contains(says), "{name}: {message}");
    }
    let reconciled = reconciles_over_window(&operator).await;
    assert!(reconciled <= STATIC_BOUND, "{reconciled} reconciles in {WINDOW:?}: a hot loop");
    assert_eq!(world.fake.stats().totals.requests, 0, "nothing unusable is sent to Zoho");
    assert!(operator.is_running());
    assert_no_secret(
        &readable(&operator, &world.connections).await,
        &["SENTINEL-badcred-client-secret", "1000.SENTINEL-badcred-refresh"],
    );
    eprintln!("measured: {} unusable credentials, {reconciled} reconciles in {WINDOW:?}", cases.len());
    world.namespace.delete().await.ok();
}

#[tokio::test]
async fn badinput_credentials_secret_replaced_by_a_configmap_keeps_the_token() {
    let world = World::shared("bad-configmap", FakeZohoConfig::default()).await;
    let operator = world.operator(&[]);
    world.create_credentials("zoho-oauth").await;
    world.create_connection("crm", json!({})).await;
    let token = world.live_token("crm").await;

    world.secrets.delete("zoho-oauth", &DeleteParams::default()).await.unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(world.cluster.client().await.unwrap(), world.namespace.name());
    let data =
        [("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET), ("refresh_token", world.refresh_token.as_str())];
    let lookalike = ConfigMap {
        metadata: ObjectMeta { name: Some("zoho-oauth".into()), ..ObjectMeta::default() },
        data: Some(data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        ..ConfigMap::default()
    };
    config_maps.create(&PostParams::default(), &lookalike).await.unwrap();

    let zc = wait_ready(&world.connections, "crm", "False", "CredentialsSecretNotFound", SETTLE).await;
    let (_, _, message) = condition(&zc);
    assert!(
        message.contains("\"zoho-oauth\" does not exist") && message.contains("keeps its current token"),
        "{message}"
    );
    let reconciled = reconciles_over_window(&operator).await;
    assert!(reconciled <= STATIC_BOUND, "{reconciled} reconciles in {WINDOW:?}: a hot loop");
    assert_eq!(target_token(&world.secrets, "crm").await, Some(token.clone()), "the valid token stays");
    assert!(world.fake.is_live(&token));
    assert_eq!(world.fake.stats().totals.requests, 1, "only the first mint reached Zoho");
    assert!(operator.is_running());
    assert_no_secret(&readable(&operator, &world.connections).await, &[CLIENT_SECRET, &world.refresh_token, &token]);
    eprintln!("measured: credentials Secret replaced by a ConfigMap, {reconciled} reconciles in {WINDOW:?}");
    world.namespace.delete().await.ok();
}

#[tokio::test]
async fn badinput_accounts_urls_off_the_allow_list_receive_nothing() {
    let world = World::shared("bad-accounts", FakeZohoConfig::default()).await;
    // A server on this machine that is not on the allow-list, standing in for any other.
    let stranger = FakeZoho::start(FakeZohoConfig::default());
    let operator = world.operator(&[]);
    world.create_credentials("zoho-oauth").await;
    let port = stranger.addr().port();
    let cases = [
        (
            "metadata",
            "http://169.254.169.254".to_string(),
            "AccountsUrlNotAllowed",
            "not allowed to receive credentials",
        ),
        ("loopback", stranger.url(), "AccountsUrlNotAllowed", "--allow-accounts-url"),
        ("userinfo", "https://accounts.zoho.com@evil.example".to_string(), "InvalidAccountsUrl", "user information"),
        (
            "userinfo-loopback",
            format!("http://{}@127.0.0.1:{port}", world.fake.url().trim_start_matches("http://")),
            "InvalidAccountsUrl",
            "user information",
        ),
    ];
    for (name, url, ..) in &cases {
        world.create_connection(name, json!({"accountsUrl": url})).await;
    }
    for (name, url, reason, says) in &cases {
        let zc = wait_ready(&world.connections, name, "False", reason, SETTLE).await;
        let (_, _, message) = condition(&zc);
        assert!(message.contains(says), "{name} ({url}): {message}");
    }
    let reconciled = reconciles_over_window(&operator).await;
    assert!(reconciled <= STATIC_BOUND, "{reconciled} reconciles in {WINDOW:?}: a hot loop");
    assert_eq!(stranger.stats().totals.requests, 0, "a server off the allow-list received a request");
    assert_eq!(world.fake.stats().totals.requests, 0, "nothing was sent anywhere");
    assert!(operator.is_running());
    assert_no_secret(&readable(&operator, &world.connections).await, &[CLIENT_SECRET, &world.refresh_token]);
    eprintln!("measured: {} accounts URLs, {reconciled} reconciles in {WINDOW:?}", cases.len());
    world.namespace.delete().await.ok();
}

/// A server that answers every request with a redirect to `location`, and counts the requests.
fn redirector(location: String) -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicU64::new(0));
    let counted = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counted.fetch_add(1, Ordering::SeqCst);
            stream.set_read_timeout(Some(Duration::from_secs(2))).ok();
            let mut request = [0u8; 16 * 1024];
            let _ = stream.read(&mut request);
            let answer =
                format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    (url, requests)
}

#[tokio::test]
async fn badinput_a_redirect_is_not_followed() {
    let world = World::shared("bad-redirect", FakeZohoConfig::default()).await;
    // The redirect points at a working accounts server, which would mint if the client followed.
    let (redirecting, requests) = redirector(world.fake.token_url());
    let operator = world.operator(&["--allow-accounts-url", &redirecting]);
    world.create_credentials("zoho-oauth").await;
    world.create_connection("crm", json!({"accountsUrl": redirecting})).await;

    let zc = wait_ready(&world.connections, "crm", "False", "MalformedResponse", SETTLE).await;
    let (_, _, message) = condition(&zc);
    assert!(message.contains("HTTP 302") && message.contains("not followed"), "{message}");
    let (before, reconciles_before) = (requests.load(Ordering::SeqCst), reconciles(&operator));
    tokio::time::sleep(WINDOW).await;
    let attempts = requests.load(Ordering::SeqCst) - before;
    let reconciled = reconciles(&operator) - reconciles_before;
    // The backoff from 5 s fits at most four attempts into 30 s; each attempt is one reconcile,
    // and one more for the status it writes.
    assert!((1..=4).contains(&attempts), "{attempts} attempts in {WINDOW:?}");
    assert!(reconciled <= 2.0 * attempts as f64 + 2.0, "{reconciled} reconciles for {attempts} attempts");
    assert_eq!(world.fake.stats().totals.requests, 0, "the redirect's target received a request");
    assert!(world.secrets.get_opt("crm").await.unwrap().is_none());
    assert!(operator.is_running());
    assert_no_secret(&readable(&operator, &world.connections).await, &[CLIENT_SECRET, &world.refresh_token]);
    eprintln!("measured: redirect: {attempts} attempts and {reconciled} reconciles in {WINDOW:?}, none followed");
    world.namespace.delete().await.ok();
}

#[tokio::test]
async fn badinput_hostile_templates_are_refused_before_a_mint() {
    let world = World::shared("bad-templates", FakeZohoConfig::default()).await;
    let operator = world.operator(&[]);
    world.create_credentials("zoho-oauth").await;
    // (connection, template, what the message must say)
    let cases = [
        ("engine-panic", "{{ '%(é'|format(access_token) }}", "unknown filter"),
        ("huge-list", "{{ [access_token] * 100000000 }}", "cannot be printed"),
        ("fuel", "{% for x in range(100000) %}{% for y in range(100000) %}{% endfor %}{% endfor %}", "fuel"),
    ];
    for (name, source, _) in &cases {
        world.create_connection(name, json!({"target": {"template": {"data": {"key": source}}}})).await;
    }
    for (name, _, says) in &cases {
        let zc = wait_ready(&world.connections, name, "False", "InvalidTemplate", SETTLE).await;
        let (_, _, message) = condition(&zc);
        assert!(message.contains("template.data[\"key\"]") && message.contains(says), "{name}: {message}");
    }
    let reconciled = reconciles_over_window(&operator).await;
    assert!(reconciled <= STATIC_BOUND, "{reconciled} reconciles in {WINDOW:?}: a hot loop");
    assert_eq!(world.fake.stats().totals.requests, 0, "nothing is minted for a template that cannot render");
    assert!(operator.is_running(), "a template crashed the operator:\n{}", operator.logs());
    assert_no_secret(&readable(&operator, &world.connections).await, &[CLIENT_SECRET, &world.refresh_token]);
    eprintln!("measured: {} hostile templates, {reconciled} reconciles in {WINDOW:?}", cases.len());
    world.namespace.delete().await.ok();
}

#[tokio::test]
async fn badinput_two_hundred_labels_are_served() {
    let world = World::shared("bad-labels", FakeZohoConfig::default()).await;
    let operator = world.operator(&[]);
    world.create_credentials("zoho-oauth").await;
    let labels: BTreeMap<String, String> =
        (0..200).map(|i| (format!("label-{i:03}"), format!("value-{i:03}"))).collect();
    let mut crm = connection("crm", "zoho-oauth", &world.fake, json!({"target": {"labels": labels}}));
    crm.metadata.labels = Some(labels.clone());
    create(&world.connections, &crm).await;

    let token = world.live_token("crm").await;
    wait_ready(&world.connections, "crm", "True", "TokenIssued", SETTLE).await;
    let secret = world.secrets.get("crm").await.unwrap();
    assert!(labels.iter().all(|(k, v)| secret.labels().get(k) == Some(v)), "every label reaches the Secret");
    assert_eq!(secret.labels().len(), 201, "200 labels and managed-by");
    let reconciled = reconciles_over_window(&operator).await;
    assert!(reconciled <= STATIC_BOUND, "{reconciled} reconciles in {WINDOW:?}: a hot loop");
    assert_eq!(world.fake.mints(&world.refresh_token), 1);
    assert_eq!(target_token(&world.secrets, "crm").await, Some(token.clone()));
    assert!(operator.is_running());
    assert_no_secret(&readable(&operator, &world.connections).await, &[CLIENT_SECRET, &world.refresh_token, &token]);
    eprintln!("measured: 200 labels, {reconciled} reconciles in {WINDOW:?}");
    world.namespace.delete().await.ok();
}

#[tokio::test]
async fn badinput_a_thousand_connections_contend_for_one_target_secret() {
    const CONNECTIONS: usize = 1000;
    let world = World::shared("bad-thousand", FakeZohoConfig::default()).await;
    let operator = world.operator(&[]);
    world.create_credentials("zoho-oauth").await;
    let started = Instant::now();
    let names: Vec<String> = (0..CONNECTIONS).map(|i| format!("app-{i:04}")).collect();
    for chunk in names.chunks(25) {
        futures::future::join_all(
            chunk.iter().map(|name| world.create_connection(name, json!({"target": {"secretName": "shared"}}))),
        )
        .await;
    }
    let created = started.elapsed();

    let settle = Duration::from_secs(300);
    let (winner, losers) = eventually(settle, "one owner and 999 TargetSecretNotOwned", || async {
        // A list of 1,000 objects is heavy; every 2 s is often enough.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let listed = world.connections.list(&ListParams::default()).await.ok()?.items;
        let reason = |zc: &ZohoConnection| zc.ready_condition().map(|c| c.reason.clone()).unwrap_or_default();
        let issued: Vec<&ZohoConnection> = listed.iter().filter(|zc| reason(zc) == "TokenIssued").collect();
        let losers = listed.iter().filter(|zc| reason(zc) == "TargetSecretNotOwned").count();
        (listed.len() == CONNECTIONS && issued.len() == 1 && losers == CONNECTIONS - 1)
            .then(|| (issued[0].name_any(), losers))
    })
    .await;
    let settled = started.elapsed();
    let secret = world.secrets.get("shared").await.unwrap();
    let owner = secret.owner_references().iter().find(|r| r.controller == Some(true)).map(|r| r.name.clone());
    assert_eq!(owner.as_deref(), Some(winner.as_str()), "the Ready connection controls the Secret");
    let token = vouched_token(&secret, &world.fake).expect("the winner's token is live and consistent");

    let reconciled = reconciles_over_window(&operator).await;
    assert!(reconciled <= STATIC_BOUND, "{reconciled} reconciles in {WINDOW:?}: a hot loop");
    let after = world.secrets.get("shared").await.unwrap();
    assert_eq!(after.owner_references(), secret.owner_references(), "the owner did not change");
    assert_eq!(string_data(&after, "access_token"), Some(token.clone()));
    assert_eq!(world.fake.mints(&world.refresh_token), 1, "one credential, one token");
    assert!(operator.is_running());
    assert_no_secret(&readable(&operator, &world.connections).await, &[CLIENT_SECRET, &world.refresh_token, &token]);
    eprintln!(
        "measured: {CONNECTIONS} connections created in {created:.1?}, settled ({losers} TargetSecretNotOwned) \
         {settled:.1?} after the first; {reconciled} reconciles in {WINDOW:?}"
    );
    world.namespace.delete().await.ok();
}

#[tokio::test]
async fn badinput_answers_with_wrong_types_keep_the_token() {
    let world = World::shared("bad-types", FakeZohoConfig::default()).await;
    // (connection, the answer's expires_in, what the condition must say)
    let cases = [
        ("string", json!("3600"), "expires_in is not a non-negative integer"),
        ("negative", json!(-3600), "expires_in is not a non-negative integer"),
        ("zero", json!(0), "expires_in is outside 1 second to 1 day"),
        ("trillion", json!(1_000_000_000_000u64), "expires_in is outside 1 second to 1 day"),
    ];
    // A fake per case: an injected answer applies to every request a fake receives.
    let fakes: Vec<FakeZoho> = cases
        .iter()
        .map(|_| {
            let fake = FakeZoho::start(FakeZohoConfig::default());
            fake.register_client(CLIENT_ID, CLIENT_SECRET);
            fake.register_refresh_token(CLIENT_ID, &world.refresh_token);
            fake
        })
        .collect();
    let mut args = Vec::new();
    for fake in &fakes {
        args.extend(["--allow-accounts-url".to_string(), fake.url()]);
    }
    let operator = world.operator(&args.iter().map(String::as_str).collect::<Vec<_>>());
    world.create_credentials("zoho-oauth").await;
    for ((name, ..), fake) in cases.iter().zip(&fakes) {
        create(&world.connections, &connection(name, "zoho-oauth", fake, json!({}))).await;
    }
    let mut tokens = Vec::new();
    for ((name, ..), fake) in cases.iter().zip(&fakes) {
        let token = eventually(SETTLE, &format!("{name}: a first token"), || async {
            target_token(&world.secrets, name).await.filter(|t| fake.is_live(t))
        })
        .await;
        tokens.push(token);
    }

    for ((name, expires_in, _), fake) in cases.iter().zip(&fakes) {
        let body = json!({"access_token": "1000.WRONGTYPE", "api_domain": "https://www.zohoapis.com", "token_type": "Bearer", "expires_in": expires_in});
        fake.inject_fault(Fault::Custom { status: 200, body: body.to_string() });
        let patch = json!({"metadata": {"annotations": {REFRESH_REQUESTED_AT_ANNOTATION: "badinput-1"}}});
        world.connections.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    }
    for (name, _, says) in &cases {
        let zc = wait_ready(&world.connections, name, "True", "MalformedResponse", SETTLE).await;
        let (_, _, message) = condition(&zc);
        assert!(message.contains(says) && message.contains("keeps its current token"), "{name}: {message}");
    }
    let requests = |fakes: &[FakeZoho]| fakes.iter().map(|fake| fake.stats().totals.requests).collect::<Vec<_>>();
    let (before, reconciles_before) = (requests(&fakes), reconciles(&operator));
    tokio::time::sleep(WINDOW).await;
    let attempts: Vec<u64> = requests(&fakes).iter().zip(&before).map(|(after, before)| after - before).collect();
    let reconciled = reconciles(&operator) - reconciles_before;
    for ((name, ..), attempts) in cases.iter().zip(&attempts) {
        assert!(*attempts <= 4, "{name}: {attempts} attempts in {WINDOW:?}, beyond the backoff");
    }
    let total: u64 = attempts.iter().sum();
    assert!(
        reconciled <= 2.0 * total as f64 + 2.0 * cases.len() as f64,
        "{reconciled} reconciles for {total} attempts"
    );
    for (((name, ..), fake), token) in cases.iter().zip(&fakes).zip(&tokens) {
        assert_eq!(target_token(&world.secrets, name).await.as_ref(), Some(token), "{name}: the token stays");
        assert!(fake.is_live(token), "{name}");
        assert_eq!(fake.mints(&world.refresh_token), 1, "{name}: the bad answers minted nothing usable");
    }
    assert!(operator.is_running());
    let mut needles = vec![CLIENT_SECRET, world.refresh_token.as_str()];
    needles.extend(tokens.iter().map(String::as_str));
    assert_no_secret(&readable(&operator, &world.connections).await, &needles);
    eprintln!("measured: wrong-typed answers: attempts {attempts:?} and {reconciled} reconciles in {WINDOW:?}");
    world.namespace.delete().await.ok();
}
