//! The operator running under the chart's ServiceAccount and RBAC, with the chart's arguments and
//! environment: everything it does works, and it can do nothing more.

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::{
    authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec},
    coordination::v1::Lease,
    core::v1::Secret,
    events::v1::Event,
};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use testkit::{
    control_plane::{CLUSTER_ENV, shared, test_namespace},
    fake_zoho::FakeZohoConfig,
};
use zoho_token_operator::api::{ClusterZohoConnection, ZohoConnection};

use super::*;

/// Cluster-wide RBAC with leader election: the operator, running with the chart's arguments and
/// environment under a token of the chart's ServiceAccount, takes the Lease, mints a token into
/// the target Secret, writes status and records an event.
#[tokio::test]
async fn operator_works_under_the_chart_rbac_with_leader_election() {
    // Watching all namespaces, the operator would reconcile (and write failures into) the
    // ZohoConnections of every other test on a shared cluster, so this test gets a control plane
    // of its own. It cannot have one on an existing cluster, where it confines the operator to
    // its namespace instead: the RBAC is still the chart's ClusterRole.
    let existing = std::env::var(CLUSTER_ENV).is_ok_and(|v| v == "existing");
    let dedicated;
    let cluster = if existing {
        shared().await
    } else {
        dedicated = TestCluster::dedicated().await.expect("a control plane of this test's own");
        &dedicated
    };
    let world = World::on(cluster, "chart-leader", FakeZohoConfig::default()).await;
    let admin = cluster.client().await.expect("client for the test cluster");
    let scratch = Scratch::new("operator-leader");
    let ns = world.namespace.name();
    let confine = if existing { vec![format!("--watch-namespace={ns}")] } else { vec![] };
    // replicaCount 0: on a real cluster (ZOHO_OPERATOR_TEST_CLUSTER=existing) no in-cluster pod
    // may compete with the process under test.
    let values = json!({
        "replicaCount": 0,
        "crds": {"install": false},
        "leaderElection": {"enabled": true},
        "allowAccountsUrls": [world.fake.url()],
        "logLevel": "info,zoho_token_operator=debug",
    });
    let release = Release::install(&scratch, cluster, ns, ns, &values).await;
    let pod_name = format!("{}-7d4b9c-x2k8q", release.fullname);
    let operator = release.run_operator(&pod_name, &confine).await;

    create_crm_connection(&world, &admin, ns).await;
    let token = world.live_token("crm-token").await;
    eprintln!("the operator wrote a live token ({} characters) under the chart's RBAC", token.len());

    // The operator created the Lease (create), and keeps renewing it (get, update): the renew
    // time moves on every third of the lease duration, 5 s with the chart's default of 15 s.
    let leases: Api<Lease> = Api::namespaced(admin.clone(), ns);
    let lease = leases.get(&release.fullname).await.expect("the Lease").spec.expect("a Lease spec");
    assert_eq!(lease.holder_identity.as_deref(), Some(pod_name.as_str()), "the Lease holder");
    eventually(Duration::from_secs(30), "the Lease to be renewed", || async {
        assert!(operator.is_running(), "the operator exited early:\n{}", operator.logs());
        let renewed = leases.get(&release.fullname).await.expect("the Lease").spec.expect("a Lease spec");
        assert_eq!(renewed.holder_identity, lease.holder_identity, "the operator lost the Lease");
        (renewed.renew_time.as_ref().map(|t| t.0) > lease.renew_time.as_ref().map(|t| t.0)).then_some(())
    })
    .await;
    assert_ready_with_event(&world, &admin, ns).await;

    // The ServiceAccount holds exactly the verbs the operator uses.
    let sa = &release.sa_client;
    for (allowed, verb, group, resource, name) in [
        (true, "watch", "", "secrets", None),
        (true, "create", "", "secrets", None),
        (true, "patch", "", "secrets", None),
        (false, "update", "", "secrets", None),
        // Cluster-wide, for ClusterZohoConnections that stop selecting a namespace.
        (true, "delete", "", "secrets", None),
        (true, "list", "", "namespaces", None),
        (false, "create", "zoho-operator.dev", "zohoconnections", None),
        (false, "create", "zoho-operator.dev", "clusterzohoconnections", None),
        (false, "update", "zoho-operator.dev", "zohoconnections", None),
        (false, "get", "", "configmaps", None),
        (true, "update", "coordination.k8s.io", "leases", Some(release.fullname.as_str())),
        (false, "update", "coordination.k8s.io", "leases", Some("someone-elses-lease")),
        (false, "delete", "coordination.k8s.io", "leases", Some(release.fullname.as_str())),
    ] {
        let can = can_i(sa, verb, group, resource, Some(ns), name).await;
        assert_eq!(can, allowed, "can the operator {verb} {group}/{resource} {name:?} in {ns}?");
    }

    if !existing {
        cluster_connection_works_under_the_chart_rbac(&world, &admin, ns).await;
    }
    drop(operator);
    release.uninstall(&scratch, cluster);
    world.namespace.delete().await.expect("delete the namespace");
}

