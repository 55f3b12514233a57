//! The metrics and health endpoints.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use futures::Future;

use crate::metrics::Metrics;

#[derive(Clone)]
pub struct Health {
    pub metrics: Arc<Metrics>,
    /// Set once the CRD is known to be served and the replica is leading or standing by.
    pub ready: Arc<AtomicBool>,
}

/// Binds the address first, so that a port in use stops the operator at startup with a clear
/// error instead of leaving it running without probes and metrics; the returned future serves.
pub async fn serve(
    addr: SocketAddr,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<impl Future<Output = std::io::Result<()>>> {
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(h): State<Health>| async move {
                ([("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")], h.metrics.render())
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(h): State<Health>| async move {
                if h.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting")
                }
            }),
        )
        .with_state(health);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|err| std::io::Error::new(err.kind(), format!("cannot listen on {addr} (--metrics-addr): {err}")))?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    Ok(axum::serve(listener, app).with_graceful_shutdown(shutdown).into_future())
}
