//! Prometheus metrics. Labels are bounded: outcomes and reasons are fixed sets, and per-connection
//! series are removed when their ZohoConnection is deleted.

use std::{
    collections::HashSet,
    sync::{Mutex, atomic::AtomicU64},
    time::Duration,
};

use jiff::Timestamp;
use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::zoho::FailureClass;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum MintOutcome {
    success,
    transient,
    throttled,
    permanent,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: MintOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

/// A connection's series; `namespace` is empty for a ClusterZohoConnection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    pub namespace: String,
    pub name: String,
}

type TimestampGauge = Gauge<f64, AtomicU64>;

pub struct Metrics {
    registry: Registry,
    mints: Family<OutcomeLabels, Counter>,
    mint_duration: Histogram,
    mints_deferred: Counter,
    reconciles: Counter,
    reconcile_duration: Histogram,
    reconcile_failures: Family<ReasonLabels, Counter>,
    token_expiry: Family<ConnectionLabels, TimestampGauge>,
    next_refresh: Family<ConnectionLabels, TimestampGauge>,
    ready: Family<ConnectionLabels, Gauge>,
    leader: Gauge,
    connections: Mutex<HashSet<ConnectionLabels>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("zoho_operator");
        let metrics = Self {
            mints: Family::default(),
            mint_duration: Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            mints_deferred: Counter::default(),
            reconciles: Counter::default(),
            // A reconcile that mints waits for Zoho (up to --request-timeout, 30 s by default);
            // one that reuses the stored token takes a few API round trips.
            reconcile_duration: Histogram::new([0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
            reconcile_failures: Family::default(),
            token_expiry: Family::default(),
            next_refresh: Family::default(),
            ready: Family::default(),
            leader: Gauge::default(),
            connections: Mutex::default(),
            registry: Registry::default(),
        };
        registry.register("token_requests", "Token requests sent to Zoho, by outcome", metrics.mints.clone());
        registry.register(
            "token_request_duration_seconds",
            "Duration of token requests sent to Zoho",
            metrics.mint_duration.clone(),
        );
        registry.register(
            "token_requests_deferred",
            "Token requests held back because the credential's mint budget was used up",
            metrics.mints_deferred.clone(),
        );
        registry.register("reconciles", "Reconciliations of connections", metrics.reconciles.clone());
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconciliations of connections",
            metrics.reconcile_duration.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Reconciliations that ended in a failure, by reason",
            metrics.reconcile_failures.clone(),
        );
        registry.register(
            "token_expiry_timestamp_seconds",
            "When the token in each connection's target Secret expires (Unix time)",
            metrics.token_expiry.clone(),
        );
        registry.register(
            "token_next_refresh_timestamp_seconds",
            "When each connection's next token will be minted (Unix time)",
            metrics.next_refresh.clone(),
        );
        registry.register("connection_ready", "Whether each connection is Ready (1) or not (0)", metrics.ready.clone());
        registry.register("leader", "Whether this replica holds the leader lease", metrics.leader.clone());
        // Present on every replica from the start, leader or not: alerts tell a missing operator
        // from a quiet one by its absence.
        let build_info = Family::<VersionLabels, Gauge>::default();
        build_info.get_or_create(&VersionLabels { version: env!("CARGO_PKG_VERSION") }).set(1);
        registry.register("build_info", "The operator's version; always 1", build_info);
        Self { registry, ..metrics }
    }
}

fn unix_seconds(at: Timestamp) -> f64 {
    at.as_millisecond() as f64 / 1000.0
}

impl Metrics {
    pub fn observe_mint(&self, failure: Option<FailureClass>, elapsed: Duration) {
        let outcome = match failure {
            None => MintOutcome::success,
            Some(FailureClass::Transient) => MintOutcome::transient,
            Some(FailureClass::Throttled) => MintOutcome::throttled,
            Some(FailureClass::Permanent) => MintOutcome::permanent,
        };
        self.mints.get_or_create(&OutcomeLabels { outcome }).inc();
        self.mint_duration.observe(elapsed.as_secs_f64());
    }

