//! The host-independent core. Nothing in here may depend on proxy-wasm: every type is
//! plain data so the rules can be tested with `cargo test` on the build machine.

pub mod baggage;
pub mod config;
pub mod exchange;
pub mod export_queue;
pub mod headers;
pub mod ids;
pub mod json_scan;
pub mod jsonrpc;
pub mod log_context;
pub mod meta_splice;
pub mod metrics;
pub mod otlp;
pub mod propagation;
mod robustness;
pub mod session;
pub mod session_store;
pub mod span;
pub mod sse;
pub mod text;
pub mod trace_context;
pub mod upstream_answers;
