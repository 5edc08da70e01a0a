//! JSON-RPC 2.0 message recognition for MCP request bodies.
//!
//! The body is parsed once with serde_json into borrowed raw slices: nothing is copied
//! except the few strings we report (method, id, target). Alongside the meaning we keep
//! byte positions (where each message object, its `params` and its `params._meta` start
//! and end) so [`crate::core::meta_splice`] can insert trace context without
//! re-serialising anything. Only the envelope is parsed into types; nested values are
//! skipped as raw values, which serde_json does without recursion, so a deeply nested
//! hostile body cannot exhaust the VM's stack (tested with 100,000 levels).

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// What a single JSON-RPC message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Request,
    Notification,
    /// A response sent by the client (to a server-initiated request such as sampling).
    Response,
}

/// Why a body is not treated as MCP. Each becomes a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not valid JSON (syntax error, truncated, too deeply nested, not UTF-8).
    Malformed,
    /// Valid JSON, but not a JSON-RPC 2.0 message or batch of them.
    NotJsonRpc,
}

/// Most tool-argument key names we log for one `tools/call` (names only, never values).
pub const MAX_ARGUMENT_KEYS: usize = 32;

/// A JSON-RPC id. Ids are typed: `1` and `"1"` name different requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestId<'a> {
    /// A number, as its literal text.
    Number(Cow<'a, str>),
    /// A string, as its value.
    Text(Cow<'a, str>),
}

impl RequestId<'_> {
    /// The text `jsonrpc.request.id` reports.
    pub fn as_str(&self) -> &str {
        match self {
            RequestId::Number(t) | RequestId::Text(t) => t,
        }
    }

    pub fn to_owned_id(&self) -> RequestId<'static> {
        match self {
            RequestId::Number(t) => RequestId::Number(Cow::Owned(t.to_string())),
            RequestId::Text(t) => RequestId::Text(Cow::Owned(t.to_string())),
        }
    }
}

/// One recognised JSON-RPC message, borrowing from the body.
#[derive(Debug, Clone, PartialEq)]
pub struct Message<'a> {
    pub kind: MessageKind,
    pub method: Option<Cow<'a, str>>,
    /// None when absent or null.
    pub id: Option<RequestId<'a>>,
    /// `jsonrpc` when it is not "2.0" (the convention reports it only then).
    pub jsonrpc_version: Cow<'a, str>,
    /// `params.name` (tools/call, prompts/get) or `params.uri` (resources/*).
    pub target: Option<Cow<'a, str>>,
    /// `params.protocolVersion` (initialize) or `_meta["io.modelcontextprotocol/protocolVersion"]`.
    pub protocol_version: Option<Cow<'a, str>>,
    /// `params.arguments` of a tools/call, unparsed: its key names are read only when
    /// a debug log line wants them ([`Message::argument_keys`]), never on the hot path.
    pub arguments: Option<&'a str>,
    /// Where things are, for the `_meta` splice.
    pub layout: Layout,
    /// Trace context found in `params._meta` (unvalidated strings).
    pub meta_context: MetaContext<'a>,
}

/// Byte positions inside the body. All offsets are absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Offset of the message object's `{`.
    pub object_open: usize,
    /// True when the message object has no members (`{}`): affects comma placement.
    pub object_empty: bool,
    pub params: ParamsLayout,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamsLayout {
    /// No `params` member (or `"params": null`).
    Absent,
    /// `params` is an object starting at `open`.
    Object { open: usize, empty: bool, meta: MetaLayout },
    /// `params` is an array or scalar, or has duplicate members: we do not touch it.
    Untouchable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaLayout {
    Absent,
    /// `_meta` is an object; members in document order.
    Object {
        open: usize,
        members: Vec<Member>,
    },
    /// `_meta` exists but is not an object: left alone.
    Untouchable,
}

/// One member of the `_meta` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub key: String,
    /// Offset of the key's opening quote.
    pub key_start: usize,
    pub value_start: usize,
    pub value_end: usize,
}

/// `traceparent`/`tracestate`/`baggage` as found in `params._meta`. `Some(Err(()))`
/// means the key is there but its value is not a string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaContext<'a> {
    pub traceparent: Option<Result<Cow<'a, str>, ()>>,
    pub tracestate: Option<Result<Cow<'a, str>, ()>>,
    pub baggage: Option<Result<Cow<'a, str>, ()>>,
}

