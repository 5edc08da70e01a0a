//! The MCP span model: names and attributes by the OpenTelemetry MCP semantic
//! conventions (semantic-conventions-genai, `docs/gen-ai/mcp.md`).
//!
//! The same attribute list feeds both outlets: Envoy's own span (through filter state
//! read by `custom_tags`) and the filter's own OTLP spans.

use crate::core::json_scan::MessageSummary;
use crate::core::jsonrpc::Message;
use crate::core::text::bounded_printable;
use std::borrow::Cow;

/// Attribute keys, as the convention spells them. `envoy/envoy.yaml` maps each one
/// with a `custom_tags` entry reading `%FILTER_STATE(wasm.<key>:PLAIN)%`.
pub mod keys {
    pub const MCP_METHOD_NAME: &str = "mcp.method.name";
    pub const MCP_SESSION_ID: &str = "mcp.session.id";
    /// The same session under the OpenInference key, which Phoenix and other LLM-trace
    /// backends group sessions by. Envoy tags it from `mcp.session.id`'s filter state.
    pub const SESSION_ID: &str = "session.id";
    pub const MCP_PROTOCOL_VERSION: &str = "mcp.protocol.version";
    pub const MCP_RESOURCE_URI: &str = "mcp.resource.uri";
    pub const GEN_AI_TOOL_NAME: &str = "gen_ai.tool.name";
    pub const GEN_AI_PROMPT_NAME: &str = "gen_ai.prompt.name";
    pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
    pub const JSONRPC_REQUEST_ID: &str = "jsonrpc.request.id";
    pub const JSONRPC_PROTOCOL_VERSION: &str = "jsonrpc.protocol.version";
    pub const RPC_RESPONSE_STATUS_CODE: &str = "rpc.response.status_code";
    pub const ERROR_TYPE: &str = "error.type";
    pub const NETWORK_PROTOCOL_NAME: &str = "network.protocol.name";
    pub const NETWORK_PROTOCOL_VERSION: &str = "network.protocol.version";
    pub const NETWORK_TRANSPORT: &str = "network.transport";
    /// This project's request id (not a semconv attribute, hence our own namespace).
    pub const REQUEST_ID: &str = "mcp_trace.request_id";
    /// How many JSON-RPC messages a batch carried.
    pub const BATCH_SIZE: &str = "mcp_trace.batch.size";
    /// SSE events seen on the response, by kind.
    pub const SSE_EVENTS: &str = "mcp.sse.events";
    pub const SSE_NOTIFICATIONS: &str = "mcp.sse.notifications";
    pub const SSE_REQUESTS: &str = "mcp.sse.requests";
    /// Set when a request on a known session got `404`: the server expired it.
    pub const SESSION_EXPIRED: &str = "mcp_trace.session.expired";
    /// The client-side id a remembered session was recalled by (filter state only: the
    /// edge instance tells the upstream one, for a new `initialize`).
    pub const SESSION_CLIENT_KEY: &str = "mcp_trace.session.client_key";
    /// The span name, for `tracing.operation` (filter state only, not an attribute).
    pub const SPAN_NAME: &str = "mcp_trace.span_name";
}

/// `error.type` for a `CallToolResult` with `isError: true`.
pub const TOOL_ERROR: &str = "tool_error";
/// Longest JSON-RPC error code kept (an integer's text).
const MAX_ERROR_CODE_LEN: usize = 32;

/// Longest attribute value we emit (tool names, URIs, error messages are client- or
/// server-chosen).
pub const MAX_ATTRIBUTE_LEN: usize = 256;

/// A span attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
}

impl Value {
    /// The text Envoy's `custom_tags` will show (filter state is bytes).
    pub fn as_text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Value::Str(s) => std::borrow::Cow::Borrowed(s),
            Value::Int(i) => std::borrow::Cow::Owned(i.to_string()),
        }
    }
}

pub type Attributes = Vec<(&'static str, Value)>;

/// What names an operation: its method and, where the convention uses one, its target
/// (`params.name` of `tools/call`/`prompts/get`, `params.uri` of `resources/*`). Read
/// from the body, or from the 2026-07-28 `Mcp-Method`/`Mcp-Name` headers when the body
/// is not read: both give the same name and attributes.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub method: &'a str,
    pub target: Option<&'a str>,
}

impl<'a> Target<'a> {
    /// The target attribute and the span-name suffix it gives, if any. A resource URI
    /// only when opted in: URIs can be high-cardinality and can carry data.
    fn named(&self, record_resource_uri: bool) -> Option<(&'static str, &'a str)> {
        match (self.method, self.target) {
            ("tools/call", Some(tool)) => Some((keys::GEN_AI_TOOL_NAME, tool)),
            ("prompts/get", Some(prompt)) => Some((keys::GEN_AI_PROMPT_NAME, prompt)),
            (m, Some(uri)) if record_resource_uri && m.starts_with("resources/") => Some((keys::MCP_RESOURCE_URI, uri)),
            _ => None,
        }
    }

