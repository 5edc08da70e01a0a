//! `mcp-trace`: a proxy-wasm filter for Envoy that makes MCP traffic traceable.
//!
//! The crate has two layers:
//! - [`core`]: everything that understands MCP, JSON-RPC, W3C trace context, SSE and
//!   OpenTelemetry span data. Plain Rust, no proxy-wasm types, unit-tested natively.
//! - `filter` (wasm32 only): the thin proxy-wasm layer that moves headers and bytes
//!   between Envoy and the core, and nothing else.

// Tests may slice strings; the filter may not (clippy::string_slice is denied in
// Cargo.toml: a slice off a char boundary panics, and a panic kills the VM).
#![cfg_attr(test, allow(clippy::string_slice))]
// Only the filter layer (wasm32) uses the core outside tests: dead-code analysis means
// something in the wasm build alone, which `make lint` runs clippy on as well.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

mod core;

#[cfg(target_arch = "wasm32")]
mod filter;
