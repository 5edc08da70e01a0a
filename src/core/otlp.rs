//! The filter's own spans, for what Envoy's tracer cannot express (kind, status, links,
//! a `_meta`-parented MCP span), encoded for OTLP/HTTP as binary protobuf.

use crate::core::span::{Attributes, Value};

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

/// Field numbers and wire types of the OTLP messages written here
/// (opentelemetry-proto: `collector/trace/v1/trace_service.proto`, `trace/v1/trace.proto`,
/// `common/v1/common.proto`, `resource/v1/resource.proto`).
mod field {
    pub const RESOURCE_SPANS: u32 = 1; // ExportTraceServiceRequest
    pub const RESOURCE: u32 = 1; // ResourceSpans
    pub const SCOPE_SPANS: u32 = 2;
    pub const ATTRIBUTES: u32 = 1; // Resource
    pub const SCOPE: u32 = 1; // ScopeSpans
    pub const SPANS: u32 = 2;
    pub const SCOPE_NAME: u32 = 1; // InstrumentationScope
    pub const SCOPE_VERSION: u32 = 2;
    pub const TRACE_ID: u32 = 1; // Span
    pub const SPAN_ID: u32 = 2;
    pub const PARENT_SPAN_ID: u32 = 4;
    pub const NAME: u32 = 5;
    pub const KIND: u32 = 6;
    pub const START_TIME: u32 = 7;
    pub const END_TIME: u32 = 8;
    pub const SPAN_ATTRIBUTES: u32 = 9;
    pub const LINKS: u32 = 13;
    pub const STATUS: u32 = 15;
    pub const LINK_TRACE_ID: u32 = 1; // Span.Link
    pub const LINK_SPAN_ID: u32 = 2;
    pub const STATUS_MESSAGE: u32 = 2; // Status
    pub const STATUS_CODE: u32 = 3;
    pub const KEY: u32 = 1; // KeyValue
    pub const VALUE: u32 = 2;
    pub const STRING_VALUE: u32 = 1; // AnyValue
    pub const INT_VALUE: u32 = 3;
}

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LENGTH_DELIMITED: u32 = 2;
/// `Status.code` STATUS_CODE_ERROR.
const STATUS_CODE_ERROR: u64 = 2;

/// Protobuf's wire format, just what OTLP spans need. Fields are written in field-number
/// order and defaults are left out, as protobuf's own serialisers do: the output is
/// byte-for-byte the official encoder's (a test holds it to that).
#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire_type: u32) {
        self.varint(u64::from(field << 3 | wire_type));
    }

    fn bytes(&mut self, field: u32, value: &[u8]) {
        if !value.is_empty() {
            self.key(field, LENGTH_DELIMITED);
            self.varint(value.len() as u64);
            self.0.extend_from_slice(value);
        }
    }

    fn uint(&mut self, field: u32, value: u64) {
        if value != 0 {
            self.key(field, VARINT);
            self.varint(value);
        }
    }

    fn fixed64(&mut self, field: u32, value: u64) {
        if value != 0 {
            self.key(field, FIXED64);
            self.0.extend_from_slice(&value.to_le_bytes());
        }
    }

    /// An embedded message: written by `write` into its own buffer, for its length.
    fn message(&mut self, field: u32, write: impl FnOnce(&mut Writer)) {
        let mut inner = Writer::default();
        write(&mut inner);
        self.key(field, LENGTH_DELIMITED);
        self.varint(inner.0.len() as u64);
        self.0.extend_from_slice(&inner.0);
    }

    fn attribute(&mut self, field: u32, key: &str, value: &Value) {
        self.message(field, |kv| {
            kv.bytes(field::KEY, key.as_bytes());
            kv.message(field::VALUE, |any| match value {
                // An empty string is still a value (`oneof` fields are written when set).
                Value::Str(s) => {
                    any.key(field::STRING_VALUE, LENGTH_DELIMITED);
                    any.varint(s.len() as u64);
                    any.0.extend_from_slice(s.as_bytes());
                }
                Value::Int(i) => {
                    any.key(field::INT_VALUE, VARINT);
                    any.varint(*i as u64); // int64: two's complement, ten bytes when negative
                }
            });
        });
    }
}