    /// The span name: `{mcp.method.name} {target}`, else the method.
    pub fn span_name(&self, record_resource_uri: bool) -> String {
        let method = bounded_printable(self.method, MAX_ATTRIBUTE_LEN);
        let Some((_, target)) = self.named(record_resource_uri) else { return method.into_owned() };
        let target = bounded_printable(target, MAX_ATTRIBUTE_LEN);
        let mut name = String::with_capacity(method.len() + 1 + target.len());
        name.push_str(&method);
        name.push(' ');
        name.push_str(&target);
        name
    }

    /// `mcp.method.name`, the target attribute, and `gen_ai.operation.name` for tools.
    pub fn each_attribute<'t>(&self, record_resource_uri: bool, emit: &mut impl FnMut(&'static str, Cow<'t, str>))
    where
        'a: 't,
    {
        emit(keys::MCP_METHOD_NAME, bounded_printable(self.method, MAX_ATTRIBUTE_LEN));
        if let Some((key, target)) = self.named(record_resource_uri) {
            emit(key, bounded_printable(target, MAX_ATTRIBUTE_LEN));
            if key == keys::GEN_AI_TOOL_NAME {
                emit(keys::GEN_AI_OPERATION_NAME, Cow::Borrowed("execute_tool"));
            }
        }
    }
}

/// The target of a message; a client's response to a server request is named `response`.
fn target_of<'m>(message: &'m Message) -> Target<'m> {
    Target { method: message.method.as_deref().unwrap_or("response"), target: message.target.as_deref() }
}

/// The span name of a message (see [`Target::span_name`]).
pub fn span_name(message: &Message, record_resource_uri: bool) -> String {
    target_of(message).span_name(record_resource_uri)
}

/// What the request side knows, besides the message itself.
pub struct RequestFacts<'a> {
    /// None when the edge gave none (a role that mints no id and received none).
    pub request_id: Option<&'a str>,
    pub session_id: Option<&'a str>,
    /// `MCP-Protocol-Version` header, when the body did not say.
    pub protocol_version_header: Option<&'a str>,
    /// `HTTP/1.1` → ("http", "1.1"), `HTTP/2` → ("http", "2").
    pub http_version: Option<&'a str>,
    pub record_resource_uri: bool,
}

/// Attributes known when the request has been read, each handed to `emit` as text
/// borrowed from the message where it needs no cleaning: Envoy's span gets them as
/// filter state without a copy, and only an own span owns them
/// ([`request_attributes`]).
pub fn each_request_attribute<'m>(message: &'m Message, facts: &RequestFacts<'m>, emit: &mut impl FnMut(&'static str, Cow<'m, str>)) {
    let text = |s: &'m str| bounded_printable(s, MAX_ATTRIBUTE_LEN);
    if message.method.is_some() {
        target_of(message).each_attribute(facts.record_resource_uri, emit);
    }
    if let Some(id) = message.id.as_ref().map(|id| id.as_str()) {
        emit(keys::JSONRPC_REQUEST_ID, text(id));
    }
    if message.jsonrpc_version != "2.0" {
        emit(keys::JSONRPC_PROTOCOL_VERSION, text(&message.jsonrpc_version));
    }
    if let Some(session) = facts.session_id {
        emit(keys::SESSION_ID, text(session));
        emit(keys::MCP_SESSION_ID, text(session));
    }
    if let Some(version) = message.protocol_version.as_deref().or(facts.protocol_version_header) {
        emit(keys::MCP_PROTOCOL_VERSION, text(version));
    }
    each_network_attribute(facts.http_version, emit);
    if let Some(id) = facts.request_id {
        emit(keys::REQUEST_ID, text(id));
    }
}

/// [`each_request_attribute`], owned: for the filter's own spans.
pub fn request_attributes(message: &Message, facts: &RequestFacts) -> Attributes {
    let mut attrs: Attributes = Vec::with_capacity(12);
    each_request_attribute(message, facts, &mut |key, value| attrs.push((key, Value::Str(value.into_owned()))));
    attrs
}

/// The session of an operation, under both keys (replacing an earlier one).
pub fn set_session(attrs: &mut Attributes, session: &str) {
    attrs.retain(|(k, _)| !matches!(*k, keys::MCP_SESSION_ID | keys::SESSION_ID));
    let id = bounded_printable(session, MAX_ATTRIBUTE_LEN).into_owned();
    attrs.push((keys::SESSION_ID, Value::Str(id.clone())));
    attrs.push((keys::MCP_SESSION_ID, Value::Str(id)));
}

