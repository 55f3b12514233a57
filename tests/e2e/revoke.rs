//! Revoke on delete: a deleted connection with `revokeOnDelete` leaves no live token behind,
//! unless another connection still serves it, and an unreachable Zoho holds the deletion up for
//! 30 s at most.

use std::time::{Duration, Instant};

use k8s_openapi::api::events::v1::Event;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};
use serde_json::json;
use testkit::fake_zoho::{FakeZohoConfig, Fault, FaultRule};
use zoho_token_operator::api::REVOKE_FINALIZER;

use crate::support::*;

async fn event_reason(world: &World<'_>, connection: &str, reason: &str) -> Event {
    eventually(SETTLE, &format!("a {reason} event for {connection}"), || async {
        let events: Api<Event> = Api::namespaced(world.cluster.client().await.ok()?, world.namespace.name());
        let events = events.list(&ListParams::default()).await.ok()?;
        events.items.into_iter().find(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(connection)
                && e.reason.as_deref() == Some(reason)
        })
    })
    .await
}

async fn gone(world: &World<'_>, name: &str, timeout: Duration) {
    eventually(timeout, &format!("{name} to be deleted"), || async {
        world.connections.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_deleted_connection_revokes_its_token_but_never_the_refresh_token() {
    let world = World::shared("revoke-delete", FakeZohoConfig::default()).await;
    let _operator = world.operator(&[]);
    world.create_credentials("zoho-oauth").await;
    world.create_connection("crm", json!({"revokeOnDelete": true})).await;
    let token = world.live_token("crm").await;
    eventually(SETTLE, "the finalizer", || async {
        world.connections.get("crm").await.ok()?.finalizers().iter().any(|f| f == REVOKE_FINALIZER).then_some(())
    })
    .await;

    world.connections.delete("crm", &DeleteParams::default()).await.unwrap();
    gone(&world, "crm", SETTLE).await;
    assert!(!world.fake.is_live(&token), "the access token was revoked");
    assert!(world.fake.is_live(&world.refresh_token), "the refresh token was not");
    assert_eq!(world.fake.stats().revocations, 1);
    event_reason(&world, "crm", "TokenRevoked").await;
    world.namespace.delete().await.ok();
}

#[tokio::test]
async fn switching_revoke_off_removes_the_finalizer() {
    let world = World::shared("revoke-off", FakeZohoConfig::default()).await;
    let _operator = world.operator(&[]);
    world.create_credentials("zoho-oauth").await;
    world.create_connection("crm", json!({"revokeOnDelete": true})).await;
    let token = world.live_token("crm").await;
    let patch = json!({"spec": {"revokeOnDelete": false}});
    world.connections.patch("crm", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    eventually(SETTLE, "the finalizer to go", || async {
        let zc = world.connections.get("crm").await.ok()?;
        (!zc.finalizers().iter().any(|f| f == REVOKE_FINALIZER)).then_some(())
    })
    .await;
    world.connections.delete("crm", &DeleteParams::default()).await.unwrap();
    gone(&world, "crm", SETTLE).await;
    assert!(world.fake.is_live(&token), "nothing was revoked");
    assert_eq!(world.fake.stats().revocations, 0);
    world.namespace.delete().await.ok();
}

#[tokio::test]
async fn a_token_another_connection_serves_is_not_revoked() {
    let world = World::shared("revoke-shared", FakeZohoConfig::default()).await;
    let _operator = world.operator(&[]);
    world.create_credentials("zoho-oauth").await;
    world.create_connection("first", json!({"revokeOnDelete": true})).await;
    world.create_connection("second", json!({})).await;
    let token = world.live_token("first").await;
    eventually(SETTLE, "both connections to share the token", || async {
        (target_token(&world.secrets, "second").await? == token).then_some(())
    })
    .await;

    world.connections.delete("first", &DeleteParams::default()).await.unwrap();
    gone(&world, "first", SETTLE).await;
    let event = event_reason(&world, "first", "TokenNotRevoked").await;
    assert!(event.note.unwrap_or_default().contains("second"), "the event names who still serves it");
    assert!(world.fake.is_live(&token), "the shared token still works for the other connection");
    assert_eq!(world.fake.stats().revocations, 0);
    world.namespace.delete().await.ok();
}

#[tokio::test]
async fn an_unreachable_zoho_delays_deletion_by_30_seconds_at_most() {
    let mut world = World::shared("revoke-down", FakeZohoConfig::default()).await;
    let _operator = world.operator(&[]);
    world.create_credentials("zoho-oauth").await;
    world.create_connection("hanging", json!({"revokeOnDelete": true})).await;
    world.live_token("hanging").await;

    // First a Zoho that accepts the connection and never answers.
    world.fake.inject_fault(FaultRule::new(Fault::Hang));
    let deleted = Instant::now();
    world.connections.delete("hanging", &DeleteParams::default()).await.unwrap();
    gone(&world, "hanging", Duration::from_secs(60)).await;
    let hanging = deleted.elapsed();
    let event = event_reason(&world, "hanging", "TokenRevocationFailed").await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));

    // Then one that is not there at all.
    world.fake.clear_faults();
    world.create_connection("down", json!({"revokeOnDelete": true})).await;
    world.live_token("down").await;
    world.fake.stop();
    let deleted = Instant::now();
    world.connections.delete("down", &DeleteParams::default()).await.unwrap();
    gone(&world, "down", Duration::from_secs(60)).await;
    let down = deleted.elapsed();
    event_reason(&world, "down", "TokenRevocationFailed").await;
    for took in [hanging, down] {
        assert!(took <= Duration::from_secs(36), "deletion took {took:?}");
    }
    eprintln!("measured: deletion with a hanging Zoho took {hanging:.1?}, with Zoho down {down:.1?}");
    world.namespace.delete().await.ok();
}