impl Message<'_> {
    /// Key names of `params.arguments` (tools/call only; values never), at most
    /// [`MAX_ARGUMENT_KEYS`]. Parses the arguments again: for logs only.
    pub fn argument_keys(&self) -> Vec<String> {
        self.arguments.and_then(|a| serde_json::from_str::<KeyNames>(a).ok()).map(|k| k.0).unwrap_or_default()
    }
}

/// A recognised body.
// The single message, by far the common case, stays inline: no allocation for it.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Body<'a> {
    Single(Message<'a>),
    /// A JSON-RPC batch (allowed in 2025-03-26, still met in the wild).
    Batch(Vec<Message<'a>>),
}

impl<'a> Body<'a> {
    pub fn messages(&self) -> &[Message<'a>] {
        match self {
            Body::Single(m) => std::slice::from_ref(m),
            Body::Batch(ms) => ms,
        }
    }
}

#[derive(Deserialize)]
struct WireMessage<'a> {
    #[serde(borrow)]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<&'a RawValue>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    // `null` is kept (as raw text), not read as absent: the splice must not add a
    // second `params` beside it.
    #[serde(borrow, default, deserialize_with = "raw_even_null")]
    params: Option<&'a RawValue>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

/// The `params` members the filter reads; `null` values kept as raw text (see
/// [`raw_even_null`]), as [`skim_params`] reads them.
#[derive(Deserialize)]
struct WireParams<'a> {
    #[serde(borrow, default, deserialize_with = "raw_even_null")]
    name: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "raw_even_null")]
    uri: Option<&'a RawValue>,
    // A `null` `_meta` must not read as absent: the splice would add a second `_meta`.
    #[serde(borrow, default, deserialize_with = "raw_even_null", rename = "_meta")]
    meta: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "raw_even_null")]
    arguments: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "raw_even_null", rename = "protocolVersion")]
    protocol_version: Option<&'a RawValue>,
}

/// A member's raw value, `null` included (serde reads `null` into `Option` as None).
fn raw_even_null<'de, D: de::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Parses a POST body as a JSON-RPC message or batch.
pub fn parse_body(body: &[u8]) -> Result<Body<'_>, Rejection> {
    // JSON is UTF-8 (RFC 8259). Checked once up front: serde_json does not check the
    // strings it skips, and parsing from `str` then spares it the per-string check.
    let text = simdutf8::basic::from_utf8(body).map_err(|_| Rejection::Malformed)?;
    let (first, &opening) = body.iter().enumerate().find(|(_, b)| !b.is_ascii_whitespace()).ok_or(Rejection::Malformed)?;
    match opening {
        b'{' => {
            let wire: WireMessage = serde_json::from_str(text).map_err(reject)?;
            message(body, first, wire).map(Body::Single).ok_or(Rejection::NotJsonRpc)
        }
        b'[' => {
            let elements: Vec<&RawValue> = serde_json::from_str(text).map_err(reject)?;
            if elements.is_empty() {
                return Err(Rejection::NotJsonRpc);
            }
            let mut messages = Vec::with_capacity(elements.len());
            for raw in elements {
                if !raw.get().starts_with('{') {
                    return Err(Rejection::NotJsonRpc);
                }
                let wire: WireMessage = serde_json::from_str(raw.get()).map_err(|_| Rejection::NotJsonRpc)?;
                messages.push(message(body, offset(body, raw), wire).ok_or(Rejection::NotJsonRpc)?);
            }
            Ok(Body::Batch(messages))
        }
        _ => {
            // Valid JSON that is not an object or array is still not JSON-RPC; invalid
            // bytes are malformed.
            serde_json::from_str::<IgnoredAny>(text).map_err(reject)?;
            Err(Rejection::NotJsonRpc)
        }
    }
}

fn reject(e: serde_json::Error) -> Rejection {
    match e.classify() {
        serde_json::error::Category::Data => Rejection::NotJsonRpc,
        _ => Rejection::Malformed,
    }
}

/// Offset of a raw slice inside the body it was parsed from.
fn offset(body: &[u8], raw: &RawValue) -> usize {
    text_offset(body, raw.get())
}

