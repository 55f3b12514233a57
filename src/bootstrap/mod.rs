//! `zoho-token-operator bootstrap` (also `kubectl zoho bootstrap`): gets a refresh token from
//! Zoho, by exchanging a Self Client grant code or through the device flow, and turns it into the
//! credentials Secret that a ZohoConnection reads.
//!
//! stdout carries only manifests, so that `... | kubectl apply -f -` works; everything for the
//! person at the terminal goes to stderr, and no secret ever does. Every failure says what to do
//! next, and nothing is sent to Zoho before everything that could fail locally has been checked:
//! a grant code lives minutes and works once.

mod input;
mod manifest;

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use secrecy::SecretString;

use crate::{
    config::{BootstrapArgs, BootstrapCommon, BootstrapMode},
    zoho::{AccountsClient, AccountsUrl, AllowList, CodeExchange, DevicePoll, FailureClass, GrantCode, ZohoError},
};

/// The field manager of the applied Secret, distinct from the operator's own.
pub const FIELD_MANAGER: &str = "zoho-token-operator-bootstrap";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// `slow_down` doubles the interval up to this; Zoho asks for one poll per 30 s at most.
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(60);
/// Zoho names the user's data center once; more hops would be a loop.
const MAX_DATA_CENTER_HOPS: u32 = 2;
/// Failed polls in a row (timeouts, 5xx, garbage) before giving up.
const MAX_FAILED_POLLS: u32 = 5;

/// Runs the command; the exit code is 0 on success, 1 on failure, 2 for a refused command line.
pub async fn run(args: BootstrapArgs) -> ExitCode {
    match execute(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(message)) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    Usage(String),
    Failed(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self::Failed(message)
    }
}

async fn execute(args: BootstrapArgs) -> Result<(), Failure> {
    let common = match &args.mode {
        BootstrapMode::GrantCode(grant) => &grant.common,
        BootstrapMode::Device(device) => &device.common,
    };
    if let Some(flag) = common.inline_secret_flag() {
        let (what, file_flag, env) = match flag {
            "--client-secret" => ("client secret", "--client-secret-file PATH", "ZOHO_CLIENT_SECRET"),
            "--refresh-token" => ("refresh token", "", ""),
            _ => ("grant code", "--grant-code-file PATH", "ZOHO_GRANT_CODE"),
        };
        let remedy = if env.is_empty() {
            "The refresh token is what this command makes; it never takes one".to_string()
        } else {
            format!("Pass it with {file_flag} (\"-\" for stdin), the {env} environment variable, or on stdin")
        };
        return Err(Failure::Usage(format!(
            "{flag} would put the {what} on the command line, where `ps`, shell history and CI logs see it. {remedy}."
        )));
    }
    let client_id = common.client_id.trim();
    if client_id.is_empty() {
        return Err(Failure::Usage("--client-id is empty; copy the client id from Zoho's API console".into()));
    }

    let mut stdin = input::Stdin::new();
    let client_secret = input::read_secret(
        &input::SecretSource {
            what: "client secret",
            file_flag: "--client-secret-file",
            file: common.client_secret_file.as_deref(),
            env: "ZOHO_CLIENT_SECRET",
        },
        &mut stdin,
    )?;
    let grant_code = match &args.mode {
        BootstrapMode::GrantCode(grant) => Some(input::read_secret(
            &input::SecretSource {
                what: "grant code",
                file_flag: "--grant-code-file",
                file: grant.grant_code_file.as_deref(),
                env: "ZOHO_GRANT_CODE",
            },
            &mut stdin,
        )?),
        BootstrapMode::Device(_) => None,
    };
    let cluster = match common.apply {
        true => Some(Cluster::connect(common).await?),
        false => None,
    };

    let start = common.accounts_url();
    let mut allowed = common.allow_accounts_urls.clone();
    allowed.push(start.clone());
    let client = AccountsClient::new(AllowList::new(allowed), CONNECT_TIMEOUT, REQUEST_TIMEOUT);
    let (accounts, exchange) = match (&args.mode, grant_code) {
        (BootstrapMode::GrantCode(grant), Some(code)) => {
            let grant = GrantCode {
                client_id: client_id.to_string(),
                client_secret: client_secret.clone(),
                code,
                redirect_uri: grant.redirect_uri.clone(),
            };
            eprintln!("Exchanging the grant code at {} ...", manifest::describe(&start));
            let exchange =
                client.exchange_code(&start, &grant).await.map_err(|err| explain(&err, Step::Exchange, &start))?;
            (start, exchange)
        }
        (BootstrapMode::Device(device), _) => {
            device_flow(&client, start, client_id, &client_secret, device.scope.trim()).await?
        }
        (BootstrapMode::GrantCode(_), None) => unreachable!("the grant code was read above"),
    };
    eprintln!("Zoho issued a refresh token for {}.", manifest::describe(&accounts));

    let credentials = manifest::Credentials {
        name: &common.secret_name,
        namespace: cluster.as_ref().map(|cluster| cluster.namespace.as_str()).or(common.namespace.as_deref()),
        client_id,
        client_secret: &client_secret,
        refresh_token: &exchange.refresh_token,
        accounts: &accounts,
    };
    let mut manifests = Vec::new();
    match &cluster {
        Some(cluster) => {
            if let Err(err) = cluster.apply(&credentials.secret()).await {
                // The code is spent and the refresh token exists only here: hand it out rather
                // than lose it.
                println!("{}", credentials.yaml());
                return Err(Failure::Failed(format!(
                    "could not apply Secret {}/{} ({err}). The refresh token is live, and the manifest printed on \
                     stdout is its only copy: apply it with `kubectl apply -f`, or keep it somewhere safe",
                    cluster.namespace, common.secret_name
                )));
            }
            eprintln!(
                "Applied Secret {}/{} with the keys client_id, client_secret and refresh_token.",
                cluster.namespace, common.secret_name
            );
        }
        None => manifests.push(credentials.yaml()),
    }
    if common.print_connection {
        manifests.push(manifest::connection_yaml(
            &common.connection_name,
            credentials.namespace,
            &common.secret_name,
            &accounts,
        ));
    }
    print!("{}", manifests.join("---\n"));
    eprintln!("{}", next_steps(common, cluster.is_some()));
    Ok(())
}

