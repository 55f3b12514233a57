//! The Helm chart (`charts/zoho-token-operator`): lint, render and assert on the objects, a
//! server-side dry run of every manifest, a real `helm install`, Pod Security admission of the
//! pod template, and the operator itself running under the chart's ServiceAccount and RBAC.
//!
//! helm and kubectl come from `scripts/tools` (see `testkit::control_plane::find_binary`); the
//! tests fail, never skip, when they are missing.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        authentication::v1::{TokenRequest, TokenRequestSpec},
        authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec},
        coordination::v1::Lease,
        core::v1::{Namespace, Secret, Service, ServiceAccount},
        events::v1::Event,
        rbac::v1::{ClusterRole, ClusterRoleBinding},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use testkit::{
    control_plane::{
        CLUSTER_ENV, TestCluster, TestNamespace, client_from_kubeconfig, find_binary, shared, test_namespace,
    },
    fake_zoho::{FakeZoho, FakeZohoConfig},
};
use zoho_token_operator::api::ZohoConnection;

use crate::support::{OPERATOR_BINARY, Operator, free_port};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/zoho-token-operator");
const GENERATED_CRD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/zohoconnection.yaml");
const CRD_NAME: &str = "zohoconnections.zoho-operator.dev";
const KUBE_VERSION: &str = "1.36.3";
const FIELD_MANAGER: &str = "zoho-token-operator-chart-tests";
/// The operator lists the CRD, may wait for the lease, then mints: generous on a busy 2-core box.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(90);

const CLIENT_ID: &str = "1000.CHARTTESTCLIENT";
const CLIENT_SECRET: &str = "chart-test-client-secret";
const REFRESH_TOKEN: &str = "1000.chart-test-refresh-token";

// ---------------------------------------------------------------------------------------------
// Rendering and linting: no cluster needed.
// ---------------------------------------------------------------------------------------------

#[test]
fn crd_template_matches_the_generated_crd() {
    let scratch = Scratch::new("crd");
    let rendered = render(&scratch, "zoho", "ops", &json!({}));
    let mut crd = rendered.get("CustomResourceDefinition", CRD_NAME).clone();
    assert_eq!(crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep", "crds.keep defaults to true");
    assert_eq!(crd["metadata"]["labels"]["app.kubernetes.io/instance"], "zoho");

    // Everything but the labels and annotations the chart adds must be the generated CRD.
    let metadata = crd["metadata"].as_object_mut().expect("the CRD has metadata");
    metadata.remove("labels");
    metadata.remove("annotations");
    let committed: Value = serde_saphyr::from_str(&read(GENERATED_CRD)).expect("crds/zohoconnection.yaml parses");
    assert!(
        crd == committed,
        "the chart's CRD differs from crds/zohoconnection.yaml; run scripts/chart-sync\n{}",
        diff_hint(&crd, &committed)
    );
    let generated: Value = serde_saphyr::from_str(&zoho_token_operator::crds()[0].1).expect("the generated CRD parses");
    assert!(
        crd == generated,
        "the chart's CRD differs from `zoho-token-operator crd`; regenerate crds/zohoconnection.yaml \
         (`cargo run -q -- crd > crds/zohoconnection.yaml`), then run scripts/chart-sync\n{}",
        diff_hint(&crd, &generated)
    );

    // The template is exactly what scripts/chart-sync writes.
    let check = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/chart-sync"))
        .arg("--check")
        .output()
        .expect("run scripts/chart-sync --check");
    assert!(check.status.success(), "scripts/chart-sync --check failed:\n{}", output_text(&check));

    let unkept = render(&scratch, "zoho", "ops", &json!({"crds": {"keep": false}}));
    let annotations = &unkept.get("CustomResourceDefinition", CRD_NAME)["metadata"]["annotations"];
    assert!(annotations.get("helm.sh/resource-policy").is_none(), "crds.keep=false still keeps: {annotations}");
}

#[test]
fn app_version_is_the_crate_version() {
    let chart: Value = serde_saphyr::from_str(&read(&format!("{CHART}/Chart.yaml"))).expect("Chart.yaml parses");
    assert_eq!(chart["name"], "zoho-token-operator");
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"), "Chart.yaml's appVersion is not the crate's version");
    assert_eq!(chart["kubeVersion"], ">=1.28.0-0");
}

#[test]
fn lint_is_clean_in_strict_mode() {
    let scratch = Scratch::new("lint");
    for (name, values) in [("defaults", json!({})), ("every option", every_option(&["team-a", "team-b"]))] {
        let file = scratch.write_json(&format!("lint-{}.json", name.replace(' ', "-")), &values);
        let lint = helm(&scratch, &["lint", "--strict", CHART, "-f", path_str(&file)]);
        let text = output_text(&lint);
        assert!(lint.status.success() && text.contains("0 chart(s) failed"), "helm lint --strict ({name}):\n{text}");
    }
    // The lint is no formality: values that break the schema fail it.
    let bad = scratch.write_json("lint-bad.json", &json!({"logFormat": "xml"}));
    let lint = helm(&scratch, &["lint", "--strict", CHART, "-f", path_str(&bad)]);
    assert!(!lint.status.success(), "helm lint accepted logFormat=xml:\n{}", output_text(&lint));
}

#[test]
fn default_render_is_a_single_cluster_wide_operator() {
    let scratch = Scratch::new("defaults");
    let rendered = render(&scratch, "zoho", "ops", &json!({}));
    assert_eq!(
        rendered.kinds(),
        BTreeSet::from([
            ("ClusterRole", "zoho-zoho-token-operator"),
            ("ClusterRole", "zoho-zoho-token-operator-edit"),
            ("ClusterRole", "zoho-zoho-token-operator-view"),
            ("ClusterRoleBinding", "zoho-zoho-token-operator"),
            ("CustomResourceDefinition", CRD_NAME),
            ("Deployment", "zoho-zoho-token-operator"),
            ("Service", "zoho-zoho-token-operator-metrics"),
            ("ServiceAccount", "zoho-zoho-token-operator"),
        ])
        .into_iter()
        .map(|(k, n)| (k.to_owned(), n.to_owned()))
        .collect(),
    );
    for object in &rendered.0 {
        if object["kind"] != "ClusterRole" && object["kind"] != "ClusterRoleBinding" && object["kind"] != CRD_KIND {
            assert_eq!(object["metadata"]["namespace"], "ops", "{} is not in the release namespace", describe(object));
        }
    }

    // RBAC: exactly what the operator uses, bound to its ServiceAccount.
    let role = rendered.get("ClusterRole", "zoho-zoho-token-operator");
    assert_eq!(role["rules"], operator_rules(), "the operator's ClusterRole");
    let binding = rendered.get("ClusterRoleBinding", "zoho-zoho-token-operator");
    assert_eq!(binding["roleRef"]["name"], "zoho-zoho-token-operator");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "zoho-zoho-token-operator", "namespace": "ops"}])
    );
    let view = rendered.get("ClusterRole", "zoho-zoho-token-operator-view");
    assert_eq!(view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"], "true");
    assert_eq!(view["rules"][0]["verbs"], json!(["get", "list", "watch"]));
    let sa = rendered.get("ServiceAccount", "zoho-zoho-token-operator");
    assert_eq!(sa["automountServiceAccountToken"], false, "only the operator's pod should mount its token");

    // The Deployment.
    let deployment = rendered.get("Deployment", "zoho-zoho-token-operator");
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(deployment["spec"]["strategy"], json!({"type": "Recreate"}), "no surge without leader election");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "zoho-zoho-token-operator");
    assert_eq!(pod["automountServiceAccountToken"], true);
    assert_eq!(pod["enableServiceLinks"], false);
    assert_eq!(
        pod["securityContext"],
        json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}})
    );
    assert_eq!(pod["nodeSelector"], json!({"kubernetes.io/os": "linux"}));
    for absent in
        ["priorityClassName", "imagePullSecrets", "tolerations", "affinity", "topologySpreadConstraints", "volumes"]
    {
        assert!(pod.get(absent).is_none(), "{absent} is set by default: {}", pod[absent]);
    }
    let container = container(deployment);
    assert_eq!(
        container["image"],
        format!("zoho-token-operator:{}", env!("CARGO_PKG_VERSION")),
        "the tag defaults to appVersion"
    );
    assert_eq!(container["imagePullPolicy"], "IfNotPresent");
    assert_eq!(args(deployment), ["--metrics-addr=0.0.0.0:8080", "--log-format=text"]);
    assert_eq!(
        container["env"],
        json!([
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "RUST_LOG", "value": "info"},
        ])
    );
    assert_eq!(container["ports"], json!([{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]));
    assert_eq!(container["livenessProbe"]["httpGet"], json!({"path": "/healthz", "port": "metrics"}));
    assert_eq!(container["readinessProbe"]["httpGet"], json!({"path": "/readyz", "port": "metrics"}));
    assert_eq!(
        container["securityContext"],
        json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}})
    );
    assert_eq!(
        container["resources"],
        json!({"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}})
    );

    let service = rendered.get("Service", "zoho-zoho-token-operator-metrics");
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}])
    );
    assert_eq!(service["spec"]["selector"], deployment["spec"]["selector"]["matchLabels"]);
}

