//! The operator's core promise, end to end: a ZohoConnection becomes a live token in a Secret,
//! kept fresh, restored when lost, and never minted without need.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use kube::{
    Api, ResourceExt,
    api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams},
};
use serde_json::json;
use testkit::{
    control_plane::{shared, test_namespace},
    fake_zoho::{FakeZoho, FakeZohoConfig},
};
use zoho_token_operator::api::{MANAGED_BY_LABEL, ZohoConnection};

use crate::support::*;

#[tokio::test]
async fn a_new_connection_gets_a_live_token_secret_and_status() {
    let world = World::shared("core-new", FakeZohoConfig::default()).await;
    let _operator = world.operator(&[]);
    world.create_credentials("zoho-oauth").await;
    world.create_connection("crm", json!({"target": {"secretName": "crm-token", "labels": {"team": "sales"}}})).await;

    let token = world.live_token("crm-token").await;
    let zc = wait_ready(&world.connections, "crm", "True", "TokenIssued", SETTLE).await;
    let secret = world.secrets.get("crm-token").await.unwrap();
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    assert_eq!(string_data(&secret, "token_type").as_deref(), Some("Bearer"));
    assert_eq!(string_data(&secret, "api_domain").as_deref(), Some("https://www.zohoapis.com"));
    assert_eq!(secret.labels().get(MANAGED_BY_LABEL).map(String::as_str), Some("zoho-token-operator"));
    assert_eq!(secret.labels().get("team").map(String::as_str), Some("sales"));
    let owner = &secret.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("ZohoConnection", zc.uid().unwrap().as_str(), Some(true))
    );
    assert!(secret.annotations().keys().any(|k| k == "zoho-operator.dev/credentials-fingerprint"));

    let status = zc.status.clone().unwrap();
    assert_eq!(status.secret_name.as_deref(), Some("crm-token"));
    assert_eq!(status.observed_generation, zc.metadata.generation);
    let expires_at = status.expires_at.clone().unwrap().0;
    assert_eq!(string_data(&secret, "expires_at"), Some(expires_at.to_string()));
    let info = world.fake.token_info(&token).unwrap();
    let fake_expiry_ms = info.expires_at_ms.unwrap() as i64;
    assert!((expires_at.as_millisecond() - fake_expiry_ms).abs() < 3000, "status expiry matches the token's");
    // Default refreshBefore is a third of the one-hour lifetime.
    let next = status.next_refresh_time.clone().unwrap().0;
    assert_eq!(expires_at.duration_since(next).as_secs(), 20 * 60, "next refresh 20 minutes before expiry");
    assert_eq!(world.fake.mints(&world.refresh_token), 1);
    world.namespace.delete().await.ok();
}

