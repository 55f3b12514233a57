//! Grant-code bootstrap in the operator: a credentials Secret holding a Self Client grant code
//! instead of a refresh token. The code is exchanged exactly once, the refresh token written back,
//! and the exchange's own access token served.

use std::time::Duration;

use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::api::{ObjectMeta, Patch, PatchParams};
use secrecy::SecretString;
use serde_json::json;
use testkit::fake_zoho::{FakeZohoConfig, Fault, FaultRule};
use zoho_token_operator::zoho::{AccountsClient, AccountsUrl, AllowList, GrantCode};

use crate::support::*;

fn grant_code_secret(code: &str) -> Secret {
    Secret {
        metadata: ObjectMeta { name: Some("zoho-oauth".into()), ..ObjectMeta::default() },
        data: Some(
            [("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET), ("grant_code", code)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// The window between Zoho's answer and the write-back, as the operator logged it.
fn logged_window_ms(operator: &Operator) -> Option<u64> {
    let logs = operator.logs();
    let line = logs.lines().find(|line| line.contains("back into the credentials Secret"))?;
    line.split("window_ms=").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

#[tokio::test]
async fn a_grant_code_is_exchanged_once_written_back_and_its_token_served() {
    let world = World::shared("grant-once", FakeZohoConfig::default()).await;
    let operator = world.operator(&[]);
    let code = world.fake.issue_code(CLIENT_ID, None);
    create(&world.secrets, &grant_code_secret(&code)).await;
    world.create_connection("crm", json!({})).await;

    let refresh_token = eventually(SETTLE, "the refresh token written back in place of the code", || async {
        let secret = world.secrets.get_opt("zoho-oauth").await.ok()??;
        (string_data(&secret, "grant_code").is_none()).then(|| string_data(&secret, "refresh_token")).flatten()
    })
    .await;
    assert!(world.fake.is_live(&refresh_token), "the written-back refresh token is the one Zoho issued");
    let token = eventually(SETTLE, "a live token in the target", || async {
        target_token(&world.secrets, "crm").await.filter(|t| world.fake.is_live(t))
    })
    .await;
    wait_ready(&world.connections, "crm", "True", "TokenIssued", SETTLE).await;
    assert_eq!(world.fake.token_info(&token).unwrap().refresh_token.as_deref(), Some(refresh_token.as_str()));
    let stats = world.fake.stats();
    assert_eq!(stats.totals.requests, 1, "one exchange, and no refresh on top of it: {stats:?}");
    assert_eq!(world.fake.mints(&refresh_token), 1, "the exchange's access token is the one served");
    let window = eventually(SETTLE, "the logged write-back window", || async { logged_window_ms(&operator) }).await;
    eprintln!("measured: the refresh token was written back {window} ms after Zoho answered the exchange");
    world.namespace.delete().await.ok();
}

#[tokio::test]
async fn a_used_code_is_refused_once_and_never_retried() {
    let world = World::shared("grant-used", FakeZohoConfig::default()).await;
    let code = world.fake.issue_code(CLIENT_ID, None);
    // Someone else already used the code.
    let url = AccountsUrl::parse(&world.fake.url()).unwrap();
    let client = AccountsClient::new(AllowList::new(vec![url.clone()]), Duration::from_secs(5), Duration::from_secs(5));
    let grant = GrantCode {
        client_id: CLIENT_ID.into(),
        client_secret: SecretString::from(CLIENT_SECRET),
        code: SecretString::from(code.clone()),
        redirect_uri: None,
    };
    client.exchange_code(&url, &grant).await.expect("the first use succeeds");

    let _operator = world.operator(&[]);
    create(&world.secrets, &grant_code_secret(&code)).await;
    world.create_connection("crm", json!({})).await;
    let zc = wait_ready(&world.connections, "crm", "False", "GrantCodeInvalid", SETTLE).await;
    let message = &zc.ready_condition().unwrap().message;
    assert!(message.contains("Generate Code") || message.contains("bootstrap"), "says how to make a code: {message}");
    assert!(!message.contains(&code), "{message}");
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(world.fake.stats().totals.requests, 2, "our exchange and the operator's one refused attempt");

    // A new code recovers.
    let fresh = world.fake.issue_code(CLIENT_ID, None);
    let patch = json!({"stringData": {"grant_code": fresh}});
    world.secrets.patch("zoho-oauth", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    wait_ready(&world.connections, "crm", "True", "TokenIssued", SETTLE).await;
    world.namespace.delete().await.ok();
}

#[tokio::test]
async fn an_operator_killed_between_exchange_and_write_back_reports_the_spent_code() {
    let world = World::shared("grant-killed", FakeZohoConfig::default()).await;
    // Zoho processes the exchange, but its answer never arrives: the code is spent, and the refresh
    // token it bought exists only at Zoho.
    world.fake.inject_fault(FaultRule::new(Fault::Hang).after_processing().times(1));
    let mut operator = world.operator(&[]);
    let code = world.fake.issue_code(CLIENT_ID, None);
    create(&world.secrets, &grant_code_secret(&code)).await;
    world.create_connection("crm", json!({})).await;
    eventually(SETTLE, "the exchange to reach Zoho", || async {
        (world.fake.stats().totals.requests >= 1).then_some(())
    })
    .await;
    operator.kill();

    let _operator = world.operator(&[]);
    let zc = wait_ready(&world.connections, "crm", "False", "GrantCodeInvalid", SETTLE).await;
    assert!(zc.ready_condition().unwrap().message.contains("minutes"), "says how fast to apply a new code");
    let secret = world.secrets.get("zoho-oauth").await.unwrap();
    assert_eq!(string_data(&secret, "grant_code"), Some(code), "the spent code stays for the user to replace");
    assert_eq!(string_data(&secret, "refresh_token"), None);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(world.fake.stats().totals.requests, 2, "the spent code is sent once more, then never again");
    world.namespace.delete().await.ok();
}
