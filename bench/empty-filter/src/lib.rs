//! An empty proxy-wasm HTTP filter: every callback keeps its default, `Continue`.
//! Loaded by the bench's front "W" in the same places as mcp-trace (HCM filter and
//! router upstream filter), it measures the cost of the wasm platform itself.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::LogLevel;

struct Empty;

impl Context for Empty {}
impl HttpContext for Empty {}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_http_context(|_context_id, _root_context_id| -> Box<dyn HttpContext> { Box::new(Empty) });
}}
