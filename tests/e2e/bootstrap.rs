//! `zoho-token-operator bootstrap --apply` against the real control plane: the credentials Secret
//! lands in the cluster, the operator mints with it, and a cluster that refuses the write costs
//! no grant code.

use std::{
    path::Path,
    process::{Command, Stdio},
};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json::json;
use testkit::{
    control_plane::{shared, test_namespace},
    fake_zoho::FakeZohoConfig,
};

use crate::support::*;

struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `bootstrap grant-code --apply` with the secrets in the environment, off the runtime's
/// threads since it blocks until the process exits.
async fn bootstrap_apply(kubeconfig: &Path, accounts_url: &str, namespace: &str, code: &str) -> Run {
    let (kubeconfig, accounts_url, namespace, code) =
        (kubeconfig.to_owned(), accounts_url.to_owned(), namespace.to_owned(), code.to_owned());
    tokio::task::spawn_blocking(move || {
        let output = Command::new(OPERATOR_BINARY)
            .args(["bootstrap", "grant-code", "--accounts-url", &accounts_url, "--client-id", CLIENT_ID])
            .args(["--namespace", &namespace, "--apply", "--print-connection"])
            .env("KUBECONFIG", kubeconfig)
            .env("ZOHO_CLIENT_SECRET", CLIENT_SECRET)
            .env("ZOHO_GRANT_CODE", code)
            .env_remove("ZOHO_CLIENT_ID")
            .stdin(Stdio::null())
            .output()
            .expect("run the bootstrap command");
        Run {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn bootstrap_apply_writes_a_credentials_secret_the_operator_mints_with() {
    let world = World::shared("bootstrap", FakeZohoConfig::default()).await;
    let code = world.fake.issue_code(CLIENT_ID, None);
    let kubeconfig = world.cluster.kubeconfig_path();
    let run = bootstrap_apply(kubeconfig, &world.fake.url(), world.namespace.name(), &code).await;
    assert!(run.success, "{}", run.stderr);
    assert!(run.stderr.contains(&format!("Applied Secret {}/zoho-oauth", world.namespace.name())), "{}", run.stderr);

    let secret = world.secrets.get("zoho-oauth").await.expect("the Secret exists");
    let keys: Vec<&str> = secret.data.as_ref().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["client_id", "client_secret", "refresh_token"]);
    assert_eq!(string_data(&secret, "client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(string_data(&secret, "client_secret").as_deref(), Some(CLIENT_SECRET));
    let refresh_token = string_data(&secret, "refresh_token").unwrap();
    assert!(world.fake.is_live(&refresh_token));
    let managers: Vec<_> =
        secret.metadata.managed_fields.unwrap_or_default().into_iter().filter_map(|entry| entry.manager).collect();
    assert_eq!(managers, ["zoho-token-operator-bootstrap"]);
    assert!(!run.stdout.contains(&refresh_token), "an applied Secret is not printed as well");
    assert!(!run.stderr.contains(&refresh_token) && !run.stderr.contains(CLIENT_SECRET));

    // The printed ZohoConnection is what the operator needs: apply it and a token arrives.
    let printed: zoho_token_operator::api::ZohoConnection = serde_saphyr::from_str(&run.stdout).expect(&run.stdout);
    assert_eq!(printed.spec.source.accounts_url.as_deref(), Some(world.fake.url().as_str()));
    let _operator = world.operator(&[]);
    let mut connection = connection("zoho", "zoho-oauth", &world.fake, json!({}));
    connection.spec = printed.spec;
    create(&world.connections, &connection).await;
    let token = world.live_token("zoho").await;
    assert_eq!(world.fake.token_info(&token).unwrap().refresh_token.as_deref(), Some(refresh_token.as_str()));
}

#[tokio::test]
async fn a_refused_write_is_found_before_the_code_is_spent() {
    let cluster = shared().await;
    let client = cluster.client().await.expect("client");
    let namespace = test_namespace(&client, "bootstrap-refused").await.expect("namespace");
    let fake = testkit::fake_zoho::FakeZoho::start(FakeZohoConfig::default());
    fake.register_client(CLIENT_ID, CLIENT_SECRET);
    let code = fake.issue_code(CLIENT_ID, None);

    let missing = format!("{}-missing", namespace.name());
    let run = bootstrap_apply(cluster.kubeconfig_path(), &fake.url(), &missing, &code).await;
    assert!(!run.success);
    assert!(
        run.stderr.contains("cannot write Secret") && run.stderr.contains("Nothing was sent to Zoho"),
        "{}",
        run.stderr
    );
    assert_eq!(fake.stats().totals.requests, 0, "the grant code is still unused");

    let run = bootstrap_apply(cluster.kubeconfig_path(), &fake.url(), namespace.name(), &code).await;
    assert!(run.success, "the same code works once the namespace is right: {}", run.stderr);
    let secrets: Api<Secret> = Api::namespaced(client, namespace.name());
    assert!(secrets.get_opt("zoho-oauth").await.unwrap().is_some());
    namespace.delete().await.expect("delete the test namespace");
}
