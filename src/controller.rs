//! The reconciler: from a ZohoConnection to a fresh token in its target Secret, with status,
//! events and the next reconcile scheduled at the refresh time.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{Future, StreamExt};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::{
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{PartialObjectMeta, Patch, PatchParams},
    runtime::{
        Controller,
        controller::{Action, Config as ControllerConfig},
        events::{Event, EventType, Recorder},
        reflector::{ObjectRef, Store},
        utils::{Backoff, ResetTimerBackoff},
        watcher::Config as WatcherConfig,
    },
};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::{
    api::{FIELD_MANAGER, READY_CONDITION, ZohoConnection, ZohoConnectionStatus},
    credentials,
    error::Error,
    metrics::{ConnectionLabels, Metrics},
    mint::{self, MintCoordinator, MintError},
    schedule,
    secret::{self, Target},
    zoho::{AccountsUrl, FailureClass, IssuedToken},
};

/// How long the operator waits on a problem only a person can fix before looking again; changes
/// to the ZohoConnection or its Secrets trigger a reconcile sooner.
const RECHECK_PERMANENT: Duration = Duration::from_secs(3600);

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub coordinator: MintCoordinator,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// For each connection, the credentials and generation of its last failure. A new attempt
    /// before the backoff ends is made only when one of them changed.
    failures: Mutex<HashMap<ObjectRef<ZohoConnection>, FailureInput>>,
    /// Consecutive Kubernetes API errors per connection, for error_policy's backoff.
    api_errors: Mutex<HashMap<ObjectRef<ZohoConnection>, u32>>,
}

#[derive(Clone, PartialEq)]
struct FailureInput {
    fingerprint: Option<String>,
    generation: Option<i64>,
}

impl Context {
    pub fn new(client: Client, coordinator: MintCoordinator, metrics: Arc<Metrics>, recorder: Recorder) -> Self {
        Self { client, coordinator, metrics, recorder, failures: Mutex::default(), api_errors: Mutex::default() }
    }
}

/// The token a connection's Secret should hold, and when to replace it.
struct Fresh {
    token: IssuedToken,
    fingerprint: String,
    api_domain: String,
    refresh_at: Timestamp,
}

/// Everything the reconcile learned before deciding what to write.
struct Inputs {
    target: Target,
    fingerprint: Option<String>,
}

async fn reconcile(connection: Arc<ZohoConnection>, ctx: Arc<Context>) -> Result<Action, Error> {
    let now = Timestamp::now();
    let namespace = connection.namespace().expect("ZohoConnection is namespaced");
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let target_name = connection.target_secret_name();
    let existing = secrets.get_opt(&target_name).await?;
    let mut inputs = Inputs { target: secret::inspect(existing.as_ref(), &uid(&connection)), fingerprint: None };

    match fresh_token(&connection, &ctx, &secrets, &mut inputs, now).await {
        Ok(fresh) => {
            let desired = secret::desired(&connection, &fresh.token, &fresh.api_domain, &fresh.fingerprint);
            if !existing.as_ref().is_some_and(|e| secret::is_up_to_date(e, &desired)) {
                secrets
                    .patch(&target_name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&desired))
                    .await?;
                info!(secret = %target_name, expires_at = %secret::format_time(fresh.token.expires_at), "wrote token to target Secret");
            }
            ctx.failures.lock().expect("never poisoned").remove(&ObjectRef::from_obj(connection.as_ref()));
            write_status(&connection, &ctx, success_status(&connection, &target_name, &fresh, now)).await?;
            ctx.metrics.reconciled(None);
            Ok(requeue_at(fresh.refresh_at))
        }
        Err(Error::Kube(err)) => Err(Error::Kube(err)),
        Err(Error::BackoffPending { until }) => {
            // The status already describes the failure being waited out, unless the token that
            // kept the connection Ready has expired meanwhile.
            let usable = usable_token(&inputs.target, now);
            if usable.is_none()
                && let Some(status) = expired_status(&connection, &target_name, until, now)
            {
                write_status(&connection, &ctx, status).await?;
            }
            ctx.metrics.reconciled(None);
            Ok(requeue_at(usable.map_or(until, |token| token.expires_at.min(until))))
        }
        Err(error) => {
            let (status, retry_at) = failure_status(&connection, &target_name, &inputs, &error, now);
            if matches!(error, Error::Mint(MintError::Zoho(_) | MintError::ThrottledUntil { .. })) {
                let failed = FailureInput {
                    fingerprint: inputs.fingerprint.clone(),
                    generation: connection.metadata.generation,
                };
                ctx.failures.lock().expect("never poisoned").insert(ObjectRef::from_obj(connection.as_ref()), failed);
            }
            warn!(reason = error.reason(), error = %error, "no fresh token");
            write_status(&connection, &ctx, status).await?;
            ctx.metrics.reconciled(Some(error.reason()));
            // Configuration problems wait for the watches to report a change. Either way, wake up
            // when the served token expires, so that Ready turns False on time.
            let retry_at = retry_at.unwrap_or_else(|| now + RECHECK_PERMANENT);
            Ok(requeue_at(usable_token(&inputs.target, now).map_or(retry_at, |token| token.expires_at.min(retry_at))))
        }
    }
}