fn next_steps(common: &BootstrapCommon, applied: bool) -> String {
    let apply = match (applied, common.print_connection) {
        (true, true) => "apply the ZohoConnection printed above",
        (true, false) => {
            "create a ZohoConnection (or a ClusterZohoConnection) whose spec.credentials.secretRef names the Secret; --print-connection prints one"
        }
        (false, true) => "apply the manifests above with `kubectl apply --server-side -f`",
        (false, false) => {
            "apply the Secret above with `kubectl apply --server-side -f`, then a ZohoConnection that names it; --print-connection prints one"
        }
    };
    format!(
        "Next: {apply}. Each run makes a new refresh token, and Zoho keeps 20 per user and client: the 21st evicts the oldest."
    )
}

/// Runs the device flow until the user approves, declines or lets the code expire. Returns the
/// accounts server that issued the tokens, which is where every refresh must go.
async fn device_flow(
    client: &AccountsClient,
    start: AccountsUrl,
    client_id: &str,
    client_secret: &SecretString,
    scope: &str,
) -> Result<(AccountsUrl, CodeExchange), String> {
    if scope.is_empty() {
        return Err("--scope is empty; name the scopes to ask for, such as ZohoCRM.modules.ALL".into());
    }
    let auth = client
        .request_device_code(&start, client_id, scope)
        .await
        .map_err(|err| explain(&err, Step::DeviceStart, &start))?;
    eprintln!(
        "Open {} in a browser, sign in to Zoho and enter the code\n\n    {}\n\nwithin {}. Waiting for the approval ...",
        auth.verification_url,
        auth.user_code,
        human(auth.expires_in)
    );
    let deadline = Instant::now() + auth.expires_in;
    let mut accounts = start;
    let mut interval = auth.interval;
    let (mut hops, mut failed_polls) = (0, 0);
    loop {
        tokio::time::sleep(interval).await;
        if Instant::now() >= deadline {
            return Err(expired(&auth.expires_in));
        }
        match client.poll_device_token(&accounts, client_id, client_secret, &auth.device_code).await {
            Ok(DevicePoll::Pending) => failed_polls = 0,
            Ok(DevicePoll::SlowDown) => {
                interval = (interval * 2).min(MAX_POLL_INTERVAL);
                eprintln!("Zoho asks to poll less often; polling every {} now.", human(interval));
            }
            Ok(DevicePoll::OtherDataCenter { accounts: next, .. }) => {
                hops += 1;
                if hops > MAX_DATA_CENTER_HOPS {
                    return Err(format!(
                        "Zoho keeps naming another data center (last {next}); run again with --data-center set to \
                         the one you sign in at"
                    ));
                }
                eprintln!("Your Zoho account lives in {}; continuing there.", manifest::describe(&next));
                accounts = next;
            }
            Ok(DevicePoll::Denied) => {
                return Err("the request was declined at Zoho. Run the command again and accept it, signed in as the \
                            user whose data the operator should reach"
                    .into());
            }
            Ok(DevicePoll::Expired) => return Err(expired(&auth.expires_in)),
            Ok(DevicePoll::Granted(exchange)) => return Ok((accounts, exchange)),
            Err(err) if err.class() != FailureClass::Permanent && failed_polls + 1 < MAX_FAILED_POLLS => {
                failed_polls += 1;
                eprintln!("Polling failed ({err}); trying again.");
            }
            Err(err) => return Err(explain(&err, Step::DevicePoll, &accounts)),
        }
    }
}

