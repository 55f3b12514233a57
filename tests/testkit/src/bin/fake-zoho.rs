//! Runs the fake Zoho accounts server until killed, for demos and for tests that
//! need it as a separate process.
//!
//! Prints its URL (`http://127.0.0.1:PORT`) as the first line on stdout and logs
//! each request to stderr, with fingerprints in place of secrets and tokens.
//! The `/_fake/` JSON API steers it at run time (see `testkit::fake_zoho`).

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use testkit::fake_zoho::{FakeZoho, FakeZohoConfig};
use tracing_subscriber::EnvFilter;

/// A fake Zoho accounts server. Defaults are Zoho's documented values.
#[derive(Debug, Parser)]
#[command(name = "fake-zoho")]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,

    /// Pre-register a client (repeatable).
    #[arg(long = "client", value_name = "ID:SECRET", value_parser = split_pair)]
    clients: Vec<(String, String)>,

    /// Pre-register a refresh token of a client given with --client (repeatable).
    #[arg(long = "refresh-token", value_name = "CLIENT_ID:TOKEN", value_parser = split_pair)]
    refresh_tokens: Vec<(String, String)>,

    /// Pre-register a grant code of a client given with --client (repeatable).
    #[arg(long = "code", value_name = "CLIENT_ID:CODE", value_parser = split_pair)]
    codes: Vec<(String, String)>,

    /// Access-token lifetime [default: 3600].
    #[arg(long, value_name = "SECS")]
    token_lifetime: Option<u64>,

    /// `api_domain` in token responses [default: https://www.zohoapis.com].
    #[arg(long, value_name = "URL")]
    api_domain: Option<String>,

    /// Scope of every refresh token [default: ZohoCRM.modules.ALL].
    #[arg(long)]
    scope: Option<String>,

    /// Answer `expires_in_sec` (seconds) with `expires_in` in milliseconds.
    #[arg(long)]
    legacy_expires: bool,

    /// Length of the throttle window [default: 600].
    #[arg(long, value_name = "SECS")]
    throttle_window: Option<u64>,

    /// Access tokens minted per refresh token per window [default: 10].
    #[arg(long, value_name = "N")]
    throttle_limit: Option<u32>,

    /// HTTP status of throttle answers; Zoho has sent 400 and 200 [default: 400].
    #[arg(long, value_name = "STATUS")]
    throttle_status: Option<u16>,

    /// Answer the throttle in Chinese.
    #[arg(long)]
    localized_throttle: bool,

    /// Live access tokens per refresh token before the oldest is evicted [default: 15].
    #[arg(long, value_name = "N")]
    live_token_cap: Option<usize>,

    /// Lifetime of grant codes [default: 120].
    #[arg(long, value_name = "SECS")]
    code_lifetime: Option<u64>,

    /// Device flow: the `interval` devices are told to wait between polls [default: 30].
    #[arg(long, value_name = "SECS")]
    device_interval: Option<u64>,

    /// Device flow: polls closer together than this answer `slow_down` [default: 30].
    #[arg(long, value_name = "SECS")]
    device_min_poll_gap: Option<u64>,

    /// Device flow: how long a user has to approve [default: 300].
    #[arg(long, value_name = "SECS")]
    device_code_lifetime: Option<u64>,

    /// This server's data center as a location code, sent as `user_location` when another
    /// instance redirects a device here [default: us].
    #[arg(long, value_name = "CODE")]
    location: Option<String>,

    /// Keep tokens and counters in this file across restarts.
    #[arg(long, value_name = "PATH")]
    state_file: Option<PathBuf>,
}

fn split_pair(value: &str) -> Result<(String, String), String> {
    match value.split_once(':') {
        Some((left, right)) if !left.is_empty() && !right.is_empty() => Ok((left.to_owned(), right.to_owned())),
        _ => Err("expected two non-empty values separated by ':'".to_owned()),
    }
}

impl Args {
    fn config(&self) -> FakeZohoConfig {
        let mut config = FakeZohoConfig {
            listen: self.listen,
            legacy_expires: self.legacy_expires,
            localized_throttle: self.localized_throttle,
            state_file: self.state_file.clone(),
            ..FakeZohoConfig::default()
        };
        let seconds = Duration::from_secs;
        if let Some(secs) = self.token_lifetime {
            config.token_lifetime = seconds(secs);
        }
        if let Some(domain) = &self.api_domain {
            config.api_domain.clone_from(domain);
        }
        if let Some(scope) = &self.scope {
            config.scope.clone_from(scope);
        }
        if let Some(secs) = self.throttle_window {
            config.throttle_window = seconds(secs);
        }
        if let Some(limit) = self.throttle_limit {
            config.throttle_limit = limit;
        }
        if let Some(status) = self.throttle_status {
            config.throttle_status = status;
        }
        if let Some(cap) = self.live_token_cap {
            config.live_token_cap = cap;
        }
        if let Some(secs) = self.code_lifetime {
            config.code_lifetime = seconds(secs);
        }
        if let Some(secs) = self.device_interval {
            config.device_poll_interval = seconds(secs);
        }
        if let Some(secs) = self.device_min_poll_gap {
            config.device_min_poll_gap = seconds(secs);
        }
        if let Some(secs) = self.device_code_lifetime {
            config.device_code_lifetime = seconds(secs);
        }
        if let Some(location) = &self.location {
            config.location.clone_from(location);
        }
        config
    }

    /// Checked up front: the handle panics on an unknown client.
    fn unknown_client(&self) -> Option<&str> {
        self.refresh_tokens
            .iter()
            .chain(&self.codes)
            .map(|(client_id, _)| client_id.as_str())
            .find(|client_id| !self.clients.iter().any(|(id, _)| id == client_id))
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();

    if let Some(client_id) = args.unknown_client() {
        eprintln!("fake-zoho: {client_id:?} is not a client given with --client");
        return ExitCode::from(2);
    }
    if args.throttle_status.is_some_and(|status| !(100..=999).contains(&status)) {
        eprintln!("fake-zoho: --throttle-status must be an HTTP status code");
        return ExitCode::from(2);
    }

    let zoho = match FakeZoho::try_start(args.config()) {
        Ok(zoho) => zoho,
        Err(error) => {
            eprintln!("fake-zoho: cannot start on {}: {error}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    for (client_id, secret) in &args.clients {
        zoho.register_client(client_id, secret);
    }
    for (client_id, token) in &args.refresh_tokens {
        zoho.register_refresh_token(client_id, token);
    }
    for (client_id, code) in &args.codes {
        zoho.register_code(client_id, code, None);
    }

    println!("{}", zoho.url());
    tracing::info!(url = %zoho.url(), clients = args.clients.len(), refresh_tokens = args.refresh_tokens.len(), "fake-zoho listening");

    // The server runs on its own thread; SIGTERM's default action ends the
    // process, and the state file (if any) is already up to date.
    loop {
        std::thread::park();
    }
}
