//! The test cluster itself works: objects round-trip, garbage collection runs, the version fits.

use std::time::{Duration, Instant};

use k8s_openapi::{
    ByteString,
    api::core::v1::{ConfigMap, Secret},
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use kube::api::{Api, DeleteParams, PostParams};
use testkit::control_plane::{shared, test_namespace};

const GC_TIMEOUT: Duration = Duration::from_secs(60);

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.to_owned()), ..ObjectMeta::default() }
}

#[tokio::test]
async fn secret_round_trips() {
    let client = shared().await.client().await.expect("client for the test cluster");
    let namespace = test_namespace(&client, "smoke-secret").await.expect("test namespace");
    let secrets: Api<Secret> = Api::namespaced(client, namespace.name());

    let secret = Secret {
        metadata: meta("round-trip"),
        string_data: Some([("token".to_owned(), "s3cr3t".to_owned())].into()),
        ..Secret::default()
    };
    secrets.create(&PostParams::default(), &secret).await.expect("create the Secret");
    let read = secrets.get("round-trip").await.expect("read the Secret back");

    assert_eq!(read.data.unwrap_or_default().get("token"), Some(&ByteString(b"s3cr3t".to_vec())));
    namespace.delete().await.expect("delete the test namespace");
}

#[tokio::test]
async fn deleting_an_owner_garbage_collects_its_dependents() {
    let cluster = shared().await;
    let client = cluster.client().await.expect("client for the test cluster");
    let namespace = test_namespace(&client, "smoke-gc").await.expect("test namespace");
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace.name());
    let secrets: Api<Secret> = Api::namespaced(client, namespace.name());

    let owner = config_maps
        .create(&PostParams::default(), &ConfigMap { metadata: meta("owner"), ..ConfigMap::default() })
        .await
        .expect("create the owner ConfigMap");
    let dependent = Secret {
        metadata: ObjectMeta {
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".to_owned(),
                kind: "ConfigMap".to_owned(),
                name: "owner".to_owned(),
                uid: owner.metadata.uid.expect("the owner has a uid"),
                ..OwnerReference::default()
            }]),
            ..meta("dependent")
        },
        ..Secret::default()
    };
    secrets.create(&PostParams::default(), &dependent).await.expect("create the dependent Secret");

    config_maps.delete("owner", &DeleteParams::background()).await.expect("delete the owner");
    let deleted = Instant::now();
    while secrets.get_opt("dependent").await.expect("look up the dependent Secret").is_some() {
        let logs = match cluster.control_plane() {
            Ok(plane) => format!("kube-controller-manager.log in {}", plane.dir().display()),
            Err(_) => "the cluster's kube-controller-manager".to_owned(),
        };
        assert!(
            deleted.elapsed() < GC_TIMEOUT,
            "the garbage collector has not deleted Secret {}/dependent {GC_TIMEOUT:?} after its owner \
             was deleted; check {logs}",
            namespace.name(),
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("dependent collected {:.1}s after its owner was deleted", deleted.elapsed().as_secs_f64());
    namespace.delete().await.expect("delete the test namespace");
}

#[tokio::test]
async fn apiserver_is_1_36() {
    let client = shared().await.client().await.expect("client for the test cluster");
    let version = client.apiserver_version().await.expect("GET /version");

    assert_eq!(
        (version.major.as_str(), version.minor.trim_end_matches('+')),
        ("1", "36"),
        "unexpected server version {}",
        version.git_version
    );
}
