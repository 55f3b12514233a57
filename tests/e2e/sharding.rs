//! Two operators as shards of one install, on one control plane: each connection is served by
//! the shard its credentials hash to, connections that share a credential by the same one, and
//! no credential is minted twice.

use std::collections::BTreeSet;

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, ResourceExt};
use serde_json::json;
use testkit::fake_zoho::FakeZohoConfig;
use zoho_token_operator::{
    credentials::Credential,
    shard::shard_of,
    zoho::{AccountsUrl, Credentials},
};

use crate::support::*;

/// Refresh tokens whose credentials hash to `shard` of two, as the operator will hash them.
fn tokens_of_shard(url: &AccountsUrl, shard: u16, count: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("1000.shard-{i}"))
        .filter(|token| {
            let credential = Credential::Refresh(Credentials {
                client_id: CLIENT_ID.into(),
                client_secret: CLIENT_SECRET.to_string().into(),
                refresh_token: token.clone().into(),
            });
            shard_of(&credential.fingerprint(url), 2) == shard
        })
        .take(count)
        .collect()
}

/// The connections an operator has served: each gets its `connection_ready` series.
fn served(operator: &Operator, namespace: &str) -> BTreeSet<String> {
    let prefix = format!("zoho_operator_connection_ready{{namespace=\"{namespace}\",name=\"");
    operator
        .metrics()
        .lines()
        .filter_map(|line| Some(line.strip_prefix(&prefix)?.split('"').next()?.to_string()))
        .collect()
}

#[tokio::test]
async fn two_shards_split_the_connections_by_credential_and_never_mint_one_twice() {
    let world = World::shared("shards", FakeZohoConfig::default()).await;
    let namespace = world.namespace.name().to_string();
    let url = AccountsUrl::parse(&world.fake.url()).unwrap();
    // Per shard: two credentials with a connection each, and one that three connections share.
    let mut expected: [BTreeSet<String>; 2] = Default::default();
    let mut refresh_tokens = vec![];
    for shard in 0..2u16 {
        for (i, token) in tokens_of_shard(&url, shard, 3).into_iter().enumerate() {
            world.fake.register_refresh_token(CLIENT_ID, &token);
            let secret = format!("oauth-{shard}-{i}");
            create(&world.secrets, &credentials_secret(&secret, CLIENT_ID, CLIENT_SECRET, &token)).await;
            let sharing = if i == 2 { 3 } else { 1 };
            for j in 0..sharing {
                let name = format!("conn-{shard}-{i}-{j}");
                create(&world.connections, &connection(&name, &secret, &world.fake, json!({}))).await;
                expected[usize::from(shard)].insert(name);
            }
            refresh_tokens.push(token);
        }
    }
    // Credentials that cannot be read: the connection is served by the shard of its uid.
    create(&world.connections, &connection("orphan", "oauth-missing", &world.fake, json!({}))).await;
    let orphan = world.connections.get("orphan").await.unwrap();
    expected[usize::from(shard_of(&orphan.uid().unwrap(), 2))].insert("orphan".into());

    let shards = [0, 1].map(|index| {
        let index = index.to_string();
        let lease = ["--leader-election", "--leader-election-name=shards", "--leader-election-namespace", &namespace];
        world.operator(&[&["--shard-count", "2", "--shard-index", &index][..], &lease[..]].concat())
    });
    for names in &expected {
        for name in names.iter().filter(|name| *name != "orphan") {
            wait_ready(&world.connections, name, "True", "TokenIssued", SETTLE).await;
        }
    }
    wait_ready(&world.connections, "orphan", "False", "CredentialsSecretNotFound", SETTLE).await;
    eventually(SETTLE, "each shard to report exactly its connections", || async {
        let seen = [served(&shards[0], &namespace), served(&shards[1], &namespace)];
        (seen == expected).then_some(())
    })
    .await;

    for token in &refresh_tokens {
        assert_eq!(world.fake.mints(token), 1, "one mint for the credential with refresh token {token}");
    }
    let leases: Api<Lease> = Api::namespaced(world.cluster.client().await.unwrap(), &namespace);
    for (index, shard) in shards.iter().enumerate() {
        let mints = shard.metric("zoho_operator_token_requests_total{outcome=\"success\"}");
        assert_eq!(mints, Some(3.0), "shard {index} minted for its three credentials");
        assert_eq!(shard.metric("zoho_operator_leader"), Some(1.0), "each shard leads its own Lease");
        let lease = leases.get(&format!("shards-shard-{index}")).await.expect("a Lease per shard");
        assert!(lease.spec.and_then(|spec| spec.holder_identity).is_some(), "shard {index}'s Lease is held");
        for other in &expected[1 - index] {
            assert!(!shard.logs().contains(&format!("secret={other} ")), "shard {index} wrote {other}'s Secret");
        }
    }
    world.namespace.delete().await.ok();
}