    pub fn observe_reconcile(&self, elapsed: Duration) {
        self.reconcile_duration.observe(elapsed.as_secs_f64());
    }

    pub fn mint_deferred(&self) {
        self.mints_deferred.inc();
    }

    pub fn reconciled(&self, failure_reason: Option<&'static str>) {
        self.reconciles.inc();
        if let Some(reason) = failure_reason {
            self.reconcile_failures.get_or_create(&ReasonLabels { reason }).inc();
        }
    }

    pub fn set_connection(
        &self,
        labels: &ConnectionLabels,
        ready: bool,
        expires_at: Option<Timestamp>,
        next_refresh: Option<Timestamp>,
    ) {
        self.connections.lock().expect("never poisoned").insert(labels.clone());
        self.ready.get_or_create(labels).set(i64::from(ready));
        for (family, value) in [(&self.token_expiry, expires_at), (&self.next_refresh, next_refresh)] {
            match value {
                Some(at) => {
                    family.get_or_create(labels).set(unix_seconds(at));
                }
                None => {
                    family.remove(labels);
                }
            }
        }
    }

    /// Removes a connection's series, e.g. when another shard serves it now.
    pub fn forget_connection(&self, labels: &ConnectionLabels) {
        if self.connections.lock().expect("never poisoned").remove(labels) {
            self.ready.remove(labels);
            self.token_expiry.remove(labels);
            self.next_refresh.remove(labels);
        }
    }

    /// Removes the series of every connection for which `exists` is false.
    pub fn retain_connections(&self, exists: impl Fn(&ConnectionLabels) -> bool) {
        self.connections.lock().expect("never poisoned").retain(|labels| {
            let keep = exists(labels);
            if !keep {
                self.ready.remove(labels);
                self.token_expiry.remove(labels);
                self.next_refresh.remove(labels);
            }
            keep
        });
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_mint_outcomes_and_connection_series_and_forgets_them() {
        let metrics = Metrics::default();
        metrics.observe_mint(None, Duration::from_millis(20));
        metrics.observe_mint(Some(FailureClass::Throttled), Duration::from_millis(20));
        let labels = ConnectionLabels { namespace: "sales".into(), name: "crm".into() };
        metrics.set_connection(&labels, true, Some("2026-11-28T11:00:00Z".parse().unwrap()), None);
        let text = metrics.render();
        assert!(text.contains("zoho_operator_token_requests_total{outcome=\"success\"} 1"), "{text}");
        assert!(text.contains("zoho_operator_token_requests_total{outcome=\"throttled\"} 1"), "{text}");
        assert!(
            text.contains("zoho_operator_token_expiry_timestamp_seconds{namespace=\"sales\",name=\"crm\"} 1795"),
            "{text}"
        );
        metrics.retain_connections(|_| false);
        assert!(!metrics.render().contains("name=\"crm\""));
    }

    #[test]
    fn renders_build_info_and_reconcile_durations() {
        let metrics = Metrics::default();
        let version = env!("CARGO_PKG_VERSION");
        let text = metrics.render();
        assert!(text.contains(&format!("zoho_operator_build_info{{version=\"{version}\"}} 1\n")), "{text}");
        assert!(text.contains("zoho_operator_reconcile_duration_seconds_count 0\n"), "{text}");

        metrics.observe_reconcile(Duration::from_millis(30));
        metrics.observe_reconcile(Duration::from_secs(3));
        let text = metrics.render();
        assert!(text.contains("zoho_operator_reconcile_duration_seconds_count 2\n"), "{text}");
        assert!(text.contains("zoho_operator_reconcile_duration_seconds_bucket{le=\"0.05\"} 1\n"), "{text}");
        assert!(text.contains("zoho_operator_reconcile_duration_seconds_bucket{le=\"5.0\"} 2\n"), "{text}");
    }
}
