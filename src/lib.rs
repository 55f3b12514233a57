//! zoho-token-operator: mints Zoho OAuth access tokens once per credential and keeps them fresh
//! in Kubernetes Secrets.

pub mod api;
pub mod bootstrap;
pub mod cache;
pub mod config;
pub mod context;
pub mod controller;
pub mod credentials;
pub mod error;
pub mod exchange;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod inputs;
pub mod leader;
pub mod metrics;
pub mod mint;
pub mod policy;
pub mod revoke;
pub mod schedule;
pub mod secret;
pub mod shard;
pub mod status;
pub mod targets;
pub mod telemetry;
pub mod template;
pub mod watch;
pub mod zoho;

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use futures::{FutureExt, future::Shared};
use kube::{
    Api, Client, CustomResourceExt,
    api::ListParams,
    runtime::events::{Recorder, Reporter},
};
use tracing::{error, info};

use crate::{
    api::{ClusterZohoConnection, ZohoConnection},
    config::RunArgs,
    controller::{Context, Scope},
    leader::{Leadership, LeaseSettings},
    metrics::Metrics,
    mint::{MintBudget, MintCoordinator},
    zoho::{AccountsClient, AllowList},
};

/// Each CRD as YAML, exactly as committed under crds/, with the file name it is committed under.
pub fn crds() -> [(&'static str, String); 2] {
    let yaml = |crd| serde_saphyr::to_string(&crd).expect("a CRD serializes");
    [
        ("zohoconnection.yaml", yaml(ZohoConnection::crd())),
        ("clusterzohoconnection.yaml", yaml(ClusterZohoConnection::crd())),
    ]
}

/// Prints every CRD as one YAML stream, or writes one file per kind into `dir`.
pub fn write_crds(dir: Option<&std::path::Path>) -> std::io::Result<()> {
    match dir {
        Some(dir) => crds().into_iter().try_for_each(|(file, yaml)| std::fs::write(dir.join(file), yaml)),
        None => {
            let all: Vec<String> = crds().into_iter().map(|(_, yaml)| yaml).collect();
            print!("{}", all.join("---\n"));
            Ok(())
        }
    }
}

type ShutdownSignal = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + Sync>>;

fn shutdown_signal() -> Shared<ShutdownSignal> {
    let signal: ShutdownSignal = Box::pin(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler only fails outside a Tokio runtime");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        info!("shutting down");
    });
    signal.shared()
}

