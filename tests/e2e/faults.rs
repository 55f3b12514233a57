//! Failure handling: whatever breaks around the operator, the Secret keeps a valid token, Zoho
//! sees no more requests than necessary, and the status tells the truth. Each test prints what
//! it measured (mint counts, recovery times) so that the numbers can be quoted.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;
use testkit::{
    control_plane::TestCluster,
    fake_zoho::{FakeZohoConfig, Fault, FaultRule},
};

use crate::support::*;

fn lifetime(secs: u64) -> FakeZohoConfig {
    FakeZohoConfig { token_lifetime: Duration::from_secs(secs), ..FakeZohoConfig::default() }
}

#[tokio::test]
async fn zoho_outage_keeps_the_old_token_and_recovers_promptly() {
    // 60 s tokens refreshed 30 s before expiry leave room for two failed attempts and a retry.
    let world = World::shared("fault-outage", lifetime(60)).await;
    let _operator = world.operator(&[]);
    world.create_credentials("zoho-oauth").await;
    world.create_connection("crm", json!({"refreshBefore": "30s"})).await;
    let first = world.live_token("crm").await;

    world.fake.inject_fault(FaultRule::new(Fault::HttpStatus { status: 503 }));
    // Wait for two failed refresh attempts, checking the old token is served all along.
    eventually(Duration::from_secs(60), "two failed refresh attempts", || async {
        assert_eq!(target_token(&world.secrets, "crm").await.as_deref(), Some(first.as_str()));
        assert!(world.fake.is_live(&first), "the old token expired during the outage");
        (world.fake.requests(&world.refresh_token) >= 3).then_some(())
    })
    .await;
    // The status of the second failure is written just after the fake answers it.
    let status = eventually(SETTLE, "the status to count two failed attempts", || async {
        let zc = world.connections.get_opt("crm").await.ok()??;
        let condition = zc.ready_condition()?;
        let status = zc.status.clone()?;
        let failing = condition.status == "True" && condition.reason == "AccountsServerError";
        (failing && status.failed_attempts >= 2).then_some(status)
    })
    .await;
    assert!(status.last_failure_time.is_some(), "{status:?}");

    // A target deleted during the outage gets the still-valid token back from memory.
    world.secrets.delete("crm", &Default::default()).await.unwrap();
    let restored = eventually(SETTLE, "the deleted target to be restored during the outage", || async {
        let secret = world.secrets.get_opt("crm").await.ok()??;
        secret.metadata.deletion_timestamp.is_none().then(|| string_data(&secret, "access_token")).flatten()
    })
    .await;
    assert_eq!(restored, first);

    world.fake.clear_faults();
    let back = Instant::now();
    let second = eventually(Duration::from_secs(30), "a new token after the outage", || async {
        let token = target_token(&world.secrets, "crm").await?;
        (token != first).then_some(token)
    })
    .await;
    let recovery = back.elapsed();
    assert!(world.fake.is_live(&second));
    let zc = wait_ready(&world.connections, "crm", "True", "TokenIssued", SETTLE).await;
    assert_eq!(zc.status.unwrap().failed_attempts, 0);
    assert_eq!(world.fake.mints(&world.refresh_token), 2, "one mint before and one after the outage");
    // The third attempt waits at most 10 s (5 s doubled), so recovery cannot take longer.
    assert!(recovery <= Duration::from_secs(11), "recovery took {recovery:?}");
    eprintln!(
        "measured: outage recovery {recovery:.1?} after Zoho came back; requests {} (mints {})",
        world.fake.requests(&world.refresh_token),
        world.fake.mints(&world.refresh_token)
    );
    world.namespace.delete().await.ok();
}

