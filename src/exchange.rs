//! Grant-code bootstrap: a credentials Secret holding a one-time grant code instead of a refresh
//! token. The code is exchanged once; the refresh token it buys is written back into the Secret,
//! and the exchange's own access token is served.

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api,
    runtime::events::{Event, EventType},
};
use tracing::info;

use crate::{
    api::Connection,
    context::Context,
    credentials::{self, Credential},
    error::Error,
    inputs::Usable,
    mint::Exchanged,
    zoho::{Credentials, IssuedToken},
};

/// Writes the refresh token a grant code was exchanged for into the credentials Secret, in place
/// of the code. The exchange's access token is served: Zoho minted it already. Until this
/// succeeds, the coordinator holds the exchange, and a failed write is retried from memory.
pub async fn write_back<K: Connection>(
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
    ctx.publish(connection, event).await;
    Ok((Usable { credential, fingerprint, ..usable.clone() }, exchanged.token))
}
