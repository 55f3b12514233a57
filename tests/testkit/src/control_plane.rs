//! A real local control plane for tests: etcd, kube-apiserver and kube-controller-manager run as
//! child processes on loopback ports, set up the way controller-runtime's envtest sets up etcd and
//! the apiserver (generated certificates, an admin client certificate, an `envtest` kubeconfig).
//! The controller manager is what envtest lacks: without it ownerReferences are never garbage
//! collected and deleted namespaces stay `Terminating` forever.
//!
//! Tests normally call [`shared`], which starts one control plane per test binary, or hands out
//! the cluster from `KUBECONFIG` when `ZOHO_OPERATOR_TEST_CLUSTER=existing`.

use std::{
    env,
    fs::{self, OpenOptions},
    future::Future,
    io,
    net::TcpListener,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{LazyLock, Mutex, MutexGuard, PoisonError, mpsc},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail, ensure};
use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use k8s_openapi::{api::core::v1::Namespace, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use kube::{
    Api, Client, Config,
    api::{DeleteParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

/// Must match `scripts/tools`, which builds the binaries into this directory.
const TOOLS_DIR: &str = "k8s-v1.36.3-etcd-v3.6.16-helm-v3.22.0";
/// Selects the cluster the tests run against; see [`shared`].
pub const CLUSTER_ENV: &str = "ZOHO_OPERATOR_TEST_CLUSTER";
/// Set on every namespace made by [`test_namespace`], so leftovers on a real cluster are easy to
/// find: `kubectl delete namespace -l testkit.zoho-token-operator/test=true`.
pub const TEST_NAMESPACE_LABEL: &str = "testkit.zoho-token-operator/test";

/// Generous: a cold kube-apiserver needs 10-30 s on a busy 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
const POLL_INTERVAL: Duration = Duration::from_millis(100);
const LOG_TAIL_LINES: usize = 40;
const DIR_PREFIX: &str = "testkit-control-plane-";

/// Finds a test binary (`etcd`, `kube-apiserver`, `kube-controller-manager`, `kubectl`, `helm`):
/// `$TEST_ASSET_<NAME>`, then `$KUBEBUILDER_ASSETS/<name>`, then the cache `scripts/tools` fills.
pub fn find_binary(name: &str) -> Result<PathBuf> {
    let var = format!("TEST_ASSET_{}", name.to_uppercase().replace('-', "_"));
    if let Some(path) = env::var_os(&var).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        ensure!(is_executable(&path), "${var} is {}, which is not an executable file", path.display());
        return Ok(path);
    }
    let candidates: Vec<PathBuf> =
        [env::var_os("KUBEBUILDER_ASSETS").filter(|d| !d.is_empty()).map(PathBuf::from), default_tools_dir()]
            .into_iter()
            .flatten()
            .map(|dir| dir.join(name))
            .collect();
    if let Some(found) = candidates.iter().find(|p| is_executable(p)) {
        return Ok(found.clone());
    }
    let looked_at: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    bail!(
        "{name} not found (looked at ${var}, {}). Build the test binaries once with `scripts/tools` \
         from the repository root (15-30 minutes when cold), or point the tests at existing \
         envtest assets: `export KUBEBUILDER_ASSETS=$(scripts/tools)`",
        looked_at.join(", ")
    )
}

fn default_tools_dir() -> Option<PathBuf> {
    let var = |name| env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let root = var("ZOHO_OPERATOR_TOOLS_CACHE").or_else(|| {
        let cache = var("XDG_CACHE_HOME").or_else(|| Some(var("HOME")?.join(".cache")))?;
        Some(cache.join("zoho-token-operator/tools"))
    })?;
    Some(root.join(TOOLS_DIR))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Spawns `command` so that the child is SIGKILLed when this process dies, however it dies.
///
/// Statics are never dropped and a killed test binary runs no destructors, so `Drop` alone would
/// leave etcd and kube-apiserver running after every test run. `PR_SET_PDEATHSIG` covers that,
/// but it fires when the *thread* that forked the child exits, not the process. Each
/// `#[tokio::test]` runs on its own short-lived thread, so every child is forked from one
/// dedicated thread that lives as long as the process.
pub fn spawn_tied_to_process(mut command: Command) -> io::Result<Child> {
    type Request = (Command, mpsc::SyncSender<io::Result<Child>>);
    static SPAWNER: LazyLock<mpsc::Sender<Request>> = LazyLock::new(|| {
        let (requests, incoming) = mpsc::channel::<Request>();
        thread::Builder::new()
            .name("testkit-spawner".into())
            .spawn(move || {
                for (mut command, reply) in incoming {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("start the testkit spawner thread");
        requests
    });

    let parent = libc::pid_t::try_from(std::process::id()).expect("pid fits pid_t");
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe calls.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl; then no signal would ever come.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let gone = || io::Error::other("the testkit spawner thread is gone");
    let (reply, response) = mpsc::sync_channel(1);
    SPAWNER.send((command, reply)).map_err(|_| gone())?;
    response.recv().map_err(|_| gone())?
}

/// One control-plane process, restartable with the same arguments.
struct Component {
    name: &'static str,
    binary: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Component {
    fn new(name: &'static str, dir: &Path, args: Vec<String>) -> Result<Self> {
        Ok(Self { name, binary: find_binary(name)?, args, log: dir.join(format!("{name}.log")), child: None })
    }

    fn spawn(&mut self) -> Result<()> {
        ensure!(self.child.is_none(), "{} is already running", self.name);
        // Appending keeps the history of earlier runs when a test restarts a component.
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("open {}", self.log.display()))?;
        let mut command = Command::new(&self.binary);
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Out of the terminal's process group, so Ctrl-C reaches only the parent, which
            // then stops the components in order.
            .process_group(0);
        let child = spawn_tied_to_process(command)
            .with_context(|| format!("start {} ({})", self.name, self.binary.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Fails, with the end of the log, unless the process is running.
    fn check_running(&mut self) -> Result<()> {
        let child = self.child.as_mut().ok_or_else(|| anyhow!("{} is stopped", self.name))?;
        if let Some(status) = child.try_wait()? {
            self.child = None;
            bail!("{} exited ({status}){}", self.name, self.log_tail());
        }
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        format!("; last lines of {}:\n{tail}", self.log.display())
    }
}

/// A panicking test must not poison the harness for the tests that come after it.
fn lock(component: &Mutex<Component>) -> MutexGuard<'_, Component> {
    component.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Stops a component: SIGTERM, then SIGKILL after [`STOP_TIMEOUT`].
async fn terminate(component: &Mutex<Component>) -> Result<()> {
    let Some(mut child) = lock(component).child.take() else {
        return Ok(());
    };
    let pid = libc::pid_t::try_from(child.id())?;
    // SAFETY: plain syscall on a child we have not reaped yet, so the pid cannot be reused.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + STOP_TIMEOUT;
    while child.try_wait()?.is_none() {
        if Instant::now() >= deadline {
            child.kill()?;
            child.wait()?;
            break;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    Ok(())
}

/// Polls `probe` until it succeeds; fails early if the process dies, and always with its log.
async fn wait_ready<F, Fut>(component: &Mutex<Component>, mut probe: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<String>>,
{
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        lock(component).check_running()?;
        let error = match tokio::time::timeout(PROBE_TIMEOUT, probe()).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(error)) => error,
            Err(_) => anyhow!("no answer within {PROBE_TIMEOUT:?}"),
        };
        if Instant::now() >= deadline {
            let component = lock(component);
            bail!(
                "{} was not ready within {START_TIMEOUT:?}; last probe: {error:#}{}",
                component.name,
                component.log_tail()
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

async fn get(client: &Client, path: &str) -> Result<String> {
    let request = http::Request::get(path).body(Vec::new())?;
    Ok(client.request_text(request).await?)
}

/// A client without credentials, for health endpoints.
fn anonymous_client(url: &str) -> Result<Client> {
    let mut config = Config::new(url.parse()?);
    // kube-controller-manager serves /healthz with a certificate it signs itself.
    config.accept_invalid_certs = true;
    Ok(Client::try_from(config)?)
}

/// Builds a client from a kubeconfig file; call it once per tokio runtime (i.e. per test), since
/// a `kube::Client` stops working when the runtime it was created on ends.
pub async fn client_from_kubeconfig(path: &Path) -> Result<Client> {
    let kubeconfig = Kubeconfig::read_from(path).with_context(|| format!("read {}", path.display()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// The cluster entry the current context of a kubeconfig file points at.
fn current_cluster(path: &Path) -> Result<kube::config::Cluster> {
    let kubeconfig = Kubeconfig::read_from(path).with_context(|| format!("read {}", path.display()))?;
    let context_name =
        kubeconfig.current_context.as_deref().with_context(|| format!("{} has no current-context", path.display()))?;
    let cluster_name = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .with_context(|| format!("context {context_name} is missing in {}", path.display()))?;
    kubeconfig
        .clusters
        .into_iter()
        .find(|c| c.name == cluster_name)
        .and_then(|c| c.cluster)
        .with_context(|| format!("cluster {cluster_name} is missing in {}", path.display()))
}

/// Writes a single-context kubeconfig; cluster, user and context are all named `envtest`.
fn write_kubeconfig(path: &Path, cluster: Value, user: Value) -> Result<()> {
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "envtest", "cluster": cluster}],
        "users": [{"name": "envtest", "user": user}],
        "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": "envtest"}}],
        "current-context": "envtest",
    });
    // JSON is YAML, so kubectl and client-go read it as they read any kubeconfig.
    fs::write(path, serde_json::to_vec_pretty(&kubeconfig)?).with_context(|| format!("write {}", path.display()))
}

/// Writes a kubeconfig for `kubeconfig`'s current cluster that authenticates with a bearer
/// token, e.g. a ServiceAccount token from the TokenRequest API, for RBAC tests.
fn write_token_kubeconfig(kubeconfig: &Path, token: &str, path: &Path) -> Result<()> {
    let cluster = serde_json::to_value(current_cluster(kubeconfig)?)?;
    write_kubeconfig(path, cluster, json!({ "token": token }))
}

/// A certificate authority: `params` and `key` sign leaf certificates.
struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

impl Ca {
    fn new(common_name: &str) -> Result<Self> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
        let pem = params.self_signed(&key)?.pem();
        Ok(Self { params, key, pem })
    }

    /// Issues a certificate; returns the certificate and its key as PEM.
    fn issue(
        &self,
        common_name: &str,
        organization: Option<&str>,
        subject_alt_names: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<(String, String)> {
        let key = KeyPair::generate()?;
        let sans: Vec<String> = subject_alt_names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name.push(DnType::CommonName, common_name);
        if let Some(organization) = organization {
            params.distinguished_name.push(DnType::OrganizationName, organization);
        }
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &Issuer::from_params(&self.params, &self.key))?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

fn free_ports<const N: usize>() -> Result<[u16; N]> {
    // Held open together so that the ports differ; released just before the components bind them.
    let listeners = (0..N).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<io::Result<Vec<_>>>()?;
    let ports = listeners.iter().map(|l| Ok(l.local_addr()?.port())).collect::<io::Result<Vec<u16>>>()?;
    Ok(ports.try_into().expect("exactly N ports"))
}

/// A test binary killed with SIGKILL leaves its directory behind (etcd preallocates a 64 MB WAL),
/// so each start removes the directories of processes that no longer exist.
fn remove_stale_dirs() {
    let Ok(entries) = fs::read_dir(env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// etcd, kube-apiserver and kube-controller-manager on loopback ports, with their data,
/// certificates, kubeconfigs and logs (`<component>.log`) in a temporary directory.
///
/// Dropping it kills the processes and removes the directory; [`ControlPlane::stop`] shuts down
/// gracefully instead.
pub struct ControlPlane {
    etcd: Mutex<Component>,
    apiserver: Mutex<Component>,
    controller_manager: Mutex<Component>,
    etcd_url: String,
    server_url: String,
    controller_manager_url: String,
    kubeconfig: PathBuf,
    /// Signs client certificates: [`ControlPlane::write_user_kubeconfig`] makes more identities.
    client_ca: Ca,
    /// Last, so that it is removed after `Drop::drop` has killed the processes using it.
    dir: tempfile::TempDir,
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver and kube-controller-manager and waits until each is ready.
    pub async fn start() -> Result<Self> {
        Self::start_with(&[]).await
    }

    /// Like [`ControlPlane::start`], with more kube-apiserver flags, e.g. an audit policy, so that
    /// a benchmark can tell one client's requests from another's.
    pub async fn start_with(extra_apiserver_args: &[String]) -> Result<Self> {
        let started = Instant::now();
        remove_stale_dirs();
        let dir = tempfile::Builder::new().prefix(&format!("{DIR_PREFIX}{}-", std::process::id())).tempdir()?;
        let path = |name: &str| dir.path().join(name).display().to_string();
        let [etcd_port, peer_port, apiserver_port, controller_manager_port] = free_ports()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let server_url = format!("https://127.0.0.1:{apiserver_port}");

        let serving_ca = Ca::new("testkit-serving-ca")?;
        let client_ca = Ca::new("testkit-client-ca")?;
        let (serving_cert, serving_key) =
            serving_ca.issue("localhost", None, &["localhost", "127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth)?;
        let service_account_key = KeyPair::generate()?;
        for (name, contents) in [
            ("serving.crt", serving_cert),
            ("serving.key", serving_key),
            ("client-ca.crt", client_ca.pem.clone()),
            ("service-account.pub", service_account_key.public_key_pem()),
            ("service-account.key", service_account_key.serialize_pem()),
        ] {
            fs::write(path(name), contents)?;
        }
        let cluster = json!({
            "server": server_url,
            "certificate-authority-data": BASE64.encode(&serving_ca.pem),
        });
        let write_cert_kubeconfig = |file: &str, user: &str| -> Result<PathBuf> {
            let (cert, key) =
                client_ca.issue(user, Some("system:masters"), &[], ExtendedKeyUsagePurpose::ClientAuth)?;
            let user = json!({
                "client-certificate-data": BASE64.encode(cert),
                "client-key-data": BASE64.encode(key),
            });
            let file = dir.path().join(file);
            write_kubeconfig(&file, cluster.clone(), user)?;
            Ok(file)
        };
        let kubeconfig = write_cert_kubeconfig("kubeconfig", "admin")?;
        // With --use-service-account-credentials=false every controller acts as this user, and
        // the garbage collector must be able to delete any kind.
        let controller_manager_kubeconfig =
            write_cert_kubeconfig("kube-controller-manager.kubeconfig", "system:kube-controller-manager")?;

        let etcd = vec![
            format!("--data-dir={}", path("etcd")),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=default={peer_url}"),
            "--unsafe-no-fsync=true".into(),
        ];
        // envtest's flag set (shared/reference/test-infra.md §3), with explicit file names.
        let apiserver: Vec<String> = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={apiserver_port}"),
            format!("--tls-cert-file={}", path("serving.crt")),
            format!("--tls-private-key-file={}", path("serving.key")),
            format!("--cert-dir={}", path("kube-apiserver")),
            format!("--client-ca-file={}", path("client-ca.crt")),
            "--authorization-mode=RBAC".into(),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--allow-privileged=true".into(),
            // No service account controller runs, so the admission plugin would reject every
            // pod for lack of a `default` ServiceAccount.
            "--disable-admission-plugins=ServiceAccount".into(),
            format!("--service-account-issuer={server_url}/"),
            format!("--service-account-key-file={}", path("service-account.pub")),
            format!("--service-account-signing-key-file={}", path("service-account.key")),
        ]
        .into_iter()
        .chain(extra_apiserver_args.iter().cloned())
        .collect();
        let controller_manager = vec![
            format!("--kubeconfig={}", controller_manager_kubeconfig.display()),
            // Garbage collection of ownerReferences, and namespaces that really go away.
            "--controllers=garbagecollector,namespace".into(),
            "--use-service-account-credentials=false".into(),
            "--leader-elect=false".into(),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={controller_manager_port}"),
            format!("--cert-dir={}", path("kube-controller-manager")),
        ];

        let mut plane = Self {
            etcd: Mutex::new(Component::new("etcd", dir.path(), etcd)?),
            apiserver: Mutex::new(Component::new("kube-apiserver", dir.path(), apiserver)?),
            controller_manager: Mutex::new(Component::new("kube-controller-manager", dir.path(), controller_manager)?),
            etcd_url,
            server_url,
            controller_manager_url: format!("https://127.0.0.1:{controller_manager_port}"),
            kubeconfig,
            client_ca,
            dir,
        };
        if let Err(error) = plane.launch().await {
            // Dropping `plane` kills whatever runs; the logs stay for a post-mortem until a later
            // start sweeps them away.
            plane.dir.disable_cleanup(true);
            return Err(error.context(format!("the control plane did not start; see {}", plane.dir().display())));
        }
        eprintln!(
            "control plane ready in {:.1}s: {} (logs in {})",
            started.elapsed().as_secs_f64(),
            plane.server_url,
            plane.dir().display()
        );
        Ok(plane)
    }

    async fn launch(&self) -> Result<()> {
        self.launch_etcd().await?;
        self.start_apiserver().await?;
        lock(&self.controller_manager).spawn()?;
        let client = anonymous_client(&self.controller_manager_url)?;
        wait_ready(&self.controller_manager, || get(&client, "/healthz")).await
    }

    /// The admin kubeconfig (user `admin` in group `system:masters`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// `https://127.0.0.1:<port>`
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// Writes to `path` a kubeconfig with a client certificate for `user` (in `group`, if any):
    /// an identity of its own, which RBAC and audit logs tell apart from the admin's.
    pub fn write_user_kubeconfig(&self, path: &Path, user: &str, group: Option<&str>) -> Result<()> {
        let (cert, key) = self.client_ca.issue(user, group, &[], ExtendedKeyUsagePurpose::ClientAuth)?;
        let cluster = serde_json::to_value(current_cluster(&self.kubeconfig)?)?;
        let user = json!({"client-certificate-data": BASE64.encode(cert), "client-key-data": BASE64.encode(key)});
        write_kubeconfig(path, cluster, user)
    }

    /// The process ids of etcd, kube-apiserver and kube-controller-manager, by name, for
    /// measuring what each costs.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        [&self.etcd, &self.apiserver, &self.controller_manager]
            .into_iter()
            .filter_map(|component| {
                let component = lock(component);
                Some((component.name, component.child.as_ref()?.id()))
            })
            .collect()
    }

    /// The temporary directory with data, certificates and `<component>.log` files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Fails, with the end of its log, if any component has exited.
    pub fn check_running(&self) -> Result<()> {
        for component in [&self.etcd, &self.apiserver, &self.controller_manager] {
            lock(component).check_running()?;
        }
        Ok(())
    }

    /// Stops kube-apiserver (SIGTERM, SIGKILL after 20 s); etcd and the controller manager stay.
    pub async fn stop_apiserver(&self) -> Result<()> {
        terminate(&self.apiserver).await
    }

    /// Starts kube-apiserver, on the same port with the same certificates as before, and waits
    /// until `/readyz` passes. Does nothing if it is running.
    pub async fn start_apiserver(&self) -> Result<()> {
        {
            let mut apiserver = lock(&self.apiserver);
            if apiserver.check_running().is_ok() {
                return Ok(());
            }
            apiserver.spawn()?;
        }
        let client = client_from_kubeconfig(&self.kubeconfig).await?;
        wait_ready(&self.apiserver, || get(&client, "/readyz")).await
    }

    /// Restarts etcd with the same data and port, then waits until etcd is healthy and, if it
    /// runs, kube-apiserver is ready again.
    pub async fn restart_etcd(&self) -> Result<()> {
        terminate(&self.etcd).await?;
        self.launch_etcd().await?;
        if lock(&self.apiserver).check_running().is_err() {
            return Ok(());
        }
        let client = client_from_kubeconfig(&self.kubeconfig).await?;
        wait_ready(&self.apiserver, || get(&client, "/readyz")).await
    }

    async fn launch_etcd(&self) -> Result<()> {
        lock(&self.etcd).spawn()?;
        let client = anonymous_client(&self.etcd_url)?;
        wait_ready(&self.etcd, || get(&client, "/health")).await
    }

    /// Stops every component gracefully, dependents first, and removes the directory.
    pub async fn stop(self) -> Result<()> {
        for component in [&self.controller_manager, &self.apiserver, &self.etcd] {
            terminate(component).await?;
        }
        Ok(())
    }

    fn kill(&self) {
        for component in [&self.controller_manager, &self.apiserver, &self.etcd] {
            // try_lock: this also runs from `atexit`, where waiting on a lock could hang.
            if let Ok(mut component) = component.try_lock() {
                component.kill();
            }
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The cluster tests run against: a local [`ControlPlane`], or an existing cluster.
pub struct TestCluster {
    kubeconfig: PathBuf,
    server_url: String,
    local: Option<ControlPlane>,
}

static SHARED: OnceCell<Result<TestCluster, String>> = OnceCell::const_new();

/// The cluster shared by all tests of this test binary, started on first use.
///
/// By default that is a local [`ControlPlane`]. With `ZOHO_OPERATOR_TEST_CLUSTER=existing` it is
/// the cluster of the current context in `$KUBECONFIG` (default `~/.kube/config`).
///
/// Each `#[tokio::test]` has its own runtime, and a `kube::Client` dies with its runtime, so
/// this hands out the cluster, not a client: call [`TestCluster::client`] in each test.
///
/// Panics if the cluster cannot be started; every later call fails fast with the same message.
pub async fn shared() -> &'static TestCluster {
    let cluster = SHARED
        .get_or_init(|| async {
            let cluster = TestCluster::from_env().await;
            if matches!(&cluster, Ok(c) if c.local.is_some()) {
                // SAFETY: registers a plain `extern "C" fn` without arguments.
                unsafe { libc::atexit(remove_shared_control_plane) };
            }
            cluster.map_err(|e| format!("{e:#}"))
        })
        .await;
    match cluster {
        Ok(cluster) => cluster,
        Err(error) => panic!("cannot set up the test cluster: {error}"),
    }
}

/// Statics are never dropped, so without this every test run would leave etcd's data behind.
extern "C" fn remove_shared_control_plane() {
    if let Some(Ok(TestCluster { local: Some(plane), .. })) = SHARED.get() {
        plane.kill();
        let _ = fs::remove_dir_all(plane.dir());
    }
}

impl TestCluster {
    async fn from_env() -> Result<Self> {
        match env::var(CLUSTER_ENV).unwrap_or_default().as_str() {
            "" | "local" => Self::start_local().await,
            "existing" => Self::existing(),
            other => bail!("{CLUSTER_ENV}={other} is not supported; use `existing` or leave it unset"),
        }
    }

    /// A fresh local control plane of its own, for tests that would disturb others, such as
    /// fault injection. Fails when the tests are pointed at an existing cluster.
    pub async fn dedicated() -> Result<Self> {
        if env::var(CLUSTER_ENV).is_ok_and(|v| v == "existing") {
            bail!(
                "this test needs its own local control plane, but {CLUSTER_ENV}=existing points the \
                 tests at the cluster in KUBECONFIG"
            );
        }
        Self::start_local().await
    }

    async fn start_local() -> Result<Self> {
        let plane = ControlPlane::start().await?;
        Ok(Self {
            kubeconfig: plane.kubeconfig_path().to_owned(),
            server_url: plane.server_url().to_owned(),
            local: Some(plane),
        })
    }

    fn existing() -> Result<Self> {
        let kubeconfig = match env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
            Some(value) => {
                let paths: Vec<PathBuf> = env::split_paths(&value).collect();
                ensure!(
                    paths.len() == 1,
                    "{CLUSTER_ENV}=existing needs KUBECONFIG to name a single file, not {value:?}"
                );
                paths.into_iter().next().expect("one path")
            }
            None => PathBuf::from(env::var_os("HOME").context("HOME is not set")?).join(".kube/config"),
        };
        let server_url = current_cluster(&kubeconfig)?
            .server
            .with_context(|| format!("the current cluster in {} has no server", kubeconfig.display()))?;
        eprintln!("testing against the existing cluster at {server_url} ({})", kubeconfig.display());
        Ok(Self { kubeconfig, server_url, local: None })
    }

    /// A kubeconfig with full access to the cluster.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// A client for this cluster; build one per test (see [`shared`]).
    pub async fn client(&self) -> Result<Client> {
        client_from_kubeconfig(&self.kubeconfig).await
    }

    /// Writes to `path` a kubeconfig for this cluster that authenticates with `token`, e.g. a
    /// ServiceAccount token from the TokenRequest API, so a test can act as that identity.
    pub fn kubeconfig_for_token(&self, token: &str, path: &Path) -> Result<()> {
        write_token_kubeconfig(&self.kubeconfig, token, path)
    }

    /// The PEM certificates that sign the API server's serving certificate, as a pod finds them
    /// in its ServiceAccount's `ca.crt`.
    pub fn certificate_authority(&self) -> Result<Vec<u8>> {
        let cluster = current_cluster(&self.kubeconfig)?;
        match (cluster.certificate_authority_data, cluster.certificate_authority) {
            (Some(data), _) => BASE64.decode(data.trim()).context("decode certificate-authority-data"),
            (None, Some(file)) => fs::read(&file).with_context(|| format!("read {file}")),
            (None, None) => {
                bail!("the current cluster in {} names no certificate authority", self.kubeconfig.display())
            }
        }
    }

    /// The local control plane; fails for an existing cluster, whose processes tests cannot touch.
    pub fn control_plane(&self) -> Result<&ControlPlane> {
        self.local.as_ref().with_context(|| {
            format!(
                "fault injection needs the local control plane, but {CLUSTER_ENV}=existing points \
                 the tests at {}",
                self.server_url
            )
        })
    }

    /// See [`ControlPlane::stop_apiserver`]. This disturbs every test on the same cluster.
    pub async fn stop_apiserver(&self) -> Result<()> {
        self.control_plane()?.stop_apiserver().await
    }

    /// See [`ControlPlane::start_apiserver`].
    pub async fn start_apiserver(&self) -> Result<()> {
        self.control_plane()?.start_apiserver().await
    }

    /// See [`ControlPlane::restart_etcd`]. This disturbs every test on the same cluster.
    pub async fn restart_etcd(&self) -> Result<()> {
        self.control_plane()?.restart_etcd().await
    }
}

/// A namespace of its own for one test.
pub struct TestNamespace {
    name: String,
    client: Option<Client>,
}

/// Creates a namespace named `<prefix>-<random suffix>` (the prefix is made a valid name).
pub async fn test_namespace(client: &Client, prefix: &str) -> Result<TestNamespace> {
    let mut prefix: String =
        prefix.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    prefix.truncate(50); // generateName adds 5 characters; names stop at 63
    let prefix = prefix.trim_matches('-');
    let namespace = Namespace {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", if prefix.is_empty() { "test" } else { prefix })),
            labels: Some([(TEST_NAMESPACE_LABEL.to_owned(), "true".to_owned())].into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    let created = Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .context("create a test namespace")?;
    Ok(TestNamespace {
        name: created.metadata.name.context("the new namespace has no name")?,
        client: Some(client.clone()),
    })
}

impl TestNamespace {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deletes the namespace (the namespace controller then deletes its contents).
    pub async fn delete(mut self) -> Result<()> {
        let client = self.client.take().expect("client present until deleted");
        Api::<Namespace>::all(client)
            .delete(&self.name, &DeleteParams::background())
            .await
            .with_context(|| format!("delete namespace {}", self.name))?;
        Ok(())
    }
}

impl Drop for TestNamespace {
    /// Best effort: the deletion runs only if the runtime lives on, which a `#[tokio::test]`
    /// runtime does not once the test returns; call [`TestNamespace::delete`] for certainty.
    /// Leftovers carry [`TEST_NAMESPACE_LABEL`], and vanish with a local control plane anyway.
    fn drop(&mut self) {
        let (Some(client), Ok(runtime)) = (self.client.take(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        let name = std::mem::take(&mut self.name);
        runtime.spawn(async move {
            let _ = Api::<Namespace>::all(client).delete(&name, &DeleteParams::background()).await;
        });
    }
}
