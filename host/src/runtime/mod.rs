//! The runtime: one wasmtime engine, compiled components cached on disk, and
//! a fresh store and instance for every invocation (or a warm one of its own
//! partition). The files follow a call: `engine.rs` sets up the engine and
//! pool, `code.rs` loads compiled components, `admission.rs` picks the
//! environment, `invoke.rs` runs the call, `failure.rs` says how it failed,
//! and `live.rs` keeps the calls running now.

mod admission;
pub mod bindings;
pub mod body;
mod call;
mod code;
mod code_cache;
pub mod compile;
mod cores;
pub mod credentials;
pub mod egress;
mod engine;
mod failure;
mod invoke;
pub mod kv;
mod live;
pub mod loopback;
pub mod output;
pub mod reserve;
pub mod state;
pub mod validate;
pub mod warm;

pub use call::CallContext;
pub use code_cache::SharedCode;
pub use engine::{Runtime, RuntimeConfig};
pub use loopback::Loopback;
pub use state::HostState;
