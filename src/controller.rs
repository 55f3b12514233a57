//! The reconciler, the same for both kinds: read the credentials and the target Secrets, let the
//! policy decide, act on the decision, and write the status.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DynamicObject, PartialObjectMeta, Patch, PatchParams},
    runtime::{
        controller::Action,
        events::{Event, EventType, Recorder},
        reflector::{ObjectRef, Store},
    },
};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::{
    api::{Connection, ConnectionStatus, FIELD_MANAGER, REFRESH_REQUESTED_AT_ANNOTATION},
    cache::SecretCache,
    credentials::{self, Credential},
    error::{Error, Problem},
    metrics::{ConnectionLabels, Metrics},
    mint::{Exchanged, MintCoordinator, MintFailure},
    policy::{self, Decision, Facts, Why},
    revoke,
    schedule::{self, PERMANENT_RECHECK},
    shard::Shard,
    status::{self, Report},
    targets::{Targets, Written},
    template,
    watch::{SecretReaders, WatchErrorLog},
    zoho::{AccountsUrl, Credentials, IssuedToken},
};

/// How often a ClusterZohoConnection looks again at namespaces where its Secret's name is taken.
const CONFLICT_RECHECK: Duration = Duration::from_secs(60);

/// Where the operator works, and what it may do there.
#[derive(Clone, Debug)]
pub struct Scope {
    /// The namespaces the operator watches; `[None]` for all.
    pub namespaces: Vec<Option<String>>,
    /// Where the credentials of ClusterZohoConnections live.
    pub cluster_resource_namespace: String,
    /// Whether a grant code in a credentials Secret is exchanged and the Secret rewritten.
    pub grant_code_bootstrap: bool,
    /// How many connections are reconciled at once.
    pub concurrency: u16,
    /// The connections this process serves.
    pub shard: Shard,
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub coordinator: MintCoordinator,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub scope: Scope,
    /// Every namespace, for the selectors of ClusterZohoConnections; `None` unless the operator
    /// watches all namespaces.
    pub namespaces: Option<Store<PartialObjectMeta<Namespace>>>,
    /// The Secrets of each watched scope (a namespace, or `None` for all), as far as the watches
    /// know them.
    pub secrets: Vec<(Option<String>, SecretCache)>,
    /// Which connections read which Secrets.
    pub readers: SecretReaders,
    pub watch_errors: WatchErrorLog,
    /// Consecutive Kubernetes API errors per connection, for error_policy's backoff.
    api_errors: Mutex<HashMap<ObjectRef<DynamicObject>, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        coordinator: MintCoordinator,
        metrics: Arc<Metrics>,
        recorder: Recorder,
        scope: Scope,
        namespaces: Option<Store<PartialObjectMeta<Namespace>>>,
        secrets: Vec<(Option<String>, SecretCache)>,
    ) -> Self {
        Self {
            client,
            coordinator,
            metrics,
            recorder,
            scope,
            namespaces,
            secrets,
            readers: SecretReaders::default(),
            watch_errors: WatchErrorLog::default(),
            api_errors: Mutex::default(),
        }
    }

    /// The Secrets of `namespace` as the watches know them, once they have listed them.
    pub fn secrets_in(&self, namespace: &str) -> Option<&SecretCache> {
        let (_, cache) = self.secrets.iter().find(|(scope, _)| scope.as_deref().is_none_or(|s| s == namespace))?;
        cache.is_ready().then_some(cache)
    }

    /// Forgets the API error count of connections for which `exists` is false.
    pub fn retain_api_errors(&self, exists: impl Fn(&ObjectRef<DynamicObject>) -> bool) {
        self.api_errors.lock().expect("never poisoned").retain(|key, _| exists(key));
    }
}

/// Credentials that can be sent, where to, and what follows from them.
#[derive(Clone)]
struct Usable {
    accounts: AccountsUrl,
    credential: Credential,
    fingerprint: String,
    refresh_before: Option<Duration>,
    /// Where the credentials Secret is, and its resourceVersion: a grant code's refresh token is
    /// written back only into the Secret the code was read from.
    secret_namespace: String,
    secret_version: String,
}

/// Everything a reconcile reads before deciding.
struct Inputs {
    targets: Targets,
    usable: Result<Usable, Problem>,
}

/// What a reconcile ends with.
struct Outcome {
    status: ConnectionStatus,
    written: Vec<String>,
    next: Timestamp,
    /// The reason the connection has no fresh token, for the metrics.
    failure: Option<&'static str>,
}

