//! A client for Zoho's accounts server. It knows nothing of Kubernetes: it turns credentials into
//! an access token, or into an error that says whether trying again can help.

mod client;
mod datacenter;
mod error;
mod response;

pub use client::{AccountsClient, AccountsUrl, AllowList, Credentials, GrantCode};
pub use datacenter::DataCenter;
pub use error::{FailureClass, ZohoError};
pub use response::{CodeExchange, DeviceAuthorization, DevicePoll, IssuedToken};
