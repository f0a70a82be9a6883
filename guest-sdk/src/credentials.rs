//! The current invocation's identity and tokens.
//!
//! ```no_run
//! let me = stratus_sdk::credentials::claims();
//! // For a call to another Stratus function:
//! let token = stratus_sdk::credentials::token();
//! // For an upstream API, which cannot replay it anywhere else:
//! let upstream = stratus_sdk::credentials::token_for("https://api.example.com");
//! # let _ = (me, token, upstream);
//! ```
//!
//! Tokens are signed only when asked for, expire at the invocation's deadline,
//! and die when the invocation ends, even before they expire.

use crate::host;

/// Who and what this invocation is, as the host established it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Claims {
    /// Unique per invocation; the `jti` of its tokens.
    pub invocation_id: String,
    /// The account that owns the function.
    pub owner: String,
    /// The account the call acts for, or `anonymous`.
    pub caller: String,
    /// The caller's sub-tenant, if any.
    pub sub_tenant: Option<String>,
    /// The function's name.
    pub function: String,
    /// The version running.
    pub version: u32,
    /// The alias the call came through, if any.
    pub alias: Option<String>,
    /// What the invocation may do, e.g. `invoke`, `kv:rw`.
    pub scopes: Vec<String>,
    /// The invocation's deadline, Unix seconds.
    pub expires_at: u64,
}

/// The invocation's claims; signs nothing.
pub fn claims() -> Claims {
    host::claims()
}

/// A JWT for Stratus endpoints (`aud` = this host).
pub fn token() -> String {
    host::token()
}

/// A JWT for the upstream `audience` (`aud` = `audience`).
pub fn token_for(audience: &str) -> String {
    host::token_for(audience)
}
