//! Entry points for the fuzz targets under `fuzz/`, which build against this crate from outside
//! and cannot reach the private parsers. Not an API: nothing here is stable, and the operator
//! itself never calls it.

use jiff::Timestamp;

use crate::zoho::{CodeExchange, DevicePoll, IssuedToken, ZohoError, response};

/// Zoho's answer to a refresh, as the operator reads it.
pub fn parse_refresh(status: u16, body: &[u8], requested_at: Timestamp) -> Result<IssuedToken, ZohoError> {
    response::parse(status, body, requested_at)
}

/// Zoho's answer to a grant-code exchange, as `bootstrap` reads it.
pub fn parse_code_exchange(status: u16, body: &[u8], requested_at: Timestamp) -> Result<CodeExchange, ZohoError> {
    response::parse_code_exchange(status, body, requested_at)
}

/// Zoho's answer to a device-flow poll, as `bootstrap device` reads it.
pub fn parse_device_poll(status: u16, body: &[u8], requested_at: Timestamp) -> Result<DevicePoll, ZohoError> {
    response::parse_device_poll(status, body, requested_at)
}
