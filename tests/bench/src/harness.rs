//! What every scenario needs: a control plane whose audit log tells the operator's requests from
//! everyone else's, the fake Zoho as a process, processes measured through /proc, many objects
//! created quickly, and a watch that notes when each connection turns Ready.

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    io::{BufRead, BufReader, Seek, SeekFrom},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::{
    ByteString,
    api::{
        core::v1::{Namespace, Secret},
        rbac::v1::ClusterRoleBinding,
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api, Client, CustomResourceExt, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
    runtime::{
        WatchStreamExt,
        wait::{await_condition, conditions},
        watcher,
    },
};
use serde::Deserialize;
use serde_json::json;
use testkit::{
    control_plane::{ControlPlane, client_from_kubeconfig, spawn_tied_to_process},
    fake_zoho::Stats,
};
use zoho_token_operator::api::{ClusterZohoConnection, Connection, ZohoConnection};

pub const OPERATOR_USER: &str = "bench:operator";
pub const BASELINE_USER: &str = "bench:baseline";
pub const CLIENT_ID: &str = "1000.BENCHCLIENT";
pub const CLIENT_SECRET: &str = "bench-client-secret";
/// Where the operator reads the credentials of ClusterZohoConnections.
pub const SYSTEM_NAMESPACE: &str = "bench-system";
/// How many objects the driver creates at once.
const CREATE_CONCURRENCY: usize = 32;

/// A control plane of its own for one scenario, with an audit log of the operator's and the
/// baseline's requests, and a kubeconfig for each of them.
pub struct Cluster {
    pub plane: ControlPlane,
    pub client: Client,
    pub dir: tempfile::TempDir,
    pub audit: AuditLog,
}

impl Cluster {
    pub async fn start() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("zoho-bench-").tempdir()?;
        let policy = dir.path().join("audit-policy.yaml");
        // Metadata only, and only for the two measured clients: everyone else's requests cost
        // the API server nothing extra.
        fs::write(
            &policy,
            format!(
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nomitManagedFields: true\n\
                 rules:\n- level: Metadata\n  users: [\"{OPERATOR_USER}\", \"{BASELINE_USER}\"]\n- level: None\n"
            ),
        )?;
        let audit_path = dir.path().join("audit.log");
        let plane = ControlPlane::start_with(&[
            format!("--audit-policy-file={}", policy.display()),
            format!("--audit-log-path={}", audit_path.display()),
            "--audit-log-format=json".into(),
            // Never rotated within a run.
            "--audit-log-maxsize=100000".into(),
        ])
        .await?;
        let client = client_from_kubeconfig(plane.kubeconfig_path()).await?;
        for user in [OPERATOR_USER, BASELINE_USER] {
            // In the ServiceAccounts' group, so that API Priority and Fairness puts the client
            // where it puts the chart's ServiceAccount (workload-low), not in global-default.
            plane.write_user_kubeconfig(&kubeconfig_of(dir.path(), user), user, Some("system:serviceaccounts"))?;
        }
        let subjects: Vec<serde_json::Value> = [OPERATOR_USER, BASELINE_USER]
            .map(|user| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}))
            .into();
        let binding: ClusterRoleBinding = serde_json::from_value(json!({
            "metadata": {"name": "bench-clients"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": subjects,
        }))?;
        Api::<ClusterRoleBinding>::all(client.clone()).create(&PostParams::default(), &binding).await?;
        install_crds(&client).await?;
        create_namespaces(&client, &[SYSTEM_NAMESPACE.to_string()], &BTreeMap::new()).await?;
        Ok(Self { plane, client, audit: AuditLog { path: audit_path }, dir })
    }

    pub fn kubeconfig(&self, user: &str) -> PathBuf {
        kubeconfig_of(self.dir.path(), user)
    }

    /// CPU seconds used so far by etcd, kube-apiserver and kube-controller-manager.
    pub fn control_plane_cpu(&self) -> BTreeMap<String, f64> {
        self.plane.pids().into_iter().map(|(name, pid)| (name.to_string(), cpu_seconds(pid).unwrap_or(0.0))).collect()
    }

    pub async fn stop(self) -> Result<()> {
        self.plane.stop().await
    }
}

