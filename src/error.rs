//! The two ways a reconcile can fall short. A [`Problem`] keeps a connection from a fresh token and
//! is reported in its status; an [`Error`] is a failed Kubernetes API call, which `error_policy`
//! retries. Waiting out a backoff or a budget is neither: it is a decision.

use crate::{
    mint::Deferral,
    zoho::{FailureClass, ZohoError},
};

/// A failed Kubernetes API request. Nothing is known about the connection's token until it succeeds.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
}

impl Error {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Kube(_) => "KubernetesApiError",
        }
    }
}

/// Why a connection has no fresh token, as its status tells a person.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Problem {
    #[error("credentials Secret {name:?} does not exist in namespace {namespace:?}")]
    CredentialsSecretNotFound { namespace: String, name: String },

    #[error("credentials Secret {name:?} has neither key {key:?} nor a grant code under {grant_code_key:?}")]
    CredentialsKeyMissing { name: String, key: String, grant_code_key: String },

    #[error("credentials Secret {name:?}: the value of key {key:?} {problem}")]
    InvalidCredentialsSecret { name: String, key: String, problem: &'static str },

    #[error(
        "credentials Secret {name:?} holds a grant code, but this operator does not exchange grant codes \
         (--grant-code-bootstrap=false); exchange it with `zoho-token-operator bootstrap grant-code` and store the refresh token instead"
    )]
    GrantCodeBootstrapDisabled { name: String },

    #[error("spec.refreshBefore: {0}")]
    InvalidRefreshBefore(String),

    #[error(
        "Secret {name:?} already exists in namespace {namespace:?} and is not controlled by this connection ({owner}); the operator leaves it untouched"
    )]
    TargetSecretNotOwned { namespace: String, name: String, owner: String },

    #[error(
        "Secret {name:?} already exists in namespaces {namespaces} and is not controlled by this connection; the operator leaves them untouched"
    )]
    TargetSecretsNotOwned { name: String, namespaces: String },

    #[error(
        "no namespace is selected: no existing namespace matches spec.target.namespaceSelector or spec.target.namespaces"
    )]
    NoNamespaceSelected,

    #[error("spec.target.template.data[{key:?}]: {detail}")]
    InvalidTemplate { key: String, detail: String },

    #[error(
        "Secret {name:?} has type {existing:?} but spec.target.type asks for {wanted:?}; Kubernetes cannot change the type of a Secret: delete it, and the operator recreates it with the same token"
    )]
    TargetSecretTypeChanged { name: String, existing: String, wanted: String },

    #[error("the API server rejected Secret {name:?}: {message}")]
    TargetSecretRejected { name: String, message: String },

    /// Zoho refused, failed, or is not allowed to be asked.
    #[error(transparent)]
    Zoho(#[from] ZohoError),

    /// Zoho is not asked now because of what the process knows about the credential.
    #[error(transparent)]
    Deferred(#[from] Deferral),
}

impl Problem {
    pub fn class(&self) -> FailureClass {
        match self {
            Self::Zoho(err) => err.class(),
            Self::Deferred(deferral) => deferral.class(),
            _ => FailureClass::Permanent,
        }
    }

    /// A stable CamelCase reason for conditions, events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::CredentialsSecretNotFound { .. } => "CredentialsSecretNotFound",
            Self::CredentialsKeyMissing { .. } => "CredentialsKeyMissing",
            Self::InvalidCredentialsSecret { .. } => "InvalidCredentialsSecret",
            Self::GrantCodeBootstrapDisabled { .. } => "GrantCodeBootstrapDisabled",
            Self::InvalidRefreshBefore(_) => "InvalidRefreshBefore",
            Self::TargetSecretNotOwned { .. } | Self::TargetSecretsNotOwned { .. } => "TargetSecretNotOwned",
            Self::NoNamespaceSelected => "NoNamespaceSelected",
            Self::InvalidTemplate { .. } => "InvalidTemplate",
            Self::TargetSecretTypeChanged { .. } => "TargetSecretTypeChanged",
            Self::TargetSecretRejected { .. } => "TargetSecretRejected",
            Self::Zoho(err) => err.reason(),
            Self::Deferred(deferral) => deferral.reason(),
        }
    }

    /// Whether the problem came from a request Zoho answered (or failed to answer), as opposed to
    /// something the operator found before asking. Only those count as failed attempts.
    pub fn is_failed_request(&self) -> bool {
        matches!(self, Self::Zoho(err) if !matches!(err, ZohoError::InvalidAccountsUrl { .. } | ZohoError::AccountsUrlNotAllowed { .. }))
    }
}
