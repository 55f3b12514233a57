//! Command line and environment configuration.

use std::{
    ffi::OsString,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

use crate::{
    schedule::parse_go_duration,
    zoho::{AccountsUrl, DataCenter},
};

/// The file name under which kubectl finds the binary as a plugin: `kubectl zoho ...` runs
/// `kubectl-zoho ...`.
pub const KUBECTL_PLUGIN_NAME: &str = "kubectl-zoho";

/// What one invocation asks for, whichever name the binary was called by.
#[derive(Debug)]
pub enum Action {
    Run(Box<RunArgs>),
    Crd(CrdArgs),
    Bootstrap(Box<BootstrapArgs>),
}

/// Parses the command line. Called as `kubectl-zoho`, the binary is a kubectl plugin, which
/// offers only the user-facing commands: `kubectl zoho` alone must never start a controller.
/// Exits with clap's usage message on bad input.
pub fn parse_args(args: impl IntoIterator<Item = OsString>) -> Action {
    let args: Vec<OsString> = args.into_iter().collect();
    let as_plugin =
        args.first().and_then(|program| Path::new(program).file_name()).is_some_and(|name| name == KUBECTL_PLUGIN_NAME);
    if as_plugin {
        match PluginCli::parse_from(args).command {
            PluginCommand::Bootstrap(args) => Action::Bootstrap(args),
            PluginCommand::Crd(args) => Action::Crd(args),
        }
    } else {
        let cli = Cli::parse_from(args);
        match cli.command {
            Some(Command::Run(args)) => Action::Run(args),
            Some(Command::Crd(args)) => Action::Crd(args),
            Some(Command::Bootstrap(args)) => Action::Bootstrap(args),
            None => Action::Run(Box::new(cli.run)),
        }
    }
}

/// `kubectl zoho ...`: the binary installed as a kubectl plugin.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl zoho",
    bin_name = "kubectl zoho",
    version,
    about = "Zoho OAuth credentials for zoho-token-operator: turn a grant code or a device approval into a credentials Secret"
)]
pub struct PluginCli {
    #[command(subcommand)]
    pub command: PluginCommand,
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Get a refresh token from Zoho and make the credentials Secret that a ZohoConnection reads.
    Bootstrap(Box<BootstrapArgs>),
    /// Print the CustomResourceDefinitions as YAML, or write one file per kind.
    Crd(CrdArgs),
}

#[derive(Debug, Parser)]
#[command(
    name = "zoho-token-operator",
    version,
    about = "Mints Zoho OAuth access tokens once per credential and keeps them fresh in Secrets"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller (the default).
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions as YAML, or write one file per kind.
    Crd(CrdArgs),
    /// Get a refresh token from Zoho and make the credentials Secret that a ZohoConnection reads.
    Bootstrap(Box<BootstrapArgs>),
}

#[derive(Clone, Debug, Args)]
pub struct CrdArgs {
    /// Write `<kind>.yaml` files (lower case) into this directory instead of printing them.
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(after_help = BOOTSTRAP_HELP)]
pub struct BootstrapArgs {
    #[command(subcommand)]
    pub mode: BootstrapMode,
}

const BOOTSTRAP_HELP: &str = "\
Secrets never come from the command line, where `ps`, shell history and CI logs would see them.
The client secret comes from --client-secret-file, else ZOHO_CLIENT_SECRET, else stdin; the grant
code from --grant-code-file, else ZOHO_GRANT_CODE, else stdin (the line after the client secret
when both come from stdin). A terminal is prompted, without echo.

The credentials Secret (keys client_id, client_secret, refresh_token) goes to stdout, or into the
cluster with --apply; progress and instructions go to stderr.";

#[derive(Debug, Subcommand)]
pub enum BootstrapMode {
    /// Exchange a grant code (API console, Self Client, Generate Code) for a refresh token. The code
    /// works once and lives 2 to 3 minutes: generate it just before running this.
    GrantCode(GrantCodeArgs),
    /// Zoho's device flow: prints a URL and a code to approve in any browser, then waits for the
    /// approval. No grant code to copy; needs a client that Zoho allows the device flow for.
    Device(DeviceArgs),
}

#[derive(Debug, Args)]
#[command(after_help = BOOTSTRAP_HELP)]
pub struct GrantCodeArgs {
    #[command(flatten)]
    pub common: BootstrapCommon,

    /// Read the grant code from this file ("-" for stdin).
    #[arg(long, value_name = "PATH")]
    pub grant_code_file: Option<PathBuf>,

    /// The redirect URI of a server-based client's authorization, exactly as registered. Self
    /// Client codes take none.
    #[arg(long, value_name = "URL")]
    pub redirect_uri: Option<String>,
}