fn text_offset(body: &[u8], text: &str) -> usize {
    (text.as_ptr() as usize).saturating_sub(body.as_ptr() as usize)
}

/// A JSON string's value, borrowed when it has no escapes.
pub fn json_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    json_text_str(raw.get())
}

/// [`json_str`] of raw JSON text.
fn json_text_str(text: &str) -> Option<Cow<'_, str>> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(text).ok().map(Cow::Owned)
}

fn message<'a>(body: &'a [u8], object_open: usize, wire: WireMessage<'a>) -> Option<Message<'a>> {
    let jsonrpc_version = json_str(wire.jsonrpc?)?;
    let method = match wire.method {
        Some(raw) => Some(json_str(raw)?),
        None => None,
    };
    let id = match wire.id {
        None => None,
        Some(raw) => {
            let text = raw.get();
            if text.starts_with('"') {
                Some(RequestId::Text(json_str(raw)?))
            } else if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
                Some(RequestId::Number(Cow::Borrowed(text)))
            } else {
                return None; // ids are strings or numbers
            }
        }
    };
    let kind = match (&method, &id) {
        (Some(_), Some(_)) => MessageKind::Request,
        (Some(_), None) => MessageKind::Notification,
        (None, Some(_)) if wire.result.is_some() || wire.error.is_some() => MessageKind::Response,
        _ => return None,
    };
    let object_empty = body.get(object_open + 1..).and_then(|rest| rest.iter().find(|b| !b.is_ascii_whitespace())) == Some(&b'}');
    let mut msg = Message {
        kind,
        method,
        id,
        jsonrpc_version,
        target: None,
        protocol_version: None,
        arguments: None,
        layout: Layout { object_open, object_empty, params: ParamsLayout::Absent },
        meta_context: MetaContext::default(),
    };
    if let Some(params) = wire.params {
        read_params(body, params, &mut msg);
    }
    Some(msg)
}

fn read_params<'a>(body: &'a [u8], raw: &'a RawValue, msg: &mut Message<'a>) {
    let open = offset(body, raw);
    if !raw.get().starts_with('{') {
        msg.layout.params = ParamsLayout::Untouchable;
        return;
    }
    // serde_json has validated `params` with the whole body; skimming its members is
    // much cheaper than a second parse, which would scan large tool arguments again.
    let skimmed = skim_params(raw.get());
    let Some(params) = skimmed.or_else(|| serde_json::from_str::<WireParams>(raw.get()).ok().map(ParamsText::from)) else {
        // Duplicate members: the receiver's view of them is ambiguous, so hands off.
        msg.layout.params = ParamsLayout::Untouchable;
        return;
    };
    let method = msg.method.as_deref().unwrap_or("");
    msg.target = match method {
        "tools/call" | "prompts/get" => params.name.and_then(json_text_str),
        m if m.starts_with("resources/") => params.uri.and_then(json_text_str),
        _ => None,
    };
    if method == "tools/call" {
        msg.arguments = params.arguments;
    }
    msg.protocol_version = params.protocol_version.and_then(json_text_str);
    let meta = match params.meta {
        None => MetaLayout::Absent,
        Some(meta_text) if meta_text.starts_with('{') => read_meta(body, meta_text, msg),
        Some(_) => MetaLayout::Untouchable,
    };
    let empty = raw.get().get(1..).unwrap_or("").trim_start().starts_with('}');
    msg.layout.params = ParamsLayout::Object { open, empty, meta };
}

/// The members of `params` the filter reads, as raw JSON text borrowed from the body
/// (`null` included: a `null` `_meta` is left alone, never doubled).
#[derive(Debug, Default, PartialEq)]
struct ParamsText<'a> {
    name: Option<&'a str>,
    uri: Option<&'a str>,
    meta: Option<&'a str>,
    arguments: Option<&'a str>,
    protocol_version: Option<&'a str>,
}

impl<'a> From<WireParams<'a>> for ParamsText<'a> {
    fn from(p: WireParams<'a>) -> Self {
        ParamsText {
            name: p.name.map(RawValue::get),
            uri: p.uri.map(RawValue::get),
            meta: p.meta.map(RawValue::get),
            arguments: p.arguments.map(RawValue::get),
            protocol_version: p.protocol_version.map(RawValue::get),
        }
    }
}

