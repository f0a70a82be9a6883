//! Stratus: a serverless host for WebAssembly components.
//!
//! # Layout
//!
//! A trigger call flows through the modules in this order:
//!
//! - [`server`] accepts the connection and parses the address (`/fn/…` or a
//!   function host name);
//! - [`registry`] resolves account, function and version from an in-memory
//!   snapshot of the sled database;
//! - [`tenancy`] establishes the caller (account key, or anonymous) and the
//!   sub-tenant, and decides what the caller may see;
//! - [`credentials`] holds the keys that prove who a caller is;
//! - [`runtime`] runs the call in a fresh wasmtime store from a
//!   pre-instantiated component, under a deadline and memory limit.
//!
//! [`cli`] is the `stratus` command, a thin client of the admin API except for
//! `serve` and `up`.

pub mod cli;
pub mod client;
pub mod config;
pub mod credentials;
pub mod error;
pub use stratus_wire::names;
pub mod registry;
pub mod runtime;
pub mod server;
pub mod tenancy;
