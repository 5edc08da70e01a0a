//! An incremental scan of JSON-RPC messages in a response body.
//!
//! Responses can be large (a 10 MB tool result) and arrive in chunks; we must not hold
//! them. The scanner keeps a few bytes of state between chunks and picks out only what a
//! span needs from each top-level message: `id`, `method`, `error.code`,
//! `error.message`, `result.isError`, `result.protocolVersion`. Everything else is
//! skipped byte by byte. It is a scanner, not a validator: it tracks strings, nesting and
//! keys well enough to find those members in well-formed JSON, and gives up cleanly
//! (reporting what it has) on input it cannot follow.

use crate::core::jsonrpc::RequestId;

/// Longest value we keep for a captured member; longer values are cut.
pub const MAX_CAPTURE: usize = 256;
/// Longest key kept while scanning: the keys we look for are short, longer ones are
/// none of them.
const MAX_KEY_LEN: usize = 32;
/// Deeper nesting than this is followed by counting only (no key tracking needed there).
const MAX_TRACKED_DEPTH: usize = 4;
/// Deeper than this we stop following the body (it is still passed on untouched).
const MAX_DEPTH: usize = 4096;

/// What a response message says, as far as a span is concerned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageSummary {
    /// `id`, typed (a string's value, or a number's literal).
    pub id: Option<RequestId<'static>>,
    pub method: Option<String>,
    pub has_result: bool,
    pub has_error: bool,
    /// `error.code` literal (a JSON-RPC error code, e.g. "-32601").
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// `result.isError` of a `CallToolResult`.
    pub is_error: Option<bool>,
    /// `result.protocolVersion` of an `initialize` result.
    pub protocol_version: Option<String>,
}

impl MessageSummary {
    /// A server-to-client request (has `method` and `id`).
    pub fn is_request(&self) -> bool {
        self.method.is_some() && self.id.is_some()
    }
    pub fn is_notification(&self) -> bool {
        self.method.is_some() && self.id.is_none()
    }
    pub fn is_response(&self) -> bool {
        self.method.is_none() && (self.has_result || self.has_error)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Object,
    Array,
}

/// Which member's value we are in, at the depths we track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Other,
    Id,
    Method,
    Error,
    Result,
    ErrorCode,
    ErrorMessage,
    IsError,
    ProtocolVersion,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// Between tokens.
    Between,
    /// Inside a string; `escape` after a backslash.
    Str { escape: bool },
    /// Inside a number or literal.
    Scalar,
}

/// Incremental scanner. Feed chunks with [`JsonScanner::feed`]; completed messages are
/// appended to the output vector as their closing brace is seen.
#[derive(Debug, Clone)]
pub struct JsonScanner {
    lex: Lex,
    stack: Vec<Container>,
    /// Slot of the value at each tracked depth (index = depth - 1).
    slots: [Slot; MAX_TRACKED_DEPTH],
    /// True when the next string at the current object level is a key.
    expect_key: bool,
    /// Depth (1-based) at which message objects live: 1 for a single message, 2 inside
    /// a batch array; 0 until the first byte decides.
    message_depth: usize,
    current: MessageSummary,
    key: InlineBytes<MAX_KEY_LEN>,
    key_overflow: bool,
    capture: InlineBytes<MAX_CAPTURE>,
    capturing: bool,
    capture_is_string: bool,
    failed: bool,
    done: bool,
}

impl Default for JsonScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonScanner {
    pub fn new() -> Self {
        JsonScanner {
            lex: Lex::Between,
            stack: Vec::new(),
            slots: [Slot::Other; MAX_TRACKED_DEPTH],
            expect_key: false,
            message_depth: 0,
            current: MessageSummary::default(),
            key: InlineBytes::new(),
            key_overflow: false,
            capture: InlineBytes::new(),
            capturing: false,
            capture_is_string: false,
            failed: false,
            done: false,
        }
    }

    /// True once the input stopped looking like JSON we can follow.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// True once the top-level value closed.
    pub fn done(&self) -> bool {
        self.done
    }

