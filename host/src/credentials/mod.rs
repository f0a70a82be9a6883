//! Credentials: account keys, the operator key, and signed tokens.
//!
//! A key is random text shown once; the host keeps only its SHA-256 and looks
//! keys up by that hash, so the hot path does one hash and one map lookup.

pub mod keys;
pub mod mint;
mod signer;
pub mod tokens;