#[test]
fn watch_namespaces_get_roles_instead_of_a_cluster_role() {
    let scratch = Scratch::new("watch");
    let rendered = render(
        &scratch,
        "zoho",
        "ops",
        &json!({"watchNamespaces": ["sales", "support"], "rbac": {"aggregateClusterRoles": false}}),
    );
    assert!(rendered.of_kind("ClusterRole").is_empty(), "a ClusterRole is rendered with watchNamespaces");
    assert!(rendered.of_kind("ClusterRoleBinding").is_empty());
    for namespace in ["sales", "support"] {
        let role = rendered.get_in("Role", "zoho-zoho-token-operator", namespace);
        assert_eq!(role["rules"], operator_rules(), "the Role in {namespace}");
        let binding = rendered.get_in("RoleBinding", "zoho-zoho-token-operator", namespace);
        assert_eq!(
            binding["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "zoho-zoho-token-operator"})
        );
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": "zoho-zoho-token-operator", "namespace": "ops"}])
        );
    }
    assert_eq!(rendered.of_kind("Role").len(), 2, "one Role per watched namespace and no lease Role");
    let deployment = rendered.get("Deployment", "zoho-zoho-token-operator");
    assert_eq!(
        args(deployment),
        ["--metrics-addr=0.0.0.0:8080", "--log-format=text", "--watch-namespace=sales", "--watch-namespace=support"]
    );

    let duplicate = helm_template(&scratch, "zoho", "ops", &json!({"watchNamespaces": ["sales", "sales"]}));
    assert!(!duplicate.status.success(), "a namespace listed twice was accepted");
}

#[test]
fn leader_election_switches_on_with_two_replicas_or_on_request() {
    let scratch = Scratch::new("leader");
    for (values, lease) in [
        (json!({"replicaCount": 2}), "zoho-zoho-token-operator"),
        (
            json!({"leaderElection": {"enabled": true, "leaseName": "zoho-leader", "leaseDuration": "30s"}}),
            "zoho-leader",
        ),
    ] {
        let rendered = render(&scratch, "zoho", "ops", &values);
        let role = rendered.get_in("Role", "zoho-zoho-token-operator-leader-election", "ops");
        assert_eq!(
            role["rules"],
            json!([
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": [lease], "verbs": ["get", "update"]},
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            ]),
            "{values}"
        );
        let binding = rendered.get_in("RoleBinding", "zoho-zoho-token-operator-leader-election", "ops");
        assert_eq!(binding["roleRef"]["name"], "zoho-zoho-token-operator-leader-election");
        assert_eq!(binding["subjects"][0]["name"], "zoho-zoho-token-operator");
        let deployment = rendered.get("Deployment", "zoho-zoho-token-operator");
        let duration = values["leaderElection"]["leaseDuration"].as_str().unwrap_or("15s");
        assert_eq!(
            args(deployment)[2..],
            [
                "--leader-election".to_owned(),
                format!("--leader-election-name={lease}"),
                format!("--leader-election-lease-duration={duration}")
            ],
            "{values}"
        );
        assert_eq!(deployment["spec"]["strategy"]["type"], "RollingUpdate", "{values}");
        assert_eq!(deployment["spec"]["replicas"], values["replicaCount"].as_i64().unwrap_or(1), "{values}");
        // The operator takes the lease namespace and its identity from the downward API.
        assert_eq!(env_var(deployment, "POD_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"], "metadata.namespace");
        assert_eq!(env_var(deployment, "POD_NAME")["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name");
    }
    let single = render(&scratch, "zoho", "ops", &json!({"replicaCount": 1}));
    assert!(single.of_kind("Role").is_empty(), "a lease Role without leader election");
    assert!(!args(single.get("Deployment", "zoho-zoho-token-operator")).contains(&"--leader-election".to_owned()));
}

#[test]
fn service_monitor_scrapes_the_metrics_service() {
    let scratch = Scratch::new("monitor");
    let rendered = render(
        &scratch,
        "zoho",
        "ops",
        &json!({"prometheus": {"serviceMonitor": {
            "enabled": true, "interval": "30s", "scrapeTimeout": "10s", "honorLabels": true,
            "labels": {"release": "kube-prometheus-stack"},
            "endpointAdditionalProperties": {"metricRelabelings": [{"action": "labeldrop", "regex": "pod"}]},
        }}}),
    );
    let monitor = rendered.get("ServiceMonitor", "zoho-zoho-token-operator");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["labels"]["release"], "kube-prometheus-stack");
    let service = rendered.get("Service", "zoho-zoho-token-operator-metrics");
    for (key, value) in monitor["spec"]["selector"]["matchLabels"].as_object().expect("matchLabels") {
        assert_eq!(&service["metadata"]["labels"][key], value, "the ServiceMonitor does not select the Service");
    }
    assert_eq!(monitor["spec"]["namespaceSelector"], json!({"matchNames": ["ops"]}));
    assert_eq!(
        monitor["spec"]["endpoints"],
        json!([{
            "port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s", "honorLabels": true,
            "metricRelabelings": [{"action": "labeldrop", "regex": "pod"}],
        }])
    );
    assert!(render(&scratch, "zoho", "ops", &json!({})).of_kind("ServiceMonitor").is_empty());
    let without_service =
        json!({"prometheus": {"serviceMonitor": {"enabled": true}}, "metrics": {"service": {"enabled": false}}});
    assert!(!helm_template(&scratch, "zoho", "ops", &without_service).status.success());
}

