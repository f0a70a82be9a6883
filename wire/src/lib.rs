//! What crosses Stratus's trust boundaries, parsed once: names, trigger
//! addresses, admin request bodies and version settings, and the checks a
//! token passes. Nothing here runs guest code or touches storage, so each
//! parser can be fuzzed on its own (`fuzz/`).

pub mod address;
pub mod admin;
pub mod config;
pub mod names;
pub mod tokens;
