//! The host-independent core. Nothing in here may depend on proxy-wasm: every type is
//! plain data so the rules can be tested with `cargo test` on the build machine.

pub mod baggage;
pub mod config;
pub mod headers;
pub mod ids;
pub mod jsonrpc;
pub mod meta_splice;
pub mod session;
pub mod text;
pub mod trace_context;
