//! The filter's own spans, for what Envoy's tracer cannot express (kind, status, links,
//! a `_meta`-parented MCP span), encoded as OTLP/HTTP JSON
//! (`opentelemetry-proto` JSON mapping: hex ids, enum numbers, 64-bit ints as strings).

use crate::core::span::{Attributes, Value};
use crate::core::text::to_hex;
use serde::Serialize;

/// OTLP `SpanKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// The proxy forwarding to the MCP server acts as the server's client.
    Client = 3,
}

/// One finished span.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: Attributes,
    /// Linked contexts (trace id, span id): the HTTP-level span when `_meta` was the parent.
    pub links: Vec<([u8; 16], [u8; 8])>,
    /// Status description when the span failed (`None` = unset / OK).
    pub error: Option<String>,
}

#[derive(Serialize)]
struct Export<'a> {
    #[serde(rename = "resourceSpans")]
    resource_spans: [ResourceSpans<'a>; 1],
}

#[derive(Serialize)]
struct ResourceSpans<'a> {
    resource: Resource<'a>,
    #[serde(rename = "scopeSpans")]
    scope_spans: [ScopeSpans<'a>; 1],
}

#[derive(Serialize)]
struct Resource<'a> {
    attributes: Vec<KeyValue<'a>>,
}

#[derive(Serialize)]
struct ScopeSpans<'a> {
    scope: Scope<'a>,
    spans: Vec<Span<'a>>,
}

#[derive(Serialize)]
struct Scope<'a> {
    name: &'a str,
    version: &'a str,
}

#[derive(Serialize)]
struct Span<'a> {
    #[serde(rename = "traceId")]
    trace_id: String,
    #[serde(rename = "spanId")]
    span_id: String,
    #[serde(rename = "parentSpanId", skip_serializing_if = "String::is_empty")]
    parent_span_id: String,
    name: &'a str,
    kind: u8,
    #[serde(rename = "startTimeUnixNano")]
    start: String,
    #[serde(rename = "endTimeUnixNano")]
    end: String,
    attributes: Vec<KeyValue<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    links: Vec<Link>,
    status: Status<'a>,
}

#[derive(Serialize)]
struct Link {
    #[serde(rename = "traceId")]
    trace_id: String,
    #[serde(rename = "spanId")]
    span_id: String,
}

#[derive(Serialize)]
struct Status<'a> {
    /// 0 unset, 2 error.
    code: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

#[derive(Serialize)]
struct KeyValue<'a> {
    key: &'a str,
    value: AnyValue<'a>,
}

#[derive(Serialize)]
enum AnyValue<'a> {
    #[serde(rename = "stringValue")]
    Str(&'a str),
    #[serde(rename = "intValue")]
    Int(String),
}

fn key_values(attrs: &Attributes) -> Vec<KeyValue<'_>> {
    attrs
        .iter()
        .map(|(k, v)| KeyValue {
            key: k,
            value: match v {
                Value::Str(s) => AnyValue::Str(s),
                Value::Int(i) => AnyValue::Int(i.to_string()),
            },
        })
        .collect()
}

/// Encodes spans as one OTLP `ExportTraceServiceRequest` in JSON.
pub fn encode_export(service_name: &str, spans: &[SpanRecord]) -> Vec<u8> {
    let resource = vec![
        KeyValue { key: "service.name", value: AnyValue::Str(service_name) },
        KeyValue { key: "telemetry.sdk.name", value: AnyValue::Str("mcp-trace") },
        KeyValue { key: "telemetry.sdk.language", value: AnyValue::Str("rust") },
        KeyValue { key: "telemetry.sdk.version", value: AnyValue::Str(env!("CARGO_PKG_VERSION")) },
    ];
    let spans = spans
        .iter()
        .map(|s| Span {
            trace_id: to_hex(&s.trace_id),
            span_id: to_hex(&s.span_id),
            parent_span_id: s.parent_span_id.map(|p| to_hex(&p)).unwrap_or_default(),
            name: &s.name,
            kind: s.kind as u8,
            start: s.start_unix_nano.to_string(),
            end: s.end_unix_nano.max(s.start_unix_nano).to_string(),
            attributes: key_values(&s.attributes),
            links: s.links.iter().map(|(t, sp)| Link { trace_id: to_hex(t), span_id: to_hex(sp) }).collect(),
            status: Status { code: if s.error.is_some() { 2 } else { 0 }, message: s.error.as_deref().filter(|m| !m.is_empty()) },
        })
        .collect();
    let export = Export {
        resource_spans: [ResourceSpans {
            resource: Resource { attributes: resource },
            scope_spans: [ScopeSpans { scope: Scope { name: "mcp-trace", version: env!("CARGO_PKG_VERSION") }, spans }],
        }],
    };
    serde_json::to_vec(&export).unwrap_or_default()
}

/// Whether to keep a finished span: follow a parent's sampled flag; a root follows the
/// ratio draw made when it started ([`root_sampled`]); error spans are always kept so
/// failures are never sampled away.
pub fn keep_span(parent_sampled: Option<bool>, root_sampled: bool, is_error: bool) -> bool {
    parent_sampled.unwrap_or(root_sampled || is_error)
}

/// The sampling decision for a new root: `draw` is uniform in [0, 1).
pub fn root_sampled(ratio: f64, draw: f64) -> bool {
    draw < ratio
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::span::keys;

    #[test]
    fn encodes_otlp_json() {
        let span = SpanRecord {
            trace_id: [0xab; 16],
            span_id: [0x01; 8],
            parent_span_id: Some([0x02; 8]),
            name: "tools/call get_weather".into(),
            kind: SpanKind::Client,
            start_unix_nano: 1_700_000_000_000_000_000,
            end_unix_nano: 1_700_000_000_500_000_000,
            attributes: vec![(keys::MCP_METHOD_NAME, Value::Str("tools/call".into())), (keys::SSE_EVENTS, Value::Int(3))],
            links: vec![([0xcd; 16], [0x03; 8])],
            error: Some("tool failed".into()),
        };
        let json: serde_json::Value = serde_json::from_slice(&encode_export("mcp-trace", &[span])).unwrap();
        let rs = &json["resourceSpans"][0];
        assert_eq!(rs["resource"]["attributes"][0]["value"]["stringValue"], "mcp-trace");
        let s = &rs["scopeSpans"][0]["spans"][0];
        assert_eq!(s["traceId"], "abababababababababababababababab");
        assert_eq!(s["spanId"], "0101010101010101");
        assert_eq!(s["parentSpanId"], "0202020202020202");
        assert_eq!(s["kind"], 3);
        assert_eq!(s["startTimeUnixNano"], "1700000000000000000");
        assert_eq!(s["attributes"][1]["value"]["intValue"], "3");
        assert_eq!(s["links"][0]["spanId"], "0303030303030303");
        assert_eq!(s["status"]["code"], 2);
        assert_eq!(s["status"]["message"], "tool failed");
    }

    #[test]
    fn sampling_rules() {
        assert!(keep_span(Some(true), false, false), "parent's flag wins");
        assert!(!keep_span(Some(false), true, false));
        assert!(!keep_span(Some(false), false, true), "an unsampled parent's child is not kept, even failed");
        assert!(keep_span(None, true, false));
        assert!(!keep_span(None, false, false));
        assert!(keep_span(None, false, true), "a failed root is kept whatever the ratio");
        assert!(root_sampled(0.5, 0.4));
        assert!(!root_sampled(0.5, 0.6));
        assert!(!root_sampled(0.0, 0.0));
        assert!(root_sampled(1.0, 0.999_999));
    }
}