/// Reads the members of a `params` object that serde_json has already validated: keys
/// are read, values only skipped (strings with memchr). None for what it leaves to
/// serde_json: a key with an escape, a member the filter reads given twice, or anything
/// unexpected.
fn skim_params(text: &str) -> Option<ParamsText<'_>> {
    let b = text.as_bytes();
    let mut out = ParamsText::default();
    let mut seen = [false; 5];
    let mut i = skip_ws(b, 1);
    if b.get(i) == Some(&b'}') {
        return Some(out);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = i + 1 + memchr::memchr2(b'"', b'\\', b.get(i + 1..)?)?;
        if b.get(key_end) != Some(&b'"') {
            return None; // an escaped key: serde_json decodes it
        }
        let key = b.get(i + 1..key_end)?;
        i = skip_ws(b, key_end + 1);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(b, i + 1);
        let end = skip_value(b, start)?;
        let value = text.get(start..end)?;
        let slot = match key {
            b"name" => Some((0, &mut out.name)),
            b"uri" => Some((1, &mut out.uri)),
            b"_meta" => Some((2, &mut out.meta)),
            b"arguments" => Some((3, &mut out.arguments)),
            b"protocolVersion" => Some((4, &mut out.protocol_version)),
            _ => None,
        };
        if let Some((index, field)) = slot {
            if std::mem::replace(seen.get_mut(index)?, true) {
                return None; // serde_json refuses the duplicate
            }
            *field = Some(value);
        }
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return Some(out),
            _ => return None,
        }
    }
}

/// For the randomised tests: on a valid JSON object, [`skim_params`] either declines or
/// reads exactly what serde_json reads, and it declines every object serde refuses.
/// Ok(true): skimmed and equal; Ok(false): declined; Err: they disagree.
#[cfg(test)]
pub(crate) fn skim_agrees_with_serde(text: &str) -> Result<bool, ()> {
    let serde = serde_json::from_str::<WireParams>(text).ok().map(ParamsText::from);
    match (skim_params(text), serde) {
        (Some(skimmed), Some(parsed)) if skimmed == parsed => Ok(true),
        (Some(_), _) => Err(()),
        (None, _) => Ok(false),
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The end of the (valid) JSON value starting at `i`.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match b.get(j)? {
                    b'"' => j = skip_string(b, j)?,
                    b'{' | b'[' => {
                        depth += 1;
                        j += 1;
                    }
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        j += 1;
                        if depth == 0 {
                            return Some(j);
                        }
                    }
                    _ => j += 1,
                }
            }
        }
        _ => {
            let len = b.get(i..)?.iter().position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))?;
            Some(i + len)
        }
    }
}

/// The end of the string whose opening quote is at `i`.
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        j += memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
        if b.get(j) == Some(&b'\\') {
            j += 2;
        } else {
            return Some(j + 1);
        }
    }
}

fn read_meta<'a>(body: &'a [u8], text: &'a str, msg: &mut Message<'a>) -> MetaLayout {
    let Ok(MetaMembers(entries)) = serde_json::from_str::<MetaMembers>(text) else {
        return MetaLayout::Untouchable;
    };
    let open = text_offset(body, text);
    let mut members = Vec::with_capacity(entries.len());
    let mut cursor = open + 1; // just after `{` or after the previous value
    for (key, value) in entries {
        let value_start = offset(body, value);
        let value_end = value_start + value.get().len();
        // The key starts at the first quote after the previous value (or the brace):
        // only whitespace and one comma can stand in between.
        let key_start = body.get(cursor..value_start).and_then(|gap| gap.iter().position(|&b| b == b'"')).map_or(cursor, |p| cursor + p);
        let as_str = || json_str(value).ok_or(());
        match key.as_str() {
            "traceparent" => msg.meta_context.traceparent = Some(as_str()),
            "tracestate" => msg.meta_context.tracestate = Some(as_str()),
            "baggage" => msg.meta_context.baggage = Some(as_str()),
            "io.modelcontextprotocol/protocolVersion" if msg.protocol_version.is_none() => msg.protocol_version = json_str(value),
            _ => {}
        }
        members.push(Member { key, key_start, value_start, value_end });
        cursor = value_end;
    }
    MetaLayout::Object { open, members }
}