/// `network.*` for an HTTP request over TCP.
pub fn each_network_attribute<'t>(http_version: Option<&str>, emit: &mut impl FnMut(&'static str, Cow<'t, str>)) {
    emit(keys::NETWORK_PROTOCOL_NAME, Cow::Borrowed("http"));
    emit(keys::NETWORK_TRANSPORT, Cow::Borrowed("tcp"));
    let version = http_version.map(|v| v.strip_prefix("HTTP/").or_else(|| v.strip_prefix("http/")).unwrap_or(v));
    let version = match version {
        Some("1.0") => "1.0",
        Some("1.1") => "1.1",
        Some("2" | "2.0") => "2",
        Some("3") => "3",
        _ => return,
    };
    emit(keys::NETWORK_PROTOCOL_VERSION, Cow::Borrowed(version));
}

/// The outcome of an operation, from its JSON-RPC response or the HTTP status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// `error.type`: the JSON-RPC error code, `tool_error`, or the HTTP status.
    pub error_type: Option<String>,
    /// The JSON-RPC error code as text.
    pub status_code: Option<String>,
    /// Status description: the JSON-RPC error message.
    pub message: Option<String>,
}

impl Outcome {
    pub fn is_error(&self) -> bool {
        self.error_type.is_some()
    }

    /// From the response message that answers the request.
    pub fn from_response(summary: &MessageSummary) -> Outcome {
        if let Some(code) = summary.error_code.as_deref() {
            let code = bounded_printable(code, MAX_ERROR_CODE_LEN).into_owned();
            return Outcome {
                error_type: Some(code.clone()),
                status_code: Some(code),
                message: summary.error_message.as_deref().map(|m| bounded_printable(m, MAX_ATTRIBUTE_LEN).into_owned()),
            };
        }
        if summary.has_error {
            return Outcome { error_type: Some("_OTHER".into()), status_code: None, message: None };
        }
        if summary.is_error == Some(true) {
            return Outcome { error_type: Some(TOOL_ERROR.into()), status_code: None, message: None };
        }
        Outcome::default()
    }

    /// From an HTTP status with no JSON-RPC error to explain it (e.g. `404` on an
    /// expired session, a `502` from Envoy).
    pub fn from_http_status(status: u16) -> Outcome {
        if status >= 400 {
            Outcome { error_type: Some(status.to_string()), status_code: None, message: None }
        } else {
            Outcome::default()
        }
    }

    pub fn attributes(&self) -> Attributes {
        let mut attrs = Attributes::new();
        if let Some(code) = &self.status_code {
            attrs.push((keys::RPC_RESPONSE_STATUS_CODE, Value::Str(code.clone())));
        }
        if let Some(t) = &self.error_type {
            attrs.push((keys::ERROR_TYPE, Value::Str(t.clone())));
        }
        attrs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::jsonrpc::{parse_body, Body};

    fn msg(body: &str) -> Message<'_> {
        match parse_body(body.as_bytes()).unwrap() {
            Body::Single(m) => m,
            Body::Batch(_) => unreachable!(),
        }
    }

