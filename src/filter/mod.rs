//! The proxy-wasm layer: registers the contexts and adapts Envoy's ABI to the core's
//! [`Host`](crate::core::exchange::Host) trait. No MCP logic lives here.
//!
//! Every host call goes through `proxy_wasm::hostcalls`, which returns a `Result`; the
//! SDK's trait helpers `unwrap()` and would kill the VM on a refused call (e.g. setting
//! a header in the wrong phase). A refused call here is logged at debug and skipped.

mod export;
mod http;
mod metrics;
mod root;
mod sessions;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    // Until the host's level is known, assume info (Envoy's default).
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(root::Root::default()));
}}