/// Encodes spans as one OTLP `ExportTraceServiceRequest`, binary protobuf (the encoding
/// every OTLP/HTTP receiver takes; JSON is optional, and some, Phoenix among them, refuse it).
pub fn encode_export(service_name: &str, spans: &[SpanRecord]) -> Vec<u8> {
    let resource: [(&str, Value); 4] = [
        ("service.name", Value::Str(service_name.into())),
        ("telemetry.sdk.name", Value::Str("mcp-trace".into())),
        ("telemetry.sdk.language", Value::Str("rust".into())),
        ("telemetry.sdk.version", Value::Str(env!("CARGO_PKG_VERSION").into())),
    ];
    let mut out = Writer::default();
    out.message(field::RESOURCE_SPANS, |rs| {
        rs.message(field::RESOURCE, |r| resource.iter().for_each(|(k, v)| r.attribute(field::ATTRIBUTES, k, v)));
        rs.message(field::SCOPE_SPANS, |ss| {
            ss.message(field::SCOPE, |scope| {
                scope.bytes(field::SCOPE_NAME, b"mcp-trace");
                scope.bytes(field::SCOPE_VERSION, env!("CARGO_PKG_VERSION").as_bytes());
            });
            for span in spans {
                ss.message(field::SPANS, |w| write_span(w, span));
            }
        });
    });
    out.0
}

fn write_span(w: &mut Writer, s: &SpanRecord) {
    w.bytes(field::TRACE_ID, &s.trace_id);
    w.bytes(field::SPAN_ID, &s.span_id);
    w.bytes(field::PARENT_SPAN_ID, s.parent_span_id.as_ref().map_or(&[][..], |p| &p[..]));
    w.bytes(field::NAME, s.name.as_bytes());
    w.uint(field::KIND, s.kind as u64);
    w.fixed64(field::START_TIME, s.start_unix_nano);
    w.fixed64(field::END_TIME, s.end_unix_nano.max(s.start_unix_nano));
    for (key, value) in &s.attributes {
        w.attribute(field::SPAN_ATTRIBUTES, key, value);
    }
    for (trace_id, span_id) in &s.links {
        w.message(field::LINKS, |link| {
            link.bytes(field::LINK_TRACE_ID, trace_id);
            link.bytes(field::LINK_SPAN_ID, span_id);
        });
    }
    if let Some(message) = &s.error {
        w.message(field::STATUS, |status| {
            status.bytes(field::STATUS_MESSAGE, message.as_bytes());
            status.uint(field::STATUS_CODE, STATUS_CODE_ERROR);
        });
    }
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

    fn sample() -> SpanRecord {
        SpanRecord {
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
        }
    }

    /// Byte for byte what the official encoder (Python's opentelemetry-proto 1.45,
    /// `SerializeToString(deterministic=True)`) writes for the same request.
    #[test]
    fn encodes_what_the_official_protobuf_encoder_does() {
        let official = "0ad9020a84010a1b0a0c736572766963652e6e616d65120b0a096d63702d74726163650a210a1274656c656d657472792e73646b2e6e616d65120b0a096d63702d74726163650a200a1674656c656d657472792e73646b2e6c616e677561676512060a04727573740a200a1574656c656d657472792e73646b2e76657273696f6e12070a05302e312e3012cf010a120a096d63702d74726163651205302e312e3012b8010a10abababababababababababababababab12080101010101010101220802020202020202022a16746f6f6c732f63616c6c206765745f7765617468657230033900002a36fe9c9717410065f753fe9c97174a1f0a0f6d63702e6d6574686f642e6e616d65120c0a0a746f6f6c732f63616c6c4a140a0e6d63702e7373652e6576656e7473120218036a1c0a10cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd120803030303030303037a0f120b746f6f6c206661696c65641802";
        assert_eq!(crate::core::text::to_hex(&encode_export("mcp-trace", &[sample()])), official);
        // A root span: no parent, links or status; a negative int64 takes ten bytes; an
        // empty string is a value all the same.
        let root = SpanRecord {
            trace_id: [0x11; 16],
            span_id: [0x22; 8],
            parent_span_id: None,
            name: "ping".into(),
            kind: SpanKind::Client,
            start_unix_nano: 5,
            end_unix_nano: 6,
            attributes: vec![("n", Value::Int(-1)), ("empty", Value::Str(String::new()))],
            links: Vec::new(),
            error: None,
        };
        let official = "0aeb010a7c0a130a0c736572766963652e6e616d6512030a01780a210a1274656c656d657472792e73646b2e6e616d65120b0a096d63702d74726163650a200a1674656c656d657472792e73646b2e6c616e677561676512060a04727573740a200a1574656c656d657472792e73646b2e76657273696f6e12070a05302e312e30126b0a120a096d63702d74726163651205302e312e3012550a1011111111111111111111111111111111120822222222222222222a0470696e6730033905000000000000004106000000000000004a100a016e120b18ffffffffffffffffff014a0b0a05656d70747912020a00";
        assert_eq!(crate::core::text::to_hex(&encode_export("x", &[root])), official);
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
