//! The reconciler, the same for both kinds: read the credentials and the target Secrets, let the
//! policy decide, act on the decision, and write the status.

use std::{sync::Arc, time::Duration};

use jiff::{SignedDuration, Timestamp};
use kube::{
    ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        controller::Action,
        events::{Event, EventType},
    },
};
use serde_json::json;
use tracing::{debug, info, warn};

pub use crate::context::{Context, Scope};
use crate::{
    api::{Connection, ConnectionStatus, FIELD_MANAGER},
    credentials::Credential,
    error::{Error, Problem},
    exchange,
    inputs::{self, Inputs, Usable},
    metrics::ConnectionLabels,
    mint::MintFailure,
    policy::{self, Decision, Facts, Why},
    revoke,
    schedule::{self, PERMANENT_RECHECK},
    status::{self, Report},
    targets::{Targets, Written},
    template,
    zoho::IssuedToken,
};

/// How often a ClusterZohoConnection looks again at namespaces where its Secret's name is taken.
const CONFLICT_RECHECK: Duration = Duration::from_secs(60);

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
    if !K::NAMESPACED && !ctx.namespaces_known() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let mut inputs = inputs::read(connection, &ctx).await?;
    // Another shard's connection: a change of its credentials (which the readers index reports)
    // or of itself may make it this shard's.
    let shard_key = match &inputs.usable {
        Ok(usable) => usable.fingerprint.clone(),
        Err(_) => connection.uid().unwrap_or_default(),
    };
    if !ctx.scope.shard.serves(&shard_key) {
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
        inputs.usable = Ok(exchange::write_back(connection, &ctx, usable, exchanged).await?.0);
    }
    let fingerprint = inputs.usable.as_ref().map(|usable| usable.fingerprint.as_str());
    let shared = fingerprint.map(|fp| ctx.coordinator.view(fp)).unwrap_or_default();
    let previous = connection.common_status().cloned().unwrap_or_default();
    let decision = policy::decide(&Facts {
        now,
        generation: connection.meta().generation,
        status: &previous,
        refresh_request: inputs::refresh_request(connection),
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
    ctx.api_succeeded(connection);
    Ok(requeue_at(outcome.next))
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
                    let handled = if forced { inputs::refresh_request(connection) } else { None };
                    serve(connection, ctx, inputs, usable, report, token, refresh_at, handled).await
                }
                Err(problem) => Ok(failed(report, inputs, &problem, usable_token.as_ref())),
            }
        }
        Decision::Wait { until, why, restore } => {
            let mut written = inputs.targets.owned_namespaces();
            let mut usable = usable_token;
            if let (Some(token), Ok(credentials)) = (restore, &inputs.usable)
                && let Ok((token, restored)) = write(connection, ctx, inputs, credentials, token).await?
            {
                written = restored.namespaces;
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
    let (token, written) = match write(connection, ctx, inputs, usable, token).await? {
        Ok(written) => written,
        Err(problem) => return Ok(failed(report, inputs, &problem, inputs.targets.usable(report.now))),
    };
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

/// Writes `token` to the targets, with the connection's template rendered from it. A template
/// that fails writes nothing.
async fn write<K: Connection>(
    connection: &K,
    ctx: &Context,
    inputs: &Inputs,
    usable: &Usable,
    mut token: IssuedToken,
) -> Result<Result<(IssuedToken, Written), Problem>, Error> {
    // Zoho names the API domain in its answer; older answers may not, and then the data center's is right.
    token.api_domain.get_or_insert_with(|| connection.source().data_center.api_domain().to_string());
    let rendered =
        match connection.shape().template.as_ref().map(|template| template::render(template, &(&token).into())) {
            Some(Err(problem)) => return Ok(Err(problem)),
            Some(Ok(rendered)) => rendered,
            None => Default::default(),
        };
    let owner = connection.controller_owner_ref(&()).expect("a connection read from the API server has a name and uid");
    let written =
        inputs.targets.write(&ctx.client, &owner, connection.shape(), &token, &usable.fingerprint, &rendered).await?;
    Ok(Ok((token, written)))
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
            let (refreshed, token) = exchange::write_back(connection, ctx, usable, exchanged).await?;
            Ok(Ok((token, Some(refreshed))))
        }
    }
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
    let api = ctx.api_of(connection);
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
        ctx.publish(connection, event).await;
    }
    Ok(())
}

/// Kubernetes API errors end up here; Zoho's are handled inside reconcile, where the status can
/// tell the user about them.
pub fn error_policy<K: Connection>(connection: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let attempts = ctx.api_error(connection.as_ref());
    ctx.metrics.reconciled(Some(error.reason()));
    warn!(error = %error, attempts, "reconcile failed");
    Action::requeue(schedule::api_retry_delay(attempts, rand::random()))
}