#[tokio::test]
async fn a_restart_keeps_the_backoff_instead_of_retrying_at_once() {
    let world = World::shared("fault-backoff", FakeZohoConfig::default()).await;
    world.fake.inject_fault(FaultRule::new(Fault::HttpStatus { status: 502 }));
    let mut operator = world.operator(&[]);
    world.create_credentials("zoho-oauth").await;
    world.create_connection("crm", json!({})).await;
    let status = eventually(Duration::from_secs(60), "three failed attempts", || async {
        let status = world.connections.get("crm").await.ok()?.status?;
        (status.failed_attempts >= 3).then_some(status)
    })
    .await;
    operator.kill();
    let requests_before = world.fake.requests(&world.refresh_token);
    let retry_at = status.next_refresh_time.clone().unwrap().0;

    let _operator = world.operator(&[]);
    let status = eventually(Duration::from_secs(60), "the next attempt after the restart", || async {
        let next = world.connections.get("crm").await.ok()?.status?;
        (next.failed_attempts > status.failed_attempts).then_some(next)
    })
    .await;
    let retried_at = status.last_failure_time.clone().unwrap().0;
    assert!(
        retried_at.as_second() >= retry_at.as_second(),
        "the restarted operator retried at {retried_at}, before the persisted retry time {retry_at}"
    );
    assert_eq!(world.fake.requests(&world.refresh_token), requests_before + 1, "one request after the restart");
    assert_eq!(status.failed_attempts, 4, "the attempt count carries on across the restart");
    world.namespace.delete().await.ok();
}

#[tokio::test]
async fn throttling_waits_out_the_window_without_further_requests() {
    // Zoho answers the throttle with HTTP 200 and localized text for some accounts: the hardest case.
    let config = FakeZohoConfig {
        token_lifetime: Duration::from_secs(6),
        throttle_limit: 1,
        throttle_status: 200,
        localized_throttle: true,
        ..FakeZohoConfig::default()
    };
    let world = World::shared("fault-throttle", config).await;
    let operator = world.operator(&[]);
    world.create_credentials("zoho-oauth").await;
    world.create_connection("crm", json!({})).await;
    world.live_token("crm").await;
    let first_token = Instant::now();

    let zc = wait_ready(&world.connections, "crm", "True", "Throttled", SETTLE).await;
    let status = zc.status.unwrap();
    let wait = status.next_refresh_time.clone().unwrap().0.duration_since(status.last_failure_time.clone().unwrap().0);
    assert!(wait.as_secs() >= 600, "a throttled credential waits the whole 10-minute window, not {wait:?}");
    // Once the old token expires the connection is no longer Ready, and still nothing is sent.
    let zc = wait_ready(&world.connections, "crm", "False", "Throttled", SETTLE).await;
    assert!(zc.ready_condition().unwrap().message.contains("expired"), "{:?}", zc.ready_condition());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let counters = world.fake.counters(&world.refresh_token);
    assert_eq!((counters.requests, counters.mints, counters.throttled), (2, 1, 1), "{counters:?}");
    assert!(operator.metrics().contains("zoho_operator_token_requests_total{outcome=\"throttled\"} 1"));
    eprintln!("measured: throttled credential sent {} requests in {:.1?}", counters.requests, first_token.elapsed());
    world.namespace.delete().await.ok();
}

