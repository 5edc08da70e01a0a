//! Every HTTP header name the filter reads or writes, in one place. Header names are
//! matched case-insensitively by Envoy; we use the lowercase form HTTP/2 requires.

/// MCP session id (Streamable HTTP, 2025-03-26 and later).
pub const MCP_SESSION_ID: &str = "mcp-session-id";
/// MCP protocol revision, sent by clients on every request after initialize.
pub const MCP_PROTOCOL_VERSION: &str = "mcp-protocol-version";
/// 2026-07-28: the JSON-RPC method mirrored into a header for intermediaries.
pub const MCP_METHOD: &str = "mcp-method";
/// 2026-07-28: `params.name` or `params.uri` mirrored into a header.
pub const MCP_NAME: &str = "mcp-name";

pub const CONTENT_TYPE: &str = "content-type";
pub const CONTENT_LENGTH: &str = "content-length";
pub const AUTHORIZATION: &str = "authorization";
pub const ACCEPT: &str = "accept";

/// W3C Trace Context and Baggage.
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";
pub const BAGGAGE: &str = "baggage";
