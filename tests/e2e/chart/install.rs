//! The rendered manifests against the real API server: a server-side dry run, a real `helm
//! install` and uninstall, and Pod Security admission of the pod template.

use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{Namespace, Service, ServiceAccount},
        rbac::v1::{ClusterRole, ClusterRoleBinding},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;
use testkit::control_plane::{TestNamespace, shared, test_namespace};

use super::*;

#[tokio::test]
async fn every_manifest_passes_a_server_side_dry_run() {
    let cluster = shared().await;
    let client = cluster.client().await.expect("client for the test cluster");
    let scratch = Scratch::new("dry-run");
    let release_ns = test_namespace(&client, "chart-dry-run").await.expect("test namespace");
    let watched = [
        test_namespace(&client, "chart-dry-run-a").await.expect("test namespace"),
        test_namespace(&client, "chart-dry-run-b").await.expect("test namespace"),
    ];
    let watched_names: Vec<&str> = watched.iter().map(TestNamespace::name).collect();
    let stubs = [
        CrdStub::ensure(&client, "ServiceMonitor", "servicemonitors").await,
        CrdStub::ensure(&client, "PrometheusRule", "prometheusrules").await,
    ];

    for (name, values) in [("defaults", json!({})), ("every option", every_option(&watched_names))] {
        let rendered = render(&scratch, release_ns.name(), release_ns.name(), &values);
        let list = json!({"apiVersion": "v1", "kind": "List", "items": rendered.0});
        let file = scratch.write_json("dry-run.json", &list);
        let output = kubectl(
            cluster,
            &[
                "apply",
                "--server-side",
                "--dry-run=server",
                "--force-conflicts",
                "--field-manager",
                FIELD_MANAGER,
                "-f",
                path_str(&file),
            ],
        );
        let text = output_text(&output);
        assert!(output.status.success(), "server-side dry run of the {name} manifests failed:\n{text}");
        for object in &rendered.0 {
            let name = object["metadata"]["name"].as_str().expect("a name");
            assert!(
                text.lines().any(|l| l.contains(&format!("/{name} ")) && l.contains("(server dry run)")),
                "{} was not applied in the dry run:\n{text}",
                describe(object)
            );
        }
    }
    for stub in stubs {
        stub.remove(&client).await;
    }
    for namespace in watched {
        namespace.delete().await.expect("delete the namespace");
    }
    release_ns.delete().await.expect("delete the namespace");
}

#[tokio::test]
async fn helm_install_creates_the_objects_and_uninstall_keeps_the_crd() {
    let cluster = shared().await;
    let client = cluster.client().await.expect("client for the test cluster");
    let scratch = Scratch::new("install");
    let namespace = test_namespace(&client, "chart-install").await.expect("test namespace");
    let ns = namespace.name();
    let release = ns;
    let fullname = format!("{release}-zoho-token-operator");

    // --take-ownership: other tests on this cluster may already have applied the CRD.
    let install = helm_install(&scratch, cluster, release, ns, &json!({}), &["--take-ownership"]);
    let notes = output_text(&install);
    assert!(
        notes.contains("has been deployed successfully") && notes.contains("kubectl get zc"),
        "NOTES.txt:\n{notes}"
    );

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    wait_established(&crds, CRD_NAME).await;
    let crd = crds.get(CRD_NAME).await.expect("the CRD");
    assert_eq!(
        crd.metadata.annotations.as_ref().and_then(|a| a.get("helm.sh/resource-policy")).map(String::as_str),
        Some("keep")
    );
    Api::<ServiceAccount>::namespaced(client.clone(), ns).get(&fullname).await.expect("the ServiceAccount");
    let role = Api::<ClusterRole>::all(client.clone()).get(&fullname).await.expect("the ClusterRole");
    assert_eq!(serde_json::to_value(&role.rules).expect("rules"), cluster_operator_rules());
    Api::<ClusterRoleBinding>::all(client.clone()).get(&fullname).await.expect("the ClusterRoleBinding");
    let deployment = Api::<Deployment>::namespaced(client.clone(), ns).get(&fullname).await.expect("the Deployment");
    let pod = deployment.spec.and_then(|s| s.template.spec).expect("a pod template");
    assert_eq!(pod.service_account_name.as_deref(), Some(fullname.as_str()));
    Api::<Service>::namespaced(client.clone(), ns).get(&format!("{fullname}-metrics")).await.expect("the Service");

    let uninstall = helm(
        &scratch,
        &["uninstall", release, "-n", ns, "--wait", "--kubeconfig", path_str(cluster.kubeconfig_path())],
    );
    assert!(uninstall.status.success(), "helm uninstall:\n{}", output_text(&uninstall));
    assert!(
        Api::<ClusterRole>::all(client.clone()).get_opt(&fullname).await.expect("GET").is_none(),
        "the ClusterRole survived uninstall"
    );
    assert!(Api::<Deployment>::namespaced(client.clone(), ns).get_opt(&fullname).await.expect("GET").is_none());
    let kept = crds.get_opt(CRD_NAME).await.expect("GET the CRD");
    assert!(
        kept.is_some_and(|crd| crd.metadata.deletion_timestamp.is_none()),
        "helm uninstall deleted the CRD despite crds.keep"
    );
    namespace.delete().await.expect("delete the namespace");
}

#[tokio::test]
async fn pod_template_is_admitted_under_restricted_pod_security() {
    let cluster = shared().await;
    let client = cluster.client().await.expect("client for the test cluster");
    let scratch = Scratch::new("restricted");
    let namespace = test_namespace(&client, "chart-restricted").await.expect("test namespace");
    let ns = namespace.name();
    let labels = json!({"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/warn-version": "latest",
    }}});
    Api::<Namespace>::all(client.clone())
        .patch(ns, &PatchParams::default(), &Patch::Merge(&labels))
        .await
        .expect("label the namespace restricted");

    for (name, values) in [("defaults", json!({})), ("every option", every_option(&[ns]))] {
        let rendered = render(&scratch, "zoho", ns, &values);
        // The ServiceAccount admission plugin rejects pods whose ServiceAccount does not exist.
        let sa = rendered.of_kind("ServiceAccount")[0].clone();
        let sa_file = scratch.write_json("service-account.json", &sa);
        let applied =
            kubectl(cluster, &["apply", "--server-side", "--field-manager", FIELD_MANAGER, "-f", path_str(&sa_file)]);
        assert!(applied.status.success(), "apply the ServiceAccount:\n{}", output_text(&applied));

        let deployment = rendered.of_kind("Deployment")[0];
        let pod = pod_from(deployment, ns, "restricted-check");
        let output = kubectl_create_dry_run(cluster, &scratch, &pod);
        let text = output_text(&output);
        assert!(output.status.success(), "the {name} pod template was not admitted as restricted:\n{text}");
        assert!(!text.contains("violate"), "the {name} pod template draws PodSecurity warnings:\n{text}");

        // The namespace really enforces: the same pod with privilege escalation is rejected.
        let mut escalating = pod.clone();
        escalating["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = json!(true);
        let output = kubectl_create_dry_run(cluster, &scratch, &escalating);
        assert!(
            !output.status.success() && output_text(&output).contains("violates PodSecurity"),
            "a pod allowing privilege escalation was admitted in a restricted namespace:\n{}",
            output_text(&output)
        );
    }
    namespace.delete().await.expect("delete the namespace");
}

/// A Pod with the Deployment's pod template.
fn pod_from(deployment: &Value, namespace: &str, name: &str) -> Value {
    let template = &deployment["spec"]["template"];
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": template["metadata"]["labels"]},
        "spec": template["spec"],
    })
}