/// Finds the token the target Secret should hold: the stored one while it is good, else one from
/// the coordinator (shared with other connections, or newly minted).
async fn fresh_token(
    connection: &ZohoConnection,
    ctx: &Context,
    secrets: &Api<Secret>,
    inputs: &mut Inputs,
    now: Timestamp,
) -> Result<Fresh, Error> {
    if let Target::Foreign { owner } = &inputs.target {
        let owner = owner.clone().unwrap_or_else(|| "no controller".to_string());
        return Err(Error::TargetSecretNotOwned { name: connection.target_secret_name(), owner });
    }
    let spec = &connection.spec;
    let refresh_before = spec
        .refresh_before
        .as_deref()
        .map(schedule::parse_go_duration)
        .transpose()
        .map_err(Error::InvalidRefreshBefore)?;
    let accounts = match &spec.accounts_url {
        Some(url) => AccountsUrl::parse(url).map_err(Error::AccountsUrl)?,
        None => AccountsUrl::of(spec.data_center),
    };
    // Checked before the credentials are even read: they must never travel to a host not allowed.
    ctx.coordinator.accounts_client().allow_list().check(&accounts).map_err(Error::AccountsUrl)?;
    let credentials_secret = secrets.get_opt(&spec.credentials.secret_ref.name).await?;
    let credentials = credentials::from_secret(&spec.credentials, credentials_secret.as_ref())?;
    let fingerprint = mint::fingerprint(&accounts, &credentials);
    inputs.fingerprint = Some(fingerprint.clone());
    let refresh_at = |token: &IssuedToken| schedule::refresh_at(token.issued_at, token.expires_at, refresh_before);
    let api_domain =
        |token: &IssuedToken| token.api_domain.clone().unwrap_or_else(|| spec.data_center.api_domain().to_string());

    if let Target::Owned { token: Some(stored), fingerprint: Some(stored_fingerprint) } = &inputs.target
        && *stored_fingerprint == fingerprint
        && now < refresh_at(stored)
    {
        ctx.coordinator.remember(&fingerprint, stored).await;
        return Ok(Fresh {
            token: stored.clone(),
            api_domain: api_domain(stored),
            fingerprint,
            refresh_at: refresh_at(stored),
        });
    }

    if let Some(retry_at) = pending_retry(connection, ctx, &fingerprint, now) {
        // While the refresh waits out its backoff, a target that lost its token gets back the
        // one held in memory, as long as it is still valid.
        if usable_token(&inputs.target, now).is_none()
            && let Some(token) = ctx.coordinator.latest(&fingerprint).await
            && schedule::is_usable(token.expires_at, now)
        {
            return Ok(Fresh { api_domain: api_domain(&token), refresh_at: retry_at, fingerprint, token });
        }
        return Err(Error::BackoffPending { until: retry_at });
    }
    let obtained =
        ctx.coordinator.obtain(&accounts, &credentials, &fingerprint, |token| now < refresh_at(token)).await?;
    if obtained.minted {
        info!(expires_at = %secret::format_time(obtained.token.expires_at), "minted a new access token");
    } else {
        debug!("reusing the token already minted for this credential");
    }
    let token = obtained.token;
    Ok(Fresh { api_domain: api_domain(&token), refresh_at: refresh_at(&token), fingerprint, token })
}