    /// Scans `chunk`, appending every message object that closes in it to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<MessageSummary>) {
        let mut i = 0;
        while let Some(&b) = chunk.get(i).filter(|_| !self.failed) {
            match self.lex {
                Lex::Str { escape: true } => {
                    self.lex = Lex::Str { escape: false };
                    self.keep(b);
                    i += 1;
                }
                Lex::Str { escape: false } => {
                    // Plain string bytes up to the next quote or backslash, at once.
                    let rest = chunk.get(i..).unwrap_or_default();
                    let plain = memchr::memchr2(b'"', b'\\', rest);
                    self.keep_run(rest.get(..plain.unwrap_or(rest.len())).unwrap_or_default());
                    let Some(p) = plain else { return };
                    i += p;
                    if chunk.get(i) == Some(&b'\\') {
                        self.lex = Lex::Str { escape: true };
                        self.keep(b'\\');
                    } else {
                        self.end_string();
                    }
                    i += 1;
                }
                Lex::Scalar => {
                    if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n') {
                        self.end_scalar();
                        // Re-read this byte as structure.
                    } else {
                        if self.capturing {
                            self.keep(b);
                        }
                        i += 1;
                    }
                }
                Lex::Between => {
                    self.structure(b, out);
                    i += 1;
                }
            }
        }
    }

    fn in_key(&self) -> bool {
        self.expect_key && self.depth() <= MAX_TRACKED_DEPTH
    }

    fn depth(&self) -> usize {
        self.stack.len()
    }

    /// Keeps string or value bytes where the scanner is collecting them: the current
    /// key (overflow noted) or a captured value.
    fn keep_run(&mut self, run: &[u8]) {
        if run.is_empty() {
            return;
        }
        if self.in_key() {
            if !self.key.extend(run) {
                self.key_overflow = true;
            }
        } else if self.capturing {
            self.capture.extend(run);
        }
    }

    fn keep(&mut self, b: u8) {
        self.keep_run(std::slice::from_ref(&b));
    }

    fn structure(&mut self, b: u8, out: &mut Vec<MessageSummary>) {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => {}
            b'{' | b'[' => {
                if self.done {
                    self.failed = true; // a second top-level value
                    return;
                }
                if self.depth() == 0 {
                    self.message_depth = if b == b'{' { 1 } else { 2 };
                }
                let container = if b == b'{' { Container::Object } else { Container::Array };
                if self.depth() == MAX_DEPTH {
                    self.failed = true;
                    return;
                }
                self.stack.push(container);
                if self.depth() == self.message_depth && container == Container::Object {
                    self.current = MessageSummary::default();
                }
                self.set_slot(self.depth(), Slot::Other);
                self.expect_key = container == Container::Object;
            }
            b'}' | b']' => {
                let Some(closed) = self.stack.pop() else {
                    self.failed = true;
                    return;
                };
                if (closed == Container::Object) != (b == b'}') {
                    self.failed = true;
                    return;
                }
                if closed == Container::Object && self.depth() + 1 == self.message_depth {
                    out.push(std::mem::take(&mut self.current));
                }
                self.expect_key = false;
                if self.depth() == 0 {
                    self.done = true;
                }
            }
            b',' => {
                self.expect_key = self.stack.last() == Some(&Container::Object);
                self.set_slot(self.depth(), Slot::Other);
            }
            b':' => {
                self.expect_key = false;
            }
            b'"' => {
                if self.done {
                    self.failed = true;
                    return;
                }
                self.lex = Lex::Str { escape: false };
                if self.in_key() {
                    self.key.clear();
                    self.key_overflow = false;
                } else {
                    self.start_value(true);
                }
            }
            b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
                if self.done {
                    self.failed = true;
                    return;
                }
                self.lex = Lex::Scalar;
                self.start_value(false);
                if self.capturing {
                    self.capture.extend(std::slice::from_ref(&b));
                }
            }
            _ => self.failed = true,
        }
    }

    /// A value starts at the current depth: capture it if its slot is one we report.
    fn start_value(&mut self, is_string: bool) {
        let slot = self.current_slot();
        self.capturing =
            matches!(slot, Slot::Id | Slot::Method | Slot::ErrorCode | Slot::ErrorMessage | Slot::IsError | Slot::ProtocolVersion);
        self.capture_is_string = is_string;
        self.capture.clear();
    }

    fn current_slot(&self) -> Slot {
        self.slot_at(self.depth())
    }

    /// The slot of the value at `depth` (1-based); `Other` where depths are not tracked.
    fn slot_at(&self, depth: usize) -> Slot {
        depth.checked_sub(1).and_then(|i| self.slots.get(i)).copied().unwrap_or(Slot::Other)
    }

    fn set_slot(&mut self, depth: usize, slot: Slot) {
        if let Some(s) = depth.checked_sub(1).and_then(|i| self.slots.get_mut(i)) {
            *s = slot;
        }
    }

    fn end_string(&mut self) {
        self.lex = Lex::Between;
        if self.in_key() {
            self.assign_key_slot();
            return;
        }
        self.finish_capture();
    }

    fn end_scalar(&mut self) {
        self.lex = Lex::Between;
        self.finish_capture();
    }

    /// Decides what the value after this key means, from the key and where it is.
    fn assign_key_slot(&mut self) {
        let d = self.depth();
        if d == 0 || d > MAX_TRACKED_DEPTH {
            return;
        }
        let key: &[u8] = if self.key_overflow { b"" } else { self.key.as_slice() };
        let parent = self.slot_at(d - 1);
        let slot = if d == self.message_depth {
            match key {
                b"id" => Slot::Id,
                b"method" => Slot::Method,
                b"error" => {
                    self.current.has_error = true;
                    Slot::Error
                }
                b"result" => {
                    self.current.has_result = true;
                    Slot::Result
                }
                _ => Slot::Other,
            }
        } else if d == self.message_depth + 1 && parent == Slot::Error {
            match key {
                b"code" => Slot::ErrorCode,
                b"message" => Slot::ErrorMessage,
                _ => Slot::Other,
            }
        } else if d == self.message_depth + 1 && parent == Slot::Result {
            match key {
                b"isError" => Slot::IsError,
                b"protocolVersion" => Slot::ProtocolVersion,
                _ => Slot::Other,
            }
        } else {
            Slot::Other
        };
        self.set_slot(d, slot);
    }

    fn finish_capture(&mut self) {
        if !self.capturing {
            return;
        }
        self.capturing = false;
        let raw = self.capture.as_slice();
        let is_string = self.capture_is_string;
        let text = || if is_string { unescape(raw) } else { String::from_utf8_lossy(raw).into_owned() };
        match self.current_slot() {
            Slot::Id => {
                self.current.id = match (is_string, raw) {
                    (true, _) => Some(RequestId::Text(text().into())),
                    (false, b"null") => None,
                    (false, _) => Some(RequestId::Number(text().into())),
                }
            }
            Slot::Method if is_string => self.current.method = Some(text()),
            Slot::ErrorCode => self.current.error_code = Some(text()),
            Slot::ErrorMessage if is_string => self.current.error_message = Some(text()),
            Slot::IsError => self.current.is_error = Some(raw == b"true"),
            Slot::ProtocolVersion if is_string => self.current.protocol_version = Some(text()),
            _ => {}
        }
        self.capture.clear();
    }
}