pub async fn reconcile<K: Connection>(connection: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let connection = connection.as_ref();
    if !K::NAMESPACED && !namespaces_known(&ctx) {
        // An empty list of namespaces would look like "select none" and remove every Secret.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let mut inputs = read(connection, &ctx).await?;
    // Another shard's connection: a change of its credentials (which the readers index reports)
    // or of itself may make it this shard's.
    let key = match &inputs.usable {
        Ok(usable) => usable.fingerprint.clone(),
        Err(_) => connection.uid().unwrap_or_default(),
    };
    if !ctx.scope.shard.serves(&key) {
        ctx.metrics.forget_connection(&ConnectionLabels {
            namespace: connection.namespace().unwrap_or_default(),
            name: connection.name_any(),
        });
        return Ok(Action::await_change());
    }
    if connection.meta().deletion_timestamp.is_some() {
        return revoke::finalize(connection, &ctx).await;
    }
    revoke::sync_finalizer(connection, &ctx).await?;
    let now = Timestamp::now();
    if let Ok(usable) = &inputs.usable
        && let Some(exchanged) = ctx.coordinator.pending_exchange(&usable.fingerprint)
    {
        // A grant code was exchanged, but its refresh token is not in the Secret yet.
        inputs.usable = Ok(write_back(connection, &ctx, usable, exchanged).await?.0);
    }
    let fingerprint = inputs.usable.as_ref().map(|usable| usable.fingerprint.as_str());
    let shared = fingerprint.map(|fp| ctx.coordinator.view(fp)).unwrap_or_default();
    let previous = connection.common_status().cloned().unwrap_or_default();
    let decision = policy::decide(&Facts {
        now,
        generation: connection.meta().generation,
        status: &previous,
        refresh_request: refresh_request(connection),
        refresh_before: inputs.usable.as_ref().ok().and_then(|usable| usable.refresh_before),
        fingerprint,
        stored: inputs.targets.stored(),
        shared: &shared,
        budget: ctx.coordinator.budget(),
    });
    debug!(?decision, "decided");
    let target = describe(&inputs.targets, connection);
    let uid = connection.uid().unwrap_or_default();
    let report = Report {
        now,
        generation: connection.meta().generation,
        previous: &previous,
        fingerprint: fingerprint.ok(),
        target: &target,
        jitter_seed: &uid,
    };
    let mut outcome = act(connection, &ctx, &inputs, decision, &report).await?;
    inputs.targets.prune(&ctx.client).await?;
    if !K::NAMESPACED && inputs.targets.has_conflicts() {
        // Foreign Secrets elsewhere are not watched; look again soon for the names to come free.
        outcome.next = outcome.next.min(now + CONFLICT_RECHECK);
    }
    let failure = outcome.failure;
    write_status(connection, &ctx, outcome.status, outcome.written).await?;
    ctx.metrics.reconciled(failure);
    ctx.api_errors.lock().expect("never poisoned").remove(&ObjectRef::from_obj(connection).erase());
    Ok(requeue_at(outcome.next))
}

fn namespaces_known(ctx: &Context) -> bool {
    use futures::FutureExt;
    ctx.namespaces.as_ref().is_some_and(|store| matches!(store.wait_until_ready().now_or_never(), Some(Ok(()))))
}

/// The two reads: the target Secrets, then, unless something already rules a request out, the
/// credentials.
async fn read<K: Connection>(connection: &K, ctx: &Context) -> Result<Inputs, Error> {
    let targets = Targets::read(connection, ctx).await?;
    let source = &connection.source().credentials;
    let namespace = connection.own_namespace().unwrap_or_else(|| ctx.scope.cluster_resource_namespace.clone());
    // A foreign Secret under the target's name matters too: once it is gone, the name is free.
    let mut read = vec![(namespace.as_str(), source.secret_ref.name.as_str())];
    if K::NAMESPACED && targets.has_conflicts() {
        read.push((namespace.as_str(), targets.name.as_str()));
    }
    ctx.readers.record(connection, &read);
    let usable = match usable_without_credentials(connection, ctx, &targets) {
        Err(problem) => Err(problem),
        Ok((accounts, refresh_before)) => {
            let secret = match ctx.secrets_in(&namespace) {
                Some(cache) => cache.credentials(&ctx.client, &namespace, &source.secret_ref.name).await?,
                None => {
                    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
                    secrets.get_opt(&source.secret_ref.name).await?.map(Arc::new)
                }
            };
            credentials::from_secret(source, &namespace, secret.as_deref())
                .and_then(|credential| match credential {
                    Credential::GrantCode(_) if !ctx.scope.grant_code_bootstrap => {
                        Err(Problem::GrantCodeBootstrapDisabled { name: source.secret_ref.name.clone() })
                    }
                    credential => Ok(credential),
                })
                .map(|credential| Usable {
                    fingerprint: credential.fingerprint(&accounts),
                    accounts,
                    credential,
                    refresh_before,
                    secret_version: secret.and_then(|s| s.metadata.resource_version.clone()).unwrap_or_default(),
                    secret_namespace: namespace.clone(),
                })
        }
    };
    Ok(Inputs { targets, usable })
}

/// Checks everything that needs no credentials, in the order a person would fix it. The accounts
/// URL is checked before the credentials are even read: they must never travel to a host that is
/// not allowed.
fn usable_without_credentials<K: Connection>(
    connection: &K,
    ctx: &Context,
    targets: &Targets,
) -> Result<(AccountsUrl, Option<Duration>), Problem> {
    if let Some(problem) = targets.blocking_problem() {
        return Err(problem);
    }
    let source = connection.source();
    let refresh_before = source
        .refresh_before
        .as_deref()
        .map(schedule::parse_go_duration)
        .transpose()
        .map_err(Problem::InvalidRefreshBefore)?;
    let accounts = match &source.accounts_url {
        Some(url) => AccountsUrl::parse(url)?,
        None => AccountsUrl::of(source.data_center),
    };
    ctx.coordinator.accounts_client().allow_list().check(&accounts)?;
    if let Some(template) = &connection.shape().template {
        template::check(template)?;
    }
    Ok((accounts, refresh_before))
}

fn refresh_request<K: Connection>(connection: &K) -> Option<&str> {
    connection.meta().annotations.as_ref()?.get(REFRESH_REQUESTED_AT_ANNOTATION).map(String::as_str)
}

/// Where the token lives, for messages.
fn describe<K: Connection>(targets: &Targets, connection: &K) -> String {
    match connection.own_namespace() {
        Some(_) => format!("Secret {:?}", targets.name),
        None => format!("Secret {:?} in {} namespace(s)", targets.name, targets.wanted.len()),
    }
}

async fn act<K: Connection>(
    connection: &K,
    ctx: &Context,
    inputs: &Inputs,
    decision: Decision,
    report: &Report<'_>,
) -> Result<Outcome, Error> {
    let usable_token = inputs.targets.usable(report.now).cloned();
    match decision {
        Decision::Serve { token, refresh_at } => {
            let usable = inputs.usable.as_ref().expect("the policy serves only with usable credentials");
            serve(connection, ctx, inputs, usable, report, token, refresh_at, None).await
        }
        Decision::Mint { forced } => {
            let usable = inputs.usable.as_ref().expect("the policy mints only with usable credentials");
            match mint(connection, ctx, usable, forced, report.now).await? {
                Ok((token, exchanged)) => {
                    let usable = exchanged.as_ref().unwrap_or(usable);
                    let refresh_at = schedule::refresh_at(token.issued_at, token.expires_at, usable.refresh_before);
                    let handled = if forced { refresh_request(connection) } else { None };
                    serve(connection, ctx, inputs, usable, report, token, refresh_at, handled).await
                }
                Err(problem) => Ok(failed(report, inputs, &problem, usable_token.as_ref())),
            }
        }
        Decision::Wait { until, why, restore } => {
            let mut written = inputs.targets.owned_namespaces();
            let mut usable = usable_token;
            if let (Some(token), Ok(credentials)) = (restore, &inputs.usable) {
                let token = with_api_domain(token, connection);
                let rendered = render(connection, &token).unwrap_or_default();
                written = write(connection, ctx, inputs, credentials, &token, &rendered).await?.namespaces;
                usable = Some(token);
            }
            match why {
                Why::Recorded => {
                    let next = usable.as_ref().map_or(until, |token| token.expires_at.min(until));
                    let status = report.waiting(usable.as_ref(), until);
                    Ok(Outcome { status, written, next, failure: None })
                }
                Why::Problem(problem) => {
                    if let Problem::Deferred(crate::mint::Deferral::BudgetExhausted { .. }) = problem {
                        ctx.metrics.mint_deferred();
                    }
                    Ok(Outcome { written, ..failed(report, inputs, &problem, usable.as_ref()) })
                }
            }
        }
    }
}

/// A failure status, and a wake-up when the served token expires, so that Ready turns False on time.
fn failed(report: &Report, inputs: &Inputs, problem: &Problem, usable: Option<&IssuedToken>) -> Outcome {
    warn!(reason = problem.reason(), error = %problem, "no fresh token");
    let (status, retry_at) = report.problem(problem, usable);
    let retry_at = retry_at.unwrap_or(report.now + PERMANENT_RECHECK);
    let next = usable.map_or(retry_at, |token| token.expires_at.min(retry_at));
    Outcome { status, written: inputs.targets.owned_namespaces(), next, failure: Some(problem.reason()) }
}

/// Writes `token`, minted with the `usable` credentials, to the targets and reports it.
#[allow(clippy::too_many_arguments)]
async fn serve<K: Connection>(
    connection: &K,
    ctx: &Context,
    inputs: &Inputs,
    usable: &Usable,
    report: &Report<'_>,
    token: IssuedToken,
    refresh_at: Timestamp,
    handled_request: Option<&str>,
) -> Result<Outcome, Error> {
    let token = with_api_domain(token, connection);
    let rendered = match render(connection, &token) {
        Ok(rendered) => rendered,
        Err(problem) => return Ok(failed(report, inputs, &problem, inputs.targets.usable(report.now))),
    };
    let written = write(connection, ctx, inputs, usable, &token, &rendered).await?;
    ctx.coordinator.remember(&usable.fingerprint, &token);
    let mut status = report.served(&token, refresh_at, handled_request);
    let failure = written.problems.first().map(|problem| {
        let detail = format!("{} namespace(s) hold the token", written.namespaces.len());
        warn!(reason = problem.reason(), error = %problem, "token not written everywhere");
        status = status::with_problem(status.clone(), report, problem, &detail);
        problem.reason()
    });
    Ok(Outcome { status, written: written.namespaces, next: refresh_at, failure })
}

async fn write<K: Connection>(
    connection: &K,
    ctx: &Context,
    inputs: &Inputs,
    usable: &Usable,
    token: &IssuedToken,
    rendered: &std::collections::BTreeMap<String, String>,
) -> Result<Written, Error> {
    let owner = connection.controller_owner_ref(&()).expect("a connection read from the API server has a name and uid");
    Ok(inputs.targets.write(&ctx.client, &owner, connection.shape(), token, &usable.fingerprint, rendered).await?)
}

fn render<K: Connection>(
    connection: &K,
    token: &IssuedToken,
) -> Result<std::collections::BTreeMap<String, String>, Problem> {
    match &connection.shape().template {
        Some(template) => template::render(template, &token.into()),
        None => Ok(Default::default()),
    }
}

/// Zoho names the API domain in its answer; older answers may not, and then the data center's is right.
fn with_api_domain<K: Connection>(mut token: IssuedToken, connection: &K) -> IssuedToken {
    token.api_domain.get_or_insert_with(|| connection.source().data_center.api_domain().to_string());
    token
}

/// Asks the coordinator for a new token. A grant code is exchanged and its refresh token written
/// back first; the credentials the token then belongs to come with it.
async fn mint<K: Connection>(
    connection: &K,
    ctx: &Context,
    usable: &Usable,
    forced: bool,
    now: Timestamp,
) -> Result<Result<(IssuedToken, Option<Usable>), Problem>, Error> {
    let problem = |failure| match failure {
        MintFailure::Deferred(deferral) => Problem::Deferred(deferral),
        MintFailure::Zoho(err) => Problem::Zoho(err),
    };
    match &usable.credential {
        Credential::Refresh(credentials) => {
            let still_fresh = |token: &IssuedToken| {
                !forced && now < schedule::refresh_at(token.issued_at, token.expires_at, usable.refresh_before)
            };
            let obtained =
                match ctx.coordinator.obtain(&usable.accounts, credentials, &usable.fingerprint, still_fresh).await {
                    Ok(obtained) => obtained,
                    Err(failure) => return Ok(Err(problem(failure))),
                };
            if obtained.minted {
                info!(expires_at = %schedule::format_time(obtained.token.expires_at), forced, "minted a new access token");
            } else {
                debug!("reusing the token another connection minted for this credential");
            }
            Ok(Ok((obtained.token, None)))
        }
        Credential::GrantCode(grant) => {
            let exchanged = match ctx.coordinator.exchange(&usable.accounts, grant, &usable.fingerprint).await {
                Ok(exchanged) => exchanged,
                Err(failure) => return Ok(Err(problem(failure))),
            };
            let (refreshed, token) = write_back(connection, ctx, usable, exchanged).await?;
            Ok(Ok((token, Some(refreshed))))
        }
    }
}

/// Writes the refresh token a grant code was exchanged for into the credentials Secret, in place
/// of the code. The exchange's access token is served: Zoho minted it already. Until this
/// succeeds, the coordinator holds the exchange, and a failed write is retried from memory.
async fn write_back<K: Connection>(
    connection: &K,
    ctx: &Context,
    usable: &Usable,
    exchanged: Exchanged,
) -> Result<(Usable, IssuedToken), Error> {
    let Exchanged { exchange: exchanged, at: exchanged_at } = exchanged;
    let Credential::GrantCode(grant) = &usable.credential else {
        unreachable!("only a grant code is exchanged");
    };
    let source = &connection.source().credentials;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &usable.secret_namespace);
    credentials::write_back(&secrets, source, &usable.secret_version, &exchanged.refresh_token).await?;
    info!(
        secret = %source.secret_ref.name,
        window_ms = exchanged_at.elapsed().as_millis(),
        "wrote the refresh token a grant code was exchanged for back into the credentials Secret"
    );
    let credential = Credential::Refresh(Credentials {
        client_id: grant.client_id.clone(),
        client_secret: grant.client_secret.clone(),
        refresh_token: exchanged.refresh_token,
    });
    let fingerprint = credential.fingerprint(&usable.accounts);
    ctx.coordinator.written_back(&usable.fingerprint, &fingerprint, &exchanged.token);
    let note = format!(
        "exchanged the grant code in Secret {:?} for a refresh token, stored under key {:?}; the code was removed",
        source.secret_ref.name, source.refresh_token_key
    );
    let event = Event {
        type_: EventType::Normal,
        reason: "GrantCodeExchanged".into(),
        note: Some(note),
        action: "Bootstrap".into(),
        secondary: None,
    };
    publish(ctx, connection, event).await;
    Ok((Usable { credential, fingerprint, ..usable.clone() }, exchanged.token))
}