/// The retry time of the last failure, if the operator must still wait for it. A change to the
/// spec or the credentials ends the wait. After a restart, with nothing remembered, short waits
/// (transient errors, throttling) are honoured so that restarts cannot hammer Zoho, while a long
/// wait for a permanent error is re-evaluated once, since its cause may have been fixed meanwhile.
fn pending_retry(connection: &ZohoConnection, ctx: &Context, fingerprint: &str, now: Timestamp) -> Option<Timestamp> {
    let status = connection.status.as_ref().filter(|s| s.failed_attempts > 0)?;
    let retry_at = status.next_refresh_time.as_ref()?.0;
    if retry_at <= now {
        return None;
    }
    let current =
        FailureInput { fingerprint: Some(fingerprint.to_string()), generation: connection.metadata.generation };
    match ctx.failures.lock().expect("never poisoned").get(&ObjectRef::from_obj(connection)) {
        Some(failed) => (*failed == current).then_some(retry_at),
        None => {
            let short_wait = retry_at.duration_since(now)
                <= SignedDuration::try_from(schedule::retry_delay(FailureClass::Throttled, 1, 1.0)).ok()?;
            (short_wait && status.observed_generation == connection.metadata.generation).then_some(retry_at)
        }
    }
}

fn uid(connection: &ZohoConnection) -> String {
    connection.uid().unwrap_or_default()
}

/// Measured from the current time, not the reconcile's start: a timer set from an earlier instant
/// fires before `at`, when the token is not yet due.
fn requeue_at(at: Timestamp) -> Action {
    let wait = at.duration_since(Timestamp::now()).max(SignedDuration::from_secs(1));
    Action::requeue(Duration::try_from(wait).unwrap_or(RECHECK_PERMANENT))
}

fn time(at: Timestamp) -> Time {
    Time(at.round(jiff::Unit::Second).expect("rounding to seconds cannot overflow"))
}

fn success_status(
    connection: &ZohoConnection,
    target_name: &str,
    fresh: &Fresh,
    now: Timestamp,
) -> ZohoConnectionStatus {
    let message = format!(
        "Secret {target_name} holds a token valid until {}; the next one will be minted at {}",
        secret::format_time(fresh.token.expires_at),
        secret::format_time(fresh.refresh_at)
    );
    ZohoConnectionStatus {
        conditions: vec![ready_condition(connection, true, "TokenIssued", message, now)],
        observed_generation: connection.metadata.generation,
        secret_name: Some(target_name.to_string()),
        api_domain: Some(fresh.api_domain.clone()),
        expires_at: Some(time(fresh.token.expires_at)),
        last_refresh_time: Some(time(fresh.token.issued_at)),
        next_refresh_time: Some(time(fresh.refresh_at)),
        failed_attempts: 0,
        last_failure_time: None,
    }
}

/// The status after a failure, and when to try again (`None`: when the input changes). A token
/// still in the Secret stays there and keeps the connection Ready through transient trouble;
/// permanent problems make it not Ready, because the token cannot be renewed until someone acts.
///
/// Only requests to Zoho count as attempts. Everything else in the status depends on the inputs
/// alone, so that reconciling the same problem again writes nothing, and the status write does not
/// set off another reconcile.
fn failure_status(
    connection: &ZohoConnection,
    target_name: &str,
    inputs: &Inputs,
    error: &Error,
    now: Timestamp,
) -> (ZohoConnectionStatus, Option<Timestamp>) {
    let previous = connection.status.clone().unwrap_or_default();
    let stored = usable_token(&inputs.target, now);
    let (failed_attempts, last_failure_time, retry_at) = match error {
        // Waiting for budget is a delay, not a failed attempt.
        Error::Mint(MintError::BudgetExhausted { until, .. }) => {
            (previous.failed_attempts, previous.last_failure_time.clone(), Some(*until))
        }
        Error::Mint(mint_error) => {
            let attempts = previous.failed_attempts.saturating_add(1);
            let retry_at = mint_error.retry_not_before().unwrap_or_else(|| {
                let attempts = attempts.unsigned_abs();
                let jitter = schedule::stable_jitter(&uid(connection), attempts);
                now + schedule::retry_delay(error.class(), attempts, jitter)
            });
            (attempts, Some(time(now)), Some(retry_at))
        }
        _ => (previous.failed_attempts, previous.last_failure_time.clone(), None),
    };
    let ready = stored.is_some() && error.class() != FailureClass::Permanent;
    let mut message = error.to_string();
    if let Some(retry_at) = retry_at {
        message += &format!("; next attempt at {}", secret::format_time(retry_at));
    }
    if let Some(token) = stored {
        message += &format!(
            ". Secret {target_name} keeps its current token, valid until {}",
            secret::format_time(token.expires_at)
        );
    }
    let status = ZohoConnectionStatus {
        conditions: vec![ready_condition(connection, ready, error.reason(), message, now)],
        observed_generation: connection.metadata.generation,
        secret_name: matches!(inputs.target, Target::Owned { .. }).then(|| target_name.to_string()),
        api_domain: stored.and(previous.api_domain),
        expires_at: stored.map(|t| time(t.expires_at)),
        last_refresh_time: stored.map(|t| time(t.issued_at)),
        next_refresh_time: retry_at.map(time),
        failed_attempts,
        last_failure_time,
    };
    (status, retry_at)
}