fn kubeconfig_of(dir: &Path, user: &str) -> PathBuf {
    dir.join(format!("{}.kubeconfig", user.replace(':', "-")))
}

async fn install_crds(client: &Client) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [ZohoConnection::crd(), ClusterZohoConnection::crd()] {
        let name = crd.name_any();
        crds.patch(&name, &PatchParams::apply("bench").force(), &Patch::Apply(&crd)).await?;
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(crds.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .context("the CRD is established within 30 s")??;
    }
    // Established is not yet served everywhere: wait until a list works.
    for _ in 0..100 {
        if Api::<ZohoConnection>::all(client.clone()).list_metadata(&ListParams::default().limit(1)).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("ZohoConnections are not served 10 s after the CRD was established")
}

// --- Processes -------------------------------------------------------------------------------

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// User plus system CPU seconds of a running process.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / clock_ticks())
}

/// The peak resident set size (VmHWM) of a running process, in bytes.
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// This process's own CPU seconds.
pub fn own_cpu_seconds() -> f64 {
    cpu_seconds(std::process::id()).unwrap_or(0.0)
}

/// A child process that dies with the driver, with its output in a log file.
pub struct Proc {
    child: Child,
    pub started: Instant,
    pub log: PathBuf,
    metrics_port: Option<u16>,
}

impl Proc {
    pub fn spawn(mut command: Command, log: PathBuf, metrics_port: Option<u16>) -> Result<Self> {
        let file = fs::File::create(&log)?;
        command.stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file);
        let started = Instant::now();
        let program = command.get_program().to_owned();
        let child = spawn_tied_to_process(command).with_context(|| format!("start {}", program.display()))?;
        Ok(Self { child, started, log, metrics_port })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn cpu(&self) -> f64 {
        cpu_seconds(self.pid()).unwrap_or(0.0)
    }

    pub fn peak_rss(&self) -> u64 {
        peak_rss(self.pid()).unwrap_or(0)
    }

    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect();
            bail!("{} exited ({status}); last lines of {}:\n{}", self.pid(), self.log.display(), tail.join("\n"));
        }
        Ok(())
    }

    pub async fn metrics(&self) -> Result<String> {
        let port = self.metrics_port.context("this process serves no metrics")?;
        Ok(reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await?.error_for_status()?.text().await?)
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let port = self.metrics_port.context("this process serves no /readyz")?;
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            if let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await
                && response.status().is_success()
            {
                return Ok(());
            }
            ensure!(Instant::now() < deadline, "not ready within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then SIGKILL after 30 s.
    pub async fn terminate(mut self) -> Result<()> {
        // SAFETY: a signal to our own child, not reaped yet.
        unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                self.child.kill()?;
                self.child.wait()?;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Paths of the binaries the driver runs.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub operator: PathBuf,
    pub fake_zoho: PathBuf,
    pub baseline: PathBuf,
}

/// Starts the operator as the chart runs it, but with the bench's own identity; `extra` adds
/// flags, and a non-empty `wrapper` runs it under another command, such as a profiler.
pub fn start_operator(
    bins: &Binaries,
    cluster: &Cluster,
    fake: &Fake,
    log: PathBuf,
    extra: &[String],
    wrapper: &[String],
) -> Result<Proc> {
    let port = free_port()?;
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(&bins.operator);
            command
        }
        None => Command::new(&bins.operator),
    };
    command
        .arg("run")
        .args(["--allow-accounts-url", &fake.url])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .args(["--cluster-resource-namespace", SYSTEM_NAMESPACE])
        .args(extra)
        .env("KUBECONFIG", cluster.kubeconfig(OPERATOR_USER))
        .env("RUST_LOG", "info")
        .env_remove("ZOHO_OPERATOR_WATCH_NAMESPACE");
    Proc::spawn(command, log, Some(port))
}

// --- The fake Zoho ---------------------------------------------------------------------------

