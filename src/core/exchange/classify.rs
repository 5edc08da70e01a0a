//! Stage 1: from the request headers alone, whether this is an MCP operation and which.

use crate::core::config::Config;
use crate::core::headers::{self, HeaderList};
use crate::core::metrics::PassReason;
use crate::core::text::is_visible_ascii;

/// Longest `Mcp-Method` we keep (method names are short), and `Mcp-Name` (a tool name
/// or a resource URI).
const MAX_MIRRORED_METHOD: usize = 128;
const MAX_MIRRORED_NAME: usize = 1024;
/// Longest `MCP-Protocol-Version` (a date, `2025-11-25`).
const MAX_PROTOCOL_VERSION: usize = 64;

/// What kind of MCP transport operation a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transport {
    /// A POST carrying JSON-RPC.
    Post,
    /// A GET opening a server-to-client SSE stream (Streamable HTTP, or legacy `/sse`).
    Stream,
    /// A DELETE ending a session.
    SessionEnd,
}

/// An MCP operation as its request headers describe it.
#[derive(Debug, Clone)]
pub(super) struct RequestHead {
    pub transport: Transport,
    /// `:path`, query string included (the legacy transport's session is in it).
    pub path: String,
    /// `Mcp-Method`/`Mcp-Name` (2026-07-28): the operation when the body is not read.
    pub mirrored_method: Option<String>,
    pub mirrored_name: Option<String>,
    /// `MCP-Protocol-Version`, for messages whose body does not say.
    pub protocol_version: Option<String>,
    pub had_content_length: bool,
    /// `HTTP/1.1`, `HTTP/2`… (a host call: read only for an own span).
    pub http_version: Option<String>,
}

impl RequestHead {
    /// `:path` without query or fragment.
    pub fn path_only(&self) -> &str {
        self.path.split(['?', '#']).next().unwrap_or("")
    }
}

/// Classifies a request. A POST is MCP when it carries JSON (in no content coding) and a
/// sign of MCP: a configured endpoint path, the `Accept` every MCP client must send, or
/// an MCP header. A GET asking for an event stream and a DELETE are MCP on an endpoint.
pub(super) fn classify(request: &HeaderList, config: &Config) -> Result<RequestHead, PassReason> {
    let get = |name: &str| request.get(name);
    let path = get(":path").unwrap_or("");
    let path_only = path.split(['?', '#']).next().unwrap_or("");
    let on_endpoint = config
        .endpoint_paths
        .iter()
        .any(|p| path_only.strip_prefix(p.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')));
    let mcp_signal = || {
        on_endpoint
            || accepts_json_and_event_stream(get(headers::ACCEPT))
            || [headers::MCP_PROTOCOL_VERSION, headers::MCP_SESSION_ID, headers::MCP_METHOD].iter().any(|h| get(h).is_some())
    };
    let transport = match get(":method").unwrap_or("") {
        "POST" if is_json(get(headers::CONTENT_TYPE)) && mcp_signal() => Transport::Post,
        "GET" if on_endpoint && accepts_event_stream(get(headers::ACCEPT)) => Transport::Stream,
        "DELETE" if on_endpoint => Transport::SessionEnd,
        _ => return Err(PassReason::NotMcp),
    };
    // A coded body (gzip…) is neither read nor rewritten.
    if transport == Transport::Post && get(headers::CONTENT_ENCODING).is_some_and(|c| !c.trim().eq_ignore_ascii_case("identity")) {
        return Err(PassReason::Encoded);
    }
    Ok(RequestHead {
        transport,
        path: path.to_string(),
        mirrored_method: get(headers::MCP_METHOD).filter(|m| is_visible_ascii(m, MAX_MIRRORED_METHOD)).map(str::to_string),
        mirrored_name: get(headers::MCP_NAME).filter(|n| !n.is_empty() && n.len() <= MAX_MIRRORED_NAME).map(str::to_string),
        protocol_version: get(headers::MCP_PROTOCOL_VERSION).filter(|v| is_visible_ascii(v, MAX_PROTOCOL_VERSION)).map(str::to_string),
        had_content_length: get(headers::CONTENT_LENGTH).is_some(),
        http_version: None,
    })
}

/// `application/json` or any `+json` type, parameters ignored.
pub(super) fn is_json(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return false };
    let essence = ct.split(';').next().unwrap_or("").trim();
    // Bytes, not str slices: a header may carry non-ASCII (decoded lossily), and a
    // slice off a char boundary would panic.
    let bytes = essence.as_bytes();
    essence.eq_ignore_ascii_case("application/json")
        || (bytes.starts_with(b"application/")
            && bytes.len().checked_sub(5).and_then(|at| bytes.get(at..)).is_some_and(|suffix| suffix.eq_ignore_ascii_case(b"+json")))
}

fn accepts_event_stream(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| contains_ignore_ascii_case(a, "text/event-stream"))
}

/// `Accept` names both `application/json` and `text/event-stream`, as Streamable HTTP
/// requires of every client POST.
fn accepts_json_and_event_stream(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| contains_ignore_ascii_case(a, "application/json") && contains_ignore_ascii_case(a, "text/event-stream"))
}

/// Media types are case-insensitive; compared in place (no lowercased copy per request).
fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    haystack.as_bytes().windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert!(is_json(Some("application/json")));
        assert!(is_json(Some("Application/JSON; charset=utf-8")));
        assert!(is_json(Some("application/vnd.api+json")));
        assert!(!is_json(Some("text/plain")));
        assert!(!is_json(Some("application/+jso")));
        assert!(!is_json(None));
        // Non-ASCII (a lossily decoded header byte) must not panic.
        assert!(!is_json(Some("application/\u{FFFD}abcd")));
        assert!(!is_json(Some("\u{FFFD}\u{FFFD}")));
    }

    #[test]
    fn accept_is_case_insensitive() {
        assert!(accepts_json_and_event_stream(Some("Application/JSON, TEXT/Event-Stream")));
        assert!(accepts_json_and_event_stream(Some("text/event-stream;q=0.9,application/json")));
        assert!(!accepts_json_and_event_stream(Some("application/json")));
        assert!(!accepts_json_and_event_stream(Some("")));
        assert!(accepts_event_stream(Some("TEXT/EVENT-STREAM")));
        assert!(!accepts_event_stream(Some("text/event")));
    }
}