/// The token the target Secret holds, if it can still be used.
fn usable_token(target: &Target, now: Timestamp) -> Option<&IssuedToken> {
    match target {
        Target::Owned { token: Some(token), .. } if schedule::is_usable(token.expires_at, now) => Some(token),
        _ => None,
    }
}

/// The status once the token served through a failure has expired: no longer Ready, for the same
/// reason. `None` if the connection is not Ready anyway.
fn expired_status(
    connection: &ZohoConnection,
    target_name: &str,
    retry_at: Timestamp,
    now: Timestamp,
) -> Option<ZohoConnectionStatus> {
    let previous = connection.ready_condition().filter(|c| c.status == "True")?;
    let status = connection.status.clone()?;
    let expired_at =
        status.expires_at.as_ref().map_or_else(|| "an earlier time".to_string(), |t| secret::format_time(t.0));
    let message = format!(
        "the token in Secret {target_name} expired at {expired_at}; it could not be renewed ({}), next attempt at {}",
        previous.reason,
        secret::format_time(retry_at)
    );
    let ready = ready_condition(connection, false, &previous.reason, message, now);
    Some(ZohoConnectionStatus { conditions: vec![ready], ..status })
}

fn ready_condition(
    connection: &ZohoConnection,
    ready: bool,
    reason: &str,
    message: String,
    now: Timestamp,
) -> Condition {
    let status = if ready { "True" } else { "False" }.to_string();
    let last_transition_time = match connection.ready_condition() {
        Some(previous) if previous.status == status => previous.last_transition_time.clone(),
        _ => time(now),
    };
    Condition {
        type_: READY_CONDITION.to_string(),
        status,
        reason: reason.to_string(),
        message,
        observed_generation: connection.metadata.generation,
        last_transition_time,
    }
}