/// Measured from the current time, not the reconcile's start: a timer set from an earlier instant
/// fires before `at`, when the token is not yet due. Never longer than the hourly recheck.
fn requeue_at(at: Timestamp) -> Action {
    let wait = at
        .duration_since(Timestamp::now())
        .clamp(SignedDuration::from_secs(1), SignedDuration::try_from(PERMANENT_RECHECK).expect("an hour fits"));
    Action::requeue(Duration::try_from(wait).expect("clamped to a positive duration"))
}

/// Applies the status if it changed, and records an event when readiness or its reason changed.
async fn write_status<K: Connection>(
    connection: &K,
    ctx: &Context,
    common: ConnectionStatus,
    written: Vec<String>,
) -> Result<(), Error> {
    let labels =
        ConnectionLabels { namespace: connection.namespace().unwrap_or_default(), name: connection.name_any() };
    let ready = common.is_ready();
    ctx.metrics.set_connection(
        &labels,
        ready,
        common.expires_at.as_ref().map(|t| t.0),
        common.next_refresh_time.as_ref().map(|t| t.0),
    );
    let new = common.ready_condition().cloned();
    let old = connection.common_status().and_then(ConnectionStatus::ready_condition).cloned();
    let status = connection.make_status(common, written);
    if connection.status() == Some(&status) {
        return Ok(());
    }
    let resource = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = match connection.own_namespace() {
        Some(namespace) => Api::namespaced_with(ctx.client.clone(), &namespace, &resource),
        None => Api::all_with(ctx.client.clone(), &resource),
    };
    let patch = json!({ "apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status });
    api.patch_status(&labels.name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await?;

    let Some(new) = new else { return Ok(()) };
    // A new connection's first token is no news: the condition says it, and an event for each of
    // thousands of new connections would be one more write each, all held in the recorder's cache.
    let first_token = old.is_none() && new.status == crate::api::TRUE;
    if !first_token && old.is_none_or(|old| old.status != new.status || old.reason != new.reason) {
        let event = Event {
            type_: if ready { EventType::Normal } else { EventType::Warning },
            reason: new.reason.clone(),
            note: Some(new.message.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        publish(ctx, connection, event).await;
    }
    Ok(())
}

/// Records an event; a failure to do so is logged, not fatal.
pub async fn publish<K: Connection>(ctx: &Context, connection: &K, event: Event) {
    if let Err(err) = ctx.recorder.publish(&event, &connection.object_ref(&())).await {
        warn!(error = %err, "could not record an event");
    }
}

/// Kubernetes API errors end up here; Zoho's are handled inside reconcile, where the status can
/// tell the user about them.
pub fn error_policy<K: Connection>(connection: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = ObjectRef::from_obj(connection.as_ref()).erase();
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