#[tokio::test]
async fn tokens_are_refreshed_before_expiry_once_per_period() {
    let config = FakeZohoConfig { token_lifetime: Duration::from_secs(9), ..FakeZohoConfig::default() };
    let world = World::shared("core-refresh", config).await;
    let _operator = world.operator(&[]);
    world.create_credentials("zoho-oauth").await;
    world.create_connection("crm", json!({})).await;
    world.live_token("crm").await;

    // With 9 s tokens and the default margin of a third, a new token is due every 6 s.
    let started = Instant::now();
    let mut seen = BTreeSet::new();
    while started.elapsed() < Duration::from_secs(20) {
        let token = target_token(&world.secrets, "crm").await.expect("the Secret always holds a token");
        assert!(world.fake.is_live(&token), "the token in the Secret expired before it was replaced");
        seen.insert(token);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mints = world.fake.mints(&world.refresh_token);
    assert!((4..=5).contains(&mints), "expected one mint every 6 s over 20 s plus the first, got {mints}");
    assert_eq!(seen.len() as u64, mints, "every minted token reached the Secret, and nothing else was minted");
    world.namespace.delete().await.ok();
}

#[tokio::test]
async fn changed_credentials_cause_a_new_mint() {
    let world = World::shared("core-creds", FakeZohoConfig::default()).await;
    let _operator = world.operator(&[]);
    world.create_credentials("zoho-oauth").await;
    world.create_connection("crm", json!({})).await;
    let first = world.live_token("crm").await;

    let rotated = "1000.refresh-rotated";
    world.fake.register_refresh_token(CLIENT_ID, rotated);
    let patch = json!({"stringData": {"refresh_token": rotated}});
    world.secrets.patch("zoho-oauth", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();

    let second = eventually(SETTLE, "a token minted from the rotated refresh token", || async {
        let token = target_token(&world.secrets, "crm").await?;
        (token != first).then_some(token)
    })
    .await;
    assert_eq!(world.fake.token_info(&second).unwrap().refresh_token.as_deref(), Some(rotated));
    assert_eq!(world.fake.mints(rotated), 1);
    assert_eq!(world.fake.mints(&world.refresh_token), 1);
    world.namespace.delete().await.ok();
}

#[tokio::test]
async fn a_deleted_target_secret_is_restored_without_minting() {
    let world = World::shared("core-restore", FakeZohoConfig::default()).await;
    let _operator = world.operator(&[]);
    world.create_credentials("zoho-oauth").await;
    world.create_connection("crm", json!({})).await;
    let token = world.live_token("crm").await;

    world.secrets.delete("crm", &DeleteParams::default()).await.unwrap();
    let restored = eventually(SETTLE, "the target Secret to come back", || async {
        let secret = world.secrets.get_opt("crm").await.ok()??;
        secret.metadata.deletion_timestamp.is_none().then(|| string_data(&secret, "access_token")).flatten()
    })
    .await;
    assert_eq!(restored, token, "the still-valid token is restored from memory");

    // An edit that blanks the token is repaired the same way.
    let blank = json!({"data": {"access_token": ""}});
    world.secrets.patch("crm", &PatchParams::default(), &Patch::Merge(&blank)).await.unwrap();
    let repaired = eventually(SETTLE, "the blanked token to be repaired", || async {
        target_token(&world.secrets, "crm").await.filter(|t| !t.is_empty())
    })
    .await;
    assert_eq!(repaired, token);
    assert_eq!(world.fake.mints(&world.refresh_token), 1);
    world.namespace.delete().await.ok();
}

#[tokio::test]
async fn a_restarted_operator_reuses_the_stored_token() {
    let world = World::shared("core-restart", FakeZohoConfig::default()).await;
    let mut operator = world.operator(&[]);
    world.create_credentials("zoho-oauth").await;
    world.create_connection("crm", json!({})).await;
    let token = world.live_token("crm").await;
    operator.kill();

    let operator = world.operator(&[]);
    // A label edit changes the spec, so the new process must reconcile, and it must not mint.
    world.label_target_and_wait("crm", "crm", "edited").await;
    let zc = world.connections.get("crm").await.unwrap();
    assert_eq!(zc.status.unwrap().observed_generation, zc.metadata.generation);
    assert_eq!(target_token(&world.secrets, "crm").await, Some(token));
    assert_eq!(world.fake.stats().totals.requests, 1, "the restart sent no request to Zoho");
    assert!(operator.logs().contains("controller running"));
    world.namespace.delete().await.ok();
}

#[tokio::test]
async fn a_foreign_secret_is_left_untouched_with_a_clear_condition() {
    let world = World::shared("core-foreign", FakeZohoConfig::default()).await;
    let operator = world.operator(&[]);
    world.create_credentials("zoho-oauth").await;
    let foreign = credentials_secret("crm", "someone", "else's", "secret");
    create(&world.secrets, &foreign).await;
    world.create_connection("crm", json!({})).await;

    let zc = wait_ready(&world.connections, "crm", "False", "TargetSecretNotOwned", SETTLE).await;
    let message = &zc.ready_condition().unwrap().message;
    assert!(message.contains("\"crm\"") && message.contains("not controlled"), "{message}");
    let untouched = world.secrets.get("crm").await.unwrap();
    assert_eq!(untouched.data, foreign.data);
    assert!(untouched.owner_references().is_empty());
    assert_eq!(world.fake.stats().totals.requests, 0, "nothing is minted for a target it cannot write");
    // The problem is reported once; the status write must not set off a reconcile loop. The one
    // follow-up reconcile it causes comes after the controller's debounce (500 ms).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reconciles = operator.metric("zoho_operator_reconciles_total").unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(operator.metric("zoho_operator_reconciles_total"), Some(reconciles), "reconciles kept coming");

    // Once the foreign Secret is gone, the operator takes the name.
    world.secrets.delete("crm", &DeleteParams::default()).await.unwrap();
    world.live_token("crm").await;
    wait_ready(&world.connections, "crm", "True", "TokenIssued", SETTLE).await;
    world.namespace.delete().await.ok();
}

#[tokio::test]
async fn a_target_owned_by_another_connection_is_not_taken_over() {
    let world = World::shared("core-contested", FakeZohoConfig::default()).await;
    let _operator = world.operator(&[]);
    world.create_credentials("zoho-oauth").await;
    world.create_connection("first", json!({"target": {"secretName": "shared-name"}})).await;
    let token = world.live_token("shared-name").await;
    world.create_connection("second", json!({"target": {"secretName": "shared-name"}})).await;

    let zc = wait_ready(&world.connections, "second", "False", "TargetSecretNotOwned", SETTLE).await;
    let message = &zc.ready_condition().unwrap().message;
    assert!(message.contains("ZohoConnection first"), "{message}");
    let secret = world.secrets.get("shared-name").await.unwrap();
    assert_eq!(secret.owner_references()[0].name, "first");
    assert_eq!(string_data(&secret, "access_token"), Some(token));
    wait_ready(&world.connections, "first", "True", "TokenIssued", SETTLE).await;
    world.namespace.delete().await.ok();
}

#[tokio::test]
async fn missing_credentials_give_a_clear_condition_and_recover() {
    let world = World::shared("core-missing", FakeZohoConfig::default()).await;
    let _operator = world.operator(&[]);
    world.create_connection("crm", json!({})).await;
    wait_ready(&world.connections, "crm", "False", "CredentialsSecretNotFound", SETTLE).await;

    let mut incomplete = credentials_secret("zoho-oauth", CLIENT_ID, CLIENT_SECRET, &world.refresh_token);
    incomplete.data.as_mut().unwrap().remove("refresh_token");
    create(&world.secrets, &incomplete).await;
    let zc = wait_ready(&world.connections, "crm", "False", "CredentialsKeyMissing", SETTLE).await;
    assert!(zc.ready_condition().unwrap().message.contains("refresh_token"));

    let fix = json!({"stringData": {"refresh_token": format!("{}\n", world.refresh_token)}});
    world.secrets.patch("zoho-oauth", &PatchParams::default(), &Patch::Merge(&fix)).await.unwrap();
    world.live_token("crm").await;
    let zc = wait_ready(&world.connections, "crm", "True", "TokenIssued", SETTLE).await;
    assert_eq!(zc.status.unwrap().failed_attempts, 0);
    world.namespace.delete().await.ok();
}

#[tokio::test]
async fn an_accounts_url_off_the_allow_list_never_receives_a_request() {
    let world = World::shared("core-allow", FakeZohoConfig::default()).await;
    let stranger = FakeZoho::start(FakeZohoConfig::default());
    let _operator = world.operator(&[]);
    world.create_credentials("zoho-oauth").await;
    world.create_connection("crm", json!({"accountsUrl": stranger.url()})).await;

    let zc = wait_ready(&world.connections, "crm", "False", "AccountsUrlNotAllowed", SETTLE).await;
    assert!(zc.ready_condition().unwrap().message.contains(&stranger.url()));
    assert_eq!(stranger.stats().totals.requests, 0);
    assert!(world.secrets.get_opt("crm").await.unwrap().is_none());
    world.namespace.delete().await.ok();
}

#[tokio::test]
async fn invalid_specs_are_rejected_at_admission() {
    let cluster = shared().await;
    let client = cluster.client().await.expect("client");
    install_crd(&client).await;
    let namespace = test_namespace(&client, "core-admission").await.expect("namespace");
    // Raw objects, because the Rust types cannot even express some of these mistakes.
    let resource = ApiResource::erase::<ZohoConnection>(&());
    let connections: Api<DynamicObject> = Api::namespaced_with(client, namespace.name(), &resource);
    let object = |name: &str, spec: serde_json::Value| -> DynamicObject {
        let mut full = json!({"credentials": {"secretRef": {"name": "zoho-oauth"}}});
        full.as_object_mut().unwrap().extend(spec.as_object().unwrap().clone());
        serde_json::from_value(json!({
            "apiVersion": "zoho-operator.dev/v1alpha1", "kind": "ZohoConnection",
            "metadata": {"name": name}, "spec": full,
        }))
        .unwrap()
    };
    let cases = [
        (json!({"refreshBefore": "20 minutes"}), "Go duration"),
        (json!({"refreshBefore": "-5m"}), "Go duration"),
        (json!({"accountsUrl": "https://accounts.zoho.eu/oauth/v2/token"}), "without a path"),
        (json!({"accountsUrl": "ftp://accounts.zoho.eu"}), "http(s) origin"),
        (json!({"dataCenter": "MARS"}), "Unsupported value"),
        (json!({"target": {"secretName": "Not_A_Name"}}), "valid Secret name"),
        (json!({"credentials": {"secretRef": {"name": ""}}}), "valid Secret name"),
        (json!({"credentials": {"secretRef": {"name": "x"}, "clientIdKey": "a/b"}}), "valid Secret key"),
        (json!({"credentials": {}}), "Required value"),
    ];
    for (index, (spec, expected)) in cases.into_iter().enumerate() {
        let err = connections
            .create(&Default::default(), &object(&format!("bad-{index}"), spec.clone()))
            .await
            .expect_err(&format!("{spec} must be rejected"));
        assert!(err.to_string().contains(expected), "{spec}: {err}");
    }
    let good = object(
        "good",
        json!({"refreshBefore": "1h30m", "dataCenter": "CA", "accountsUrl": "https://accounts.zohocloud.ca"}),
    );
    let created = connections.create(&Default::default(), &good).await.expect("a valid spec is admitted");
    assert_eq!(created.data["spec"]["credentials"]["clientSecretKey"], "client_secret", "defaults are applied");
    namespace.delete().await.ok();
}

#[tokio::test]
async fn one_operator_serves_several_watched_namespaces_and_keeps_their_metrics() {
    let first = World::shared("core-multi-a", FakeZohoConfig::default()).await;
    let second = World::shared("core-multi-b", FakeZohoConfig::default()).await;
    let operator =
        first.operator(&["--watch-namespace", second.namespace.name(), "--allow-accounts-url", &second.fake.url()]);
    for world in [&first, &second] {
        world.create_credentials("zoho-oauth").await;
        world.create_connection("crm", json!({})).await;
        world.live_token("crm").await;
    }
    // Each namespace has its own controller and its own sweep of deleted connections; neither
    // sweep may drop the other namespace's series (the sweep runs every 30 s).
    tokio::time::sleep(Duration::from_secs(35)).await;
    let metrics = operator.metrics();
    for world in [&first, &second] {
        let series =
            format!("zoho_operator_connection_ready{{namespace=\"{}\",name=\"crm\"}} 1", world.namespace.name());
        assert!(metrics.contains(&series), "{series} missing from\n{metrics}");
    }
    first.connections.delete("crm", &DeleteParams::default()).await.unwrap();
    eventually(Duration::from_secs(45), "the deleted connection's series to go", || async {
        let gone = format!("namespace=\"{}\",name=\"crm\"", first.namespace.name());
        let kept = format!("namespace=\"{}\",name=\"crm\"", second.namespace.name());
        let metrics = operator.metrics();
        (!metrics.contains(&gone) && metrics.contains(&kept)).then_some(())
    })
    .await;
    first.namespace.delete().await.ok();
    second.namespace.delete().await.ok();
}
