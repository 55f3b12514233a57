//! The operator run the way the chart's pod runs it, with a simulated kubelet: in-cluster
//! configuration from a projected ServiceAccount token that is rotated under it.

use std::{
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt, symlink},
    path::{Path, PathBuf},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use k8s_openapi::api::{
    authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec},
    core::v1::Secret,
};
use kube::api::{ListParams, ObjectMeta, PostParams};
use testkit::{
    control_plane::{client_from_kubeconfig, shared},
    fake_zoho::FakeZohoConfig,
};

use super::*;

/// Where a pod finds its ServiceAccount's token, CA and namespace. `/var/run` is a link to `/run`
/// on Debian, and bwrap resolves links in a mount's target against the host: it mounts here, the
/// operator reads `/var/run/secrets/...`.
const SERVICE_ACCOUNT_DIR: &str = "/run/secrets/kubernetes.io/serviceaccount";
const UID: u32 = 65532;
/// Where the sandbox puts the operator's binary, as the image puts it at a path of its own.
const SANDBOXED_BINARY: &str = "/run/bin/zoho-token-operator";

/// The operator binary runs as the chart's Deployment runs it on a node, with the chart's
/// arguments and environment, and in-cluster configuration: `KUBERNETES_SERVICE_HOST` and
/// `KUBERNETES_SERVICE_PORT` name the test's API server, and the ServiceAccount's `token`,
/// `ca.crt` and `namespace` are mounted read-only at /var/run/secrets/kubernetes.io/serviceaccount.
/// There is no kubeconfig and no HOME to find one in.
///
/// The sandbox stands in for the container runtime, as the pod's security context asks: UID and
/// GID 65532 without supplementary groups, no capabilities (not even in the bounding set), no new
/// privileges, a read-only root filesystem. bwrap (Debian's bubblewrap) makes the mount and PID
/// namespaces; the test runs as root (as CI does), so it needs no user namespace. Its own
/// `--uid` would need one, and there UID 65532 would map to root outside, so instead
/// util-linux's setpriv, inside the sandbox, drops to UID 65532 and clears every capability set
/// before it execs the operator, as runc does. The test reads the result from /proc rather than
/// trusting the flags.
///
/// The kubelet projects a token that expires and is bound to the pod, and rotates it: it writes
/// a new timestamped directory and swaps the `..data` link to it in one rename. kube 5.0.0's
/// in-cluster config reads the token file through `TokenFile` (kube-client `client/auth`): it
/// keeps what it read for 60 s, and the first request made once less than 10 s of those are
/// left reads the file again. So the operator picks up a rotated token with its first request
/// 50 s or more after its previous read. Here the first token is bound to a Secret; after the
/// swap that Secret is deleted, which makes the API server reject the old token, and only then
/// does a new ZohoConnection appear. Its token can reach its Secret only through requests made
/// with the new token, so the test cannot pass unless the operator reloaded the file.
#[tokio::test]
async fn operator_runs_in_cluster_as_the_chart_pod_and_follows_token_rotation() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test sandboxes the operator with bwrap and setpriv as root");
    let bwrap = executable_on_path("bwrap", "Debian's bubblewrap package");
    let setpriv = executable_on_path("setpriv", "Debian's util-linux package");
    let cluster = shared().await;
    let world = World::on(cluster, "chart-pod", FakeZohoConfig::default()).await;
    let admin = cluster.client().await.expect("client for the test cluster");
    let scratch = Scratch::new("pod");
    let ns = world.namespace.name();
    let values = json!({
        "replicaCount": 0,
        "crds": {"install": false},
        "rbac": {"aggregateClusterRoles": false},
        "watchNamespaces": [ns],
        "allowAccountsUrls": [world.fake.url()],
    });
    let release = Release::install(&scratch, cluster, ns, ns, &values).await;

    let projected = ProjectedVolume::new(&scratch.path("serviceaccount"));
    let first_token = bound_token(&admin, &release, "token-holder-1").await;
    projected.write(&[
        ("token", first_token.as_bytes()),
        ("ca.crt", &cluster.certificate_authority().expect("the cluster's CA")),
        ("namespace", ns.as_bytes()),
    ]);

    let (host, port) = cluster
        .server_url()
        .strip_prefix("https://")
        .and_then(|address| address.trim_end_matches('/').rsplit_once(':'))
        .expect("an https://host:port server URL");
    let metrics_port = free_port();
    let process = release.container_process("zoho-token-operator-6f9d8-q2wxz", metrics_port, &[]);
    let mut command = Command::new(bwrap);
    command
        .env_clear()
        .envs(process.env)
        .env("KUBERNETES_SERVICE_HOST", host)
        .env("KUBERNETES_SERVICE_PORT", port)
        .args(["--die-with-parent", "--unshare-pid", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"])
        // An empty /tmp and /run of the container's own; the root stays read-only. bwrap makes
        // the missing parents of a mount point 0700, which UID 65532 could not pass.
        .args(["--tmpfs", "/tmp", "--remount-ro", "/tmp", "--tmpfs", "/run"])
        .args(["--perms", "0755", "--dir", "/run/secrets", "--perms", "0755", "--dir", "/run/secrets/kubernetes.io"])
        // The binary under a path of the sandbox's own: its own path may lie in /tmp (a clone
        // there), which the sandbox replaces.
        .args(["--perms", "0755", "--dir", "/run/bin", "--ro-bind", OPERATOR_BINARY, SANDBOXED_BINARY])
        .args(["--ro-bind", path_str(&projected.dir), SERVICE_ACCOUNT_DIR, "--remount-ro", "/run", "--chdir", "/"])
        .arg("--")
        .arg(setpriv)
        .args([&format!("--reuid={UID}"), &format!("--regid={UID}"), "--clear-groups"])
        .args(["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"])
        .arg(SANDBOXED_BINARY)
        .args(process.args);
    let operator = Operator::launch(command, metrics_port);
    release.wait_for_probes(&operator).await;
    assert_confined(&operator);

    create_crm_connection(&world, &admin, ns).await;
    let token = world.live_token("crm-token").await;
    eprintln!("the sandboxed operator wrote a live token ({} characters)", token.len());

    // Rotate, then kill the first token.
    let second_token = bound_token(&admin, &release, "token-holder-2").await;
    projected.write(&[("token", second_token.as_bytes())]);
    world.secrets.delete("token-holder-1", &Default::default()).await.expect("delete the first token's Secret");
    let died = Instant::now();
    let kubeconfig = scratch.path("kubeconfig-first-token.json");
    cluster.kubeconfig_for_token(&first_token, &kubeconfig).expect("a kubeconfig for the first token");
    let first = client_from_kubeconfig(&kubeconfig).await.expect("a client with the first token");
    eventually(Duration::from_secs(30), "the API server to reject the first token", || async {
        let answer = Api::<Secret>::namespaced(first.clone(), ns).list(&ListParams::default()).await;
        matches!(answer, Err(kube::Error::Api(status)) if status.code == 401).then_some(())
    })
    .await;

    let books = connection("books", "zoho-oauth", &world.fake, json!({"target": {"secretName": "books-token"}}));
    create(&world.connections, &books).await;
    // crm and books share a credential, and so a token: what counts is that it was written.
    eventually(Duration::from_secs(120), "a live token in books-token", || async {
        assert!(operator.is_running(), "the operator exited:\n{}", operator.logs());
        let token = crate::support::target_token(&world.secrets, "books-token").await?;
        world.fake.is_live(&token).then_some(())
    })
    .await;
    eprintln!(
        "the operator wrote books-token {:.1}s after its first ServiceAccount token died",
        died.elapsed().as_secs_f64()
    );
    let logs = operator.logs();
    for (what, secret) in [("first", &first_token), ("second", &second_token)] {
        assert!(!logs.contains(secret.as_str()), "the operator logged its {what} ServiceAccount token");
    }

    drop(operator);
    release.uninstall(&scratch, cluster);
    world.namespace.delete().await.expect("delete the namespace");
}

/// A TokenRequest token of the release's ServiceAccount, bound to a new Secret `holder`: the
/// token dies with that Secret, as a pod's token dies with its pod.
async fn bound_token(admin: &Client, release: &Release, holder: &str) -> String {
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &release.namespace);
    let holder =
        Secret { metadata: ObjectMeta { name: Some(holder.to_owned()), ..ObjectMeta::default() }, ..Secret::default() };
    let holder = secrets.create(&PostParams::default(), &holder).await.expect("create the token's Secret");
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Secret".to_owned()),
                name: holder.metadata.name,
                uid: holder.metadata.uid,
            }),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    service_account_token(admin, &release.namespace, &release.service_account, &request).await
}