#[tokio::test]
async fn a_revoked_refresh_token_stops_requests_until_the_credentials_change() {
    let world = World::shared("fault-revoked", lifetime(6)).await;
    let _operator = world.operator(&[]);
    world.create_credentials("zoho-oauth").await;
    world.create_connection("crm", json!({})).await;
    let first = world.live_token("crm").await;
    assert!(world.fake.revoke(&world.refresh_token));
    assert!(!world.fake.is_live(&first), "revoking a refresh token revokes its access tokens");

    let zc = wait_ready(&world.connections, "crm", "False", "RefreshTokenRevoked", SETTLE).await;
    assert!(zc.ready_condition().unwrap().message.contains("revoked"));
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(world.fake.requests(&world.refresh_token), 2, "no retry storm after a permanent error");
    assert_eq!(target_token(&world.secrets, "crm").await, Some(first), "the Secret is never blanked");

    let replacement = "1000.refresh-replacement";
    world.fake.register_refresh_token(CLIENT_ID, replacement);
    let patch = json!({"stringData": {"refresh_token": replacement}});
    world.secrets.patch("zoho-oauth", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    wait_ready(&world.connections, "crm", "True", "TokenIssued", SETTLE).await;
    assert_eq!(world.fake.mints(replacement), 1);
    world.namespace.delete().await.ok();
}

#[tokio::test]
async fn apiserver_and_etcd_restarts_lose_nothing_and_mint_nothing_extra() {
    let cluster = TestCluster::dedicated().await.expect("a control plane of its own");
    let world = World::on(&cluster, "fault-apiserver", lifetime(30)).await;
    let operator = world.operator(&[]);
    world.create_credentials("zoho-oauth").await;
    world.create_connection("crm", json!({})).await;
    let first = world.live_token("crm").await;

    // The apiserver is down across the refresh time (20 s after the mint). The next token lives an
    // hour, so that nothing but the disruptions can cause another mint.
    world.fake.update_config(|config| config.token_lifetime = Duration::from_secs(3600));
    cluster.stop_apiserver().await.unwrap();
    tokio::time::sleep(Duration::from_secs(22)).await;
    assert!(operator.is_running(), "the operator survives a lost apiserver:\n{}", operator.logs());
    let restarted = Instant::now();
    cluster.start_apiserver().await.unwrap();
    let second = eventually(SETTLE, "a refreshed token after the apiserver restart", || async {
        let token = target_token(&world.secrets, "crm").await?;
        (token != first && world.fake.is_live(&token)).then_some(token)
    })
    .await;
    let apiserver_recovery = restarted.elapsed();
    assert_eq!(world.fake.mints(&world.refresh_token), 2, "no mint while the Secret could not be written");

    cluster.restart_etcd().await.unwrap();
    let etcd_back = Instant::now();
    // The watches resume within their backoff (at most 15 s) and see this spec change.
    let patch = json!({"spec": {"target": {"labels": {"after-etcd": "yes"}}}});
    eventually(SETTLE, "the operator to act after the etcd restart", || async {
        world.connections.patch("crm", &PatchParams::default(), &Patch::Merge(&patch)).await.ok()?;
        let secret = world.secrets.get_opt("crm").await.ok()??;
        secret.metadata.labels?.contains_key("after-etcd").then_some(())
    })
    .await;
    let etcd_recovery = etcd_back.elapsed();
    assert_eq!(target_token(&world.secrets, "crm").await, Some(second));
    assert_eq!(world.fake.mints(&world.refresh_token), 2);
    assert!(operator.is_running());
    eprintln!(
        "measured: token refreshed {apiserver_recovery:.1?} after kube-apiserver restart; operator acted {etcd_recovery:.1?} after etcd restart; mints 2"
    );
    world.namespace.delete().await.ok();
}

#[tokio::test]
async fn an_operator_killed_mid_refresh_recovers_with_at_most_one_extra_mint() {
    let world = World::shared("fault-sigkill", lifetime(30)).await;
    let mut operator = world.operator(&[]);
    world.create_credentials("zoho-oauth").await;
    world.create_connection("crm", json!({})).await;
    let first = world.live_token("crm").await;

    // Slow answers keep the refresh (due 20 s after the mint) in flight long enough to kill it.
    world.fake.set_latency(Duration::from_secs(3));
    eventually(Duration::from_secs(40), "the refresh request to arrive", || async {
        (world.fake.requests(&world.refresh_token) >= 2).then_some(())
    })
    .await;
    operator.kill();
    assert_eq!(target_token(&world.secrets, "crm").await.as_deref(), Some(first.as_str()));
    world.fake.set_latency(Duration::ZERO);

    let restarted = Instant::now();
    let _operator = world.operator(&[]);
    let second = eventually(SETTLE, "a fresh token after the restart", || async {
        let token = target_token(&world.secrets, "crm").await?;
        (token != first && world.fake.is_live(&token)).then_some(token)
    })
    .await;
    let recovery = restarted.elapsed();
    let mints = world.fake.mints(&world.refresh_token);
    // The killed request may have minted at Zoho after all; that token is lost, one more is made.
    assert!(mints <= 3, "{mints} mints");
    wait_ready(&world.connections, "crm", "True", "TokenIssued", SETTLE).await;
    eprintln!("measured: SIGKILL mid-refresh: new token {recovery:.1?} after restart, {mints} mints in all");
    assert!(world.fake.is_live(&second));
    world.namespace.delete().await.ok();
}

#[tokio::test]
async fn a_standby_replica_takes_over_without_minting() {
    let world = World::shared("fault-leader", FakeZohoConfig::default()).await;
    let ns = world.namespace.name().to_string();
    let args = |identity: &'static str| {
        [
            "--leader-election",
            "--leader-election-namespace",
            Box::leak(ns.clone().into_boxed_str()),
            "--leader-election-lease-duration",
            "6s",
            "--leader-election-identity",
            identity,
        ]
    };
    let mut first = world.operator(&args("replica-a"));
    world.create_credentials("zoho-oauth").await;
    world.create_connection("crm", json!({})).await;
    let token = world.live_token("crm").await;
    let second = world.operator(&args("replica-b"));
    let leases: Api<Lease> = Api::namespaced(world.cluster.client().await.unwrap(), &ns);
    let holder = |lease: Lease| lease.spec.and_then(|s| s.holder_identity);
    assert_eq!(holder(leases.get("zoho-token-operator").await.unwrap()).as_deref(), Some("replica-a"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!second.logs().contains("controller running"), "the standby must not reconcile while A leads");

    first.kill();
    let killed = Instant::now();
    eventually(Duration::from_secs(30), "replica-b to take the lease", || async {
        (holder(leases.get("zoho-token-operator").await.ok()?).as_deref() == Some("replica-b")).then_some(())
    })
    .await;
    let takeover = killed.elapsed();
    assert!(takeover <= Duration::from_secs(12), "takeover took {takeover:?} with a 6 s lease");

    let patch = json!({"spec": {"target": {"labels": {"served-by": "b"}}}});
    world.connections.patch("crm", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    eventually(SETTLE, "replica-b to reconcile", || async {
        let secret = world.secrets.get_opt("crm").await.ok()??;
        secret.metadata.labels?.contains_key("served-by").then_some(())
    })
    .await;
    assert_eq!(target_token(&world.secrets, "crm").await, Some(token));
    assert_eq!(world.fake.mints(&world.refresh_token), 1, "the new leader reuses the stored token");
    assert!(second.metrics().contains("zoho_operator_leader 1"));

    // A graceful shutdown releases the lease, so the next standby need not wait for it to expire.
    let mut second = second;
    let _third = world.operator(&args("replica-c"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let terminated = Instant::now();
    assert!(second.terminate().success(), "a graceful shutdown exits 0:\n{}", second.logs());
    eventually(Duration::from_secs(30), "replica-c to take the released lease", || async {
        (holder(leases.get("zoho-token-operator").await.ok()?).as_deref() == Some("replica-c")).then_some(())
    })
    .await;
    let handover = terminated.elapsed();
    assert!(handover < Duration::from_secs(6), "a released lease is taken within one retry period, not {handover:?}");
    assert_eq!(world.fake.mints(&world.refresh_token), 1);
    eprintln!(
        "measured: standby took over {takeover:.1?} after the leader was killed (lease 6 s), {handover:.1?} after a graceful stop; mints 1"
    );
    world.namespace.delete().await.ok();
}

#[tokio::test]
async fn fifty_connections_sharing_a_credential_cost_one_mint_per_period() {
    let world = World::shared("fault-shared", lifetime(20)).await;
    let _operator = world.operator(&[]);
    world.create_credentials("zoho-oauth").await;
    for i in 0..50 {
        world.create_connection(&format!("app-{i:02}"), json!({})).await;
    }
    let first = world.live_token("app-00").await;
    eventually(SETTLE, "all 50 Secrets to hold the shared token", || async {
        for i in 0..50 {
            if target_token(&world.secrets, &format!("app-{i:02}")).await.as_deref() != Some(first.as_str()) {
                return None;
            }
        }
        Some(())
    })
    .await;
    assert_eq!(world.fake.mints(&world.refresh_token), 1);

    // The shared token is due 13.3 s after its mint; all 50 move to one new token.
    let second = eventually(SETTLE, "all 50 Secrets to hold the next token", || async {
        let next = target_token(&world.secrets, "app-00").await.filter(|t| *t != first)?;
        for i in 1..50 {
            if target_token(&world.secrets, &format!("app-{i:02}")).await.as_deref() != Some(next.as_str()) {
                return None;
            }
        }
        Some(next)
    })
    .await;
    let mints = world.fake.mints(&world.refresh_token);
    assert_eq!(mints, 2, "50 connections, two periods, two mints");
    assert!(world.fake.is_live(&second));
    eprintln!("measured: 50 connections sharing one credential: {mints} mints over two periods");
    world.namespace.delete().await.ok();
}
