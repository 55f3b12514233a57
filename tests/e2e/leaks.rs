//! No secret leaks: the operator runs through its success and failure paths with sentinel
//! credentials and trace-level logs, and then every place a user or an attacker could read is
//! searched for the sentinels and for every access token minted.

use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::{core::v1::Event as CoreEvent, events::v1::Event};
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams},
};
use serde_json::json;
use testkit::fake_zoho::{FakeZohoConfig, Fault, FaultRule};
use zoho_token_operator::api::ZohoConnection;

use crate::support::*;

const SENTINEL_CLIENT_ID: &str = "1000.SENTINELCLIENTID7F3A";
const SENTINEL_CLIENT_SECRET: &str = "SENTINEL-CLIENT-SECRET-9B2C";
const SENTINEL_REFRESH: &str = "1000.SENTINEL-REFRESH-TOKEN-4D1E";
const SENTINEL_WRONG_SECRET: &str = "SENTINEL-WRONG-SECRET-0A6F";
const SENTINEL_REVOKED: &str = "1000.SENTINEL-REVOKED-REFRESH-55C3";

#[tokio::test]
async fn no_secret_appears_in_logs_events_status_or_metrics() {
    let config =
        FakeZohoConfig { token_lifetime: Duration::from_secs(6), throttle_limit: 3, ..FakeZohoConfig::default() };
    let world = World::shared("leaks", config).await;
    world.fake.register_client(SENTINEL_CLIENT_ID, SENTINEL_CLIENT_SECRET);
    world.fake.register_refresh_token(SENTINEL_CLIENT_ID, SENTINEL_REFRESH);
    world.fake.register_refresh_token(SENTINEL_CLIENT_ID, SENTINEL_REVOKED);
    world.fake.revoke(SENTINEL_REVOKED);
    let operator = Operator::start_with_env(
        world.cluster,
        world.namespace.name(),
        &world.fake,
        &["--log-format", "json"],
        &[("RUST_LOG", "trace")],
    );

    let secrets = [
        ("creds-good", SENTINEL_CLIENT_SECRET, SENTINEL_REFRESH),
        ("creds-wrong", SENTINEL_WRONG_SECRET, SENTINEL_REFRESH),
        ("creds-revoked", SENTINEL_CLIENT_SECRET, SENTINEL_REVOKED),
    ];
    for (name, client_secret, refresh) in secrets {
        create(&world.secrets, &credentials_secret(name, SENTINEL_CLIENT_ID, client_secret, refresh)).await;
    }
    // One path each: success with refreshes, then throttling (3 mints per window); a wrong client
    // secret; a revoked refresh token; an accounts server not allowed; garbage from Zoho.
    for (name, credentials) in
        [("good", "creds-good"), ("wrong", "creds-wrong"), ("revoked", "creds-revoked"), ("absent", "creds-missing")]
    {
        create(&world.connections, &connection(name, credentials, &world.fake, json!({}))).await;
    }
    create(
        &world.connections,
        &connection("elsewhere", "creds-good", &world.fake, json!({"accountsUrl": "http://127.0.0.2:9"})),
    )
    .await;

    let seen = std::sync::Mutex::new(vec![world.live_token("good").await]);
    wait_ready(&world.connections, "wrong", "False", "InvalidClient", SETTLE).await;
    wait_ready(&world.connections, "revoked", "False", "RefreshTokenRevoked", SETTLE).await;
    wait_ready(&world.connections, "absent", "False", "CredentialsSecretNotFound", SETTLE).await;
    wait_ready(&world.connections, "elsewhere", "False", "AccountsUrlNotAllowed", SETTLE).await;
    eventually(SETTLE, "three mints, then the throttle", || async {
        if let Some(token) = target_token(&world.secrets, "good").await {
            let mut seen = seen.lock().unwrap();
            if !seen.contains(&token) {
                seen.push(token);
            }
        }
        (world.fake.counters(SENTINEL_REFRESH).throttled >= 1).then_some(())
    })
    .await;
    world.fake.inject_fault(FaultRule::new(Fault::Garbage).times(1));
    let patch = json!({"spec": {"refreshBefore": "1s"}});
    world.connections.patch("wrong", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut access_tokens = seen.into_inner().unwrap();
    access_tokens.extend(world.fake.live_tokens(SENTINEL_REFRESH));

    let client = world.cluster.client().await.unwrap();
    let mut haystacks = vec![("operator log", operator.logs()), ("metrics", operator.metrics())];
    let events: Api<Event> = Api::namespaced(client.clone(), world.namespace.name());
    let events = events.list(&ListParams::default()).await.unwrap();
    assert!(!events.items.is_empty(), "the scenario records events");
    haystacks.push(("events", serde_json::to_string(&events).unwrap()));
    let core_events: Api<CoreEvent> = Api::namespaced(client, world.namespace.name());
    haystacks.push((
        "core events",
        serde_json::to_string(&core_events.list(&ListParams::default()).await.unwrap()).unwrap(),
    ));
    let connections: Vec<ZohoConnection> = world.connections.list(&ListParams::default()).await.unwrap().items;
    haystacks.push(("ZohoConnection objects", serde_json::to_string(&connections).unwrap()));
    let target = world.secrets.get("good").await.unwrap();
    haystacks.push(("target Secret metadata", serde_json::to_string(&target.metadata).unwrap()));
    assert!(haystacks[0].1.contains("TRACE"), "the log really is at trace level");

    let mut needles: Vec<&str> =
        vec![SENTINEL_CLIENT_SECRET, SENTINEL_REFRESH, SENTINEL_WRONG_SECRET, SENTINEL_REVOKED, SENTINEL_CLIENT_ID];
    needles.extend(access_tokens.iter().map(String::as_str));
    assert!(access_tokens.len() >= 3, "the scenario minted several tokens: {}", access_tokens.len());
    for needle in needles {
        // The distinctive middle of each value, raw and as it would look base64- or URL-encoded.
        let core = &needle[needle.len() / 4..needle.len() * 3 / 4];
        let encoded = base64::engine::general_purpose::STANDARD.encode(needle);
        let forms = [core.to_string(), encoded[4..encoded.len() - 4].to_string(), core.replace('.', "%2E")];
        for (place, haystack) in &haystacks {
            for form in &forms {
                assert!(!haystack.contains(form.as_str()), "{place} contains a secret ({needle:.8}…)");
            }
        }
    }
    eprintln!(
        "measured: scanned {} bytes of logs, events, status and metrics for {} secret values",
        haystacks.iter().map(|(_, h)| h.len()).sum::<usize>(),
        5 + access_tokens.len()
    );
    world.namespace.delete().await.ok();
}