fn expired(validity: &Duration) -> String {
    format!(
        "the code expired before anyone approved it. Run the command again and approve within {} at the URL it prints",
        human(*validity)
    )
}

/// What the command was doing when Zoho failed it; the advice differs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    Exchange,
    DeviceStart,
    DevicePoll,
}

/// The error, and what to do about it.
fn explain(err: &ZohoError, step: Step, accounts: &AccountsUrl) -> String {
    let advice = match err {
        ZohoError::InvalidClient { .. } => {
            let device = if step == Step::Exchange {
                ""
            } else {
                " The device flow also needs a client type that Zoho allows it for (a Non-browser Application)."
            };
            format!(
                "Check the client id and secret. Most often, though, this is the wrong data center: a client, its \
                 secret and its codes work only at the accounts server where they were made, and this was {}. Use \
                 the --data-center of the domain you sign in to the API console at (api-console.zoho.eu is EU). A \
                 client with multi-DC enabled has a separate secret per data center.{device}",
                manifest::describe(accounts)
            )
        }
        ZohoError::GrantCodeInvalid => "Nothing was written.".to_string(),
        ZohoError::RefreshTokenNotIssued => {
            "For a Self Client, generate a new code and exchange it; for a server-based client, authorize again with \
             access_type=offline&prompt=consent. Nothing was written."
                .to_string()
        }
        ZohoError::Rejected { code } if code == "invalid_redirect_uri" => {
            "Pass --redirect-uri exactly as registered with the client and used in the authorization; a Self \
             Client's codes take none."
                .to_string()
        }
        ZohoError::Rejected { code } if code == "invalid_scope" => {
            "Check --scope: comma-separated scopes such as ZohoCRM.modules.ALL.".to_string()
        }
        ZohoError::Rejected { code } if code == "invalid_code" => {
            "Zoho no longer knows this device authorization; run the command again.".to_string()
        }
        ZohoError::AccountsUrlNotAllowed { origin } => format!(
            "Zoho named {origin} as your data center's accounts server, which is not one of Zoho's official ones. \
             If you trust it, run again with --allow-accounts-url {origin}."
        ),
        ZohoError::Throttled => {
            "Zoho is throttling this client (too many codes or tokens within 10 minutes); wait 10 minutes and run \
             again."
                .to_string()
        }
        ZohoError::ServerError { .. }
        | ZohoError::Timeout(_)
        | ZohoError::Connect(_)
        | ZohoError::MalformedResponse { .. } => {
            let code = if step == Step::Exchange {
                " If a retry answers invalid_code, the code reached Zoho after all: generate a new one."
            } else {
                ""
            };
            format!("Check the network path to {accounts} (proxy, firewall) and run again.{code}")
        }
        _ => String::new(),
    };
    if advice.is_empty() { err.to_string() } else { format!("{err}. {advice}") }
}