/// The `fake-zoho` binary, with every token request delayed by `latency`.
pub struct Fake {
    pub url: String,
    proc: Proc,
    http: reqwest::Client,
}

impl Fake {
    pub async fn start(bins: &Binaries, dir: &Path, token_lifetime: Duration, latency: Duration) -> Result<Self> {
        let mut command = Command::new(&bins.fake_zoho);
        command
            .args(["--client", &format!("{CLIENT_ID}:{CLIENT_SECRET}")])
            .args(["--token-lifetime", &token_lifetime.as_secs().to_string()])
            .env("RUST_LOG", "warn");
        let log = dir.join("fake-zoho.log");
        let mut proc = Proc::spawn(command, log.clone(), None)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let url = loop {
            proc.check_running()?;
            if let Some(line) = fs::read_to_string(&log)?.lines().find(|line| line.starts_with("http://")) {
                break line.trim().to_string();
            }
            ensure!(Instant::now() < deadline, "fake-zoho printed no URL within 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let fake = Self { url, proc, http: reqwest::Client::new() };
        fake.http
            .put(format!("{}/_fake/faults/latency", fake.url))
            .json(&json!({"ms": latency.as_millis() as u64}))
            .send()
            .await?
            .error_for_status()?;
        Ok(fake)
    }

    pub async fn register_refresh_tokens(&self, tokens: &[String]) -> Result<()> {
        stream::iter(tokens)
            .map(|token| async move {
                self.http
                    .post(format!("{}/_fake/refresh-tokens", self.url))
                    .json(&json!({"client_id": CLIENT_ID, "refresh_token": token}))
                    .send()
                    .await?
                    .error_for_status()?;
                anyhow::Ok(())
            })
            .buffer_unordered(CREATE_CONCURRENCY)
            .try_collect::<()>()
            .await
    }

    pub async fn stats(&self) -> Result<Stats> {
        Ok(self.http.get(format!("{}/_fake/stats", self.url)).send().await?.error_for_status()?.json().await?)
    }

    pub fn cpu(&self) -> f64 {
        self.proc.cpu()
    }

    pub async fn stop(self) -> Result<()> {
        self.proc.terminate().await
    }
}

// --- The audit log ---------------------------------------------------------------------------

/// The API server's audit log: every request of the operator and of the baseline, by verb.
pub struct AuditLog {
    path: PathBuf,
}

/// A place in the audit log to count from.
#[derive(Clone, Copy, Debug)]
pub struct Mark(u64);

#[derive(Deserialize)]
struct AuditEvent {
    stage: String,
    verb: String,
    user: AuditUser,
    #[serde(rename = "objectRef")]
    object_ref: Option<AuditObject>,
}

#[derive(Deserialize)]
struct AuditUser {
    username: String,
}

#[derive(Deserialize)]
struct AuditObject {
    resource: Option<String>,
    subresource: Option<String>,
}

/// A client's requests, by verb and resource.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Requests {
    /// `"<verb> <resource>[/<subresource>]"`, e.g. `"patch zohoconnections/status"`.
    pub by_verb: BTreeMap<String, u64>,
}

impl Requests {
    pub fn total(&self) -> u64 {
        self.by_verb.values().sum()
    }

    pub fn writes(&self) -> u64 {
        self.by_verb.iter().filter(|(key, _)| is_write(key)).map(|(_, n)| n).sum()
    }

    pub fn reads(&self) -> u64 {
        self.total() - self.writes()
    }
}

fn is_write(key: &str) -> bool {
    ["create ", "update ", "patch ", "delete ", "deletecollection "].iter().any(|verb| key.starts_with(verb))
}

impl AuditLog {
    pub fn mark(&self) -> Mark {
        Mark(fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0))
    }