/// A ClusterZohoConnection with its credentials in the release namespace: the token reaches a
/// selected namespace (namespaces are listed and watched), and leaves it when the namespace stops
/// matching (Secrets are deleted).
async fn cluster_connection_works_under_the_chart_rbac(world: &World<'_>, admin: &Client, release_namespace: &str) {
    let selected = test_namespace(admin, "chart-fan-out").await.expect("test namespace");
    let label = |value: Option<&str>| json!({"metadata": {"labels": {"zoho-operator.dev/crm": value}}});
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let patch = |value| {
        let namespaces = namespaces.clone();
        let name = selected.name().to_string();
        async move { namespaces.patch(&name, &PatchParams::default(), &Patch::Merge(&label(value))).await.expect("label") }
    };
    patch(Some("true")).await;
    let czc: ClusterZohoConnection = serde_json::from_value(json!({
        "apiVersion": "zoho-operator.dev/v1alpha1", "kind": "ClusterZohoConnection",
        "metadata": {"name": format!("crm-{release_namespace}")},
        "spec": {
            "accountsUrl": world.fake.url(),
            "credentials": {"secretRef": {"name": "zoho-oauth"}},
            "target": {"secretName": "crm-shared", "namespaceSelector": {"matchLabels": {"zoho-operator.dev/crm": "true"}}},
        },
    }))
    .expect("a valid ClusterZohoConnection");
    create(&Api::<ClusterZohoConnection>::all(admin.clone()), &czc).await;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), selected.name());
    eventually(SETTLE, "the ClusterZohoConnection's token in the selected namespace", || async {
        let token = crate::support::string_data(&secrets.get_opt("crm-shared").await.ok()??, "access_token")?;
        world.fake.is_live(&token).then_some(())
    })
    .await;
    patch(None).await;
    eventually(SETTLE, "the Secret to leave the namespace that stopped matching", || async {
        secrets.get_opt("crm-shared").await.ok()?.is_none().then_some(())
    })
    .await;
    selected.delete().await.expect("delete the namespace");
}

