//! The filter's metrics, as Envoy stats. Names are fixed here so cardinality is bounded
//! by construction: methods come from a fixed list (anything else is `other`), error
//! types from a fixed set of classes, tools only from the configured allow-list.

/// A counter the filter increments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// A JSON-RPC message recognised, by method (index into [`METHODS`], or `other`).
    Request(usize),
    /// An operation that ended in error, by class.
    Error(ErrorClass),
    /// Why a request was passed through untouched.
    Passthrough(PassReason),
    /// Own spans dropped because the export queue was full.
    SpansDropped,
    /// Own spans exported / export calls that failed.
    SpansExported,
    ExportFailures,
    /// `_meta` could not be written (params or `_meta` not an object).
    SpliceSkipped,
    /// Sessions seen to expire (`404` on a known session).
    SessionExpired,
    /// MCP requests with no session from any source (a session is never invented unless
    /// `generate_session_id` says so).
    SessionNone,
    /// SSE events seen on responses.
    SseEvents,
}

/// Why a request was not treated as MCP. Each reason is its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PassReason {
    /// Not an MCP transport request (other method, path or content type).
    NotMcp,
    /// JSON that is not JSON-RPC 2.0.
    NotJsonRpc,
    /// Not valid JSON.
    Malformed,
    /// Body larger than `max_body_bytes`.
    OverLimit,
    /// Body in a content coding (gzip, br…): never parsed or rewritten.
    Encoded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// A JSON-RPC error response.
    JsonRpc,
    /// A `CallToolResult` with `isError: true`.
    Tool,
    /// An HTTP error status with no JSON-RPC error in the body.
    Http,
}

/// MCP methods from the specification (2025-11-25 and 2026-07-28) that get their own
/// request counter. Anything else counts as `other`.
pub const METHODS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "sampling/createMessage",
    "elicitation/create",
    "roots/list",
    "tasks/get",
    "tasks/result",
    "tasks/list",
    "tasks/cancel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "response",
];

/// Index of `method` in [`METHODS`], or `METHODS.len()` for `other`.
pub fn method_index(method: Option<&str>) -> usize {
    let m = method.unwrap_or("response");
    METHODS.iter().position(|known| *known == m).unwrap_or(METHODS.len())
}

/// The stat name of a counter (Envoy shows it under `wasmcustom.`).
pub fn counter_name(counter: Counter) -> String {
    match counter {
        Counter::Request(i) => format!("mcp_trace.requests.{}", METHODS.get(i).map_or("other".to_string(), |m| m.replace('/', "_"))),
        Counter::Error(ErrorClass::JsonRpc) => "mcp_trace.errors.jsonrpc".into(),
        Counter::Error(ErrorClass::Tool) => "mcp_trace.errors.tool_error".into(),
        Counter::Error(ErrorClass::Http) => "mcp_trace.errors.http".into(),
        Counter::Passthrough(PassReason::NotMcp) => "mcp_trace.passthrough.not_mcp".into(),
        Counter::Passthrough(PassReason::NotJsonRpc) => "mcp_trace.passthrough.not_jsonrpc".into(),
        Counter::Passthrough(PassReason::Malformed) => "mcp_trace.passthrough.malformed".into(),
        Counter::Passthrough(PassReason::OverLimit) => "mcp_trace.passthrough.over_limit".into(),
        Counter::Passthrough(PassReason::Encoded) => "mcp_trace.passthrough.encoded".into(),
        Counter::SpansDropped => "mcp_trace.own_spans.dropped".into(),
        Counter::SpansExported => "mcp_trace.own_spans.exported".into(),
        Counter::ExportFailures => "mcp_trace.own_spans.export_failures".into(),
        Counter::SpliceSkipped => "mcp_trace.meta.splice_skipped".into(),
        Counter::SessionExpired => "mcp_trace.sessions.expired".into(),
        Counter::SessionNone => "mcp_trace.sessions.none".into(),
        Counter::SseEvents => "mcp_trace.sse.events".into(),
    }
}

/// Every counter, for defining them all at start-up (no host call on the hot path).
pub fn all_counters() -> Vec<Counter> {
    let mut all: Vec<Counter> = (0..=METHODS.len()).map(Counter::Request).collect();
    all.extend([
        Counter::Error(ErrorClass::JsonRpc),
        Counter::Error(ErrorClass::Tool),
        Counter::Error(ErrorClass::Http),
        Counter::Passthrough(PassReason::NotMcp),
        Counter::Passthrough(PassReason::NotJsonRpc),
        Counter::Passthrough(PassReason::Malformed),
        Counter::Passthrough(PassReason::OverLimit),
        Counter::Passthrough(PassReason::Encoded),
        Counter::SpansDropped,
        Counter::SpansExported,
        Counter::ExportFailures,
        Counter::SpliceSkipped,
        Counter::SessionExpired,
        Counter::SessionNone,
        Counter::SseEvents,
    ]);
    all
}

/// Name of the operation-duration histogram (milliseconds; Envoy histograms are
/// integers), in the spirit of `mcp.server.operation.duration`.
pub const DURATION_HISTOGRAM: &str = "mcp_trace.operation.duration_ms";

/// Per-tool call counter name, for tools on the allow-list.
pub fn tool_counter_name(tool: &str) -> String {
    format!("mcp_trace.tool_calls.{tool}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_counters_are_bounded() {
        assert_eq!(counter_name(Counter::Request(method_index(Some("tools/call")))), "mcp_trace.requests.tools_call");
        assert_eq!(counter_name(Counter::Request(method_index(Some("evil/{random}")))), "mcp_trace.requests.other");
        assert_eq!(counter_name(Counter::Request(method_index(None))), "mcp_trace.requests.response");
        let names: std::collections::HashSet<String> = all_counters().into_iter().map(counter_name).collect();
        assert_eq!(names.len(), all_counters().len(), "names are unique");
    }
}