#[test]
fn pod_disruption_budget_is_optional_and_takes_one_bound() {
    let scratch = Scratch::new("pdb");
    assert!(render(&scratch, "zoho", "ops", &json!({})).of_kind("PodDisruptionBudget").is_empty());
    for (values, expected) in [
        (json!({"enabled": true}), json!({"minAvailable": 1})),
        (json!({"enabled": true, "maxUnavailable": "50%"}), json!({"maxUnavailable": "50%"})),
        (
            json!({"enabled": true, "minAvailable": 1, "unhealthyPodEvictionPolicy": "AlwaysAllow"}),
            json!({"minAvailable": 1, "unhealthyPodEvictionPolicy": "AlwaysAllow"}),
        ),
    ] {
        let rendered = render(&scratch, "zoho", "ops", &json!({"replicaCount": 2, "podDisruptionBudget": values}));
        let pdb = rendered.get("PodDisruptionBudget", "zoho-zoho-token-operator");
        let mut spec = pdb["spec"].clone();
        let selector = spec.as_object_mut().expect("spec").remove("selector").expect("a selector");
        assert_eq!(
            selector["matchLabels"],
            rendered.get("Deployment", "zoho-zoho-token-operator")["spec"]["selector"]["matchLabels"]
        );
        assert_eq!(spec, expected, "{values}");
    }
    let both = json!({"podDisruptionBudget": {"enabled": true, "minAvailable": 1, "maxUnavailable": 1}});
    let failed = helm_template(&scratch, "zoho", "ops", &both);
    assert!(!failed.status.success() && output_text(&failed).contains("not both"), "{}", output_text(&failed));
}