/// Runs the operator until SIGTERM or SIGINT, or until it loses the leader lease.
pub async fn run(args: RunArgs) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let RunArgs {
        allow_accounts_urls,
        watch_namespaces,
        cluster_resource_namespace,
        metrics_addr,
        leader_election,
        leader_election_name,
        leader_election_namespace,
        leader_election_identity,
        leader_election_lease_duration,
        mint_budget,
        mint_budget_window,
        grant_code_bootstrap,
        shard_index,
        shard_count,
        concurrency,
        request_timeout,
        log_format: _,
    } = args;
    let shard = shard::Shard::new(shard_index, shard_count)?;
    let client = Client::try_default().await?;
    let shutdown = shutdown_signal();
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let health = http::Health { metrics: metrics.clone(), ready: ready.clone() };
    let server = tokio::spawn(http::serve(metrics_addr, health, shutdown.clone()).await?);

    check_crd_served(&client, &watch_namespaces).await?;
    let identity = leader_election_identity
        .or_else(|| std::env::var("POD_NAME").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("zoho-token-operator-{}", std::process::id()));
    let recorder = Recorder::new(
        client.clone(),
        Reporter { controller: api::FIELD_MANAGER.into(), instance: Some(identity.clone()) },
    );
    let accounts = AccountsClient::new(
        AllowList::new(allow_accounts_urls),
        request_timeout.min(std::time::Duration::from_secs(10)),
        request_timeout,
    );
    let budget = MintBudget { max_mints: usize::from(mint_budget), window: mint_budget_window };
    let coordinator = MintCoordinator::new(accounts, budget, metrics.clone());
    // ClusterZohoConnections write into any namespace, so they are served only when all are watched.
    let (namespaces, namespace_events) = match watch_namespaces.is_empty() {
        true => {
            let (store, events) = watch::namespaces(client.clone());
            (Some(store), Some(events))
        }
        false => (None, None),
    };
    let cluster_resource_namespace =
        cluster_resource_namespace.unwrap_or_else(|| client.default_namespace().to_string());
    let scope = Scope {
        namespaces: if watch_namespaces.is_empty() {
            vec![None]
        } else {
            watch_namespaces.iter().cloned().map(Some).collect()
        },
        cluster_resource_namespace,
        grant_code_bootstrap,
        concurrency,
        shard,
    };
    let (caches, mut writers): (Vec<_>, Vec<_>) = scope
        .namespaces
        .iter()
        .map(|namespace| {
            let (cache, writers) = cache::SecretCache::new();
            ((namespace.clone(), cache), writers)
        })
        .unzip();
    let ctx = Arc::new(Context::new(client.clone(), coordinator, metrics.clone(), recorder, scope, namespaces, caches));
    ready.store(true, Ordering::Relaxed);

    let leadership = leader_election.then(|| {
        let namespace = leader_election_namespace
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".to_string());
        // Each shard elects its own leader: replicas of one shard exclude each other, not shards.
        let name = match shard.count {
            1 => leader_election_name,
            _ => format!("{leader_election_name}-shard-{}", shard.index),
        };
        Leadership::new(
            client.clone(),
            LeaseSettings {
                name,
                namespace,
                identity,
                lease_duration: leader_election_lease_duration,
                renew_every: leader_election_lease_duration / 3,
            },
        )
    });
    if let Some(leadership) = &leadership {
        tokio::select! {
            _ = leadership.acquire() => metrics.set_leader(true),
            _ = shutdown.clone() => return Ok(()),
        }
    }

    let mut controllers: Vec<futures::future::BoxFuture<'static, ()>> = ctx
        .scope
        .namespaces
        .clone()
        .into_iter()
        .zip(writers.drain(..))
        .map(|(ns, secrets)| watch::zoho_connections(ctx.clone(), ns, secrets, shutdown.clone()).boxed())
        .collect();
    if let Some(namespace_events) = namespace_events {
        controllers.push(watch::cluster_zoho_connections(ctx.clone(), namespace_events, shutdown.clone()).boxed());
    }
    let controllers = futures::future::join_all(controllers);
    info!(shard = shard.index, shards = shard.count, "controller running");
    let result = match &leadership {
        Some(leadership) => tokio::select! {
            _ = controllers => Ok(()),
            lost = leadership.keep() => {
                error!(error = %lost, "stopping: another replica may be minting now");
                Err(lost.into())
            }
        },
        None => {
            controllers.await;
            Ok(())
        }
    };
    if let Some(leadership) = &leadership {
        leadership.release().await;
    }
    server.abort();
    result
}

/// Fails early, with instructions, when a CRD is not installed or cannot be read.
async fn check_crd_served(
    client: &Client,
    namespaces: &[String],
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let instructions = |kind: &str, err: kube::Error| {
        format!(
            "cannot list {kind}s ({err}); are the CRDs installed? `zoho-token-operator crd | kubectl apply --server-side -f -`"
        )
    };
    let connections: Api<ZohoConnection> = match namespaces.first() {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    connections
        .list_metadata(&ListParams::default().limit(1))
        .await
        .map_err(|err| instructions("ZohoConnection", err))?;
    if namespaces.is_empty() {
        let cluster: Api<ClusterZohoConnection> = Api::all(client.clone());
        cluster
            .list_metadata(&ListParams::default().limit(1))
            .await
            .map_err(|err| instructions("ClusterZohoConnection", err))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn committed_crds_match_the_rust_types() {
        for (file, yaml) in super::crds() {
            let committed =
                std::fs::read_to_string(format!("{}/crds/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap_or_default();
            assert!(
                committed == yaml,
                "crds/{file} is stale; regenerate with `cargo run -- crd --output-dir crds && scripts/chart-sync`"
            );
        }
    }
}
