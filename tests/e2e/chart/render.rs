//! What `helm lint` and `helm template` make of the values: no cluster needed.

use std::collections::BTreeSet;

use serde_json::json;

use super::*;

#[test]
fn lint_is_clean_in_strict_mode() {
    let scratch = Scratch::new("lint");
    for (name, values) in [("defaults", json!({})), ("every option", every_option(&["team-a", "team-b"]))] {
        let file = scratch.write_json("lint-values.json", &values);
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
            ("ClusterRole", "zoho-zoho-token-operator-cluster-admin"),
            ("ClusterRole", "zoho-zoho-token-operator-cluster-view"),
            ("ClusterRole", "zoho-zoho-token-operator-edit"),
            ("ClusterRole", "zoho-zoho-token-operator-view"),
            ("ClusterRoleBinding", "zoho-zoho-token-operator"),
            ("CustomResourceDefinition", "clusterzohoconnections.zoho-operator.dev"),
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
    assert_eq!(role["rules"], cluster_operator_rules(), "the operator's ClusterRole");
    let binding = rendered.get("ClusterRoleBinding", "zoho-zoho-token-operator");
    assert_eq!(binding["roleRef"]["name"], "zoho-zoho-token-operator");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "zoho-zoho-token-operator", "namespace": "ops"}])
    );
    let view = rendered.get("ClusterRole", "zoho-zoho-token-operator-view");
    assert_eq!(view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"], "true");
    assert_eq!(view["rules"][0]["verbs"], json!(["get", "list", "watch"]));
    // Managing ClusterZohoConnections aggregates into admin only, never into edit.
    let cluster_admin = rendered.get("ClusterRole", "zoho-zoho-token-operator-cluster-admin");
    let labels = &cluster_admin["metadata"]["labels"];
    assert_eq!(labels["rbac.authorization.k8s.io/aggregate-to-admin"], "true");
    assert!(labels.get("rbac.authorization.k8s.io/aggregate-to-edit").is_none(), "{labels}");
    assert_eq!(cluster_admin["rules"][0]["resources"], json!(["clusterzohoconnections"]));
    // ClusterZohoConnections read credentials only from the release namespace.
    let deployment = rendered.get("Deployment", "zoho-zoho-token-operator");
    assert!(args(deployment).contains(&"--cluster-resource-namespace=ops".to_string()), "{:?}", args(deployment));
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
    assert_eq!(
        args(deployment),
        [
            "--metrics-addr=0.0.0.0:8080",
            "--log-format=text",
            "--cluster-resource-namespace=ops",
            "--grant-code-bootstrap=true"
        ]
    );
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
        [
            "--metrics-addr=0.0.0.0:8080",
            "--log-format=text",
            "--watch-namespace=sales",
            "--watch-namespace=support",
            "--cluster-resource-namespace=ops",
            "--grant-code-bootstrap=true"
        ]
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
            args(deployment)[4..],
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
fn releases_as_shards_split_the_connections_and_share_no_object() {
    let scratch = Scratch::new("shards");
    let shard = |index: u64| {
        let values =
            json!({"replicaCount": 2, "sharding": {"count": 2, "index": index}, "crds": {"install": index == 0}});
        render(&scratch, &format!("zoho-{index}"), "ops", &values)
    };
    let shards = [shard(0), shard(1)];
    for (index, rendered) in shards.iter().enumerate() {
        let fullname = format!("zoho-{index}-zoho-token-operator");
        let args = args(rendered.get("Deployment", &fullname));
        for arg in
            [format!("--shard-index={index}"), "--shard-count=2".into(), format!("--leader-election-name={fullname}")]
        {
            assert!(args.contains(&arg), "shard {index} lacks {arg}: {args:?}");
        }
        // The operator appends the shard to the Lease's name; the Role allows exactly that one.
        let role = rendered.get_in("Role", &format!("{fullname}-leader-election"), "ops");
        assert_eq!(role["rules"][0]["resourceNames"], json!([format!("{fullname}-shard-{index}")]));
    }
    let names = |rendered: &Manifests| -> BTreeSet<(String, String)> { rendered.kinds() };
    let shared: Vec<_> = names(&shards[0]).intersection(&names(&shards[1])).cloned().collect();
    assert!(shared.is_empty(), "both releases render {shared:?}");
    assert!(
        shards[0].of_kind("CustomResourceDefinition").len() == 2
            && shards[1].of_kind("CustomResourceDefinition").is_empty()
    );

    for (values, message) in [
        (json!({"sharding": {"count": 2, "index": 2}, "crds": {"install": false}}), "sharding.index must be below"),
        (json!({"sharding": {"count": 2, "index": 1}}), "set crds.install=false"),
    ] {
        let output = helm_template(&scratch, "zoho", "ops", &values);
        let text = output_text(&output);
        assert!(!output.status.success() && text.contains(message), "{values}:\n{text}");
    }
}

#[test]
fn service_monitor_scrapes_the_metrics_service() {
    let scratch = Scratch::new("monitor");
    let rendered = render(
        &scratch,
        "zoho",
        "ops",
        &json!({"prometheus": {"serviceMonitor": {
            "enabled": true, "interval": "30s", "scrapeTimeout": "10s", "honorLabels": false,
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
            "port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s", "honorLabels": false,
            "metricRelabelings": [{"action": "labeldrop", "regex": "pod"}],
        }])
    );
    assert!(render(&scratch, "zoho", "ops", &json!({})).of_kind("ServiceMonitor").is_empty());
    // The connections' own `namespace` label survives the scrape by default.
    let defaults = render(&scratch, "zoho", "ops", &json!({"prometheus": {"serviceMonitor": {"enabled": true}}}));
    assert_eq!(defaults.get("ServiceMonitor", "zoho-zoho-token-operator")["spec"]["endpoints"][0]["honorLabels"], true);
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
            "--cluster-resource-namespace=ops",
            "--grant-code-bootstrap=false",
            "--leader-election",
            "--leader-election-name=zoho-leader",
            "--leader-election-lease-duration=20s",
            "--shard-index=0",
            "--shard-count=2",
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
        json!({"sharding": {"count": 0}}),
    ] {
        let output = helm_template(&scratch, "zoho", "ops", &values);
        assert!(!output.status.success(), "helm template accepted {values}");
    }
}
