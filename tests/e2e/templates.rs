//! Target templates and Secret types: extra keys rendered from the token, a standard key
//! replaced, a custom type, and a broken template that leaves the Secret as it was.

use kube::api::{Patch, PatchParams};
use serde_json::json;
use testkit::fake_zoho::FakeZohoConfig;

use crate::support::*;

#[tokio::test]
async fn template_keys_and_type_are_rendered_from_the_token() {
    let world = World::shared("tmpl-render", FakeZohoConfig::default()).await;
    let _operator = world.operator(&[]);
    world.create_credentials("zoho-oauth").await;
    let target = json!({"target": {
        "type": "zoho-operator.dev/access-token",
        "template": {"data": {
            "authorization": "Zoho-oauthtoken {{ access_token }}",
            "zoho.json": "{\"token\": {{ access_token|tojson }}, \"api\": \"{{ api_domain }}\", \"expires\": {{ expires_at_unix }}}",
        }},
    }});
    world.create_connection("crm", target).await;
    let token = world.live_token("crm").await;
    let secret = world.secrets.get("crm").await.unwrap();
    assert_eq!(secret.type_.as_deref(), Some("zoho-operator.dev/access-token"));
    assert_eq!(string_data(&secret, "authorization"), Some(format!("Zoho-oauthtoken {token}")));
    let config: serde_json::Value = serde_json::from_str(&string_data(&secret, "zoho.json").unwrap()).unwrap();
    let expires_at: jiff::Timestamp = string_data(&secret, "expires_at").unwrap().parse().unwrap();
    assert_eq!(config, json!({"token": token, "api": "https://www.zohoapis.com", "expires": expires_at.as_second()}));
    world.namespace.delete().await.ok();
}

#[tokio::test]
async fn a_replaced_standard_key_survives_a_restart_without_a_mint() {
    let world = World::shared("tmpl-replace", FakeZohoConfig::default()).await;
    let mut operator = world.operator(&[]);
    world.create_credentials("zoho-oauth").await;
    world
        .create_connection(
            "crm",
            json!({"target": {"template": {"data": {"access_token": "Bearer {{ access_token }}"}}}}),
        )
        .await;
    let raw = eventually(SETTLE, "the raw token under .access_token", || async {
        string_data(&world.secrets.get_opt("crm").await.ok()??, ".access_token").filter(|t| world.fake.is_live(t))
    })
    .await;
    let secret = world.secrets.get("crm").await.unwrap();
    assert_eq!(string_data(&secret, "access_token"), Some(format!("Bearer {raw}")));

    operator.kill();
    let _operator = world.operator(&[]);
    world.label_target_and_wait("crm", "crm", "after-restart").await;
    let secret = world.secrets.get("crm").await.unwrap();
    assert_eq!(string_data(&secret, "access_token"), Some(format!("Bearer {raw}")), "not templated twice");
    assert_eq!(world.fake.mints(&world.refresh_token), 1, "the restarted operator read the token back");
    world.namespace.delete().await.ok();
}

#[tokio::test]
async fn a_broken_template_writes_nothing_and_keeps_the_last_good_content() {
    let world = World::shared("tmpl-broken", FakeZohoConfig::default()).await;
    let _operator = world.operator(&[]);
    world.create_credentials("zoho-oauth").await;
    world
        .create_connection(
            "crm",
            json!({"target": {"template": {"data": {"header": "Zoho-oauthtoken {{ access_token }}"}}}}),
        )
        .await;
    let token = world.live_token("crm").await;
    let before = world.secrets.get("crm").await.unwrap();

    for broken in ["{{ access_token ", "{{ client_secret }}"] {
        let patch = json!({"spec": {"target": {"template": {"data": {"header": broken}}}}});
        world.connections.patch("crm", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        let zc = wait_ready(&world.connections, "crm", "False", "InvalidTemplate", SETTLE).await;
        let message = &zc.ready_condition().unwrap().message;
        assert!(message.contains("template.data[\"header\"]"), "{message}");
        assert!(!message.contains(&token), "the message never quotes the token: {message}");
        let after = world.secrets.get("crm").await.unwrap();
        assert_eq!(after.data, before.data, "the Secret keeps its last good content");
    }
    assert_eq!(world.fake.mints(&world.refresh_token), 1, "a broken template mints nothing");

    let fix = json!({"spec": {"target": {"template": {"data": {"header": "Bearer {{ access_token }}"}}}}});
    world.connections.patch("crm", &PatchParams::default(), &Patch::Merge(&fix)).await.unwrap();
    wait_ready(&world.connections, "crm", "True", "TokenIssued", SETTLE).await;
    let fixed = world.secrets.get("crm").await.unwrap();
    assert_eq!(string_data(&fixed, "header"), Some(format!("Bearer {token}")));
    world.namespace.delete().await.ok();
}