    fn facts() -> RequestFacts<'static> {
        RequestFacts {
            request_id: Some("r1"),
            session_id: Some("s1"),
            protocol_version_header: Some("2025-11-25"),
            http_version: Some("HTTP/1.1"),
            record_resource_uri: false,
        }
    }

    fn get<'a>(attrs: &'a Attributes, key: &str) -> Option<&'a Value> {
        attrs.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    #[test]
    fn attribute_keys_match_the_convention() {
        // Pinned: a rename here breaks dashboards and envoy.yaml's custom_tags.
        assert_eq!(keys::MCP_METHOD_NAME, "mcp.method.name");
        assert_eq!(keys::MCP_SESSION_ID, "mcp.session.id");
        assert_eq!(keys::MCP_PROTOCOL_VERSION, "mcp.protocol.version");
        assert_eq!(keys::MCP_RESOURCE_URI, "mcp.resource.uri");
        assert_eq!(keys::GEN_AI_TOOL_NAME, "gen_ai.tool.name");
        assert_eq!(keys::GEN_AI_PROMPT_NAME, "gen_ai.prompt.name");
        assert_eq!(keys::GEN_AI_OPERATION_NAME, "gen_ai.operation.name");
        assert_eq!(keys::JSONRPC_REQUEST_ID, "jsonrpc.request.id");
        assert_eq!(keys::JSONRPC_PROTOCOL_VERSION, "jsonrpc.protocol.version");
        assert_eq!(keys::RPC_RESPONSE_STATUS_CODE, "rpc.response.status_code");
        assert_eq!(keys::ERROR_TYPE, "error.type");
        assert_eq!(keys::NETWORK_PROTOCOL_NAME, "network.protocol.name");
        assert_eq!(keys::NETWORK_PROTOCOL_VERSION, "network.protocol.version");
        assert_eq!(keys::NETWORK_TRANSPORT, "network.transport");
        assert_eq!(TOOL_ERROR, "tool_error");
    }

    #[test]
    fn span_names_follow_the_convention() {
        let cases = [
            (r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_weather"}}"#, "tools/call get_weather"),
            (r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"greet"}}"#, "prompts/get greet"),
            (r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///x"}}"#, "resources/read"),
            (r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#, "initialize"),
            (r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#, "tools/list"),
            (r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, "notifications/initialized"),
            (r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, "ping"),
        ];
        for (body, name) in cases {
            assert_eq!(span_name(&msg(body), false), name);
        }
        let r = msg(r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///x"}}"#);
        assert_eq!(span_name(&r, true), "resources/read file:///x");
        let evil = msg(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a\nb"}}"#);
        assert_eq!(span_name(&evil, false), "tools/call a\u{FFFD}b");
    }

    #[test]
    fn tool_call_attributes() {
        let m = msg(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get_weather","arguments":{"city":"secret"}}}"#);
        let attrs = request_attributes(&m, &facts());
        assert_eq!(get(&attrs, "mcp.method.name"), Some(&Value::Str("tools/call".into())));
        assert_eq!(get(&attrs, "gen_ai.tool.name"), Some(&Value::Str("get_weather".into())));
        assert_eq!(get(&attrs, "gen_ai.operation.name"), Some(&Value::Str("execute_tool".into())));
        assert_eq!(get(&attrs, "jsonrpc.request.id"), Some(&Value::Str("7".into())));
        assert_eq!(get(&attrs, "mcp.session.id"), Some(&Value::Str("s1".into())));
        assert_eq!(get(&attrs, "session.id"), Some(&Value::Str("s1".into())), "OpenInference's key too");
        assert_eq!(get(&attrs, "mcp.protocol.version"), Some(&Value::Str("2025-11-25".into())));
        assert_eq!(get(&attrs, "network.protocol.version"), Some(&Value::Str("1.1".into())));
        assert_eq!(get(&attrs, "jsonrpc.protocol.version"), None, "only when not 2.0");
        assert!(!attrs.iter().any(|(_, v)| v.as_text().contains("secret")), "argument values never recorded");
    }

    #[test]
    fn conditional_attributes() {
        let n = msg(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        assert_eq!(get(&request_attributes(&n, &facts()), "jsonrpc.request.id"), None);
        assert_eq!(get(&request_attributes(&n, &facts()), "mcp_trace.request_id"), Some(&Value::Str("r1".into())));
        let no_request_id = RequestFacts { request_id: None, ..facts() };
        assert_eq!(get(&request_attributes(&n, &no_request_id), "mcp_trace.request_id"), None, "no empty attribute");
        let r = msg(r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///x"}}"#);
        assert_eq!(get(&request_attributes(&r, &facts()), "mcp.resource.uri"), None, "opt-in");
        let mut f = facts();
        f.record_resource_uri = true;
        assert_eq!(get(&request_attributes(&r, &f), "mcp.resource.uri"), Some(&Value::Str("file:///x".into())));
        assert_eq!(get(&request_attributes(&r, &f), "gen_ai.operation.name"), None, "execute_tool is for tool calls only");
    }

    #[test]
    fn outcomes() {
        let err = MessageSummary {
            error_code: Some("-32601".into()),
            error_message: Some("Method not found".into()),
            has_error: true,
            ..Default::default()
        };
        let o = Outcome::from_response(&err);
        assert_eq!(o.error_type.as_deref(), Some("-32601"));
        assert_eq!(o.status_code.as_deref(), Some("-32601"));
        assert_eq!(o.message.as_deref(), Some("Method not found"));
        let tool = MessageSummary { has_result: true, is_error: Some(true), ..Default::default() };
        assert_eq!(Outcome::from_response(&tool).error_type.as_deref(), Some("tool_error"));
        let ok = MessageSummary { has_result: true, is_error: Some(false), ..Default::default() };
        assert!(!Outcome::from_response(&ok).is_error());
        assert_eq!(Outcome::from_http_status(404).error_type.as_deref(), Some("404"));
        assert!(!Outcome::from_http_status(202).is_error());
    }
}