/// A projected volume laid out as the kubelet's atomic writer lays it out: the files in a
/// timestamped directory, `..data` linking to it, and a link per file through `..data`.
struct ProjectedVolume {
    dir: PathBuf,
}

impl ProjectedVolume {
    fn new(dir: &Path) -> Self {
        fs::create_dir(dir).expect("create the volume's directory");
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).expect("chmod the volume's directory");
        Self { dir: dir.to_owned() }
    }

    /// Writes `files` into a new generation, swaps `..data` to it with one rename, and removes the
    /// previous generation; files not named keep their content.
    fn write(&self, files: &[(&str, &[u8])]) {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_nanos();
        let generation = format!("..{nanos}");
        let new = self.dir.join(&generation);
        fs::create_dir(&new).expect("create a generation");
        fs::set_permissions(&new, fs::Permissions::from_mode(0o755)).expect("chmod the generation");
        let data = self.dir.join("..data");
        let previous = fs::read_link(&data).ok();
        if let Some(previous) = &previous {
            for entry in fs::read_dir(self.dir.join(previous)).expect("read the previous generation") {
                let entry = entry.expect("an entry");
                fs::copy(entry.path(), new.join(entry.file_name())).expect("carry a file over");
            }
        }
        for (name, content) in files {
            fs::write(new.join(name), content).expect("write a projected file");
            // The kubelet's default mode for projected ServiceAccount tokens.
            fs::set_permissions(new.join(name), fs::Permissions::from_mode(0o644)).expect("chmod a projected file");
            let link = self.dir.join(name);
            if fs::symlink_metadata(&link).is_err() {
                symlink(Path::new("..data").join(name), link).expect("link a file through ..data");
            }
        }
        let staged = self.dir.join("..data_tmp");
        symlink(&generation, &staged).expect("stage the new ..data");
        fs::rename(&staged, &data).expect("swap ..data");
        if let Some(previous) = previous {
            fs::remove_dir_all(self.dir.join(previous)).expect("remove the previous generation");
        }
    }
}

