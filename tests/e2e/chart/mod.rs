//! The Helm chart (`charts/zoho-token-operator`): lint, render and assert on the objects, a
//! server-side dry run of every manifest, a real `helm install`, Pod Security admission of the
//! pod template, the operator itself running under the chart's ServiceAccount and RBAC, and the
//! chart's alerts and dashboard.
//!
//! helm and kubectl come from `scripts/tools` (see `testkit::control_plane::find_binary`); the
//! tests fail, never skip, when they are missing.

mod docs;
mod install;
mod monitoring;
mod pod;
mod rbac;
mod render;

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use k8s_openapi::{
    api::{
        authentication::v1::{TokenRequest, TokenRequestSpec},
        core::v1::ServiceAccount,
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client,
    api::{DeleteParams, PostParams},
};
use serde_json::{Value, json};
use testkit::control_plane::{TestCluster, client_from_kubeconfig, find_binary};

use crate::support::{
    CLIENT_ID, CLIENT_SECRET, OPERATOR_BINARY, Operator, SETTLE, World, connection, create, credentials_secret,
    eventually, free_port, wait_established, wait_ready,
};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/zoho-token-operator");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/fixtures");
const CRD_NAME: &str = "zohoconnections.zoho-operator.dev";
const CRD_KIND: &str = "CustomResourceDefinition";
const KUBE_VERSION: &str = "1.36.3";
const FIELD_MANAGER: &str = "zoho-token-operator-chart-tests";

// ---------------------------------------------------------------------------------------------
// Values.
// ---------------------------------------------------------------------------------------------

