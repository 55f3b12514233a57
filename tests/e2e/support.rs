//! Shared pieces of the integration tests: the operator as a real process, the CRD, and polling.

use std::{
    fs::File,
    future::Future,
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use k8s_openapi::{
    ByteString, api::core::v1::Secret, apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api, Client, CustomResourceExt, ResourceExt,
    api::{Patch, PatchParams, PostParams},
    runtime::wait::{await_condition, conditions},
};
use serde_json::json;
use testkit::{
    control_plane::{TestCluster, TestNamespace, shared, spawn_tied_to_process, test_namespace},
    fake_zoho::{FakeZoho, FakeZohoConfig},
};
pub use zoho_token_operator::api::Connection as _;
use zoho_token_operator::api::{ClusterZohoConnection, ZohoConnection};

pub const CLIENT_ID: &str = "1000.TESTCLIENT";
pub const CLIENT_SECRET: &str = "test-client-secret";

/// Installs the CRDs generated from the Rust types and waits until they are served.
pub async fn install_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [ZohoConnection::crd(), ClusterZohoConnection::crd()] {
        let name = crd.name_any();
        crds.patch(&name, &PatchParams::apply("e2e-tests").force(), &Patch::Apply(&crd)).await.expect("apply the CRD");
        wait_established(&crds, &name).await;
    }
}

/// Waits until the CRD `name` is Established, so that its kind is served.
pub async fn wait_established(crds: &Api<CustomResourceDefinition>, name: &str) {
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(crds.clone(), name, conditions::is_crd_established()),
    )
    .await
    .unwrap_or_else(|_| panic!("the CRD {name} becomes established within 30s"))
    .expect("watch the CRD");
}

/// The operator binary, run as its own process, as in production.
pub struct Operator {
    child: Child,
    log: PathBuf,
    metrics_port: u16,
    _dir: tempfile::TempDir,
}

impl Operator {
    /// Starts the operator against `cluster`, watching `namespace` only so that tests sharing a
    /// cluster cannot see each other's connections.
    pub fn start(cluster: &TestCluster, namespace: &str, fake: &FakeZoho, extra_args: &[&str]) -> Self {
        Self::start_with_kubeconfig(cluster.kubeconfig_path(), namespace, fake, extra_args)
    }

    /// Like [`Operator::start`], with extra environment variables (which override the defaults).
    pub fn start_with_env(
        cluster: &TestCluster,
        namespace: &str,
        fake: &FakeZoho,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        Self::spawn(cluster.kubeconfig_path(), Some(namespace), fake, extra_args, env)
    }

    pub fn start_with_kubeconfig(kubeconfig: &Path, namespace: &str, fake: &FakeZoho, extra_args: &[&str]) -> Self {
        Self::spawn(kubeconfig, Some(namespace), fake, extra_args, &[])
    }

    /// Watching every namespace, as ClusterZohoConnections need: only on a control plane of the
    /// test's own, or it would serve other tests' connections too.
    pub fn start_cluster_wide(cluster: &TestCluster, fake: &FakeZoho, extra_args: &[&str]) -> Self {
        Self::spawn(cluster.kubeconfig_path(), None, fake, extra_args, &[])
    }

    pub fn spawn(
        kubeconfig: &Path,
        namespace: Option<&str>,
        fake: &FakeZoho,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let command = |metrics_port: u16| {
            let mut command = Command::new(OPERATOR_BINARY);
            command.arg("run");
            if let Some(namespace) = namespace {
                command.args(["--watch-namespace", namespace]);
            }
            command
                .args(["--allow-accounts-url", &fake.url()])
                .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
                .args(extra_args)
                .env("KUBECONFIG", kubeconfig)
                .env(
                    "RUST_LOG",
                    std::env::var("ZOHO_OPERATOR_TEST_LOG").unwrap_or_else(|_| "info,zoho_token_operator=debug".into()),
                )
                .env_remove("ZOHO_OPERATOR_WATCH_NAMESPACE")
                .envs(env.iter().copied());
            command
        };
        // The port free_port found may be taken by a test running alongside before the operator
        // binds it; the operator then exits at once, and another port is all it needs.
        let mut attempts = 0;
        loop {
            let metrics_port = free_port();
            let operator = Self::launch(command(metrics_port), metrics_port);
            attempts += 1;
            if attempts == 3 || !operator.lost_its_port() {
                return operator;
            }
        }
    }

    /// Waits until the operator serves its health endpoint, and tells whether it exited instead
    /// because its metrics port was taken.
    fn lost_its_port(&self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !self.is_running() {
                return self.logs().contains("Address already in use");
            }
            if self.http_get("/healthz").is_some_and(|(status, body)| status == 200 && body == "ok") {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Starts `command`, the operator binary with its arguments and environment, logging to a
    /// file; `metrics_port` is the port its `--metrics-addr` names.
    pub fn launch(mut command: Command, metrics_port: u16) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for the operator's log");
        let log = dir.path().join("operator.log");
        command
            .stdin(Stdio::null())
            .stdout(File::create(&log).expect("create the operator log"))
            .stderr(File::options().append(true).open(&log).expect("open the operator log"));
        let child = spawn_tied_to_process(command).expect("start the operator binary");
        Self { child, log, metrics_port, _dir: dir }
    }

    /// SIGKILL: no cleanup, no lease release, as in a node crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a graceful exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: sends a signal to our own child, which has not been reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the operator") {
                return status;
            }
            assert!(Instant::now() < deadline, "the operator did not exit within 20s of SIGTERM:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether the process still runs. Read from /proc, which shows an exited, unreaped child as a
    /// zombie, so that this needs no `&mut`.
    pub fn is_running(&self) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
        matches!(state, Some(s) if s != "Z" && s != "X")
    }

