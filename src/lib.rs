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

pub mod core;

#[cfg(target_arch = "wasm32")]
mod filter;