/// The members of `_meta` in document order, duplicates included.
struct MetaMembers<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for MetaMembers<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MetaMembers<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, &'de RawValue>()? {
                    out.push((k, v));
                }
                Ok(MetaMembers(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// The key names of an object (values skipped), at most [`MAX_ARGUMENT_KEYS`].
struct KeyNames(Vec<String>);

impl<'de> Deserialize<'de> for KeyNames {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyNames;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut keys = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<IgnoredAny>()?;
                    if keys.len() < MAX_ARGUMENT_KEYS {
                        keys.push(key);
                    }
                }
                Ok(KeyNames(keys))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(body: &str) -> Message<'_> {
        match parse_body(body.as_bytes()).unwrap() {
            Body::Single(m) => m,
            Body::Batch(_) => panic!("expected single"),
        }
    }

    #[test]
    fn params_are_skimmed_as_serde_reads_them() {
        let cases = [
            r#"{}"#,
            r#"{ }"#,
            r#"{"name":"get_weather","arguments":{"city":"Par\"is","nested":[{"a":"}"},[],"\\"],"n":-1.5e3,"t":true}}"#,
            r#"{ "arguments" : { } , "name" : "x" , "_meta" : {"traceparent":"00-x"} }"#,
            r#"{"_meta":null,"name":null,"uri":"file:///a","protocolVersion":"2025-11-25","other":[1,2,{"name":3}]}"#,
            r#"{"name":1,"uri":{"x":"y"},"_meta":"str","arguments":[]}"#,
            r#"{"other":"a","other":"b","name":"n"}"#,
        ];
        for text in cases {
            let skimmed = skim_params(text).unwrap_or_else(|| panic!("declined {text}"));
            let parsed = ParamsText::from(serde_json::from_str::<WireParams>(text).unwrap());
            assert_eq!(skimmed, parsed, "{text}");
        }
        // Left to serde_json: an escaped key, a duplicate member the filter reads.
        assert_eq!(skim_params(r#"{"na\u006de":"x"}"#), None);
        assert_eq!(skim_params(r#"{"_meta":null,"_meta":{}}"#), None);
        assert!(serde_json::from_str::<WireParams>(r#"{"_meta":null,"_meta":{}}"#).is_err());
        let tool = single(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"q":"}\""},"name":"t"}}"#);
        assert_eq!(tool.target.as_deref(), Some("t"));
        assert_eq!(tool.arguments, Some(r#"{"q":"}\""}"#));
    }

    #[test]
    fn classifies_requests_notifications_and_responses() {
        let m = single(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
        assert_eq!(
            (m.kind, m.method.as_deref(), m.id.as_ref().map(RequestId::as_str)),
            (MessageKind::Request, Some("tools/list"), Some("1"))
        );
        let m = single(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        assert_eq!((m.kind, m.id), (MessageKind::Notification, None));
        let m = single(r#"{"jsonrpc":"2.0","id":"abc","result":{}}"#);
        assert_eq!((m.kind, m.id.as_ref().map(RequestId::as_str)), (MessageKind::Response, Some("abc")));
        let m = single(r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32601,"message":"x"}}"#);
        assert_eq!(m.kind, MessageKind::Response);
        let m = single(r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#);
        assert_eq!((m.kind, m.id), (MessageKind::Notification, None), "null id is reported as absent");
        let m = single(r#"{"jsonrpc":"2.0","id":-1.5e3,"method":"ping"}"#);
        assert_eq!(m.id.as_ref().map(RequestId::as_str), Some("-1.5e3"));
    }

    #[test]
    fn reads_targets_by_method() {
        let m = single(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_weather","arguments":{"city":"Paris","units":"c"}}}"#,
        );
        assert_eq!(m.target.as_deref(), Some("get_weather"));
        assert_eq!(m.argument_keys(), vec!["city", "units"]);
        let m = single(r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"greet"}}"#);
        assert_eq!(m.target.as_deref(), Some("greet"));
        let m = single(r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a\u0020b"}}"#);
        assert_eq!(m.target.as_deref(), Some("file:///a b"));
        let m = single(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"name":"ignored"}}"#);
        assert_eq!(m.target, None);
        let m = single(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":42}}"#);
        assert_eq!(m.target, None, "wrong type is ignored, not fatal");
        let m = single(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}"#);
        assert_eq!(m.protocol_version.as_deref(), Some("2025-11-25"));
        let m = single(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        );
        assert_eq!(m.protocol_version.as_deref(), Some("2026-07-28"));
    }

    #[test]
    fn reads_meta_context_and_positions() {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{ "_meta" : { "traceparent" : "tp" , "x":1, "tracestate":5 } }}"#;
        let m = single(body);
        assert_eq!(m.meta_context.traceparent, Some(Ok(Cow::Borrowed("tp"))));
        assert_eq!(m.meta_context.tracestate, Some(Err(())));
        let ParamsLayout::Object { meta: MetaLayout::Object { open, members }, .. } = &m.layout.params else { panic!() };
        assert_eq!(&body[*open..*open + 1], "{");
        let keys: Vec<&str> = members.iter().map(|mm| &body[mm.key_start..mm.value_end]).collect();
        assert_eq!(keys, vec![r#""traceparent" : "tp""#, r#""x":1"#, r#""tracestate":5"#]);
    }

    #[test]
    fn batches_are_read_element_by_element() {
        let body = r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}, {"jsonrpc":"2.0","method":"notifications/progress"}]"#;
        let Body::Batch(ms) = parse_body(body.as_bytes()).unwrap() else { panic!() };
        assert_eq!(ms.len(), 2);
        assert_eq!(&body[ms[1].layout.object_open..ms[1].layout.object_open + 1], "{");
        assert_eq!(ms[1].kind, MessageKind::Notification);
    }

    #[test]
    fn rejects_what_is_not_json_rpc() {
        let not = [
            r#"{"hello":"world"}"#,
            r#"{"jsonrpc":"2.0"}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"{"jsonrpc":2,"id":1,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":5}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"a","method":"b"}"#,
            r#"[]"#,
            r#"[1]"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}, {"x":1}]"#,
            r#""just a string""#,
            r#"42"#,
        ];
        for body in not {
            assert_eq!(parse_body(body.as_bytes()), Err(Rejection::NotJsonRpc), "{body}");
        }
    }

    #[test]
    fn rejects_malformed_and_hostile_input() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let deep_obj = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{}1{}}}"#, "[".repeat(5000), "]".repeat(5000));
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"   ".to_vec(),
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/ca"#.to_vec(),
            br#"{"jsonrpc":"2.0","id":1,"method":"x"} trailing"#.to_vec(),
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\xfe\"}".to_vec(),
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\nb\"}".to_vec(),
            b"\x00\x01".to_vec(),
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{\"skipped\":\"\xff\"}}".to_vec(),
        ];
        for body in cases {
            assert_eq!(parse_body(&body), Err(Rejection::Malformed), "{:?}", String::from_utf8_lossy(&body[..body.len().min(60)]));
        }
        // Deep nesting: skipped iteratively by serde_json (no stack growth), so the
        // outcome is a clean rejection either way, never a crash.
        assert!(parse_body(deep.as_bytes()).is_err());
        let m = parse_body(deep_obj.as_bytes());
        assert!(matches!(m, Ok(Body::Single(ref m)) if m.layout.params == ParamsLayout::Untouchable), "{m:?}");
    }

    #[test]
    fn untouchable_params_and_meta() {
        let m = single(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":[1,2]}"#);
        assert_eq!(m.layout.params, ParamsLayout::Untouchable);
        let m = single(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":1,"_meta":2}}"#);
        assert_eq!(m.layout.params, ParamsLayout::Untouchable);
        let m = single(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":"s"}}"#);
        assert!(matches!(m.layout.params, ParamsLayout::Object { meta: MetaLayout::Untouchable, .. }));
        // `null` is not absent: a second `params` or `_meta` beside it would be a
        // duplicate key.
        let m = single(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":null}"#);
        assert_eq!(m.layout.params, ParamsLayout::Untouchable);
        let m = single(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":null}}"#);
        assert!(matches!(m.layout.params, ParamsLayout::Object { meta: MetaLayout::Untouchable, .. }));
    }
}