#[derive(Debug, Args)]
#[command(after_help = BOOTSTRAP_HELP)]
pub struct DeviceArgs {
    #[command(flatten)]
    pub common: BootstrapCommon,

    /// The scopes to ask for, comma-separated, such as ZohoCRM.modules.ALL,ZohoCRM.settings.READ.
    #[arg(long, required = true)]
    pub scope: String,
}

/// A flag that would carry a secret on the command line. Parsed so that it can be refused with
/// instructions, and dropped at once, so that the value is never kept, printed or echoed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InlineSecret;

fn inline_secret(_: &str) -> Result<InlineSecret, std::convert::Infallible> {
    Ok(InlineSecret)
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("accounts").required(true).args(["data_center", "accounts_url"])))]
pub struct BootstrapCommon {
    /// The data center of the Zoho account: US, EU, IN, AU, JP, CN, CA, SA, UK or AE. It is the
    /// domain you sign in at: zoho.eu is EU, zohocloud.ca is CA. Clients and codes work only there.
    #[arg(long, value_name = "DC", value_parser = parse_data_center)]
    pub data_center: Option<DataCenter>,

    /// An accounts server instead of --data-center: any https:// origin you choose to send your
    /// credentials to, or http:// on this machine (127.0.0.1, ::1, localhost) for a local fake.
    #[arg(long, value_name = "URL", value_parser = parse_bootstrap_accounts_url)]
    pub accounts_url: Option<AccountsUrl>,

    /// An accounts server, besides Zoho's official ones, that a device-flow `other_dc` answer may
    /// send the client secret to (repeatable). Zoho's official servers are always allowed.
    #[arg(long = "allow-accounts-url", value_name = "URL", value_parser = parse_bootstrap_accounts_url)]
    pub allow_accounts_urls: Vec<AccountsUrl>,

    /// The client id from Zoho's API console (not a secret).
    #[arg(long, env = "ZOHO_CLIENT_ID", value_name = "ID")]
    pub client_id: String,

    /// Read the client secret from this file ("-" for stdin).
    #[arg(long, value_name = "PATH")]
    pub client_secret_file: Option<PathBuf>,

    /// The namespace of the Secret (and of the ZohoConnection). With --apply it defaults to the
    /// kubeconfig context's namespace; without, the manifest names none.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,

    /// The name of the credentials Secret.
    #[arg(long, default_value = "zoho-oauth")]
    pub secret_name: String,

    /// Server-side apply the Secret to the cluster in KUBECONFIG instead of printing it. Access is
    /// checked before anything is sent to Zoho, so that a refused write costs no code.
    #[arg(long)]
    pub apply: bool,

    /// Also print a ZohoConnection (zoho-operator.dev/v1alpha1) that uses the Secret and the
    /// data center the token belongs to.
    #[arg(long)]
    pub print_connection: bool,

    /// The name of the ZohoConnection that --print-connection prints.
    #[arg(long, default_value = "zoho", value_name = "NAME")]
    pub connection_name: String,

    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "", value_parser = inline_secret)]
    pub client_secret: Option<InlineSecret>,
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "", value_parser = inline_secret)]
    pub grant_code: Option<InlineSecret>,
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "", value_parser = inline_secret)]
    pub code: Option<InlineSecret>,
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "", value_parser = inline_secret)]
    pub refresh_token: Option<InlineSecret>,
}

impl BootstrapCommon {
    /// The accounts server to start at.
    pub fn accounts_url(&self) -> AccountsUrl {
        match (&self.accounts_url, self.data_center) {
            (Some(url), _) => url.clone(),
            (None, Some(dc)) => AccountsUrl::of(dc),
            (None, None) => unreachable!("clap requires --data-center or --accounts-url"),
        }
    }

    /// The first flag that would have put a secret on the command line.
    pub fn inline_secret_flag(&self) -> Option<&'static str> {
        [
            ("--client-secret", self.client_secret),
            ("--grant-code", self.grant_code),
            ("--code", self.code),
            ("--refresh-token", self.refresh_token),
        ]
        .into_iter()
        .find_map(|(flag, value)| value.map(|_| flag))
    }
}

fn parse_data_center(raw: &str) -> Result<DataCenter, String> {
    DataCenter::from_code(raw).ok_or_else(|| {
        let codes: Vec<&str> = DataCenter::ALL.iter().map(|dc| dc.code()).collect();
        format!("expected one of {}", codes.join(", "))
    })
}

