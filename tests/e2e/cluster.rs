//! ClusterZohoConnection: one credential in the cluster resource namespace, one token minted per
//! period, written into every selected namespace. Each test has a control plane of its own,
//! because the operator must watch every namespace to serve the kind.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    core::v1::{Namespace, Secret},
    events::v1::Event,
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams},
};
use serde_json::json;
use testkit::{
    control_plane::TestCluster,
    fake_zoho::{FakeZoho, FakeZohoConfig},
};
use zoho_token_operator::api::{ClusterZohoConnection, ZohoConnection};

use crate::support::*;

const RESOURCE_NAMESPACE: &str = "zoho-system";
const TARGET: &str = "zoho-crm-token";

/// A control plane of the test's own with the cluster resource namespace, its credentials, and
/// the operator watching everything.
struct ClusterWorld {
    cluster: TestCluster,
    client: Client,
    fake: FakeZoho,
    refresh_token: String,
    czcs: Api<ClusterZohoConnection>,
}

impl ClusterWorld {
    async fn new() -> Self {
        let cluster = TestCluster::dedicated().await.expect("a control plane of its own");
        let client = cluster.client().await.expect("client");
        install_crd(&client).await;
        let fake = FakeZoho::start(FakeZohoConfig::default());
        fake.register_client(CLIENT_ID, CLIENT_SECRET);
        let refresh_token = "1000.refresh-cluster".to_string();
        fake.register_refresh_token(CLIENT_ID, &refresh_token);
        let world = Self { czcs: Api::all(client.clone()), cluster, client, fake, refresh_token };
        world.namespace(RESOURCE_NAMESPACE, &[]).await;
        world.create_credentials(RESOURCE_NAMESPACE, "zoho-oauth", &world.refresh_token).await;
        world
    }

    fn operator(&self) -> Operator {
        Operator::start_cluster_wide(&self.cluster, &self.fake, &["--cluster-resource-namespace", RESOURCE_NAMESPACE])
    }

    async fn namespace(&self, name: &str, labels: &[(&str, &str)]) {
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        create(&Api::<Namespace>::all(self.client.clone()), &namespace).await;
    }