    /// The requests of `user` logged since `mark`. Each request counts once: a watch when its
    /// response starts, anything else when it completes.
    pub fn since(&self, mark: Mark, user: &str) -> Result<Requests> {
        let mut requests = Requests::default();
        let Ok(mut file) = fs::File::open(&self.path) else { return Ok(requests) };
        file.seek(SeekFrom::Start(mark.0))?;
        for line in BufReader::new(file).lines() {
            let line = line?;
            let Ok(event) = serde_json::from_str::<AuditEvent>(&line) else { continue };
            let counted = if event.verb == "watch" { "ResponseStarted" } else { "ResponseComplete" };
            if event.user.username != user || event.stage != counted {
                continue;
            }
            let resource = event.object_ref.map_or_else(String::new, |object| {
                let resource = object.resource.unwrap_or_default();
                match object.subresource {
                    Some(sub) => format!("{resource}/{sub}"),
                    None => resource,
                }
            });
            *requests.by_verb.entry(format!("{} {resource}", event.verb)).or_default() += 1;
        }
        Ok(requests)
    }

    /// Waits until the log has not grown for `quiet`: the client's trailing requests are in.
    pub async fn settle(&self, quiet: Duration, timeout: Duration) -> Mark {
        let deadline = Instant::now() + timeout;
        let mut last = self.mark().0;
        let mut since = Instant::now();
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = self.mark().0;
            if now != last {
                (last, since) = (now, Instant::now());
            } else if since.elapsed() >= quiet {
                break;
            }
        }
        Mark(last)
    }
}

// --- Objects ---------------------------------------------------------------------------------

pub async fn create_namespaces(client: &Client, names: &[String], labels: &BTreeMap<String, String>) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    stream::iter(names)
        .map(|name| {
            let namespace = Namespace {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some(labels.clone()),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            };
            let api = api.clone();
            async move {
                match api.create(&PostParams::default(), &namespace).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
                    Err(err) => {
                        Err(anyhow::Error::from(err).context(format!("create namespace {}", namespace.name_any())))
                    }
                }
            }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .try_collect::<()>()
        .await
}

