//! Errors that reach a person: a watch the operator is not allowed to make shows in its log at
//! the default level, naming the resource, instead of failing silently.

use k8s_openapi::api::{
    authentication::v1::{TokenRequest, TokenRequestSpec},
    core::v1::ServiceAccount,
    rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject},
};
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
};
use serde_json::json;
use testkit::fake_zoho::FakeZohoConfig;

use crate::support::*;

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let strings = |items: &[&str]| Some(items.iter().map(|s| s.to_string()).collect());
    PolicyRule {
        api_groups: strings(groups),
        resources: strings(resources),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..PolicyRule::default()
    }
}

#[tokio::test]
async fn a_forbidden_secret_watch_is_logged_at_warn_with_the_resource_named() {
    let world = World::shared("logs-forbidden", FakeZohoConfig::default()).await;
    let client = world.cluster.client().await.unwrap();
    let ns = world.namespace.name();
    let meta = |name: &str| ObjectMeta { name: Some(name.into()), namespace: Some(ns.into()), ..ObjectMeta::default() };
    create(
        &Api::<ServiceAccount>::namespaced(client.clone(), ns),
        &ServiceAccount { metadata: meta("operator"), ..ServiceAccount::default() },
    )
    .await;
    // Everything the operator needs in its namespace, except listing and watching Secrets.
    let role = Role {
        metadata: meta("operator"),
        rules: Some(vec![
            rule(&["zoho-operator.dev"], &["zohoconnections"], &["get", "list", "watch", "patch"]),
            rule(&["zoho-operator.dev"], &["zohoconnections/status"], &["patch"]),
            rule(&[""], &["secrets"], &["get", "create", "patch"]),
            rule(&["events.k8s.io"], &["events"], &["create", "patch"]),
        ]),
    };
    create(&Api::<Role>::namespaced(client.clone(), ns), &role).await;
    let binding = RoleBinding {
        metadata: meta("operator"),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: "operator".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "operator".into(),
            namespace: Some(ns.into()),
            ..Subject::default()
        }]),
    };
    create(&Api::<RoleBinding>::namespaced(client.clone(), ns), &binding).await;
    let request = TokenRequest {
        spec: Some(TokenRequestSpec { expiration_seconds: Some(3600), ..TokenRequestSpec::default() }),
        ..TokenRequest::default()
    };
    let token = Api::<ServiceAccount>::namespaced(client, ns)
        .create_token_request("operator", &PostParams::default(), &request)
        .await
        .expect("a token")
        .status
        .expect("a status")
        .token
        .expect("a token");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    world.cluster.kubeconfig_for_token(&token, &kubeconfig).unwrap();

    // At the chart's default level, info.
    let operator = Operator::spawn(&kubeconfig, Some(ns), &world.fake, &[], &[("RUST_LOG", "info")]);
    world.create_credentials("zoho-oauth").await;
    world.create_connection("crm", json!({})).await;
    let line = eventually(SETTLE, "a warning about the forbidden Secret watch", || async {
        let logs = operator.logs();
        logs.lines()
            .find(|line| line.contains("WARN") && line.contains("resource=\"secrets\"") && line.contains("forbidden"))
            .map(str::to_string)
    })
    .await;
    assert!(line.contains("watch or list failed"), "{line}");
    // Rate-limited: the watch retries every few seconds, the warning comes once a minute.
    tokio::time::sleep(std::time::Duration::from_secs(20)).await;
    let repeats = operator.logs().lines().filter(|l| l.contains("resource=\"secrets\"") && l.contains("WARN")).count();
    assert_eq!(repeats, 1, "{}", operator.logs());
    world.namespace.delete().await.ok();
}
