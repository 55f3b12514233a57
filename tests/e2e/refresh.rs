//! Forced refresh: the `zoho-operator.dev/refresh-requested-at` annotation. Each new value mints
//! exactly one token within the budget; a value already acted on, or a restart, mints nothing.

use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use serde_json::json;
use testkit::fake_zoho::FakeZohoConfig;
use zoho_token_operator::api::REFRESH_REQUESTED_AT_ANNOTATION;

use crate::support::*;

async fn request_refresh(world: &World<'_>, name: &str, value: &str) {
    let patch = json!({"metadata": {"annotations": {REFRESH_REQUESTED_AT_ANNOTATION: value}}});
    world.connections.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("annotate");
}

async fn last_refresh_request(world: &World<'_>, name: &str) -> Option<String> {
    world.connections.get(name).await.ok()?.status?.last_refresh_request.clone()
}

#[tokio::test]
async fn a_new_value_mints_once_and_the_same_value_or_a_restart_mints_nothing() {
    let world = World::shared("refresh-once", FakeZohoConfig::default()).await;
    let mut operator = world.operator(&[]);
    world.create_credentials("zoho-oauth").await;
    world.create_connection("crm", json!({})).await;
    let first = world.live_token("crm").await;

    request_refresh(&world, "crm", "2026-12-01T10:00:00Z").await;
    let second = eventually(SETTLE, "a new token after the refresh request", || async {
        target_token(&world.secrets, "crm").await.filter(|token| *token != first && world.fake.is_live(token))
    })
    .await;
    eventually(SETTLE, "status.lastRefreshRequest to record the value", || async {
        (last_refresh_request(&world, "crm").await.as_deref() == Some("2026-12-01T10:00:00Z")).then_some(())
    })
    .await;
    assert_eq!(world.fake.mints(&world.refresh_token), 2);
    assert!(world.fake.is_live(&first), "the previous token stays valid at Zoho until it expires");

    // The same value again, and an unrelated annotation: nothing to do.
    request_refresh(&world, "crm", "2026-12-01T10:00:00Z").await;
    let patch = json!({"metadata": {"annotations": {"team": "sales"}}});
    world.connections.patch("crm", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    operator.kill();
    let _operator = world.operator(&[]);
    // A label edit makes sure the restarted operator has reconciled before the count is read.
    world.label_target_and_wait("crm", "crm", "after-restart").await;
    assert_eq!(target_token(&world.secrets, "crm").await, Some(second));
    assert_eq!(world.fake.mints(&world.refresh_token), 2, "a handled value mints nothing again, restart or not");
    world.namespace.delete().await.ok();
}

#[tokio::test]
async fn a_burst_of_requests_stays_within_the_budget_and_says_why() {
    let world = World::shared("refresh-burst", FakeZohoConfig::default()).await;
    // A small budget in a short window keeps the test short; the logic is the default's.
    let operator = world.operator(&["--mint-budget", "4", "--mint-budget-window", "60s"]);
    world.create_credentials("zoho-oauth").await;
    world.create_connection("crm", json!({})).await;
    world.live_token("crm").await;
    let started = Instant::now();

    let mut last = String::new();
    for i in 0..20 {
        last = format!("burst-{i:02}");
        request_refresh(&world, "crm", &last).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let burst = started.elapsed();
    assert!(burst < Duration::from_secs(60), "the burst took {burst:?}, longer than the window");
    let zc = world.connections.get("crm").await.unwrap();
    let condition = zc.ready_condition().unwrap();
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("True", "MintBudgetExhausted"),
        "{condition:?}"
    );
    assert!(condition.message.contains("budget of 4 new tokens per 60s"), "{}", condition.message);
    assert_eq!(world.fake.mints(&world.refresh_token), 4, "the first mint and three requests fill the budget");
    assert_ne!(last_refresh_request(&world, "crm").await.as_deref(), Some(last.as_str()));
    assert!(operator.metric("zoho_operator_token_requests_deferred_total").unwrap_or(0.0) >= 1.0);

    // Once the window has passed, the latest value is acted on with one more mint, not sixteen.
    eventually(Duration::from_secs(90), "the deferred request to be acted on", || async {
        (last_refresh_request(&world, "crm").await.as_deref() == Some(last.as_str())).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(world.fake.mints(&world.refresh_token), 5);
    wait_ready(&world.connections, "crm", "True", "TokenIssued", SETTLE).await;
    eprintln!("measured: 20 refresh requests in {burst:.1?} caused 4 mints within the 60 s window and 1 after it");
    world.namespace.delete().await.ok();
}
