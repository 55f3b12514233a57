//! What a reconcile reads before deciding: the target Secrets, then, unless something already
//! rules a request out, the credentials. Both come from the watches' caches (src/cache.rs) when
//! those can vouch for them, else from the API server.

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::{
    api::{Connection, REFRESH_REQUESTED_AT_ANNOTATION},
    context::Context,
    credentials::{self, Credential},
    error::{Error, Problem},
    schedule,
    targets::Targets,
    template,
    zoho::AccountsUrl,
};

/// Credentials that can be sent, where to, and what follows from them.
#[derive(Clone)]
pub struct Usable {
    pub accounts: AccountsUrl,
    pub credential: Credential,
    pub fingerprint: String,
    pub refresh_before: Option<Duration>,
    /// Where the credentials Secret is, and its resourceVersion: a grant code's refresh token is
    /// written back only into the Secret the code was read from.
    pub secret_namespace: String,
    pub secret_version: String,
}

/// Everything a reconcile reads before deciding.
pub struct Inputs {
    pub targets: Targets,
    pub usable: Result<Usable, Problem>,
}

/// The two reads: the target Secrets, then, unless something already rules a request out, the
/// credentials.
pub async fn read<K: Connection>(connection: &K, ctx: &Context) -> Result<Inputs, Error> {
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
    let accounts = source.accounts()?;
    ctx.coordinator.accounts_client().allow_list().check(&accounts)?;
    if let Some(template) = &connection.shape().template {
        template::check(template)?;
    }
    Ok((accounts, refresh_before))
}

pub fn refresh_request<K: Connection>(connection: &K) -> Option<&str> {
    connection.meta().annotations.as_ref()?.get(REFRESH_REQUESTED_AT_ANNOTATION).map(String::as_str)
}