#[test]
fn network_policy_allows_dns_the_api_server_and_https_only() {
    let scratch = Scratch::new("netpol");
    assert!(render(&scratch, "zoho", "ops", &json!({})).of_kind("NetworkPolicy").is_empty());

    let rendered = render(&scratch, "zoho", "ops", &json!({"networkPolicy": {"enabled": true}}));
    let policy = rendered.get("NetworkPolicy", "zoho-zoho-token-operator");
    let spec = &policy["spec"];
    assert_eq!(
        spec["podSelector"]["matchLabels"],
        rendered.get("Deployment", "zoho-zoho-token-operator")["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(spec["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(spec["ingress"], json!([{"ports": [{"port": 8080, "protocol": "TCP"}]}]));
    assert_eq!(
        spec["egress"],
        json!([
            {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
            {"ports": [{"port": 6443, "protocol": "TCP"}]},
            {"ports": [{"port": 443, "protocol": "TCP"}]},
        ])
    );

    let narrowed = render(
        &scratch,
        "zoho",
        "ops",
        &json!({"metrics": {"port": 9100}, "networkPolicy": {
            "enabled": true,
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
            "dns": {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]},
            "apiServer": {"cidrs": ["192.0.2.10/32"], "ports": [6443, 443]},
            "accountsServers": {"cidrs": ["198.51.100.0/24"]},
            "extraEgress": [{"ports": [{"port": 8443, "protocol": "TCP"}]}],
        }}),
    );
    let spec = &narrowed.get("NetworkPolicy", "zoho-zoho-token-operator")["spec"];
    assert_eq!(
        spec["ingress"],
        json!([{"ports": [{"port": 9100, "protocol": "TCP"}], "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}])
    );
    assert_eq!(
        spec["egress"][0]["to"],
        json!([{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}])
    );
    assert_eq!(
        spec["egress"][1],
        json!({"ports": [{"port": 6443, "protocol": "TCP"}, {"port": 443, "protocol": "TCP"}], "to": [{"ipBlock": {"cidr": "192.0.2.10/32"}}]})
    );
    assert_eq!(spec["egress"][2]["to"], json!([{"ipBlock": {"cidr": "198.51.100.0/24"}}]));
    assert_eq!(spec["egress"][3], json!({"ports": [{"port": 8443, "protocol": "TCP"}]}));
    assert_eq!(spec["egress"].as_array().map(Vec::len), Some(4));
}

#[test]
fn crds_can_be_left_out() {
    let scratch = Scratch::new("nocrds");
    let rendered = render(&scratch, "zoho", "ops", &json!({"crds": {"install": false}}));
    assert!(rendered.of_kind(CRD_KIND).is_empty(), "crds.install=false still renders the CRD");
    assert_eq!(rendered.of_kind("Deployment").len(), 1);
}

#[test]
fn extra_args_env_and_pod_settings_reach_the_pod() {
    let scratch = Scratch::new("extras");
    let values = every_option(&["team-a"]);
    let rendered = render(&scratch, "zoho", "ops", &values);
    // nameOverride "zoho" is contained in the release name "zoho", so objects are named "zoho".
    let deployment = rendered.get("Deployment", "zoho");
    assert_eq!(deployment["metadata"]["annotations"], values["deploymentAnnotations"]);
    assert_eq!(deployment["metadata"]["labels"]["team"], "integrations", "commonLabels");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(deployment["spec"]["strategy"], values["strategy"]);
    assert_eq!(
        args(deployment),
        [
            "--metrics-addr=0.0.0.0:9090",
            "--log-format=json",
            "--allow-accounts-url=https://accounts.zoho.example.test",
            "--allow-accounts-url=http://127.0.0.1:9000",
            "--watch-namespace=team-a",
            "--leader-election",
            "--leader-election-name=zoho-leader",
            "--leader-election-lease-duration=20s",
            "--mint-budget=5",
            "--request-timeout=20s",
        ]
    );
    let container = container(deployment);
    assert_eq!(
        container["image"],
        "registry.example.test/zoho/zoho-token-operator@sha256:".to_owned() + &"a".repeat(64)
    );
    assert_eq!(container["imagePullPolicy"], "Always");
    assert_eq!(env_var(deployment, "RUST_LOG")["value"], "debug");
    assert_eq!(env_var(deployment, "ZOHO_OPERATOR_MINT_BUDGET_WINDOW")["value"], "5m");
    assert_eq!(container["ports"][0]["containerPort"], 9090);
    assert_eq!(container["volumeMounts"], values["volumeMounts"]);
    assert_eq!(container["resources"], values["resources"]);
    assert_eq!(container["livenessProbe"]["periodSeconds"], 20);
    assert_eq!(container["readinessProbe"]["failureThreshold"], 6);
    let template = &deployment["spec"]["template"];
    assert_eq!(template["metadata"]["annotations"], values["podAnnotations"]);
    assert_eq!(template["metadata"]["labels"]["example.test/tier"], "ops");
    let pod = &template["spec"];
    for key in [
        "priorityClassName",
        "nodeSelector",
        "tolerations",
        "affinity",
        "topologySpreadConstraints",
        "imagePullSecrets",
        "volumes",
        "terminationGracePeriodSeconds",
    ] {
        assert_eq!(pod[key], values[key], "{key}");
    }
    assert_eq!(pod["serviceAccountName"], "zoho-operator");
    let sa = rendered.get("ServiceAccount", "zoho-operator");
    assert_eq!(sa["metadata"]["annotations"], values["serviceAccount"]["annotations"]);
    assert_eq!(sa["metadata"]["labels"]["example.test/owner"], "integrations");

    // An existing ServiceAccount: none is rendered, and RBAC binds the named one.
    let existing =
        render(&scratch, "zoho", "ops", &json!({"serviceAccount": {"create": false, "name": "preexisting"}}));
    assert!(existing.of_kind("ServiceAccount").is_empty());
    assert_eq!(existing.get("ClusterRoleBinding", "zoho-zoho-token-operator")["subjects"][0]["name"], "preexisting");
    assert!(!helm_template(&scratch, "zoho", "ops", &json!({"serviceAccount": {"create": false}})).status.success());
}

#[test]
fn values_outside_the_schema_are_rejected() {
    let scratch = Scratch::new("schema");
    for values in [
        json!({"logFormat": "xml"}),
        json!({"replicaCount": "two"}),
        json!({"watchNamespace": ["typo"]}),
        json!({"image": {"repo": "typo"}}),
        json!({"leaderElection": {"leaseDuration": "15 seconds"}}),
        json!({"allowAccountsUrls": ["https://accounts.example.test/oauth/v2/token"]}),
        json!({"watchNamespaces": ["Not_A_Namespace"]}),
        json!({"podDisruptionBudget": {"enabled": true, "minAvailable": "half"}}),
    ] {
        let output = helm_template(&scratch, "zoho", "ops", &values);
        assert!(!output.status.success(), "helm template accepted {values}");
    }
}

/// values.yaml documents every key, values.schema.json describes every key, and the chart's
/// README lists every key in its values table.
#[test]
fn every_value_is_documented_in_values_yaml_schema_and_readme() {
    let schema: Value = serde_json::from_str(&read(&format!("{CHART}/values.schema.json"))).expect("the schema parses");
    let values_text = read(&format!("{CHART}/values.yaml"));
    let values: Value = serde_saphyr::from_str(&values_text).expect("values.yaml parses");
    let readme = read(&format!("{CHART}/README.md"));
    let mut leaves = Vec::new();
    schema_leaves(&schema, "", &mut leaves);
    assert!(leaves.len() > 40, "the schema describes only {} values", leaves.len());
    for path in &leaves {
        let default = path.split('.').try_fold(&values, |value, key| value.get(key));
        assert!(default.is_some(), "{path} is in values.schema.json but has no default in values.yaml");
        let node = path.split('.').try_fold(&schema, |s, key| s.get("properties")?.get(key)).expect("leaf in schema");
        assert!(
            node.get("description").is_some_and(|d| d.as_str().is_some_and(|d| !d.is_empty())),
            "{path} has no description in values.schema.json"
        );
        assert!(
            readme.contains(&format!("| `{path}` |")),
            "{path} is missing from the values table in the chart's README.md"
        );
    }

    // In values.yaml, each key of the schema is preceded by a comment, unless it only groups others.
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut previous = "";
    for line in values_text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some(key) = trimmed
            .split_once(':')
            .map(|(k, _)| k)
            .filter(|k| !trimmed.starts_with('#') && !trimmed.starts_with('-') && !k.contains(' '))
        {
            while stack.last().is_some_and(|(i, _)| *i >= indent) {
                stack.pop();
            }
            let parent: Vec<&str> = stack.iter().map(|(_, k)| k.as_str()).collect();
            let path = if parent.is_empty() { key.to_owned() } else { format!("{}.{key}", parent.join(".")) };
            let parent_is_leaf = !parent.is_empty() && leaves.contains(&parent.join("."));
            if !parent_is_leaf && leaves.contains(&path) {
                assert!(previous.trim_start().starts_with('#'), "{path} in values.yaml has no comment above it");
            }
            stack.push((indent, key.to_owned()));
        }
        if !trimmed.is_empty() {
            previous = line;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Against the real API server.
// ---------------------------------------------------------------------------------------------

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
    let stub = ServiceMonitorCrdStub::ensure(&client).await;

    for (name, values) in [("defaults", json!({})), ("every option", every_option(&watched_names))] {
        let rendered = render(&scratch, release_ns.name(), release_ns.name(), &values);
        let list = json!({"apiVersion": "v1", "kind": "List", "items": rendered.0});
        let file = scratch.write_json(&format!("dry-run-{}.json", name.replace(' ', "-")), &list);
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
    stub.remove(&client).await;
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
    wait_for_crd(&crds).await;
    let crd = crds.get(CRD_NAME).await.expect("the CRD");
    assert_eq!(
        crd.metadata.annotations.as_ref().and_then(|a| a.get("helm.sh/resource-policy")).map(String::as_str),
        Some("keep")
    );
    Api::<ServiceAccount>::namespaced(client.clone(), ns).get(&fullname).await.expect("the ServiceAccount");
    let role = Api::<ClusterRole>::all(client.clone()).get(&fullname).await.expect("the ClusterRole");
    assert_eq!(serde_json::to_value(&role.rules).expect("rules"), operator_rules());
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
        let sa_file = scratch.write_json(&format!("sa-{}.json", name.replace(' ', "-")), &sa);
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
    let admin = cluster.client().await.expect("client for the test cluster");
    let scratch = Scratch::new("operator-leader");
    crate::support::install_crd(&admin).await;
    let namespace = test_namespace(&admin, "chart-leader").await.expect("test namespace");
    let ns = namespace.name();
    let confine = if existing { vec![format!("--watch-namespace={ns}")] } else { vec![] };
    let zoho = fake_zoho();
    // replicaCount 0: on a real cluster (ZOHO_OPERATOR_TEST_CLUSTER=existing) no in-cluster pod
    // may compete with the process under test.
    let values = json!({
        "replicaCount": 0,
        "crds": {"install": false},
        "leaderElection": {"enabled": true},
        "allowAccountsUrls": [zoho.url()],
        "logLevel": "info,zoho_token_operator=debug",
    });
    let release = Release::install(&scratch, cluster, ns, ns, &values).await;
    let pod_name = format!("{}-7d4b9c-x2k8q", release.fullname);
    let operator = release.run_operator(&pod_name, &confine).await;

    create_connection(&admin, ns, &zoho).await;
    let token = wait_for_token(&admin, ns, &zoho, &operator).await;
    eprintln!("the operator wrote a live token ({} characters) under the chart's RBAC", token.len());

    // The operator created the Lease (create), and keeps renewing it (get, update): the renew
    // time moves on every third of the lease duration, 5 s with the chart's default of 15 s.
    let leases: Api<Lease> = Api::namespaced(admin.clone(), ns);
    let lease = leases.get(&release.fullname).await.expect("the Lease").spec.expect("a Lease spec");
    assert_eq!(lease.holder_identity.as_deref(), Some(pod_name.as_str()), "the Lease holder");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(operator.is_running(), "the operator exited early:\n{}", operator.logs());
        let renewed = leases.get(&release.fullname).await.expect("the Lease").spec.expect("a Lease spec");
        assert_eq!(renewed.holder_identity, lease.holder_identity, "the operator lost the Lease");
        if renewed.renew_time.as_ref().map(|t| t.0) > lease.renew_time.as_ref().map(|t| t.0) {
            break;
        }
        assert!(Instant::now() < deadline, "the Lease was not renewed within 30s\n{}", operator.logs());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    wait_for_ready_status_and_event(&admin, ns, &operator).await;

    // The ServiceAccount holds exactly the verbs the operator uses.
    let sa = &release.sa_client;
    for (allowed, verb, group, resource, name) in [
        (true, "watch", "", "secrets", None),
        (true, "create", "", "secrets", None),
        (true, "patch", "", "secrets", None),
        (false, "update", "", "secrets", None),
        (false, "delete", "", "secrets", None),
        (false, "create", "zoho-operator.dev", "zohoconnections", None),
        (false, "update", "zoho-operator.dev", "zohoconnections", None),
        (false, "get", "", "configmaps", None),
        (true, "update", "coordination.k8s.io", "leases", Some(release.fullname.as_str())),
        (false, "update", "coordination.k8s.io", "leases", Some("someone-elses-lease")),
        (false, "delete", "coordination.k8s.io", "leases", Some(release.fullname.as_str())),
    ] {
        let can = can_i(sa, verb, group, resource, Some(ns), name).await;
        assert_eq!(can, allowed, "can the operator {verb} {group}/{resource} {name:?} in {ns}?");
    }

    drop(operator);
    release.uninstall(&scratch, cluster);
    namespace.delete().await.expect("delete the namespace");
}

/// watchNamespaces: the operator mints in the watched namespace under Roles alone, and its
/// ServiceAccount cannot read Secrets anywhere else.
#[tokio::test]
async fn operator_works_under_the_chart_rbac_in_watched_namespaces_only() {
    let cluster = shared().await;
    let admin = cluster.client().await.expect("client for the test cluster");
    let scratch = Scratch::new("operator-watch");
    crate::support::install_crd(&admin).await;
    let home = test_namespace(&admin, "chart-watch-operator").await.expect("test namespace");
    let watched = test_namespace(&admin, "chart-watch-app").await.expect("test namespace");
    let other = test_namespace(&admin, "chart-watch-other").await.expect("test namespace");
    let zoho = fake_zoho();
    let values = json!({
        "replicaCount": 0,
        "crds": {"install": false},
        "rbac": {"aggregateClusterRoles": false},
        "watchNamespaces": [watched.name()],
        "allowAccountsUrls": [zoho.url()],
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

    let operator = release.run_operator("zoho-token-operator-5c8f7-abcde", &[]).await;
    create_connection(&admin, other.name(), &zoho).await;
    create_connection(&admin, watched.name(), &zoho).await;
    wait_for_token(&admin, watched.name(), &zoho, &operator).await;
    wait_for_ready_status_and_event(&admin, watched.name(), &operator).await;
    let ignored = Api::<ZohoConnection>::namespaced(admin.clone(), other.name())
        .get("crm")
        .await
        .expect("the other ZohoConnection");
    assert!(ignored.status.is_none(), "the operator touched a ZohoConnection outside watchNamespaces");
    assert!(Api::<Secret>::namespaced(admin.clone(), other.name()).get_opt("crm-token").await.expect("GET").is_none());

    drop(operator);
    release.uninstall(&scratch, cluster);
    for namespace in [home, watched, other] {
        namespace.delete().await.expect("delete the namespace");
    }
}

// ---------------------------------------------------------------------------------------------
// Values.
// ---------------------------------------------------------------------------------------------

const CRD_KIND: &str = "CustomResourceDefinition";

/// The rules of the operator's ClusterRole, or of each Role with watchNamespaces.
fn operator_rules() -> Value {
    json!([
        {"apiGroups": ["zoho-operator.dev"], "resources": ["zohoconnections"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["zoho-operator.dev"], "resources": ["zohoconnections/status"], "verbs": ["patch"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch", "create", "patch"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ])
}

/// A values file that sets every option of the chart to something other than its default.
fn every_option(watch_namespaces: &[&str]) -> Value {
    let mut values = json!({
        "crds": {"install": true, "keep": false},
        "replicaCount": 2,
        "image": {
            "repository": "registry.example.test/zoho/zoho-token-operator",
            "tag": "0.1.0-rc.1",
            "digest": format!("sha256:{}", "a".repeat(64)),
            "pullPolicy": "Always",
        },
        "imagePullSecrets": [{"name": "registry-credentials"}],
        "nameOverride": "zoho",
        "fullnameOverride": "",
        "commonLabels": {"team": "integrations"},
        "watchNamespaces": watch_namespaces,
        "allowAccountsUrls": ["https://accounts.zoho.example.test", "http://127.0.0.1:9000"],
        "logFormat": "json",
        "logLevel": "debug",
        "leaderElection": {"enabled": true, "leaseName": "zoho-leader", "leaseDuration": "20s"},
        "extraArgs": ["--mint-budget=5", "--request-timeout=20s"],
        "extraEnv": [{"name": "ZOHO_OPERATOR_MINT_BUDGET_WINDOW", "value": "5m"}],
        "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}}],
        "volumeMounts": [{"name": "scratch", "mountPath": "/scratch", "readOnly": true}],
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "terminationGracePeriodSeconds": 20,
        "resources": {"requests": {"cpu": "20m", "memory": "96Mi"}, "limits": {"cpu": "1", "memory": "192Mi"}},
    });
    // Three parts: one json! this large exceeds the default macro recursion limit.
    merge(
        &mut values,
        json!({
            "podSecurityContext": {
                "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containerSecurityContext": {
                "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true,
                "capabilities": {"drop": ["ALL"]},
            },
            "livenessProbe": {"enabled": true, "initialDelaySeconds": 5, "periodSeconds": 20, "timeoutSeconds": 3, "failureThreshold": 4},
            "readinessProbe": {"enabled": true, "initialDelaySeconds": 1, "periodSeconds": 10, "timeoutSeconds": 3, "failureThreshold": 6},
            "priorityClassName": "system-cluster-critical",
            "nodeSelector": {"kubernetes.io/os": "linux", "example.test/pool": "ops"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                "weight": 100,
                "podAffinityTerm": {
                    "topologyKey": "kubernetes.io/hostname",
                    "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "zoho"}},
                },
            }]}},
            "topologySpreadConstraints": [{
                "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "zoho"}},
            }],
            "podAnnotations": {"example.test/checked": "true"},
            "podLabels": {"example.test/tier": "ops"},
            "deploymentAnnotations": {"example.test/owner": "integrations"},
        }),
    );
    merge(
        &mut values,
        json!({
            "serviceAccount": {
                "create": true, "name": "zoho-operator",
                "annotations": {"example.test/role": "token-minter"}, "labels": {"example.test/owner": "integrations"},
            },
            "rbac": {"aggregateClusterRoles": false},
            "metrics": {"port": 9090, "service": {"enabled": true, "type": "ClusterIP", "port": 9091, "annotations": {"example.test/scrape": "true"}}},
            "prometheus": {"serviceMonitor": {
                "enabled": true, "interval": "30s", "scrapeTimeout": "10s", "honorLabels": true,
                "labels": {"release": "kube-prometheus-stack"}, "annotations": {"example.test/owner": "integrations"},
                "endpointAdditionalProperties": {"metricRelabelings": [{"action": "labeldrop", "regex": "pod"}]},
            }},
            "podDisruptionBudget": {"enabled": true, "minAvailable": null, "maxUnavailable": 1, "unhealthyPodEvictionPolicy": "AlwaysAllow"},
            "networkPolicy": {
                "enabled": true,
                "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
                "dns": {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]},
                "apiServer": {"cidrs": ["192.0.2.10/32"], "ports": [6443]},
                "accountsServers": {"cidrs": ["0.0.0.0/0"]},
                "extraEgress": [{"ports": [{"port": 9000, "protocol": "TCP"}], "to": [{"ipBlock": {"cidr": "127.0.0.1/32"}}]}],
            },
        }),
    );
    values
}

fn merge(into: &mut Value, from: Value) {
    let Value::Object(from) = from else { panic!("merge objects only") };
    into.as_object_mut().expect("an object").extend(from);
}

/// The dotted paths of the schema's leaves: properties that have no properties of their own.
fn schema_leaves(schema: &Value, prefix: &str, leaves: &mut Vec<String>) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else { return };
    for (key, property) in properties {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        if property.get("properties").is_some() {
            schema_leaves(property, &path, leaves);
        } else {
            leaves.push(path);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// helm, kubectl and rendered manifests.
// ---------------------------------------------------------------------------------------------

/// A temporary directory, removed on drop unless the test failed.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "zoho-chart-test-{}-{}-{name}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn write_json(&self, name: &str, value: &Value) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, serde_json::to_vec_pretty(value).expect("JSON"))
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

fn read(path: &str) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn output_text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Runs helm with its cache, config and data under the scratch directory.
fn helm(scratch: &Scratch, args: &[&str]) -> Output {
    let helm = find_binary("helm").unwrap_or_else(|e| panic!("{e:#}"));
    let home = scratch.path("helm-home");
    Command::new(&helm)
        .args(args)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", helm.display()))
}

fn kubectl(cluster: &TestCluster, args: &[&str]) -> Output {
    kubectl_with(cluster.kubeconfig_path(), args)
}

fn kubectl_with(kubeconfig: &Path, args: &[&str]) -> Output {
    let kubectl = find_binary("kubectl").unwrap_or_else(|e| panic!("{e:#}"));
    Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", kubectl.display()))
}

fn kubectl_create_dry_run(cluster: &TestCluster, scratch: &Scratch, object: &Value) -> Output {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let file = scratch.write_json(&format!("create-{}.json", COUNTER.fetch_add(1, Ordering::Relaxed)), object);
    kubectl(cluster, &["create", "--dry-run=server", "-f", path_str(&file)])
}

fn helm_template(scratch: &Scratch, release: &str, namespace: &str, values: &Value) -> Output {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let file = scratch.write_json(&format!("values-{}.json", COUNTER.fetch_add(1, Ordering::Relaxed)), values);
    helm(
        scratch,
        &["template", release, CHART, "--namespace", namespace, "--kube-version", KUBE_VERSION, "-f", path_str(&file)],
    )
}

/// `helm template` with these values, parsed.
fn render(scratch: &Scratch, release: &str, namespace: &str, values: &Value) -> Manifests {
    let output = helm_template(scratch, release, namespace, values);
    assert!(output.status.success(), "helm template with {values} failed:\n{}", output_text(&output));
    Manifests::parse(&String::from_utf8_lossy(&output.stdout))
}

fn helm_install(
    scratch: &Scratch,
    cluster: &TestCluster,
    release: &str,
    namespace: &str,
    values: &Value,
    extra: &[&str],
) -> Output {
    let file = scratch.write_json(&format!("install-{release}.json"), values);
    let mut args = vec![
        "install",
        release,
        CHART,
        "--namespace",
        namespace,
        "--kubeconfig",
        path_str(cluster.kubeconfig_path()),
        "-f",
        path_str(&file),
    ];
    args.extend_from_slice(extra);
    let output = helm(scratch, &args);
    assert!(output.status.success(), "helm install {release} failed:\n{}", output_text(&output));
    output
}

/// Rendered objects.
struct Manifests(Vec<Value>);

impl Manifests {
    fn parse(yaml: &str) -> Self {
        let documents: Vec<Value> =
            serde_saphyr::from_multiple(yaml).unwrap_or_else(|e| panic!("the rendered chart is not YAML: {e}\n{yaml}"));
        let objects: Vec<Value> = documents.into_iter().filter(|d| !d.is_null()).collect();
        for object in &objects {
            assert!(
                object["apiVersion"].is_string()
                    && object["kind"].is_string()
                    && object["metadata"]["name"].is_string(),
                "not a Kubernetes object: {object}"
            );
        }
        Self(objects)
    }

    fn kinds(&self) -> BTreeSet<(String, String)> {
        self.0
            .iter()
            .map(|o| (str_at(o, "kind"), o["metadata"]["name"].as_str().unwrap_or_default().to_owned()))
            .collect()
    }

    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.0.iter().filter(|o| o["kind"] == kind).collect()
    }

    fn get(&self, kind: &str, name: &str) -> &Value {
        self.0
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} among {:?}", self.kinds()))
    }

    fn get_in(&self, kind: &str, name: &str, namespace: &str) -> &Value {
        self.0
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name && o["metadata"]["namespace"] == namespace)
            .unwrap_or_else(|| panic!("no {kind} {namespace}/{name} among {:?}", self.kinds()))
    }
}

fn str_at(object: &Value, key: &str) -> String {
    object[key].as_str().unwrap_or_default().to_owned()
}

fn describe(object: &Value) -> String {
    format!("{} {}", str_at(object, "kind"), object["metadata"]["name"].as_str().unwrap_or("?"))
}

fn container(deployment: &Value) -> &Value {
    let containers = deployment["spec"]["template"]["spec"]["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "the operator's pod has one container");
    &containers[0]
}

fn args(deployment: &Value) -> Vec<String> {
    container(deployment)["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string args").to_owned())
        .collect()
}

fn env_var<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    container(deployment)["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no env var {name}"))
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

/// The first differing path between two JSON values, to make a failed comparison readable.
fn diff_hint(a: &Value, b: &Value) -> String {
    fn walk(a: &Value, b: &Value, path: &str) -> Option<String> {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                keys.into_iter().find_map(|k| match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => walk(u, v, &format!("{path}.{k}")),
                    (u, v) => Some(format!("{path}.{k}: chart {u:?} vs generated {v:?}")),
                })
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                x.iter().zip(y).enumerate().find_map(|(i, (u, v))| walk(u, v, &format!("{path}[{i}]")))
            }
            _ if a == b => None,
            _ => Some(format!("{path}: chart {a} vs generated {b}")),
        }
    }
    walk(a, b, "").unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Cluster helpers.
// ---------------------------------------------------------------------------------------------

async fn wait_for_crd(crds: &Api<CustomResourceDefinition>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let crd = crds.get(CRD_NAME).await.expect("GET the CRD");
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return;
        }
        assert!(Instant::now() < deadline, "the ZohoConnection CRD is not Established after 30s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A minimal ServiceMonitor CRD, for the dry run, unless the cluster has the real one.
struct ServiceMonitorCrdStub {
    created: bool,
}

impl ServiceMonitorCrdStub {
    const NAME: &str = "servicemonitors.monitoring.coreos.com";

    async fn ensure(client: &Client) -> Self {
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        if crds.get_opt(Self::NAME).await.expect("GET the ServiceMonitor CRD").is_some() {
            return Self { created: false };
        }
        let stub: CustomResourceDefinition = serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": Self::NAME},
            "spec": {
                "group": "monitoring.coreos.com",
                "names": {"kind": "ServiceMonitor", "listKind": "ServiceMonitorList", "plural": "servicemonitors", "singular": "servicemonitor"},
                "scope": "Namespaced",
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                }],
            },
        }))
        .expect("the stub CRD");
        crds.create(&PostParams::default(), &stub).await.expect("create the ServiceMonitor CRD stub");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let crd = crds.get(Self::NAME).await.expect("GET the ServiceMonitor CRD");
            if crd
                .status
                .and_then(|s| s.conditions)
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Established" && c.status == "True")
            {
                break;
            }
            assert!(Instant::now() < deadline, "the ServiceMonitor CRD stub is not Established");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Discovery in kubectl may lag a moment behind Established.
        tokio::time::sleep(Duration::from_secs(1)).await;
        Self { created: true }
    }

    async fn remove(self, client: &Client) {
        if self.created {
            Api::<CustomResourceDefinition>::all(client.clone())
                .delete(Self::NAME, &DeleteParams::default())
                .await
                .expect("delete the ServiceMonitor CRD stub");
        }
    }
}

fn fake_zoho() -> FakeZoho {
    let zoho = FakeZoho::start(FakeZohoConfig::default());
    zoho.register_client(CLIENT_ID, CLIENT_SECRET);
    zoho.register_refresh_token(CLIENT_ID, REFRESH_TOKEN);
    zoho
}

/// A credentials Secret `zoho-oauth` and a ZohoConnection `crm` writing to `crm-token`.
async fn create_connection(client: &Client, namespace: &str, zoho: &FakeZoho) {
    let credentials = Secret {
        metadata: kube::api::ObjectMeta { name: Some("zoho-oauth".to_owned()), ..Default::default() },
        string_data: Some(
            [("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET), ("refresh_token", REFRESH_TOKEN)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Secret::default()
    };
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &credentials)
        .await
        .expect("create the credentials Secret");
    let connection: ZohoConnection = serde_json::from_value(json!({
        "apiVersion": "zoho-operator.dev/v1alpha1",
        "kind": "ZohoConnection",
        "metadata": {"name": "crm"},
        "spec": {
            "accountsUrl": zoho.url(),
            "credentials": {"secretRef": {"name": "zoho-oauth"}},
            "target": {"secretName": "crm-token"},
        },
    }))
    .expect("a ZohoConnection");
    Api::<ZohoConnection>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &connection)
        .await
        .expect("create the ZohoConnection");
}

/// Waits until `crm-token` holds an access token that the fake Zoho reports live.
async fn wait_for_token(client: &Client, namespace: &str, zoho: &FakeZoho, operator: &Operator) -> String {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + TOKEN_TIMEOUT;
    loop {
        assert!(operator.is_running(), "the operator exited early:\n{}", operator.logs());
        let token = secrets
            .get_opt("crm-token")
            .await
            .expect("GET the target Secret")
            .and_then(|s| s.data?.get("access_token").map(|t| String::from_utf8_lossy(&t.0).into_owned()));
        if let Some(token) = token.filter(|t| zoho.is_live(t)) {
            return token;
        }
        if Instant::now() > deadline {
            let status = Api::<ZohoConnection>::namespaced(client.clone(), namespace)
                .get("crm")
                .await
                .map(|zc| format!("{:?}", zc.status))
                .unwrap_or_else(|e| e.to_string());
            panic!(
                "no live token in {namespace}/crm-token after {TOKEN_TIMEOUT:?}; ZohoConnection status: {status}\n\
                 operator log:\n{}",
                operator.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The status subresource and the event recorder work under the chart's RBAC.
async fn wait_for_ready_status_and_event(client: &Client, namespace: &str, operator: &Operator) {
    let connections: Api<ZohoConnection> = Api::namespaced(client.clone(), namespace);
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let connection = connections.get("crm").await.expect("GET the ZohoConnection");
        let ready = connection.status.as_ref().is_some_and(|s| {
            s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                && s.secret_name.as_deref() == Some("crm-token")
        });
        let recorded = events.list(&ListParams::default()).await.expect("LIST events").items.iter().any(|e| {
            e.regarding
                .as_ref()
                .is_some_and(|r| r.kind.as_deref() == Some("ZohoConnection") && r.name.as_deref() == Some("crm"))
                && e.reason.as_deref() == Some("TokenIssued")
        });
        if ready && recorded {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "status Ready={ready}, TokenIssued event recorded={recorded} in {namespace}\noperator log:\n{}",
            operator.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
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

/// A chart installed with helm, and a client acting as its ServiceAccount.
struct Release {
    name: String,
    namespace: String,
    fullname: String,
    manifests: Manifests,
    kubeconfig: PathBuf,
    sa_client: Client,
}

impl Release {
    async fn install(scratch: &Scratch, cluster: &TestCluster, name: &str, namespace: &str, values: &Value) -> Self {
        helm_install(scratch, cluster, name, namespace, values, &[]);
        let manifest = helm(
            scratch,
            &["get", "manifest", name, "-n", namespace, "--kubeconfig", path_str(cluster.kubeconfig_path())],
        );
        assert!(manifest.status.success(), "helm get manifest:\n{}", output_text(&manifest));
        let manifests = Manifests::parse(&String::from_utf8_lossy(&manifest.stdout));
        let deployment = manifests.of_kind("Deployment")[0];
        let fullname = deployment["metadata"]["name"].as_str().expect("a name").to_owned();
        let service_account =
            deployment["spec"]["template"]["spec"]["serviceAccountName"].as_str().expect("a ServiceAccount").to_owned();

        let admin = cluster.client().await.expect("client for the test cluster");
        let request = TokenRequest {
            spec: Some(TokenRequestSpec { expiration_seconds: Some(3600), ..TokenRequestSpec::default() }),
            ..TokenRequest::default()
        };
        let token = Api::<ServiceAccount>::namespaced(admin, namespace)
            .create_token_request(&service_account, &PostParams::default(), &request)
            .await
            .expect("a token for the chart's ServiceAccount")
            .status
            .expect("a TokenRequest status")
            .token
            .expect("a token");
        let kubeconfig = scratch.path(&format!("kubeconfig-{service_account}.json"));
        cluster.kubeconfig_for_token(&token, &kubeconfig).expect("write the ServiceAccount's kubeconfig");
        let sa_client = client_from_kubeconfig(&kubeconfig).await.expect("client for the ServiceAccount");
        let whoami = kubectl_with(&kubeconfig, &["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
        assert_eq!(
            String::from_utf8_lossy(&whoami.stdout),
            format!("system:serviceaccount:{namespace}:{service_account}"),
            "{}",
            output_text(&whoami)
        );
        Self { name: name.to_owned(), namespace: namespace.to_owned(), fullname, manifests, kubeconfig, sa_client }
    }

    /// Runs the operator binary out of cluster as the Deployment's container would run: its
    /// arguments, its environment (the downward API filled in by hand), the ServiceAccount's token.
    /// Only the metrics address moves to a free loopback port, and `extra_args` are added.
    async fn run_operator(&self, pod_name: &str, extra_args: &[String]) -> Operator {
        let deployment = self.manifests.of_kind("Deployment")[0];
        let port = free_port();
        let mut args = args(deployment);
        let metrics =
            args.iter_mut().find(|a| a.starts_with("--metrics-addr=")).expect("the chart sets --metrics-addr");
        *metrics = format!("--metrics-addr=127.0.0.1:{port}");
        args.extend_from_slice(extra_args);

        let mut command = Command::new(OPERATOR_BINARY);
        command.args(&args).env_clear().env("KUBECONFIG", &self.kubeconfig);
        for var in container(deployment)["env"].as_array().expect("env") {
            let name = var["name"].as_str().expect("env name");
            let value = match (&var["value"], var["valueFrom"]["fieldRef"]["fieldPath"].as_str()) {
                (Value::String(value), _) => value.clone(),
                (_, Some("metadata.name")) => pod_name.to_owned(),
                (_, Some("metadata.namespace")) => self.namespace.clone(),
                _ => panic!("the test cannot provide env var {var}"),
            };
            command.env(name, value);
        }
        let operator = Operator::launch(command, port);

        // The chart's probes answer on the metrics port.
        let deadline = Instant::now() + Duration::from_secs(30);
        for probe in ["livenessProbe", "readinessProbe"] {
            let path = container(deployment)[probe]["httpGet"]["path"].as_str().expect("an HTTP probe").to_owned();
            loop {
                assert!(operator.is_running(), "the operator exited early:\n{}", operator.logs());
                if operator.http_get(&path).map(|(status, _)| status) == Some(200) {
                    break;
                }
                assert!(Instant::now() < deadline, "{probe} {path} never answered 200\n{}", operator.logs());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        operator
    }

    fn uninstall(self, scratch: &Scratch, cluster: &TestCluster) {
        let output = helm(
            scratch,
            &["uninstall", &self.name, "-n", &self.namespace, "--kubeconfig", path_str(cluster.kubeconfig_path())],
        );
        assert!(output.status.success(), "helm uninstall {}:\n{}", self.name, output_text(&output));
    }
}
