use std::time::Duration;

/// What a failure means for the next attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureClass {
    /// Trying again with the same input cannot succeed; wait for the user to change something.
    Permanent,
    /// Zoho's token-creation throttle: wait out its window before asking again.
    Throttled,
    /// Anything else that may pass by itself: back off and retry.
    Transient,
}

/// Why a token request failed. Messages never carry a credential or a token, and text that came
/// from the accounts server is reduced to a short, sanitized code.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ZohoError {
    #[error("accounts URL {url:?} is not valid: {reason}")]
    InvalidAccountsUrl { url: String, reason: &'static str },

    #[error(
        "accounts server {origin} is not allowed to receive credentials; only Zoho's official \
         accounts servers and --allow-accounts-url entries are"
    )]
    AccountsUrlNotAllowed { origin: String },

    #[error("Zoho rejected the client id or client secret ({code}); check them and the data center")]
    InvalidClient { code: &'static str },

    #[error("Zoho reports the refresh token as revoked or unknown (invalid_code); issue a new one")]
    RefreshTokenRevoked,

    /// `invalid_code` on an authorization_code grant: the same code as a revoked refresh token,
    /// but the remedy differs, and a code can never succeed on a second try.
    #[error(
        "Zoho rejected the grant code (invalid_code): it was already used, has expired, or belongs to \
         another client or data center. Generate a new one (API console, Self Client, Generate Code) \
         and exchange it within its lifetime, about 2 to 3 minutes, once: `zoho-token-operator \
         bootstrap grant-code` does that, and `bootstrap device` needs no code at all"
    )]
    GrantCodeInvalid,

    /// A code exchange that succeeded without a refresh token leaves nothing to keep minting with.
    #[error(
        "Zoho issued an access token but no refresh token: the authorization was made without \
         offline access. Authorize again with access_type=offline and prompt=consent (without \
         prompt=consent, Zoho hands out a refresh token only on a user's first consent)"
    )]
    RefreshTokenNotIssued,

    #[error("Zoho rejected the token request ({code})")]
    Rejected { code: String },

    #[error("Zoho is throttling token creation for this refresh token; waiting out its window")]
    Throttled,

    #[error("accounts server answered HTTP {status}")]
    ServerError { status: u16 },

    #[error("accounts server did not answer within {0:?}")]
    Timeout(Duration),

    #[error("could not reach the accounts server: {0}")]
    Connect(String),

    #[error("accounts server sent an unusable response (HTTP {status}): {reason}")]
    MalformedResponse { status: u16, reason: String },
}

impl ZohoError {
    pub fn class(&self) -> FailureClass {
        match self {
            Self::InvalidAccountsUrl { .. }
            | Self::AccountsUrlNotAllowed { .. }
            | Self::InvalidClient { .. }
            | Self::RefreshTokenRevoked
            | Self::GrantCodeInvalid
            | Self::RefreshTokenNotIssued
            | Self::Rejected { .. } => FailureClass::Permanent,
            Self::Throttled => FailureClass::Throttled,
            Self::ServerError { .. } | Self::Timeout(_) | Self::Connect(_) | Self::MalformedResponse { .. } => {
                FailureClass::Transient
            }
        }
    }

    /// A stable CamelCase reason, used for conditions, events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidAccountsUrl { .. } => "InvalidAccountsUrl",
            Self::AccountsUrlNotAllowed { .. } => "AccountsUrlNotAllowed",
            Self::InvalidClient { .. } => "InvalidClient",
            Self::RefreshTokenRevoked => "RefreshTokenRevoked",
            Self::GrantCodeInvalid => "GrantCodeInvalid",
            Self::RefreshTokenNotIssued => "RefreshTokenNotIssued",
            Self::Rejected { .. } => "TokenRequestRejected",
            Self::Throttled => "Throttled",
            Self::ServerError { .. } => "AccountsServerError",
            Self::Timeout(_) => "AccountsServerTimeout",
            Self::Connect(_) => "AccountsServerUnreachable",
            Self::MalformedResponse { .. } => "MalformedResponse",
        }
    }
}