/// The operator process (bwrap's descendant) runs as the pod's security context says.
fn assert_confined(operator: &Operator) {
    let pid = descendant_running(operator.pid(), Path::new(OPERATOR_BINARY))
        .unwrap_or_else(|| panic!("no operator process under bwrap:\n{}", operator.logs()));
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read the operator's status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    let uid = UID.to_string();
    assert_eq!(field("Uid"), [uid.as_str(); 4], "real, effective, saved and filesystem UID");
    assert_eq!(field("Gid"), [uid.as_str(); 4], "real, effective, saved and filesystem GID");
    assert!(field("Groups").is_empty(), "supplementary groups: {:?}", field("Groups"));
    for caps in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(field(caps), ["0000000000000000"], "{caps}");
    }
    assert_eq!(field("NoNewPrivs"), ["1"]);

    // mountinfo: ID, parent, device, root, mount point, options, ...; the last "/" is on top.
    let mounts = fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("read the operator's mounts");
    let root = mounts
        .lines()
        .map(|line| line.split(' ').collect::<Vec<_>>())
        .rfind(|fields| fields.get(4) == Some(&"/"))
        .expect("a root mount");
    assert!(root[5].split(',').any(|option| option == "ro"), "the root filesystem is writable: {root:?}");

    let environ = fs::read(format!("/proc/{pid}/environ")).expect("read the operator's environment");
    let names: Vec<String> = environ
        .split(|&b| b == 0)
        .filter_map(|var| String::from_utf8_lossy(var).split_once('=').map(|(name, _)| name.to_owned()))
        .collect();
    for absent in ["HOME", "KUBECONFIG"] {
        assert!(!names.iter().any(|name| name == absent), "{absent} is set: {names:?}");
    }
    assert!(names.iter().any(|name| name == "KUBERNETES_SERVICE_HOST"), "{names:?}");
}

/// The first process below `ancestor` that runs `program`.
fn descendant_running(ancestor: u32, program: &Path) -> Option<u32> {
    // By file identity: inside the sandbox the binary is bind-mounted under another path.
    let program = fs::metadata(program).ok()?;
    let is_program = |pid: u32| {
        fs::metadata(format!("/proc/{pid}/exe"))
            .is_ok_and(|exe| (exe.dev(), exe.ino()) == (program.dev(), program.ino()))
    };
    let parent_of = |pid: u32| -> Option<u32> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
    };
    fs::read_dir("/proc").ok()?.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok()).find(|&pid| {
        is_program(pid) && std::iter::successors(parent_of(pid), |&p| parent_of(p)).take(10).any(|p| p == ancestor)
    })
}