/// Applies the status if it changed, and records an event when readiness or its reason changed.
async fn write_status(connection: &ZohoConnection, ctx: &Context, status: ZohoConnectionStatus) -> Result<(), Error> {
    let labels =
        ConnectionLabels { namespace: connection.namespace().unwrap_or_default(), name: connection.name_any() };
    let ready = status.conditions.iter().any(|c| c.type_ == READY_CONDITION && c.status == "True");
    ctx.metrics.set_connection(
        &labels,
        ready,
        status.expires_at.as_ref().map(|t| t.0),
        status.next_refresh_time.as_ref().map(|t| t.0),
    );
    if connection.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<ZohoConnection> = Api::namespaced(ctx.client.clone(), &labels.namespace);
    let patch = json!({
        "apiVersion": ZohoConnection::api_version(&()),
        "kind": ZohoConnection::kind(&()),
        "status": status,
    });
    api.patch_status(&labels.name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await?;

    let new = &status.conditions[0];
    let changed = connection.ready_condition().is_none_or(|old| old.status != new.status || old.reason != new.reason);
    if changed {
        let event = Event {
            type_: if ready { EventType::Normal } else { EventType::Warning },
            reason: new.reason.clone(),
            note: Some(new.message.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(err) = ctx.recorder.publish(&event, &connection.object_ref(&())).await {
            warn!(error = %err, "could not record an event");
        }
    }
    Ok(())
}

/// Kubernetes API errors end up here; Zoho's are handled inside reconcile, where the status can
/// tell the user about them.
fn error_policy(connection: Arc<ZohoConnection>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = ObjectRef::from_obj(connection.as_ref());
    let attempts = {
        let mut api_errors = ctx.api_errors.lock().expect("never poisoned");
        let attempts = api_errors.entry(key).or_insert(0);
        *attempts += 1;
        *attempts
    };
    ctx.metrics.reconciled(Some(error.reason()));
    warn!(error = %error, attempts, "reconcile failed");
    Action::requeue(schedule::api_retry_delay(attempts, rand::random()))
}

/// Backoff for the watches. kube's default follows client-go (up to 30 s, reset after 2 minutes
/// without errors), which after an API server or etcd restart can delay noticing changes by a
/// minute; the watches here are few and cheap, so they retry sooner.
#[derive(Default)]
struct WatchBackoff {
    failed_attempts: u32,
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.failed_attempts = self.failed_attempts.saturating_add(1);
        Some(schedule::api_retry_delay(self.failed_attempts, rand::random()))
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.failed_attempts = 0;
    }
}

/// Runs the controller for one namespace (or all, with `None`) until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (connections, secrets): (Api<ZohoConnection>, Api<PartialObjectMeta<Secret>>) = match &namespace {
        Some(ns) => (Api::namespaced(ctx.client.clone(), ns), Api::namespaced(ctx.client.clone(), ns)),
        None => (Api::all(ctx.client.clone()), Api::all(ctx.client.clone())),
    };
    let controller = Controller::new(connections, WatcherConfig::default());
    let store = controller.store();
    let pruner = tokio::spawn(forget_deleted_connections(ctx.clone(), namespace, store.clone()));
    let lookup = store;
    controller
        // A Secret event concerns the connections that read it as credentials or write it as target.
        .watches(secrets, WatcherConfig::default(), move |changed: PartialObjectMeta<Secret>| {
            let (namespace, name) = (changed.namespace(), changed.name_any());
            lookup
                .state()
                .into_iter()
                .filter(|zc| zc.namespace() == namespace)
                .filter(|zc| zc.spec.credentials.secret_ref.name == name || zc.target_secret_name() == name)
                .map(|zc| ObjectRef::from_obj(zc.as_ref()))
                .collect::<Vec<_>>()
        })
        .with_config(ControllerConfig::default().concurrency(16))
        .trigger_backoff(ResetTimerBackoff::new(WatchBackoff::default(), Duration::from_secs(30)))
        .graceful_shutdown_on(shutdown)
        .run(
            |connection, ctx: Arc<Context>| async move {
                let key = ObjectRef::from_obj(connection.as_ref());
                let started = std::time::Instant::now();
                let result = reconcile(connection, ctx.clone()).await;
                ctx.metrics.observe_reconcile(started.elapsed());
                if result.is_ok() {
                    ctx.api_errors.lock().expect("never poisoned").remove(&key);
                }
                result
            },
            error_policy,
            ctx,
        )
        .for_each(|result| {
            if let Err(err) = result {
                debug!(error = %err, "controller event");
            }
            futures::future::ready(())
        })
        .await;
    pruner.abort();
}

/// Drops what the process keeps about connections that no longer exist: metric series, failure
/// memos, error counts. ZohoConnections have no finalizer (the ownerReference cleans up their
/// Secret), so nothing else observes their deletion. Each controller looks after its own namespace.
async fn forget_deleted_connections(ctx: Arc<Context>, namespace: Option<String>, store: Store<ZohoConnection>) {
    // Store::wait_until_ready wakes only the last task that polled it, and the controller polls it
    // too; a waiter of our own would sleep forever, so it asks again every second.
    loop {
        match tokio::time::timeout(Duration::from_secs(1), store.wait_until_ready()).await {
            Ok(Ok(())) => break,
            Ok(Err(_writer_dropped)) => return,
            Err(_not_yet) => {}
        }
    }
    let gone = |object_namespace: Option<&str>, name: &str| {
        let in_scope = namespace.is_none() || namespace.as_deref() == object_namespace;
        in_scope && store.get(&ObjectRef::new(name).within(object_namespace.unwrap_or_default())).is_none()
    };
    loop {
        ctx.metrics.retain_connections(|labels| !gone(Some(&labels.namespace), &labels.name));
        ctx.failures.lock().expect("never poisoned").retain(|key, _| !gone(key.namespace.as_deref(), &key.name));
        ctx.api_errors.lock().expect("never poisoned").retain(|key, _| !gone(key.namespace.as_deref(), &key.name));
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
}
