//! The `fake-zoho` binary as tests and the demo run it: a separate process
//! configured by flags and steered over HTTP.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

const CLIENT: &str = "1000.SENTINELCLIENTBIN:SENTINEL-secret-bin";
const REFRESH_TOKEN: &str = "SENTINEL-refresh-bin";

/// Killed on drop, so a failing test leaves no server behind.
struct FakeZohoProcess {
    child: Child,
    url: String,
}

impl FakeZohoProcess {
    fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fake-zoho"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut url = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut url).unwrap();
        assert!(url.starts_with("http://127.0.0.1:"), "{url:?}");
        Self { child, url: url.trim().to_owned() }
    }

    fn kill(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let mut stderr = String::new();
        self.child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        stderr
    }

    async fn refresh(&self) -> (u16, Value) {
        let (client_id, client_secret) = CLIENT.split_once(':').unwrap();
        let response = http()
            .post(format!("{}/oauth/v2/token", self.url))
            .form(&[
                ("grant_type", "refresh_token"),
                ("client_id", client_id),
                ("client_secret", client_secret),
                ("refresh_token", REFRESH_TOKEN),
            ])
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> Value {
        let url = format!("{}/_fake/{path}", self.url);
        http().get(url).send().await.unwrap().json().await.unwrap()
    }
}

impl Drop for FakeZohoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http() -> reqwest::Client {
    // In a workspace build, cargo unifies in the operator's reqwest features, which bring rustls
    // without a crypto provider; reqwest then needs one installed, even for plain HTTP.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

#[tokio::test]
async fn flags_configure_the_server_and_logs_hold_no_secrets() {
    let refresh_token_flag = format!("{}:{REFRESH_TOKEN}", CLIENT.split_once(':').unwrap().0);
    let zoho = FakeZohoProcess::spawn(&[
        "--client",
        CLIENT,
        "--refresh-token",
        &refresh_token_flag,
        "--token-lifetime",
        "6",
        "--legacy-expires",
        "--api-domain",
        "https://www.zohoapis.eu",
        "--throttle-limit",
        "2",
        "--throttle-status",
        "200",
    ]);

    let (status, body) = zoho.refresh().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in_sec"], 6);
    assert_eq!(body["expires_in"], 6000);
    assert_eq!(body["api_domain"], "https://www.zohoapis.eu");
    let access_token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(zoho.get(&format!("tokens/live?token={access_token}")).await, json!({ "live": true }));

    assert_eq!(zoho.refresh().await.0, 200);
    let (status, body) = zoho.refresh().await;
    assert_eq!((status, &body["error"]), (200, &json!("Access Denied")));
    let stats = zoho.get("stats").await;
    assert_eq!(stats["refresh_tokens"][REFRESH_TOKEN]["mints"], 2);
    assert_eq!(stats["refresh_tokens"][REFRESH_TOKEN]["throttled"], 1);

    let stderr = zoho.kill();
    assert_eq!(stderr.matches("token request").count(), 3, "{stderr}");
    assert!(stderr.contains("outcome=issued") && stderr.contains("outcome=throttled"), "{stderr}");
    assert!(!stderr.contains("SENTINEL"), "{stderr}");
    assert!(!stderr.contains(&access_token), "{stderr}");
}

#[tokio::test]
async fn state_file_survives_a_killed_process_on_the_same_port() {
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("state.json");
    let refresh_token_flag = format!("{}:{REFRESH_TOKEN}", CLIENT.split_once(':').unwrap().0);
    let args = |listen: &str| -> Vec<String> {
        [
            "--listen",
            listen,
            "--client",
            CLIENT,
            "--refresh-token",
            &refresh_token_flag,
            "--throttle-limit",
            "1",
            "--state-file",
            Path::new(&state_file).to_str().unwrap(),
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let spawn = |args: Vec<String>| FakeZohoProcess::spawn(&args.iter().map(String::as_str).collect::<Vec<_>>());

    let first = spawn(args("127.0.0.1:0"));
    let (_, body) = first.refresh().await;
    let access_token = body["access_token"].as_str().unwrap().to_owned();
    let listen = first.url.trim_start_matches("http://").to_owned();
    first.kill();

    let second = spawn(args(&listen));
    assert_eq!(second.url, format!("http://{listen}"));
    assert_eq!(second.get(&format!("tokens/live?token={access_token}")).await, json!({ "live": true }));
    assert_eq!(second.refresh().await.0, 400, "the throttle window survived too");
    assert_eq!(second.get("stats").await["totals"]["mints"], 1);
}

#[test]
fn a_refresh_token_of_an_unknown_client_is_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_fake-zoho"))
        .args(["--refresh-token", "1000.NOBODY:SENTINEL-refresh"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("1000.NOBODY"));
}

#[tokio::test]
async fn device_flow_flags_and_the_test_api_work_across_two_processes() {
    let device_flags = ["--device-interval", "2", "--device-min-poll-gap", "0", "--device-code-lifetime", "60"];
    let us = FakeZohoProcess::spawn(&[&["--client", CLIENT][..], &device_flags].concat());
    let eu = FakeZohoProcess::spawn(&[&["--client", CLIENT, "--location", "eu"][..], &device_flags].concat());
    let (client_id, client_secret) = CLIENT.split_once(':').unwrap();
    let started: Value = http()
        .post(format!("{}/oauth/v3/device/code", us.url))
        .form(&[
            ("client_id", client_id),
            ("grant_type", "device_request"),
            ("scope", "A.READ"),
            ("access_type", "offline"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((started["interval"].as_u64(), started["expires_in"].as_u64()), (Some(2000), Some(60_000)));

    // The user's account is in "eu": the us process hands the authorization over.
    let redirect = json!({ "user_code": started["user_code"], "accounts_server": eu.url, "location": "eu" });
    let transfer: Value = http()
        .post(format!("{}/_fake/device/other-dc", us.url))
        .json(&redirect)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let imported = http().post(format!("{}/_fake/device/import", eu.url)).json(&transfer).send().await.unwrap();
    assert_eq!(imported.status(), 204);

    let poll = |url: String| {
        let form = [
            ("client_id", client_id.to_owned()),
            ("client_secret", client_secret.to_owned()),
            ("grant_type", "device_token".to_owned()),
            ("code", started["device_code"].as_str().unwrap().to_owned()),
        ];
        async move {
            http()
                .post(format!("{url}/oauth/v3/device/token"))
                .form(&form)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let answer = poll(us.url.clone()).await;
    assert_eq!(answer, json!({ "error": "other_dc", "user_location": "eu", "accounts-server": eu.url }));
    let tokens = poll(eu.url.clone()).await;
    let refresh_token = tokens["refresh_token"].as_str().expect("tokens from the user's data center").to_owned();
    assert_eq!(eu.get(&format!("tokens/live?token={refresh_token}")).await, json!({ "live": true }));

    let stderr = us.kill() + &eu.kill();
    assert!(!stderr.contains("SENTINEL") && !stderr.contains(&refresh_token), "{stderr}");
}
