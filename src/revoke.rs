//! Revoke on delete: with `spec.revokeOnDelete`, a finalizer holds a deleted connection until its
//! access token has been revoked at Zoho, so that no live token outlives it. Never the refresh
//! token, never a token another connection still serves, and never for longer than 30 s.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::{
        controller::Action,
        events::{Event, EventType},
    },
};
use secrecy::ExposeSecret;
use serde_json::json;
use tracing::{info, warn};

use crate::{
    api::{ACCESS_TOKEN_KEY, Connection, MANAGED_BY_LABEL, MANAGED_BY_VALUE, REVOKE_FINALIZER},
    context::Context,
    error::Error,
    schedule,
    targets::Targets,
};

/// How long an unreachable Zoho may hold up a deletion.
const GRACE: Duration = Duration::from_secs(30);
/// How long one revocation request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn has_finalizer<K: Connection>(connection: &K) -> bool {
    connection.finalizers().iter().any(|f| f == REVOKE_FINALIZER)
}

/// Adds the finalizer when `revokeOnDelete` is on, and removes it when it is switched off.
pub async fn sync_finalizer<K: Connection>(connection: &K, ctx: &Context) -> Result<(), Error> {
    let wanted = connection.source().revoke_on_delete;
    if wanted == has_finalizer(connection) {
        return Ok(());
    }
    let mut finalizers: Vec<String> =
        connection.finalizers().iter().filter(|f| *f != REVOKE_FINALIZER).cloned().collect();
    if wanted {
        finalizers.push(REVOKE_FINALIZER.to_string());
    }
    set_finalizers(connection, ctx, finalizers).await
}

/// Sets the finalizers, provided nobody changed the object since it was read.
async fn set_finalizers<K: Connection>(connection: &K, ctx: &Context, finalizers: Vec<String>) -> Result<(), Error> {
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": connection.resource_version()}});
    ctx.api_of(connection).patch(&connection.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

/// What became of a deleted connection's token.
enum Outcome {
    Revoked,
    NothingToRevoke,
    StillServed { by: String },
    Failed(String),
}

/// Handles a connection being deleted: revoke, then let it go.
pub async fn finalize<K: Connection>(connection: &K, ctx: &Context) -> Result<Action, Error> {
    if !has_finalizer(connection) {
        return Ok(Action::await_change());
    }
    let deleted_at = connection.meta().deletion_timestamp.as_ref().map_or_else(Timestamp::now, |t| t.0);
    let deadline = deleted_at + SignedDuration::try_from(GRACE).expect("30 s fits");
    let (type_, reason, note) = match revoke(connection, ctx, deadline).await? {
        Outcome::Revoked => (EventType::Normal, "TokenRevoked", "revoked the access token at Zoho".to_string()),
        Outcome::NothingToRevoke => (EventType::Normal, "TokenRevoked", "no live access token to revoke".to_string()),
        Outcome::StillServed { by } => (
            EventType::Normal,
            "TokenNotRevoked",
            format!("the access token was not revoked: Secret {by} still serves it"),
        ),
        Outcome::Failed(why) if Timestamp::now() < deadline => {
            warn!(error = %why, "could not revoke the access token yet; trying again");
            return Ok(Action::requeue(Duration::from_secs(3)));
        }
        Outcome::Failed(why) => (
            EventType::Warning,
            "TokenRevocationFailed",
            format!(
                "could not revoke the access token within {}s ({why}); it stays valid until it expires",
                GRACE.as_secs()
            ),
        ),
    };
    info!(reason, "{note}");
    let event = Event { type_, reason: reason.into(), note: Some(note), action: "Delete".into(), secondary: None };
    ctx.publish(connection, event).await;
    let finalizers = connection.finalizers().iter().filter(|f| *f != REVOKE_FINALIZER).cloned().collect();
    set_finalizers(connection, ctx, finalizers).await?;
    Ok(Action::await_change())
}

async fn revoke<K: Connection>(connection: &K, ctx: &Context, deadline: Timestamp) -> Result<Outcome, Error> {
    let now = Timestamp::now();
    let targets = Targets::read(connection, ctx).await?;
    let Some(stored) = targets.stored().filter(|stored| schedule::is_usable(stored.token.expires_at, now)) else {
        return Ok(Outcome::NothingToRevoke);
    };
    let token = &stored.token;
    if let Some(by) = served_elsewhere(connection, ctx, token.access_token.expose_secret()).await? {
        return Ok(Outcome::StillServed { by });
    }
    let accounts = match connection.source().accounts() {
        Ok(accounts) => accounts,
        Err(err) => return Ok(Outcome::Failed(err.to_string())),
    };
    let remaining = deadline.duration_since(now).max(SignedDuration::from_secs(1));
    let timeout = Duration::try_from(remaining).unwrap_or(REQUEST_TIMEOUT).min(REQUEST_TIMEOUT);
    let request = ctx.coordinator.accounts_client().revoke(&accounts, &token.access_token);
    Ok(match tokio::time::timeout(timeout, request).await {
        Ok(Ok(())) => {
            if let Some(fingerprint) = &stored.fingerprint {
                ctx.coordinator.forget_token(fingerprint, token);
            }
            Outcome::Revoked
        }
        Ok(Err(err)) => Outcome::Failed(err.to_string()),
        Err(_elapsed) => Outcome::Failed(format!("no answer within {}s", timeout.as_secs())),
    })
}

/// Another connection's Secret that holds the same access token, if any: connections that share
/// a credential share its token, and revoking it would break them.
async fn served_elsewhere<K: Connection>(connection: &K, ctx: &Context, token: &str) -> Result<Option<String>, Error> {
    let uid = connection.uid().unwrap_or_default();
    let managed = ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"));
    for namespace in &ctx.scope.namespaces {
        let secrets: Api<Secret> = match namespace {
            Some(namespace) => Api::namespaced(ctx.client.clone(), namespace),
            None => Api::all(ctx.client.clone()),
        };
        for secret in secrets.list(&managed).await?.items {
            let ours = secret.owner_references().iter().any(|owner| owner.uid == uid);
            let holds_token = secret.data.as_ref().is_some_and(|data| {
                [ACCESS_TOKEN_KEY.to_string(), format!(".{ACCESS_TOKEN_KEY}")]
                    .iter()
                    .any(|key| data.get(key).is_some_and(|value| value.0 == token.as_bytes()))
            });
            if !ours && holds_token {
                return Ok(Some(format!("{}/{}", secret.namespace().unwrap_or_default(), secret.name_any())));
            }
        }
    }
    Ok(None)
}