    async fn label(&self, namespace: &str, value: Option<&str>) {
        let patch = json!({"metadata": {"labels": {"zoho": value}}});
        Api::<Namespace>::all(self.client.clone())
            .patch(namespace, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("label the namespace");
    }

    async fn create_credentials(&self, namespace: &str, name: &str, refresh_token: &str) {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        create(&secrets, &credentials_secret(name, CLIENT_ID, CLIENT_SECRET, refresh_token)).await;
    }

    async fn create_czc(&self, name: &str, spec: serde_json::Value) {
        let mut full = json!({"accountsUrl": self.fake.url(), "credentials": {"secretRef": {"name": "zoho-oauth"}}});
        full.as_object_mut().unwrap().extend(spec.as_object().unwrap().clone());
        let czc: ClusterZohoConnection = serde_json::from_value(json!({
            "apiVersion": "zoho-operator.dev/v1alpha1", "kind": "ClusterZohoConnection",
            "metadata": {"name": name}, "spec": full,
        }))
        .unwrap();
        create(&self.czcs, &czc).await;
    }

    /// The token in `TARGET` in each namespace that has one.
    async fn tokens(&self) -> BTreeMap<String, String> {
        let params = ListParams::default().fields(&format!("metadata.name={TARGET}"));
        let secrets = Api::<Secret>::all(self.client.clone()).list(&params).await.expect("list Secrets");
        secrets
            .items
            .iter()
            .filter(|s| s.metadata.deletion_timestamp.is_none())
            .filter_map(|s| Some((s.namespace()?, string_data(s, "access_token")?)))
            .collect()
    }

    /// Waits until exactly `namespaces` hold one and the same live token, and returns it.
    async fn token_in_exactly(&self, namespaces: &[&str]) -> String {
        eventually(SETTLE, &format!("one live token in exactly {namespaces:?}"), || async {
            let tokens = self.tokens().await;
            let token = tokens.values().next()?.clone();
            let exact = tokens.keys().map(String::as_str).eq(namespaces.iter().copied());
            (exact && tokens.values().all(|t| *t == token) && self.fake.is_live(&token)).then_some(token)
        })
        .await
    }

    async fn wait_czc(&self, name: &str, status: &str, reason: &str) -> ClusterZohoConnection {
        eventually(SETTLE, &format!("{name} to be Ready={status} ({reason})"), || async {
            let czc = self.czcs.get_opt(name).await.ok()??;
            let condition = czc.ready_condition()?;
            (condition.status == status && condition.reason == reason).then_some(czc)
        })
        .await
    }
}

#[tokio::test]
async fn fan_out_follows_the_selection_at_one_mint_and_survives_a_restart() {
    let world = ClusterWorld::new().await;
    let mut operator = world.operator();
    world.namespace("labelled", &[("zoho", "yes")]).await;
    world.namespace("unlabelled", &[]).await;
    world.namespace("listed", &[]).await;
    world
        .create_czc(
            "crm",
            json!({"target": {"secretName": TARGET, "namespaceSelector": {"matchLabels": {"zoho": "yes"}}, "namespaces": ["listed", "absent"]}}),
        )
        .await;

    let token = world.token_in_exactly(&["labelled", "listed"]).await;
    let czc = world.wait_czc("crm", "True", "TokenIssued").await;
    let status = czc.status.unwrap();
    assert_eq!((status.namespaces.clone(), status.namespace_count), (vec!["labelled".into(), "listed".into()], 2));
    assert!(!world.tokens().await.contains_key(RESOURCE_NAMESPACE), "the credentials' namespace is not selected");

    let labelled_at = Instant::now();
    world.label("unlabelled", Some("yes")).await;
    assert_eq!(world.token_in_exactly(&["labelled", "listed", "unlabelled"]).await, token);
    let label_latency = labelled_at.elapsed();
    world.label("labelled", None).await;
    assert_eq!(world.token_in_exactly(&["listed", "unlabelled"]).await, token);
    let created_at = Instant::now();
    world.namespace("new", &[("zoho", "yes")]).await;
    assert_eq!(world.token_in_exactly(&["listed", "new", "unlabelled"]).await, token);
    let create_latency = created_at.elapsed();
    assert_eq!(world.fake.mints(&world.refresh_token), 1, "one token for every namespace");

    // A restart reads the token back: no mint, and no Secret written again.
    let versions = |secrets: Vec<Secret>| -> BTreeMap<String, String> {
        secrets.into_iter().map(|s| (s.namespace().unwrap(), s.resource_version().unwrap())).collect()
    };
    let params = ListParams::default().fields(&format!("metadata.name={TARGET}"));
    let before = versions(Api::<Secret>::all(world.client.clone()).list(&params).await.unwrap().items);
    operator.kill();
    let restarted = world.operator();
    eventually(SETTLE, "the restarted operator to reconcile", || async {
        (restarted.metric("zoho_operator_reconciles_total")? >= 1.0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = versions(Api::<Secret>::all(world.client.clone()).list(&params).await.unwrap().items);
    assert_eq!(after, before, "no Secret was written again after the restart");
    assert_eq!(world.fake.mints(&world.refresh_token), 1, "no mint after the restart");

    world.czcs.delete("crm", &DeleteParams::default()).await.unwrap();
    eventually(SETTLE, "every Secret to go with the ClusterZohoConnection", || async {
        world.tokens().await.is_empty().then_some(())
    })
    .await;
    eprintln!(
        "measured: a labelled namespace got the token {label_latency:.1?} after labelling, a new one {create_latency:.1?} after creation; 1 mint for 4 namespaces"
    );
}

#[tokio::test]
async fn foreign_secrets_are_left_alone_and_credentials_come_only_from_the_resource_namespace() {
    let world = ClusterWorld::new().await;
    let _operator = world.operator();
    world.namespace("ours", &[("zoho", "yes")]).await;
    world.namespace("theirs", &[("zoho", "yes")]).await;
    let foreign = credentials_secret(TARGET, "someone", "else's", "secret");
    create(&Api::<Secret>::namespaced(world.client.clone(), "theirs"), &foreign).await;
    world
        .create_czc(
            "crm",
            json!({"target": {"secretName": TARGET, "namespaceSelector": {"matchLabels": {"zoho": "yes"}}}}),
        )
        .await;

    let token = world.token_in_exactly(&["ours"]).await;
    let czc = world.wait_czc("crm", "False", "TargetSecretNotOwned").await;
    let message = &czc.ready_condition().unwrap().message;
    assert!(message.contains("theirs") && message.contains("1 namespace(s) hold the token"), "{message}");
    let untouched = Api::<Secret>::namespaced(world.client.clone(), "theirs").get(TARGET).await.unwrap();
    assert_eq!(untouched.data, foreign.data);
    assert_ne!(world.tokens().await.get("theirs"), Some(&token));
    let events = eventually(SETTLE, "an event naming the namespace in conflict", || async {
        let events = Api::<Event>::all(world.client.clone()).list(&ListParams::default()).await.ok()?;
        events.items.into_iter().find(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("crm")
                && e.reason.as_deref() == Some("TargetSecretNotOwned")
                && e.note.as_deref().is_some_and(|note| note.contains("theirs"))
        })
    })
    .await;
    assert_eq!(events.type_.as_deref(), Some("Warning"));

    // A Secret of the credentials' name elsewhere is never read for a ClusterZohoConnection.
    let elsewhere = "1000.refresh-elsewhere";
    world.fake.register_refresh_token(CLIENT_ID, elsewhere);
    world.create_credentials("ours", "team-oauth", elsewhere).await;
    world
        .create_czc(
            "elsewhere",
            json!({"credentials": {"secretRef": {"name": "team-oauth"}}, "target": {"secretName": "other-token", "namespaces": ["ours"]}}),
        )
        .await;
    let czc = world.wait_czc("elsewhere", "False", "CredentialsSecretNotFound").await;
    let message = &czc.ready_condition().unwrap().message;
    assert!(message.contains(RESOURCE_NAMESPACE), "{message}");
    assert_eq!(world.fake.requests(elsewhere), 0, "nothing was sent with the other namespace's credentials");

    // Once the foreign Secret is gone, the name is free (looked at again within a minute).
    Api::<Secret>::namespaced(world.client.clone(), "theirs").delete(TARGET, &DeleteParams::default()).await.unwrap();
    eventually(Duration::from_secs(90), "the token in the freed namespace", || async {
        (world.tokens().await.get("theirs") == Some(&token)).then_some(())
    })
    .await;
    world.wait_czc("crm", "True", "TokenIssued").await;
}

#[tokio::test]
async fn a_zoho_connection_and_a_cluster_connection_on_one_credential_share_one_token() {
    let world = ClusterWorld::new().await;
    let _operator = world.operator();
    world.namespace("app", &[]).await;
    world.namespace("team", &[]).await;
    world.create_credentials("app", "zoho-oauth", &world.refresh_token).await;
    let connections: Api<ZohoConnection> = Api::namespaced(world.client.clone(), "app");
    create(&connections, &connection("crm", "zoho-oauth", &world.fake, json!({"target": {"secretName": TARGET}})))
        .await;
    world.create_czc("crm", json!({"target": {"secretName": TARGET, "namespaces": ["team"]}})).await;

    let token = world.token_in_exactly(&["app", "team"]).await;
    assert!(world.fake.is_live(&token));
    world.wait_czc("crm", "True", "TokenIssued").await;
    assert_eq!(world.fake.mints(&world.refresh_token), 1, "one credential, one token, whichever kind asks");
}
