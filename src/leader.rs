//! Leader election with a coordination.k8s.io Lease, so that only one replica mints and writes.
//!
//! Expiry is judged by the local clock from when this replica last saw the lease change, as
//! client-go does, so that clock skew between replicas cannot make two of them leaders.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use jiff::Timestamp;
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{Api, Client, api::PostParams};
use tracing::{info, warn};

#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_every: Duration,
}

pub struct Leadership {
    api: Api<Lease>,
    settings: LeaseSettings,
    /// The lease's resourceVersion when this replica last saw it change, and when that was.
    observed: Mutex<Option<(String, Instant)>>,
}

#[derive(Debug, thiserror::Error)]
#[error("lost the leader lease {0}")]
pub struct LeaseLost(String);

impl Leadership {
    pub fn new(client: Client, settings: LeaseSettings) -> Self {
        Self { api: Api::namespaced(client, &settings.namespace), settings, observed: Mutex::new(None) }
    }

    /// Waits until this replica holds the lease.
    pub async fn acquire(&self) {
        info!(lease = %self.settings.name, identity = %self.settings.identity, "waiting for the leader lease");
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    info!(lease = %self.settings.name, "acquired the leader lease");
                    return;
                }
                Ok(false) => {}
                Err(err) => warn!(error = %err, "could not read or update the leader lease"),
            }
            tokio::time::sleep(self.settings.renew_every).await;
        }
    }

    /// Renews the lease until it is lost: taken by another replica, or not renewed in time.
    pub async fn keep(&self) -> LeaseLost {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.settings.renew_every).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => return LeaseLost(format!("{}: another replica holds it", self.settings.name)),
                Err(err) => warn!(error = %err, "could not renew the leader lease"),
            }
            // Stop before the lease could have expired in the eyes of the other replicas.
            if renewed.elapsed() + self.settings.renew_every >= self.settings.lease_duration {
                return LeaseLost(format!(
                    "{}: not renewed within {:?}",
                    self.settings.name, self.settings.lease_duration
                ));
            }
        }
    }

    /// Gives the lease up, so that a standby can take over at once instead of waiting for expiry.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.settings.name).await else { return };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        match self.api.replace(&self.settings.name, &PostParams::default(), &lease).await {
            Ok(_) => info!(lease = %self.settings.name, "released the leader lease"),
            Err(err) => warn!(error = %err, "could not release the leader lease"),
        }
    }

    async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let duration_secs = i32::try_from(self.settings.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.settings.name.clone()), ..ObjectMeta::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.settings.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return conflict_is_false(self.api.create(&PostParams::default(), &lease).await);
        };
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let mine = spec.holder_identity.as_deref() == Some(self.settings.identity.as_str());
        let vacant = spec.holder_identity.as_deref().is_none_or(str::is_empty);
        let held_for = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(duration_secs).max(0) as u64);
        if !mine && !vacant && !self.unchanged_for(&version, held_for) {
            return Ok(false);
        }
        if !mine {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.holder_identity = Some(self.settings.identity.clone());
        spec.lease_duration_seconds = Some(duration_secs);
        spec.renew_time = Some(now);
        // replace carries the resourceVersion we read: if another replica wrote in between, the
        // API server rejects it with a conflict and nobody ends up believing it leads wrongly.
        conflict_is_false(self.api.replace(&self.settings.name, &PostParams::default(), &lease).await)
    }

    /// Whether the lease kept `version` for at least `duration`, by this replica's clock.
    fn unchanged_for(&self, version: &str, duration: Duration) -> bool {
        let mut observed = self.observed.lock().expect("never poisoned");
        match observed.as_ref() {
            Some((seen, since)) if seen == version => since.elapsed() >= duration,
            _ => {
                *observed = Some((version.to_string(), Instant::now()));
                false
            }
        }
    }
}

fn conflict_is_false<T>(result: Result<T, kube::Error>) -> Result<bool, kube::Error> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(err) => Err(err),
    }
}
