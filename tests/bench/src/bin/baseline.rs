//! The physical limit the operator is measured against: exactly the API writes the operator must
//! make for each ZohoConnection, one server-side apply of its target Secret and one of its
//! status, built by the operator's own code so that the bytes are the same, as fast as the API
//! server takes them. No Zoho, no controller, no reads beyond one LIST.
//!
//! Usage: bench-baseline [--namespace NS] [--concurrency N]  (KUBECONFIG names the cluster)
//!
//! Prints one JSON line: the connections written, the seconds the writes took, and this
//! process's CPU seconds and peak RSS.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use futures::{StreamExt, TryStreamExt, stream};
use jiff::Timestamp;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use secrecy::SecretString;
use serde_json::json;
use zoho_token_operator::{
    api::{Connection, ConnectionStatus, FIELD_MANAGER, ZohoConnection},
    schedule, secret,
    status::Report,
    zoho::IssuedToken,
};

#[derive(Parser)]
struct Args {
    /// Only the ZohoConnections of this namespace; default: all.
    #[arg(long)]
    namespace: Option<String>,
    /// Connections written at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let client = Client::try_default().await?;
    let started = Instant::now();
    let api: Api<ZohoConnection> = match &args.namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let connections = api.list(&ListParams::default()).await?.items;
    let count = connections.len();
    stream::iter(connections)
        .map(|connection| write(client.clone(), connection))
        .buffer_unordered(args.concurrency)
        .try_collect::<()>()
        .await?;
    let elapsed = started.elapsed();
    let usage = rusage();
    println!(
        "{}",
        json!({
            "connections": count,
            "seconds": elapsed.as_secs_f64(),
            "cpu_seconds": usage.0.as_secs_f64(),
            "peak_rss_bytes": usage.1,
        })
    );
    Ok(())
}

/// The operator's two writes for a connection that just got its first token.
async fn write(client: Client, connection: ZohoConnection) -> Result<()> {
    let namespace = connection.namespace().context("a ZohoConnection has a namespace")?;
    let name = connection.target_name();
    let now = Timestamp::now();
    let token = IssuedToken {
        access_token: SecretString::from(format!("1000.{:032x}", rand::random::<u128>())),
        api_domain: Some("https://www.zohoapis.com".into()),
        token_type: "Bearer".into(),
        issued_at: now,
        expires_at: now + Duration::from_secs(3600),
    };
    let fingerprint = format!("v1-{:032x}", rand::random::<u128>());
    let owner = connection.controller_owner_ref(&()).context("a listed object has a name and uid")?;
    let desired =
        secret::desired(&owner, &name, &namespace, connection.shape(), &token, &fingerprint, &Default::default());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &namespace)
        .patch(&name, &params, &Patch::Apply(&desired))
        .await?;

    let previous = ConnectionStatus::default();
    let uid = connection.uid().unwrap_or_default();
    let target = format!("Secret {name:?}");
    let report = Report {
        now,
        generation: connection.meta().generation,
        previous: &previous,
        fingerprint: Some(&fingerprint),
        target: &target,
        jitter_seed: &uid,
    };
    let refresh_at = schedule::refresh_at(token.issued_at, token.expires_at, None);
    let status = connection.make_status(report.served(&token, refresh_at, None), vec![namespace.clone()]);
    let patch = json!({"apiVersion": "zoho-operator.dev/v1alpha1", "kind": "ZohoConnection", "status": status});
    Api::<ZohoConnection>::namespaced(client, &namespace)
        .patch_status(&connection.name_any(), &params, &Patch::Apply(&patch))
        .await?;
    Ok(())
}

/// This process's CPU time and peak RSS in bytes.
fn rusage() -> (Duration, u64) {
    // SAFETY: getrusage writes into the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    (time(usage.ru_utime) + time(usage.ru_stime), usage.ru_maxrss as u64 * 1024)
}
