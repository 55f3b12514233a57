//! Command line and environment configuration.

use std::{net::SocketAddr, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{schedule::parse_go_duration, zoho::AccountsUrl};

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
}

#[derive(Clone, Debug, Args)]
pub struct CrdArgs {
    /// Write `<kind>.yaml` files (lower case) into this directory instead of printing them.
    #[arg(long)]
    pub output_dir: Option<std::path::PathBuf>,
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

    /// At most this many new tokens per credential within --mint-budget-window (Zoho allows 10 per 10 minutes).
    #[arg(long, env = "ZOHO_OPERATOR_MINT_BUDGET", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub mint_budget: u16,

    /// The window of --mint-budget.
    #[arg(long, env = "ZOHO_OPERATOR_MINT_BUDGET_WINDOW", default_value = "10m", value_parser = parse_duration)]
    pub mint_budget_window: Duration,

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

impl Cli {
    pub fn log_format(&self) -> LogFormat {
        match &self.command {
            Some(Command::Run(args)) => args.log_format,
            _ => self.run.log_format,
        }
    }
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
    fn bad_values_are_rejected_with_a_message() {
        for args in [
            &["zoho-token-operator", "--allow-accounts-url", "not a url"][..],
            &["zoho-token-operator", "--mint-budget", "0"],
            &["zoho-token-operator", "--request-timeout", "soon"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn subcommands_parse() {
        assert!(matches!(Cli::try_parse_from(["zoho-token-operator", "crd"]).unwrap().command, Some(Command::Crd(_))));
        let cli = Cli::try_parse_from(["zoho-token-operator", "run", "--leader-election"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Run(args)) if args.leader_election));
    }
}