/// Unlike the operator, the bootstrap command needs no allow-list for the server it starts at:
/// the person running it sends their own credentials where they choose, and no one else can
/// point it elsewhere. Plain http would put the secret on the wire, so it is kept to loopback.
fn parse_bootstrap_accounts_url(raw: &str) -> Result<AccountsUrl, String> {
    let url = AccountsUrl::parse(raw).map_err(|err| err.to_string())?;
    if url.as_str().starts_with("http://") && !url.is_loopback() {
        return Err("plain http is accepted only on this machine (127.0.0.1, ::1, localhost), for tests against \
                    a local fake; anywhere else the client secret and tokens would cross the network \
                    unencrypted. Use https://"
            .to_string());
    }
    Ok(url)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// An accounts server, besides Zoho's official ones, that may receive credentials
    /// (repeatable; the environment variable takes a comma-separated list).
    #[arg(long = "allow-accounts-url", env = "ZOHO_OPERATOR_ALLOW_ACCOUNTS_URL", value_delimiter = ',', value_parser = parse_accounts_url)]
    pub allow_accounts_urls: Vec<AccountsUrl>,

    /// A namespace to watch (repeatable; comma-separated in the environment). Default: all.
    #[arg(long = "watch-namespace", env = "ZOHO_OPERATOR_WATCH_NAMESPACE", value_delimiter = ',')]
    pub watch_namespaces: Vec<String>,

    /// The namespace whose Secrets hold the credentials of ClusterZohoConnections; the operator
    /// reads credentials nowhere else on their behalf. Default: the operator's own namespace.
    #[arg(long, env = "ZOHO_OPERATOR_CLUSTER_RESOURCE_NAMESPACE")]
    pub cluster_resource_namespace: Option<String>,

    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(long, env = "ZOHO_OPERATOR_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Hold a Lease so that only one replica mints and writes.
    #[arg(long, env = "ZOHO_OPERATOR_LEADER_ELECTION")]
    pub leader_election: bool,

    /// Name of the leader-election Lease.
    #[arg(long, env = "ZOHO_OPERATOR_LEADER_ELECTION_NAME", default_value = "zoho-token-operator")]
    pub leader_election_name: String,

    /// Namespace of the leader-election Lease; defaults to the pod's namespace (POD_NAMESPACE).
    #[arg(long, env = "ZOHO_OPERATOR_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,

    /// This replica's identity in the Lease; defaults to POD_NAME, then the host name.
    #[arg(long, env = "ZOHO_OPERATOR_LEADER_ELECTION_IDENTITY")]
    pub leader_election_identity: Option<String>,

    /// How long a Lease stays valid without renewal; a standby takes over after at most this long.
    #[arg(long, env = "ZOHO_OPERATOR_LEADER_ELECTION_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub leader_election_lease_duration: Duration,

    /// Exchange a grant code found in a credentials Secret and write the refresh token back into
    /// that Secret. With `false`, the operator never modifies a credentials Secret.
    #[arg(long, env = "ZOHO_OPERATOR_GRANT_CODE_BOOTSTRAP", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub grant_code_bootstrap: bool,

    /// At most this many new tokens per credential within --mint-budget-window (Zoho allows 10 per 10 minutes).
    #[arg(long, env = "ZOHO_OPERATOR_MINT_BUDGET", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub mint_budget: u16,

    /// The window of --mint-budget.
    #[arg(long, env = "ZOHO_OPERATOR_MINT_BUDGET_WINDOW", default_value = "10m", value_parser = parse_duration)]
    pub mint_budget_window: Duration,

    /// This operator's shard, from 0 to --shard-count minus 1: it serves only the connections
    /// whose credentials hash to it, so that no credential is ever minted by two shards.
    #[arg(long, env = "ZOHO_OPERATOR_SHARD_INDEX", default_value_t = 0)]
    pub shard_index: u16,

    /// How many operators split the connections between them; each needs its own --shard-index.
    #[arg(long, env = "ZOHO_OPERATOR_SHARD_COUNT", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub shard_count: u16,

    /// Connections reconciled at once. A reconcile that mints waits for Zoho for most of its
    /// time, so this bounds how many mints are in flight.
    #[arg(long, env = "ZOHO_OPERATOR_CONCURRENCY", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,

    /// Timeout of one token request to Zoho, connection included.
    #[arg(long, env = "ZOHO_OPERATOR_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Log format; levels come from RUST_LOG.
    #[arg(long, env = "ZOHO_OPERATOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

fn parse_accounts_url(raw: &str) -> Result<AccountsUrl, String> {
    AccountsUrl::parse(raw).map_err(|err| err.to_string())
}

fn parse_duration(raw: &str) -> Result<Duration, String> {
    parse_go_duration(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_is_the_default_and_flags_repeat() {
        let cli = Cli::try_parse_from([
            "zoho-token-operator",
            "--allow-accounts-url",
            "http://127.0.0.1:9000",
            "--allow-accounts-url=https://accounts.example.test",
            "--watch-namespace",
            "a",
            "--watch-namespace",
            "b",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.run.allow_accounts_urls.len(), 2);
        assert_eq!(cli.run.watch_namespaces, ["a", "b"]);
        assert_eq!(cli.run.mint_budget, 8);
    }

    #[test]
    fn shards_come_from_flags_or_the_environment() {
        let cli = Cli::try_parse_from(["zoho-token-operator", "--shard-index", "1", "--shard-count", "3"]).unwrap();
        assert_eq!((cli.run.shard_index, cli.run.shard_count), (1, 3));
        let cli = Cli::try_parse_from(["zoho-token-operator"]).unwrap();
        assert_eq!((cli.run.shard_index, cli.run.shard_count, cli.run.concurrency), (0, 1, 64));
    }

    #[test]
    fn bad_values_are_rejected_with_a_message() {
        for args in [
            &["zoho-token-operator", "--allow-accounts-url", "not a url"][..],
            &["zoho-token-operator", "--mint-budget", "0"],
            &["zoho-token-operator", "--shard-count", "0"],
            &["zoho-token-operator", "--concurrency", "0"],
            &["zoho-token-operator", "--request-timeout", "soon"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }

    fn action(args: &[&str]) -> Action {
        parse_args(args.iter().map(OsString::from))
    }

    #[test]
    fn bootstrap_parses_under_either_name() {
        for program in ["zoho-token-operator", "/usr/local/bin/kubectl-zoho"] {
            let parsed = action(&[program, "bootstrap", "grant-code", "--data-center", "eu", "--client-id", "1000.X"]);
            let Action::Bootstrap(args) = parsed else { panic!("{program}: {parsed:?}") };
            let BootstrapMode::GrantCode(grant) = args.mode else { panic!("{program}") };
            assert_eq!(grant.common.accounts_url().as_str(), "https://accounts.zoho.eu");
            assert_eq!(grant.common.secret_name, "zoho-oauth");
            assert_eq!(grant.common.inline_secret_flag(), None);
        }
        assert!(matches!(action(&["kubectl-zoho", "crd"]), Action::Crd(_)));
        assert!(matches!(action(&["zoho-token-operator"]), Action::Run(_)));
    }

    #[test]
    fn as_a_kubectl_plugin_there_is_no_controller_to_start() {
        for args in [&["kubectl-zoho"][..], &["kubectl-zoho", "run"], &["kubectl-zoho", "--leader-election"]] {
            let args: Vec<OsString> = args.iter().map(OsString::from).collect();
            assert!(PluginCli::try_parse_from(args.clone()).is_err(), "{args:?}");
        }
    }

    #[test]
    fn inline_secrets_are_recognized_without_keeping_them() {
        let parsed = Cli::try_parse_from([
            "zoho-token-operator",
            "bootstrap",
            "device",
            "--data-center=US",
            "--client-id=1000.X",
            "--scope=A.READ",
            "--client-secret=SENTINEL",
        ])
        .unwrap();
        let Some(Command::Bootstrap(args)) = parsed.command else { panic!() };
        let BootstrapMode::Device(device) = args.mode else { panic!() };
        assert_eq!(device.common.inline_secret_flag(), Some("--client-secret"));
        assert!(!format!("{device:?}").contains("SENTINEL"));
    }

    #[test]
    fn bootstrap_refuses_plain_http_off_this_machine_and_unknown_data_centers() {
        let parse = |extra: &[&str]| {
            let mut args = vec!["zoho-token-operator", "bootstrap", "grant-code", "--client-id", "1000.X"];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args)
        };
        assert!(parse(&["--accounts-url", "http://127.0.0.1:8080"]).is_ok());
        assert!(parse(&["--accounts-url", "https://zoho-proxy.example.com"]).is_ok());
        let err = parse(&["--accounts-url", "http://zoho-proxy.example.com"]).unwrap_err().to_string();
        assert!(err.contains("only on this machine"), "{err}");
        let err = parse(&["--data-center", "XX"]).unwrap_err().to_string();
        assert!(err.contains("US, EU"), "{err}");
        assert!(parse(&[]).is_err(), "a data center or accounts URL is required");
        assert!(parse(&["--data-center", "EU", "--accounts-url", "https://a.example"]).is_err());
    }

    #[test]
    fn subcommands_parse() {
        assert!(matches!(Cli::try_parse_from(["zoho-token-operator", "crd"]).unwrap().command, Some(Command::Crd(_))));
        let cli = Cli::try_parse_from(["zoho-token-operator", "run", "--leader-election"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Run(args)) if args.leader_election));
    }
}