/// "5 minutes", "30 s", "1.5 s".
fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs >= 120 && secs.is_multiple_of(60) {
        format!("{} minutes", secs / 60)
    } else if duration.subsec_millis() == 0 {
        format!("{secs} s")
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}

/// The cluster of `--apply`, checked before anything is sent to Zoho.
struct Cluster {
    secrets: Api<Secret>,
    namespace: String,
}

impl Cluster {
    async fn connect(common: &BootstrapCommon) -> Result<Self, String> {
        let client = Client::try_default().await.map_err(|err| {
            format!(
                "--apply cannot reach a cluster ({err}). Check KUBECONFIG and the current context, or leave out \
                 --apply to print the manifest instead. Nothing was sent to Zoho."
            )
        })?;
        let namespace = common.namespace.clone().unwrap_or_else(|| client.default_namespace().to_string());
        let cluster = Self { secrets: Api::namespaced(client, &namespace), namespace };
        // A dry run with placeholders proves the namespace exists and the write is allowed.
        let placeholder = SecretString::from("placeholder");
        let probe = manifest::Credentials {
            name: &common.secret_name,
            namespace: Some(&cluster.namespace),
            client_id: "placeholder",
            client_secret: &placeholder,
            refresh_token: &placeholder,
            accounts: &common.accounts_url(),
        };
        let params = PatchParams::apply(FIELD_MANAGER).force().dry_run();
        cluster.secrets.patch(&common.secret_name, &params, &Patch::Apply(probe.secret())).await.map_err(|err| {
            format!(
                "--apply cannot write Secret {}/{} ({err}). Check that the namespace exists and that you may patch \
                 Secrets there (`kubectl auth can-i patch secrets -n {}`). Nothing was sent to Zoho.",
                cluster.namespace, common.secret_name, cluster.namespace
            )
        })?;
        Ok(cluster)
    }

    async fn apply(&self, secret: &Secret) -> Result<(), kube::Error> {
        let name = secret.metadata.name.as_deref().expect("the manifest names the Secret");
        self.secrets.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(secret)).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zoho::DataCenter;

    #[test]
    fn durations_read_as_a_person_would_say_them() {
        assert_eq!(human(Duration::from_secs(300)), "5 minutes");
        assert_eq!(human(Duration::from_secs(30)), "30 s");
        assert_eq!(human(Duration::from_millis(1500)), "1.5 s");
    }

    #[test]
    fn every_failure_says_what_to_do_next() {
        let eu = AccountsUrl::of(DataCenter::EU);
        let cases = [
            (ZohoError::InvalidClient { code: "invalid_client" }, Step::Exchange, "wrong data center"),
            (ZohoError::InvalidClient { code: "invalid_client" }, Step::DeviceStart, "Non-browser"),
            (ZohoError::GrantCodeInvalid, Step::Exchange, "Generate Code"),
            (ZohoError::RefreshTokenNotIssued, Step::Exchange, "access_type=offline"),
            (ZohoError::Rejected { code: "invalid_redirect_uri".into() }, Step::Exchange, "--redirect-uri"),
            (ZohoError::Rejected { code: "invalid_scope".into() }, Step::DeviceStart, "--scope"),
            (ZohoError::AccountsUrlNotAllowed { origin: "http://x".into() }, Step::DevicePoll, "--allow-accounts-url"),
            (ZohoError::Throttled, Step::Exchange, "wait 10 minutes"),
            (ZohoError::Timeout(REQUEST_TIMEOUT), Step::Exchange, "generate a new one"),
            (ZohoError::ServerError { status: 502 }, Step::DevicePoll, "run again"),
        ];
        for (err, step, hint) in cases {
            let message = explain(&err, step, &eu);
            assert!(message.contains(hint), "{hint:?} missing from {message}");
        }
        assert!(explain(&ZohoError::InvalidClient { code: "x" }, Step::Exchange, &eu).contains("data center EU"));
    }
}