/// watchNamespaces: the operator mints in the watched namespace under Roles alone, and its
/// ServiceAccount cannot read Secrets anywhere else.
#[tokio::test]
async fn operator_works_under_the_chart_rbac_in_watched_namespaces_only() {
    let cluster = shared().await;
    let world = World::on(cluster, "chart-watch-app", FakeZohoConfig::default()).await;
    let admin = cluster.client().await.expect("client for the test cluster");
    let scratch = Scratch::new("operator-watch");
    let home = test_namespace(&admin, "chart-watch-operator").await.expect("test namespace");
    let watched = &world.namespace;
    let other = test_namespace(&admin, "chart-watch-other").await.expect("test namespace");
    let values = json!({
        "replicaCount": 0,
        "crds": {"install": false},
        "rbac": {"aggregateClusterRoles": false},
        "watchNamespaces": [watched.name()],
        "allowAccountsUrls": [world.fake.url()],
    });
    let release = Release::install(&scratch, cluster, home.name(), home.name(), &values).await;

    // A Secret the operator must not be able to read: 403, not 404.
    let decoy = Secret {
        metadata: kube::api::ObjectMeta { name: Some("decoy".to_owned()), ..Default::default() },
        string_data: Some([("password".to_owned(), "not for the operator".to_owned())].into()),
        ..Secret::default()
    };
    Api::<Secret>::namespaced(admin.clone(), other.name())
        .create(&PostParams::default(), &decoy)
        .await
        .expect("create the decoy");
    let sa_secrets_other: Api<Secret> = Api::namespaced(release.sa_client.clone(), other.name());
    assert_forbidden(sa_secrets_other.get("decoy").await.map(|_| ()), "GET a Secret in an unwatched namespace");
    assert_forbidden(
        sa_secrets_other.list(&ListParams::default()).await.map(|_| ()),
        "LIST Secrets in an unwatched namespace",
    );
    let sa_secrets_all: Api<Secret> = Api::all(release.sa_client.clone());
    assert_forbidden(sa_secrets_all.list(&ListParams::default()).await.map(|_| ()), "LIST Secrets cluster-wide");
    let sa_secrets_home: Api<Secret> = Api::namespaced(release.sa_client.clone(), home.name());
    assert_forbidden(
        sa_secrets_home.list(&ListParams::default()).await.map(|_| ()),
        "LIST Secrets in the release namespace",
    );
    // ...while it can in the watched namespace.
    Api::<Secret>::namespaced(release.sa_client.clone(), watched.name())
        .list(&ListParams::default())
        .await
        .expect("the operator can list Secrets in its watched namespace");
    // Deleting Secrets is for ClusterZohoConnections, which need all namespaces.
    assert!(!can_i(&release.sa_client, "delete", "", "secrets", Some(watched.name()), None).await);

    let operator = release.run_operator("zoho-token-operator-5c8f7-abcde", &[]).await;
    create_crm_connection(&world, &admin, other.name()).await;
    create_crm_connection(&world, &admin, watched.name()).await;
    world.live_token("crm-token").await;
    assert_ready_with_event(&world, &admin, watched.name()).await;
    let ignored = Api::<ZohoConnection>::namespaced(admin.clone(), other.name())
        .get("crm")
        .await
        .expect("the other ZohoConnection");
    assert!(ignored.status.is_none(), "the operator touched a ZohoConnection outside watchNamespaces");
    assert!(Api::<Secret>::namespaced(admin.clone(), other.name()).get_opt("crm-token").await.expect("GET").is_none());

    drop(operator);
    release.uninstall(&scratch, cluster);
    for namespace in [home, world.namespace, other] {
        namespace.delete().await.expect("delete the namespace");
    }
}

/// The status subresource and the event recorder work under the chart's RBAC: `crm` is Ready and
/// the status names its Secret. A first token records no event, so the credentials Secret is
/// taken away (a Warning event) and put back (a TokenIssued event).
async fn assert_ready_with_event(world: &World<'_>, admin: &Client, namespace: &str) {
    let connections: Api<ZohoConnection> = Api::namespaced(admin.clone(), namespace);
    let ready = wait_ready(&connections, "crm", "True", "TokenIssued", SETTLE).await;
    assert_eq!(ready.status.and_then(|s| s.secret_name).as_deref(), Some("crm-token"), "the status's Secret");

    let credentials: Api<Secret> = Api::namespaced(admin.clone(), namespace);
    credentials.delete("zoho-oauth", &Default::default()).await.expect("delete the credentials Secret");
    wait_event(admin, namespace, "CredentialsSecretNotFound").await;
    let secret = credentials_secret("zoho-oauth", CLIENT_ID, CLIENT_SECRET, &world.refresh_token);
    create(&credentials, &secret).await;
    wait_ready(&connections, "crm", "True", "TokenIssued", SETTLE).await;
    wait_event(admin, namespace, "TokenIssued").await;
}

async fn wait_event(admin: &Client, namespace: &str, reason: &str) {
    let events: Api<Event> = Api::namespaced(admin.clone(), namespace);
    eventually(Duration::from_secs(30), &format!("a {reason} event for {namespace}/crm"), || async {
        let recorded = events.list(&ListParams::default()).await.ok()?.items.into_iter().any(|e| {
            e.regarding
                .as_ref()
                .is_some_and(|r| r.kind.as_deref() == Some("ZohoConnection") && r.name.as_deref() == Some("crm"))
                && e.reason.as_deref() == Some(reason)
        });
        recorded.then_some(())
    })
    .await;
}

async fn can_i(
    client: &Client,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> bool {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.to_owned()),
                group: Some(group.to_owned()),
                resource: Some(resource.to_owned()),
                namespace: namespace.map(str::to_owned),
                name: name.map(str::to_owned),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let answer = Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("create a SelfSubjectAccessReview");
    answer.status.expect("a review status").allowed
}

fn assert_forbidden(result: Result<(), kube::Error>, what: &str) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("{what} under the operator's ServiceAccount: expected 403 Forbidden, got {other:?}"),
    }
}