    /// The process started: the operator itself, or whatever wraps it.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET on the operator's HTTP port, without a client library.
    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.metrics_port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let status = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
        Some((status, body))
    }

    pub fn metrics(&self) -> String {
        self.http_get("/metrics").map(|(_, body)| body).unwrap_or_default()
    }

    /// The value of one metric series, e.g. `zoho_operator_reconciles_total`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        self.metrics().lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- operator log ----\n{}\n---- end of operator log ----", self.logs());
        }
    }
}

pub const OPERATOR_BINARY: &str = env!("CARGO_BIN_EXE_zoho-token-operator");

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().unwrap().port()
}

/// Polls `probe` until it returns `Some`, or fails the test with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn credentials_secret(name: &str, client_id: &str, client_secret: &str, refresh_token: &str) -> Secret {
    Secret {
        metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() },
        data: Some(
            [("client_id", client_id), ("client_secret", client_secret), ("refresh_token", refresh_token)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// A ZohoConnection pointing at the fake accounts server.
pub fn connection(
    name: &str,
    credentials_secret: &str,
    fake: &FakeZoho,
    extra_spec: serde_json::Value,
) -> ZohoConnection {
    let mut spec = json!({
        "accountsUrl": fake.url(),
        "credentials": {"secretRef": {"name": credentials_secret}},
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        spec.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "zoho-operator.dev/v1alpha1",
        "kind": "ZohoConnection",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("a valid ZohoConnection")
}

pub async fn create<K>(api: &Api<K>, object: &K) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.create(&PostParams::default(), object).await.expect("create object")
}

pub fn string_data(secret: &Secret, key: &str) -> Option<String> {
    let value = secret.data.as_ref()?.get(key)?;
    String::from_utf8(value.0.clone()).ok()
}

/// The access token in the target Secret, if it holds one.
pub async fn target_token(secrets: &Api<Secret>, name: &str) -> Option<String> {
    string_data(&secrets.get_opt(name).await.ok()??, "access_token")
}

/// Waits until the connection's Ready condition has `status` and `reason`.
pub async fn wait_ready(
    connections: &Api<ZohoConnection>,
    name: &str,
    status: &str,
    reason: &str,
    timeout: Duration,
) -> ZohoConnection {
    let description = format!("{name} to be Ready={status} with reason {reason}");
    eventually(timeout, &description, || async {
        let zc = connections.get_opt(name).await.ok()??;
        let condition = zc.ready_condition()?;
        (condition.status == status && condition.reason == reason).then_some(zc)
    })
    .await
}

pub const SETTLE: Duration = Duration::from_secs(45);

/// One test's world: a namespace, a fake Zoho with one registered credential, and the operator.
pub struct World<'c> {
    pub cluster: &'c TestCluster,
    pub namespace: TestNamespace,
    pub fake: FakeZoho,
    pub refresh_token: String,
    pub secrets: Api<Secret>,
    pub connections: Api<ZohoConnection>,
}

impl World<'static> {
    pub async fn shared(prefix: &str, config: FakeZohoConfig) -> Self {
        World::on(shared().await, prefix, config).await
    }
}

impl<'c> World<'c> {
    pub async fn on(cluster: &'c TestCluster, prefix: &str, config: FakeZohoConfig) -> Self {
        let client = cluster.client().await.expect("client");
        install_crd(&client).await;
        let namespace = test_namespace(&client, prefix).await.expect("namespace");
        let fake = FakeZoho::start(config);
        fake.register_client(CLIENT_ID, CLIENT_SECRET);
        let refresh_token = format!("1000.refresh-{prefix}");
        fake.register_refresh_token(CLIENT_ID, &refresh_token);
        let secrets = Api::namespaced(client.clone(), namespace.name());
        let connections = Api::namespaced(client.clone(), namespace.name());
        Self { cluster, namespace, fake, refresh_token, secrets, connections }
    }

    pub fn operator(&self, extra_args: &[&str]) -> Operator {
        Operator::start(self.cluster, self.namespace.name(), &self.fake, extra_args)
    }

    pub async fn create_credentials(&self, name: &str) {
        create(&self.secrets, &credentials_secret(name, CLIENT_ID, CLIENT_SECRET, &self.refresh_token)).await;
    }

    pub async fn create_connection(&self, name: &str, extra_spec: serde_json::Value) {
        create(&self.connections, &connection(name, "zoho-oauth", &self.fake, extra_spec)).await;
    }

    /// Labels the connection's target and waits for the label on `target`: proof that the
    /// operator reconciled the connection since, e.g. after a restart.
    pub async fn label_target_and_wait(&self, connection: &str, target: &str, label: &str) {
        let patch = json!({"spec": {"target": {"labels": {label: "yes"}}}});
        self.connections.patch(connection, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("label");
        eventually(SETTLE, &format!("the label {label} on Secret {target}"), || async {
            let secret = self.secrets.get_opt(target).await.ok()??;
            secret.metadata.labels?.contains_key(label).then_some(())
        })
        .await;
    }

    /// Waits until the target Secret holds a token the fake reports live, and returns it.
    pub async fn live_token(&self, target: &str) -> String {
        eventually(SETTLE, &format!("a live token in Secret {target}"), || async {
            let token = target_token(&self.secrets, target).await?;
            self.fake.is_live(&token).then_some(token)
        })
        .await
    }
}