pub fn credentials_secret(namespace: &str, name: &str, refresh_token: &str) -> Secret {
    Secret {
        metadata: ObjectMeta { name: Some(name.into()), namespace: Some(namespace.into()), ..ObjectMeta::default() },
        data: Some(
            [("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET), ("refresh_token", refresh_token)]
                .into_iter()
                .map(|(key, value)| (key.to_string(), ByteString(value.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

pub fn connection(namespace: &str, name: &str, credentials: &str, accounts_url: &str) -> Result<ZohoConnection> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "zoho-operator.dev/v1alpha1",
        "kind": "ZohoConnection",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"accountsUrl": accounts_url, "credentials": {"secretRef": {"name": credentials}}},
    }))?)
}

/// Creates namespaced objects, many at once.
pub async fn create_all<K>(client: &Client, objects: Vec<K>) -> Result<()>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    stream::iter(objects)
        .map(|object| {
            let api: Api<K> = Api::namespaced(client.clone(), &object.namespace().unwrap_or_default());
            async move {
                api.create(&PostParams::default(), &object).await.with_context(|| {
                    format!("create {}/{}", object.namespace().unwrap_or_default(), object.name_any())
                })?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .try_collect()
        .await
}

pub fn key_of<K: kube::Resource>(object: &K) -> String {
    format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any())
}

/// The `i`-th connection's namespace, name and credentials Secret, 1000 to a namespace.
pub fn layout(prefix: &str, i: usize) -> (String, String, String) {
    (format!("{prefix}-{}", i / 1000), format!("c{i}"), format!("c{i}-oauth"))
}

/// Creates `n` connections, each with a credentials Secret of its own (or all sharing the first
/// one's), and registers their refresh tokens at the fake. Returns the refresh tokens by key.
pub async fn populate(client: &Client, fake: &Fake, prefix: &str, n: usize, shared: bool) -> Result<Population> {
    let namespaces: Vec<String> =
        (0..n).map(|i| layout(prefix, i).0).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    create_namespaces(client, &namespaces, &BTreeMap::new()).await?;
    let mut tokens = BTreeMap::new();
    let mut secrets = Vec::new();
    let mut connections = Vec::new();
    for i in 0..n {
        let (namespace, name, credentials) = layout(prefix, i);
        let (credentials, token) = match shared {
            true => (layout(prefix, 0).2, format!("1000.{prefix}.shared")),
            false => (credentials, format!("1000.{prefix}.{i}")),
        };
        if !shared || i == 0 {
            secrets.push(credentials_secret(&namespace, &credentials, &token));
        }
        ensure!(!shared || namespace == layout(prefix, 0).0, "connections sharing a Secret share its namespace");
        connections.push(connection(&namespace, &name, &credentials, &fake.url)?);
        tokens.insert(format!("{namespace}/{name}"), token);
    }
    let unique: Vec<String> = tokens.values().cloned().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    fake.register_refresh_tokens(&unique).await?;
    create_all(client, secrets).await?;
    let started = Instant::now();
    create_all(client, connections).await?;
    Ok(Population { tokens, creation: started.elapsed() })
}

pub struct Population {
    /// Each connection's refresh token, by `namespace/name`.
    pub tokens: BTreeMap<String, String>,
    /// How long creating the connections took.
    pub creation: Duration,
}

// --- Readiness -------------------------------------------------------------------------------

/// Notes the first moment each connection of kind `K` is seen Ready, and every moment one is seen
/// not Ready after that.
pub struct ReadyWatch {
    state: Arc<Mutex<ReadyState>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct ReadyState {
    ready: HashMap<String, Instant>,
    /// Connections seen not Ready after they were Ready.
    lapsed: HashMap<String, usize>,
}

impl ReadyWatch {
    pub fn start<K: Connection>(api: Api<K>) -> Self
    where
        K::DynamicType: Default,
    {
        let state = Arc::new(Mutex::new(ReadyState::default()));
        let writer = state.clone();
        let task = tokio::spawn(async move {
            let mut events =
                std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff().applied_objects());
            while let Some(event) = events.next().await {
                let Ok(object) = event else { continue };
                let ready = object.ready_condition().is_some_and(|c| c.status == "True");
                let key = key_of(&object);
                let mut state = writer.lock().expect("never poisoned");
                match (ready, state.ready.contains_key(&key)) {
                    (true, false) => {
                        state.ready.insert(key, Instant::now());
                    }
                    (false, true) => *state.lapsed.entry(key).or_default() += 1,
                    _ => {}
                }
            }
        });
        Self { state, task }
    }

    pub fn ready_count(&self) -> usize {
        self.state.lock().expect("never poisoned").ready.len()
    }

    pub fn ready_at(&self) -> HashMap<String, Instant> {
        self.state.lock().expect("never poisoned").ready.clone()
    }

    /// How many connections were seen not Ready after being Ready.
    pub fn lapsed(&self) -> usize {
        self.state.lock().expect("never poisoned").lapsed.len()
    }

    /// Waits until `n` connections have been Ready; fails after `timeout`, or when `alive` fails.
    pub async fn wait(&self, n: usize, timeout: Duration, mut alive: impl FnMut() -> Result<()>) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while self.ready_count() < n {
            alive()?;
            ensure!(
                Instant::now() < deadline,
                "only {} of {n} connections Ready after {timeout:?}",
                self.ready_count()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

impl Drop for ReadyWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Latency percentiles, in seconds.
pub fn percentiles(mut samples: Vec<f64>) -> BTreeMap<String, f64> {
    samples.sort_by(f64::total_cmp);
    let at = |p: f64| {
        if samples.is_empty() {
            return 0.0;
        }
        let index = ((p / 100.0) * samples.len() as f64).ceil() as usize;
        samples[index.clamp(1, samples.len()) - 1]
    };
    [("p50", at(50.0)), ("p95", at(95.0)), ("p99", at(99.0)), ("max", at(100.0))]
        .into_iter()
        .map(|(name, value)| (name.to_string(), round3(value)))
        .collect()
}

pub fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// How many distinct connections the operator has reconciled since it started: each one gets
/// its `zoho_operator_connection_ready` series at the end of its first reconcile.
pub fn connections_reconciled(metrics: &str) -> usize {
    metrics.lines().filter(|line| line.starts_with("zoho_operator_connection_ready{")).count()
}