/// Up to `N` bytes kept inline (the scanner's key and capture: bounded, so no allocation
/// per response); bytes beyond `N` are dropped.
#[derive(Debug, Clone)]
struct InlineBytes<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> InlineBytes<N> {
    fn new() -> Self {
        InlineBytes { bytes: [0; N], len: 0 }
    }

    /// False when not all of `run` fit (what fits is kept).
    fn extend(&mut self, run: &[u8]) -> bool {
        let room = N.saturating_sub(self.len);
        let take = run.len().min(room);
        if let (Some(dst), Some(src)) = (self.bytes.get_mut(self.len..self.len + take), run.get(..take)) {
            dst.copy_from_slice(src);
            self.len += take;
        }
        take == run.len()
    }

    fn as_slice(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }

    fn clear(&mut self) {
        self.len = 0;
    }
}

/// Decodes JSON string escapes of a (possibly cut) captured string.
fn unescape(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    if !text.contains('\\') {
        return text.into_owned();
    }
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    quoted.push_str(&text);
    quoted.push('"');
    serde_json::from_str::<String>(&quoted).unwrap_or_else(|_| text.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_whole(input: &[u8]) -> (Vec<MessageSummary>, bool) {
        let mut s = JsonScanner::new();
        let mut out = Vec::new();
        s.feed(input, &mut out);
        (out, s.failed())
    }

    /// Every way of cutting the input in two, and byte by byte, gives the same result.
    fn assert_split_invariant(input: &[u8]) -> Vec<MessageSummary> {
        let (whole, failed) = scan_whole(input);
        for cut in 0..=input.len() {
            let mut s = JsonScanner::new();
            let mut out = Vec::new();
            s.feed(&input[..cut], &mut out);
            s.feed(&input[cut..], &mut out);
            assert_eq!((&out, s.failed()), (&whole, failed), "cut at {cut}");
        }
        let mut s = JsonScanner::new();
        let mut out = Vec::new();
        for b in input {
            s.feed(std::slice::from_ref(b), &mut out);
        }
        assert_eq!(out, whole, "byte by byte");
        whole
    }

    #[test]
    fn finds_json_rpc_error() {
        let input = br#"{"jsonrpc":"2.0","id":3,"error":{"code":-32601,"message":"Method not found: \"x\"","data":{"code":1}}}"#;
        let out = assert_split_invariant(input);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].id.as_ref().map(RequestId::as_str), Some("3"));
        assert_eq!(out[0].error_code.as_deref(), Some("-32601"));
        assert_eq!(out[0].error_message.as_deref(), Some("Method not found: \"x\""));
        assert!(out[0].is_response());
    }

    #[test]
    fn ids_keep_their_type() {
        let ids: Vec<_> =
            assert_split_invariant(br#"[{"id":1,"result":{}},{"id":"1","result":{}},{"id":"null","result":{}},{"id":null,"result":{}}]"#)
                .into_iter()
                .map(|m| m.id)
                .collect();
        assert_eq!(
            ids,
            [Some(RequestId::Number("1".into())), Some(RequestId::Text("1".into())), Some(RequestId::Text("null".into())), None]
        );
    }

    #[test]
    fn finds_tool_error_flag_only_at_the_result_level() {
        let input = br#"{"jsonrpc":"2.0","id":"a","result":{"content":[{"type":"text","text":"{\"isError\":false}","isError":false}],"isError":true}}"#;
        let out = assert_split_invariant(input);
        assert_eq!(out[0].is_error, Some(true));
        assert_eq!(out[0].id.as_ref().map(RequestId::as_str), Some("a"));
        assert_eq!(out[0].error_code, None);
        let nested_only = br#"{"jsonrpc":"2.0","id":1,"result":{"structuredContent":{"isError":true}}}"#;
        assert_eq!(assert_split_invariant(nested_only)[0].is_error, None);
    }

    #[test]
    fn reads_notifications_requests_and_initialize() {
        let n = assert_split_invariant(br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}"#);
        assert!(n[0].is_notification());
        let r = assert_split_invariant(br#"{"method":"sampling/createMessage","id":0,"jsonrpc":"2.0","params":{}}"#);
        assert!(r[0].is_request());
        let i = assert_split_invariant(br#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25","capabilities":{}}}"#);
        assert_eq!(i[0].protocol_version.as_deref(), Some("2025-11-25"));
    }

    #[test]
    fn batches_yield_one_summary_per_element() {
        let input = b" [ {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}} ,\n{\"jsonrpc\":\"2.0\",\"id\":2,\"error\":{\"code\":-32602,\"message\":\"bad\"}} ] ";
        let out = assert_split_invariant(input);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].error_code.as_deref(), Some("-32602"));
    }

    #[test]
    fn long_values_are_cut_and_big_results_skipped() {
        let big = "x".repeat(100_000);
        let input = format!(
            r#"{{"jsonrpc":"2.0","id":1,"result":{{"content":[{{"type":"text","text":"{big}"}}],"isError":false}},"error":{{"code":1,"message":"{big}"}}}}"#
        );
        let (out, failed) = scan_whole(input.as_bytes());
        assert!(!failed);
        assert_eq!(out[0].is_error, Some(false));
        assert_eq!(out[0].error_message.as_ref().map(String::len), Some(MAX_CAPTURE));
    }

    #[test]
    fn garbage_fails_cleanly() {
        for input in [&b"<html>"[..], b"{\"a\":1}}", b"{\"a\":1} {", b"]"] {
            assert!(scan_whole(input).1, "{:?}", String::from_utf8_lossy(input));
        }
        // Nesting is followed up to MAX_DEPTH, then the scan stops instead of growing.
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(!scan_whole(deep.as_bytes()).1);
        let deeper = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(scan_whole(deeper.as_bytes()).1);
    }
}
