//! A client for Zoho's accounts server. It knows nothing of Kubernetes: it turns credentials into
//! an access token, or into an error that says whether trying again can help. It also makes the
//! refresh token in the first place (a grant-code exchange, or the device flow) and revokes tokens.
//!
//! The device flow ("limited input devices") follows Zoho's pages
//! `accounts/protocol/oauth/devices/initiation-request.html`, `.../devices/polling-request.html`
//! and `.../multi-dc/client-authorization/limited-input-devices.html`. They confirm the endpoints
//! (`/oauth/v3/device/code`, `/oauth/v3/device/token`), the parameters, the answer's fields
//! (`user_code`, `device_code`, `verification_url`, `interval`, `expires_in`), a user code valid
//! for 5 minutes, the feedback codes (`authorization_pending`, `slow_down` for two polls within
//! 30 s, `other_dc` with `user_location` such as `"eu"`, `access_denied`, `expired`), and a
//! refresh token only with `access_type=offline`. Not confirmed, and handled both ways where it
//! matters: the unit of `interval` and `expires_in` (milliseconds on Zoho's older page, none named
//! on the current one), the HTTP status of the feedback, whether the endpoints take a form body
//! (the pages show query parameters; community clients send a body, which keeps secrets out of
//! access logs), whether `other_dc` also names the accounts server (read as `accounts-server`
//! when present), and whether a Self Client may use the flow.

mod client;
mod datacenter;
mod error;
pub(crate) mod response;

pub use client::{AccountsClient, AccountsUrl, AllowList, Credentials, GrantCode};
pub use datacenter::DataCenter;
pub use error::{FailureClass, ZohoError};
pub use response::{CodeExchange, DeviceAuthorization, DevicePoll, IssuedToken};
