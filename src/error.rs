use crate::{
    mint::MintError,
    zoho::{FailureClass, ZohoError},
};

/// Everything that can stop a connection from having a fresh token.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("credentials Secret {name:?} does not exist in this namespace")]
    CredentialsSecretNotFound { name: String },

    #[error("credentials Secret {name:?} has no key {key:?}")]
    CredentialsKeyMissing { name: String, key: String },

    #[error("credentials Secret {name:?}: the value of key {key:?} {problem}")]
    InvalidCredentialsSecret { name: String, key: String, problem: &'static str },

    #[error("spec.refreshBefore: {0}")]
    InvalidRefreshBefore(String),

    #[error(
        "Secret {name:?} already exists and is not controlled by this ZohoConnection ({owner}); the operator leaves it untouched"
    )]
    TargetSecretNotOwned { name: String, owner: String },

    /// The accounts URL is malformed or not allowed; nothing was sent.
    #[error(transparent)]
    AccountsUrl(ZohoError),

    /// A token request failed or was held back.
    #[error(transparent)]
    Mint(#[from] MintError),

    #[error("waiting until {until} before trying again")]
    BackoffPending { until: jiff::Timestamp },

    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
}

impl Error {
    pub fn class(&self) -> FailureClass {
        match self {
            Self::CredentialsSecretNotFound { .. }
            | Self::CredentialsKeyMissing { .. }
            | Self::InvalidCredentialsSecret { .. }
            | Self::InvalidRefreshBefore(_)
            | Self::TargetSecretNotOwned { .. }
            | Self::AccountsUrl(_) => FailureClass::Permanent,
            Self::Mint(err) => err.class(),
            Self::Kube(_) | Self::BackoffPending { .. } => FailureClass::Transient,
        }
    }

    /// A stable CamelCase reason for conditions, events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::CredentialsSecretNotFound { .. } => "CredentialsSecretNotFound",
            Self::CredentialsKeyMissing { .. } => "CredentialsKeyMissing",
            Self::InvalidCredentialsSecret { .. } => "InvalidCredentialsSecret",
            Self::InvalidRefreshBefore(_) => "InvalidRefreshBefore",
            Self::TargetSecretNotOwned { .. } => "TargetSecretNotOwned",
            Self::AccountsUrl(err) => err.reason(),
            Self::Mint(err) => err.reason(),
            Self::BackoffPending { .. } => "BackoffPending",
            Self::Kube(_) => "KubernetesApiError",
        }
    }
}