/// The rules of the operator's ClusterRole, or of each Role with watchNamespaces.
fn operator_rules() -> Value {
    json!([
        {"apiGroups": ["zoho-operator.dev"], "resources": ["zohoconnections"], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": ["zoho-operator.dev"], "resources": ["zohoconnections/status"], "verbs": ["patch"]},
        {"apiGroups": ["zoho-operator.dev"], "resources": ["zohoconnections/finalizers"], "verbs": ["update"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch", "create", "patch"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ])
}

/// The ClusterRole's rules: the per-namespace ones, plus what ClusterZohoConnections need.
fn cluster_operator_rules() -> Value {
    let mut rules = operator_rules();
    rules.as_array_mut().expect("an array").extend([
        json!({"apiGroups": ["zoho-operator.dev"], "resources": ["clusterzohoconnections"], "verbs": ["get", "list", "watch", "patch"]}),
        json!({"apiGroups": ["zoho-operator.dev"], "resources": ["clusterzohoconnections/status"], "verbs": ["patch"]}),
        json!({"apiGroups": ["zoho-operator.dev"], "resources": ["clusterzohoconnections/finalizers"], "verbs": ["update"]}),
        json!({"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}),
        json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["delete"]}),
    ]);
    rules
}

/// Values that set every option of the chart to something other than its default
/// (fixtures/every-option-values.yaml), watching `watch_namespaces`; the dashboard goes to the
/// first of them, so that a cluster has every namespace the manifests name.
fn every_option(watch_namespaces: &[&str]) -> Value {
    let mut values: Value = serde_saphyr::from_str(&read(&format!("{FIXTURES}/every-option-values.yaml")))
        .expect("fixtures/every-option-values.yaml parses");
    values["watchNamespaces"] = json!(watch_namespaces);
    values["grafana"]["dashboard"]["namespace"] = json!(watch_namespaces.first());
    values
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

    /// Writes `value` as JSON to a new file; `name` is a hint, made unique.
    fn write_json(&self, name: &str, value: &Value) -> PathBuf {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = self.path(&format!("{}-{name}", COUNTER.fetch_add(1, Ordering::Relaxed)));
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

/// Runs a binary of `scripts/tools` (found by `find_binary`) with `args`.
fn run_tool(name: &str, args: &[&str], configure: impl FnOnce(&mut Command)) -> Output {
    let binary = find_binary(name).unwrap_or_else(|e| panic!("{e:#}"));
    let mut command = Command::new(&binary);
    command.args(args);
    configure(&mut command);
    command.output().unwrap_or_else(|e| panic!("run {}: {e}", binary.display()))
}

/// A Debian-packaged tool the tests need, from PATH; fails, naming the package, when missing.
fn executable_on_path(name: &str, package: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{name} is not on PATH; install {package}, as .ci/run does"))
}

/// Runs helm with its cache, config and data under the scratch directory.
fn helm(scratch: &Scratch, args: &[&str]) -> Output {
    let home = scratch.path("helm-home");
    run_tool("helm", args, |command| {
        command
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"));
    })
}

fn kubectl(cluster: &TestCluster, args: &[&str]) -> Output {
    kubectl_with(cluster.kubeconfig_path(), args)
}

fn kubectl_with(kubeconfig: &Path, args: &[&str]) -> Output {
    run_tool("kubectl", &[&["--kubeconfig", path_str(kubeconfig)], args].concat(), |_| {})
}

fn kubectl_create_dry_run(cluster: &TestCluster, scratch: &Scratch, object: &Value) -> Output {
    let file = scratch.write_json("create.json", object);
    kubectl(cluster, &["create", "--dry-run=server", "-f", path_str(&file)])
}

fn helm_template(scratch: &Scratch, release: &str, namespace: &str, values: &Value) -> Output {
    let file = scratch.write_json("values.json", values);
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
    let file = scratch.write_json("install-values.json", values);
    let kubeconfig = path_str(cluster.kubeconfig_path());
    let args = ["install", release, CHART, "--namespace", namespace, "--kubeconfig", kubeconfig, "-f", path_str(&file)];
    let output = helm(scratch, &[&args[..], extra].concat());
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

// ---------------------------------------------------------------------------------------------
// The cluster.
// ---------------------------------------------------------------------------------------------

/// A minimal CRD for a kind of the Prometheus Operator, so that a dry run accepts the chart's
/// ServiceMonitor and PrometheusRule, unless the cluster has the real one.
struct CrdStub {
    name: String,
    created: bool,
}

impl CrdStub {
    async fn ensure(client: &Client, kind: &str, plural: &str) -> Self {
        const GROUP: &str = "monitoring.coreos.com";
        let name = format!("{plural}.{GROUP}");
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        if crds.get_opt(&name).await.expect("GET the CRD").is_some() {
            return Self { name, created: false };
        }
        let stub: CustomResourceDefinition = serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": CRD_KIND,
            "metadata": {"name": name},
            "spec": {
                "group": GROUP,
                "names": {"kind": kind, "listKind": format!("{kind}List"), "plural": plural, "singular": kind.to_lowercase()},
                "scope": "Namespaced",
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                }],
            },
        }))
        .expect("the stub CRD");
        crds.create(&PostParams::default(), &stub).await.expect("create the CRD stub");
        wait_established(&crds, &name).await;
        // Discovery in kubectl may lag a moment behind Established.
        tokio::time::sleep(Duration::from_secs(1)).await;
        Self { name, created: true }
    }

    async fn remove(self, client: &Client) {
        if self.created {
            Api::<CustomResourceDefinition>::all(client.clone())
                .delete(&self.name, &DeleteParams::default())
                .await
                .expect("delete the CRD stub");
        }
    }
}

/// A credentials Secret `zoho-oauth` for `world`'s fake Zoho and a ZohoConnection `crm` that
/// writes its token to `crm-token`, in `namespace`.
async fn create_crm_connection(world: &World<'_>, admin: &Client, namespace: &str) {
    let credentials = credentials_secret("zoho-oauth", CLIENT_ID, CLIENT_SECRET, &world.refresh_token);
    create(&Api::namespaced(admin.clone(), namespace), &credentials).await;
    let crm = connection("crm", "zoho-oauth", &world.fake, json!({"target": {"secretName": "crm-token"}}));
    create(&Api::namespaced(admin.clone(), namespace), &crm).await;
}

/// A token of `service_account` in `namespace` from the TokenRequest API, as the kubelet would
/// project it into a pod; `request` sets its lifetime and what it is bound to.
async fn service_account_token(
    admin: &Client,
    namespace: &str,
    service_account: &str,
    request: &TokenRequest,
) -> String {
    Api::<ServiceAccount>::namespaced(admin.clone(), namespace)
        .create_token_request(service_account, &PostParams::default(), request)
        .await
        .expect("a token for the chart's ServiceAccount")
        .status
        .expect("a TokenRequest status")
        .token
        .expect("a token")
}

/// The command-line arguments and environment of the operator's container.
struct ContainerProcess {
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// A chart installed with helm, and a client acting as its ServiceAccount.
struct Release {
    name: String,
    namespace: String,
    fullname: String,
    service_account: String,
    manifests: Manifests,
    kubeconfig: PathBuf,
    sa_client: Client,
}

impl Release {
    async fn install(scratch: &Scratch, cluster: &TestCluster, name: &str, namespace: &str, values: &Value) -> Self {
        helm_install(scratch, cluster, name, namespace, values, &[]);
        let kubeconfig = path_str(cluster.kubeconfig_path());
        let manifest = helm(scratch, &["get", "manifest", name, "-n", namespace, "--kubeconfig", kubeconfig]);
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
        let token = service_account_token(&admin, namespace, &service_account, &request).await;
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
        Self {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            fullname,
            service_account,
            manifests,
            kubeconfig,
            sa_client,
        }
    }

    fn deployment(&self) -> &Value {
        self.manifests.of_kind("Deployment")[0]
    }

    /// The operator's arguments and environment as the Deployment's container gets them: the
    /// metrics address moves to `metrics_port` on loopback, `extra_args` are added, and the
    /// downward API is filled in for a pod named `pod_name`.
    fn container_process(&self, pod_name: &str, metrics_port: u16, extra_args: &[String]) -> ContainerProcess {
        let mut args = args(self.deployment());
        let metrics =
            args.iter_mut().find(|a| a.starts_with("--metrics-addr=")).expect("the chart sets --metrics-addr");
        *metrics = format!("--metrics-addr=127.0.0.1:{metrics_port}");
        args.extend_from_slice(extra_args);
        let env = container(self.deployment())["env"]
            .as_array()
            .expect("env")
            .iter()
            .map(|var| {
                let name = var["name"].as_str().expect("env name").to_owned();
                let value = match (&var["value"], var["valueFrom"]["fieldRef"]["fieldPath"].as_str()) {
                    (Value::String(value), _) => value.clone(),
                    (_, Some("metadata.name")) => pod_name.to_owned(),
                    (_, Some("metadata.namespace")) => self.namespace.clone(),
                    _ => panic!("the test cannot provide env var {var}"),
                };
                (name, value)
            })
            .collect();
        ContainerProcess { args, env }
    }

    /// Runs the operator binary out of cluster as the Deployment's container would run it (see
    /// [`Release::container_process`]), with the ServiceAccount's token in a kubeconfig and
    /// nothing else in its environment.
    async fn run_operator(&self, pod_name: &str, extra_args: &[String]) -> Operator {
        let port = free_port();
        let process = self.container_process(pod_name, port, extra_args);
        let mut command = Command::new(OPERATOR_BINARY);
        command.env_clear().envs(process.env).env("KUBECONFIG", &self.kubeconfig).args(process.args);
        let operator = Operator::launch(command, port);
        self.wait_for_probes(&operator).await;
        operator
    }

    /// Waits until the chart's probes answer 200 on the metrics port.
    async fn wait_for_probes(&self, operator: &Operator) {
        for probe in ["livenessProbe", "readinessProbe"] {
            let path = container(self.deployment())[probe]["httpGet"]["path"].as_str().expect("an HTTP probe");
            eventually(Duration::from_secs(30), &format!("{probe} {path} to answer 200"), || async {
                assert!(operator.is_running(), "the operator exited early:\n{}", operator.logs());
                (operator.http_get(path).map(|(status, _)| status) == Some(200)).then_some(())
            })
            .await;
        }
    }

    fn uninstall(self, scratch: &Scratch, cluster: &TestCluster) {
        let kubeconfig = path_str(cluster.kubeconfig_path());
        let output = helm(scratch, &["uninstall", &self.name, "-n", &self.namespace, "--kubeconfig", kubeconfig]);
        assert!(output.status.success(), "helm uninstall {}:\n{}", self.name, output_text(&output));
    }
}
