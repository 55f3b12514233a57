//! `zoho-token-operator bootstrap`, run as a process against the fake Zoho, as a user runs it:
//! secrets on stdin, in files or in the environment; manifests on stdout; instructions on stderr.

use std::{
    io::Write,
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Secret;
use testkit::fake_zoho::{DeviceDecision, FakeZoho, FakeZohoConfig};

const BINARY: &str = env!("CARGO_BIN_EXE_zoho-token-operator");
const CLIENT_ID: &str = "1000.BOOTSTRAPCLIENT";
const CLIENT_SECRET: &str = "SENTINEL-bootstrap-secret";

fn fake(config: FakeZohoConfig) -> FakeZoho {
    let fake = FakeZoho::start(config);
    fake.register_client(CLIENT_ID, CLIENT_SECRET);
    fake
}

/// The binary with a clean environment: nothing of the caller's Zoho or cluster settings leaks
/// into the test.
fn command(program: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(program);
    command
        .args(args)
        .env_remove("ZOHO_CLIENT_ID")
        .env_remove("ZOHO_CLIENT_SECRET")
        .env_remove("ZOHO_GRANT_CODE")
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn finish(output: Output) -> Run {
    Run {
        code: output.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// Runs to completion with `stdin` as its input, or fails the test after a minute.
fn run_with(mut command: Command, stdin: &str) -> Run {
    let mut child = command.spawn().expect("start the binary");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the command did not finish within 60 s: {:?}", finish(child.wait_with_output().unwrap()).stderr);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    finish(child.wait_with_output().unwrap())
}

fn grant_code_args(fake: &FakeZoho) -> Vec<String> {
    ["bootstrap", "grant-code", "--accounts-url", &fake.url(), "--client-id", CLIENT_ID].map(String::from).to_vec()
}

fn run_args(args: &[String], env: &[(&str, &str)], stdin: &str) -> Run {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut command = command(Path::new(BINARY), &args);
    command.envs(env.iter().copied());
    run_with(command, stdin)
}

/// The credentials Secret on stdout, read back: name and the three keys.
fn secret_from(stdout: &str) -> Secret {
    let document = stdout.split("\n---\n").next().unwrap();
    serde_saphyr::from_str(document).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn key(secret: &Secret, key: &str) -> String {
    secret.string_data.as_ref().and_then(|data| data.get(key)).cloned().unwrap_or_else(|| panic!("no {key}"))
}

fn assert_no_secret_in(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "a secret leaked:\n{text}");
    }
}

#[test]
fn a_grant_code_becomes_a_secret_manifest_with_a_live_refresh_token() {
    let fake = fake(FakeZohoConfig::default());
    let code = fake.issue_code(CLIENT_ID, None);
    let run = run_args(&grant_code_args(&fake), &[("ZOHO_CLIENT_SECRET", CLIENT_SECRET)], &format!("{code}\n"));
    assert_eq!(run.code, 0, "{}", run.stderr);

    let secret = secret_from(&run.stdout);
    assert_eq!(secret.metadata.name.as_deref(), Some("zoho-oauth"));
    assert_eq!(key(&secret, "client_id"), CLIENT_ID);
    assert_eq!(key(&secret, "client_secret"), CLIENT_SECRET);
    let refresh_token = key(&secret, "refresh_token");
    assert!(fake.is_live(&refresh_token), "the manifest's refresh token works at Zoho");
    assert!(run.stdout.contains(&format!("# Zoho OAuth credentials for accounts server {}", fake.url())));

    let stats = fake.stats();
    assert_eq!((stats.totals.requests, stats.totals.mints), (1, 1), "exactly one exchange");
    let access_tokens = fake.live_tokens(&refresh_token);
    let mut secrets = vec![CLIENT_SECRET, &code, &refresh_token];
    secrets.extend(access_tokens.iter().map(String::as_str));
    assert_no_secret_in(&run.stderr, &secrets);
    assert_no_secret_in(&run.stdout, &[&code, &access_tokens[0]]);
    assert!(run.stderr.contains("Zoho issued a refresh token"), "{}", run.stderr);
}

#[test]
fn a_reused_code_fails_clearly_and_writes_nothing() {
    let fake = fake(FakeZohoConfig::default());
    let code = fake.issue_code(CLIENT_ID, None);
    let env = [("ZOHO_CLIENT_SECRET", CLIENT_SECRET), ("ZOHO_GRANT_CODE", code.as_str())];
    assert_eq!(run_args(&grant_code_args(&fake), &env, "").code, 0);

    let again = run_args(&grant_code_args(&fake), &env, "");
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert_eq!(again.stdout, "", "no manifest for a failed exchange");
    for hint in ["invalid_code", "Generate Code", "minutes", "Nothing was written"] {
        assert!(again.stderr.contains(hint), "{hint:?} missing from {}", again.stderr);
    }
    assert_no_secret_in(&again.stderr, &[CLIENT_SECRET, &code]);
    assert_eq!(fake.stats().totals.requests, 2, "one request per run, no retries of a spent code");
}

#[test]
fn secrets_come_from_files_or_from_stdin_in_order() {
    let fake = fake(FakeZohoConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let (secret_file, code_file) = (dir.path().join("secret"), dir.path().join("code"));
    std::fs::write(&secret_file, format!("{CLIENT_SECRET}\n")).unwrap();
    std::fs::write(&code_file, fake.issue_code(CLIENT_ID, None)).unwrap();
    let mut args = grant_code_args(&fake);
    args.extend(["--client-secret-file".into(), secret_file.display().to_string()]);
    args.extend(["--grant-code-file".into(), code_file.display().to_string()]);
    let from_files = run_args(&args, &[], "");
    assert_eq!(from_files.code, 0, "{}", from_files.stderr);

    let code = fake.issue_code(CLIENT_ID, None);
    let from_stdin = run_args(&grant_code_args(&fake), &[], &format!("{CLIENT_SECRET}\n{code}\n"));
    assert_eq!(from_stdin.code, 0, "{}", from_stdin.stderr);
    assert!(fake.is_live(&key(&secret_from(&from_stdin.stdout), "refresh_token")));

    let missing = run_args(&grant_code_args(&fake), &[], &format!("{CLIENT_SECRET}\n"));
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("no grant code") && missing.stderr.contains("ZOHO_GRANT_CODE"),
        "{}",
        missing.stderr
    );
}

#[test]
fn secrets_on_the_command_line_are_refused_before_anything_is_sent() {
    let fake = fake(FakeZohoConfig::default());
    for flag in ["--client-secret", "--grant-code", "--code", "--refresh-token"] {
        for args in [vec![flag.to_string(), "SENTINEL-inline".into()], vec![format!("{flag}=SENTINEL-inline")]] {
            let mut all = grant_code_args(&fake);
            all.extend(args);
            let run = run_args(&all, &[("ZOHO_CLIENT_SECRET", CLIENT_SECRET), ("ZOHO_GRANT_CODE", "x")], "");
            assert_eq!(run.code, 2, "{flag}: {}", run.stderr);
            assert!(run.stderr.contains(flag) && run.stderr.contains("command line"), "{}", run.stderr);
            assert_no_secret_in(&run.stderr, &["SENTINEL-inline"]);
        }
    }
    assert_eq!(fake.stats().totals.requests, 0);
}

#[test]
fn a_wrong_secret_or_data_center_points_at_the_data_center() {
    let fake = fake(FakeZohoConfig::default());
    let code = fake.issue_code(CLIENT_ID, None);
    let run = run_args(&grant_code_args(&fake), &[("ZOHO_CLIENT_SECRET", "SENTINEL-wrong")], &format!("{code}\n"));
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("invalid_client") && run.stderr.contains("wrong data center"), "{}", run.stderr);
    assert_no_secret_in(&run.stderr, &["SENTINEL-wrong", &code]);

    let online = fake.issue_code(CLIENT_ID, None);
    fake.make_code_online(&online);
    let run = run_args(&grant_code_args(&fake), &[("ZOHO_CLIENT_SECRET", CLIENT_SECRET)], &format!("{online}\n"));
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("access_type=offline"), "{}", run.stderr);
}

/// Waits for the command's device authorization to appear at the fake.
fn device_user_code(fake: &FakeZoho) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(device) = fake.device_authorizations().first() {
            return device.user_code.clone();
        }
        assert!(Instant::now() < deadline, "the command started no device authorization");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn device_args(fake: &FakeZoho, extra: &[String]) -> Vec<String> {
    let mut args = [
        "bootstrap",
        "device",
        "--accounts-url",
        &fake.url(),
        "--client-id",
        CLIENT_ID,
        "--scope",
        "ZohoCRM.modules.ALL",
    ]
    .map(String::from)
    .to_vec();
    args.extend_from_slice(extra);
    args
}

fn spawn(args: &[String], stdin: &str) -> std::process::Child {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = command(Path::new(BINARY), &args).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child
}

fn wait(child: std::process::Child) -> Run {
    let pid = child.id();
    let waiter = std::thread::spawn(move || finish(child.wait_with_output().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !waiter.is_finished() {
        if Instant::now() > deadline {
            // SAFETY: signals our own child, not yet reaped by the waiting thread.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("the device flow did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    waiter.join().unwrap()
}

#[test]
fn the_device_flow_slows_down_when_asked_and_follows_the_user_to_another_data_center() {
    let fast = |location: &str| FakeZohoConfig {
        device_poll_interval: Duration::from_millis(200),
        device_min_poll_gap: Duration::from_secs(1),
        location: location.into(),
        ..FakeZohoConfig::default()
    };
    let (us, eu) = (fake(fast("us")), fake(fast("eu")));
    let extra = ["--allow-accounts-url".into(), eu.url(), "--print-connection".into(), "-n".into(), "sales".into()];
    let child = spawn(&device_args(&us, &extra), &format!("{CLIENT_SECRET}\n"));

    let user_code = device_user_code(&us);
    let deadline = Instant::now() + Duration::from_secs(30);
    while us.stats().device.slow_downs < 3 {
        assert!(Instant::now() < deadline, "the command never met slow_down: {:?}", us.stats().device);
        std::thread::sleep(Duration::from_millis(20));
    }
    us.approve_device_in(&user_code, &eu).unwrap();
    let run = wait(child);
    assert_eq!(run.code, 0, "{}", run.stderr);

    // Advertised 200 ms, enforced 1 s: 200, 400 and 800 ms were too soon, 1.6 s is not.
    let slowed = us.stats().device;
    assert_eq!(slowed.slow_downs, 3, "the interval doubles after each slow_down: {slowed:?}");
    assert!(run.stderr.contains("poll less often"), "{}", run.stderr);
    assert!(run.stderr.contains(&user_code) && run.stderr.contains(&format!("{}/oauth/v3/device", us.url())));
    assert!(run.stderr.contains(&format!("accounts server {}", eu.url())), "{}", run.stderr);
    assert_eq!(eu.device_authorizations()[0].decision, DeviceDecision::Redeemed);

    let secret = secret_from(&run.stdout);
    let refresh_token = key(&secret, "refresh_token");
    assert!(eu.is_live(&refresh_token), "the refresh token lives in the user's data center");
    assert!(run.stdout.contains(&format!("# Zoho OAuth credentials for accounts server {}", eu.url())));
    let connection = run.stdout.split("\n---\n").nth(1).expect("a ZohoConnection follows the Secret");
    assert!(connection.contains(&format!("accountsUrl: {}", eu.url())), "{connection}");
    assert!(connection.contains("namespace: sales") && connection.contains("name: zoho-oauth"), "{connection}");
    assert_no_secret_in(&run.stderr, &[CLIENT_SECRET, &refresh_token]);
}

#[test]
fn a_declined_device_request_fails_with_advice() {
    let config = FakeZohoConfig {
        device_poll_interval: Duration::from_millis(100),
        device_min_poll_gap: Duration::ZERO,
        ..FakeZohoConfig::default()
    };
    let fake = fake(config);
    let child = spawn(&device_args(&fake, &[]), &format!("{CLIENT_SECRET}\n"));
    fake.deny_device(&device_user_code(&fake)).unwrap();
    let run = wait(child);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("declined") && run.stderr.contains("Run the command again"), "{}", run.stderr);
    assert_eq!(run.stdout, "");
}

#[test]
fn installed_as_kubectl_zoho_it_answers_kubectl_zoho_bootstrap() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("kubectl-zoho");
    std::os::unix::fs::symlink(BINARY, &plugin).unwrap();

    let help = run_with(command(&plugin, &["--help"]), "");
    assert_eq!(help.code, 0);
    assert!(help.stdout.contains("Usage: kubectl zoho"), "{}", help.stdout);
    let bare = run_with(command(&plugin, &[]), "");
    assert_eq!(bare.code, 2, "`kubectl zoho` alone shows usage and starts no controller");
    assert!(bare.stderr.contains("bootstrap"), "{}", bare.stderr);

    let fake = fake(FakeZohoConfig::default());
    let code = fake.issue_code(CLIENT_ID, None);
    let args =
        ["bootstrap", "grant-code", "--data-center", "EU", "--accounts-url", &fake.url(), "--client-id", CLIENT_ID];
    let rejected = run_with(command(&plugin, &args), "");
    assert_eq!(rejected.code, 2, "--data-center and --accounts-url exclude each other");
    let args = ["bootstrap", "grant-code", "--accounts-url", &fake.url(), "--client-id", CLIENT_ID];
    let mut command = command(&plugin, &args);
    command.env("ZOHO_CLIENT_SECRET", CLIENT_SECRET).env("ZOHO_GRANT_CODE", &code);
    let run = run_with(command, "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(fake.is_live(&key(&secret_from(&run.stdout), "refresh_token")));
}
