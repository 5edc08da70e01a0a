//! An incremental reader of `text/event-stream` responses.
//!
//! Chunks are read as they pass; nothing is held back from the client. The reader keeps
//! only its position in the current line and event, and streams `data:` bytes straight
//! into a [`JsonScanner`], so an event of any size costs a few bytes of state. It follows
//! the WHATWG event-stream grammar: LF, CRLF or CR line ends (split anywhere across
//! chunks), multi-line `data:`, `event:`/`id:`/`retry:` fields, `:` comments, and events
//! with empty data (MCP's priming events).

use crate::core::json_scan::{JsonScanner, MessageSummary};

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, when given (cut to 64 bytes).
    pub event_type: Option<String>,
    /// The JSON-RPC messages in the event's data (usually one), when it was JSON.
    pub messages: Vec<MessageSummary>,
    /// True when the event carried data that was not JSON we could follow.
    pub unreadable: bool,
    /// True when the event had no data (a priming event, or only `id:`/`retry:`).
    pub empty: bool,
    /// The data of an `endpoint` event (legacy HTTP+SSE transport: the URI to POST
    /// messages to, e.g. `/messages/?session_id=…`), cut to 512 bytes.
    pub endpoint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Data,
    Event,
    /// `id`, `retry`, comments and unknown fields: read past, not kept.
    Ignored,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// At the start of a line.
    Start,
    /// Reading the field name.
    Name,
    /// Just after `:`; one leading space is dropped.
    ValueStart(Field),
    Value(Field),
}

/// The UTF-8 byte order mark, which may open a stream and is not part of it.
pub const BYTE_ORDER_MARK: &[u8; 3] = b"\xEF\xBB\xBF";

const MAX_FIELD_NAME: usize = 16;
const MAX_EVENT_TYPE: usize = 64;
const MAX_ENDPOINT: usize = 512;

#[derive(Debug, Clone)]
pub struct SseReader {
    /// Bytes of a leading byte order mark seen so far; `None` once the stream started.
    bom_seen: Option<usize>,
    line: Line,
    /// The previous chunk ended in CR: a leading LF belongs to that line end.
    after_cr: bool,
    name: Vec<u8>,
    event_type: Vec<u8>,
    data_lines: usize,
    data_bytes: usize,
    scanner: JsonScanner,
    messages: Vec<MessageSummary>,
    /// Data of the current event, kept only while its type is `endpoint`.
    endpoint: Vec<u8>,
}

impl Default for SseReader {
    fn default() -> Self {
        Self::new()
    }
}

impl SseReader {
    pub fn new() -> Self {
        SseReader {
            bom_seen: Some(0),
            line: Line::Start,
            after_cr: false,
            name: Vec::new(),
            event_type: Vec::new(),
            data_lines: 0,
            data_bytes: 0,
            scanner: JsonScanner::new(),
            messages: Vec::new(),
            endpoint: Vec::new(),
        }
    }

    /// Reads `chunk`, appending each event it completes to `events`.
    pub fn feed(&mut self, chunk: &[u8], events: &mut Vec<SseEvent>) {
        let mut i = self.skip_byte_order_mark(chunk);
        // A CR that ended the last chunk and an LF that opens this one are one line end
        // (an empty chunk between them changes nothing).
        if self.after_cr && !chunk.is_empty() {
            self.after_cr = false;
            if chunk.first() == Some(&b'\n') {
                i = 1;
            }
        }
        while let Some(&b) = chunk.get(i) {
            if b == b'\n' || b == b'\r' {
                self.end_line(events);
                if b == b'\r' {
                    match chunk.get(i + 1) {
                        Some(b'\n') => i += 1,
                        Some(_) => {}
                        None => self.after_cr = true,
                    }
                }
                i += 1;
                continue;
            }
            match self.line {
                Line::Start | Line::Name => {
                    if b == b':' {
                        let field = match self.line {
                            Line::Start => Field::Ignored, // a comment
                            _ => self.field(),
                        };
                        self.start_value(field);
                        self.line = Line::ValueStart(field);
                    } else {
                        if self.name.len() < MAX_FIELD_NAME {
                            self.name.push(b);
                        } else {
                            self.name.push(0); // poison: no known field is this long
                            self.name.truncate(MAX_FIELD_NAME);
                        }
                        self.line = Line::Name;
                    }
                    i += 1;
                }
                Line::ValueStart(field) => {
                    self.line = Line::Value(field);
                    if b == b' ' {
                        i += 1;
                    }
                }
                Line::Value(field) => {
                    // Take the whole run up to the line end at once.
                    let rest = chunk.get(i..).unwrap_or_default();
                    let run = memchr::memchr2(b'\n', b'\r', rest).map_or(rest.len(), |p| p);
                    self.value_bytes(field, rest.get(..run).unwrap_or_default());
                    i += run;
                }
            }
        }
    }

    /// How many bytes at the start of `chunk` continue a leading byte order mark. A mark
    /// cut short is not one: its bytes spoil the first field name, as the U+FFFD a
    /// decoder would make of them does.
    fn skip_byte_order_mark(&mut self, chunk: &[u8]) -> usize {
        let Some(seen) = self.bom_seen else { return 0 };
        let matched = chunk.iter().zip(BYTE_ORDER_MARK.iter().skip(seen)).take_while(|(a, b)| a == b).count();
        let seen = seen + matched;
        if seen == BYTE_ORDER_MARK.len() || (matched < chunk.len() && seen > 0) {
            self.bom_seen = None;
            if seen < BYTE_ORDER_MARK.len() {
                self.name.push(0);
                self.line = Line::Name;
            }
        } else if matched == chunk.len() {
            self.bom_seen = Some(seen);
        } else {
            self.bom_seen = None;
        }
        matched
    }

    fn field(&self) -> Field {
        match self.name.as_slice() {
            b"data" => Field::Data,
            b"event" => Field::Event,
            _ => Field::Ignored,
        }
    }

    fn start_value(&mut self, field: Field) {
        match field {
            Field::Data => {
                if self.data_lines > 0 {
                    // Lines of one event's data are joined with LF; JSON treats it as space.
                    self.scanner.feed(b"\n", &mut self.messages);
                }
                self.data_lines += 1;
            }
            Field::Event => self.event_type.clear(),
            Field::Ignored => {}
        }
    }

    fn value_bytes(&mut self, field: Field, bytes: &[u8]) {
        match field {
            Field::Data => {
                self.data_bytes += bytes.len();
                if self.event_type == b"endpoint" {
                    let room = MAX_ENDPOINT.saturating_sub(self.endpoint.len());
                    self.endpoint.extend_from_slice(bytes.get(..room).unwrap_or(bytes));
                } else {
                    self.scanner.feed(bytes, &mut self.messages);
                }
            }
            Field::Event => {
                let room = MAX_EVENT_TYPE.saturating_sub(self.event_type.len());
                self.event_type.extend_from_slice(bytes.get(..room).unwrap_or(bytes));
            }
            Field::Ignored => {}
        }
    }

    fn end_line(&mut self, events: &mut Vec<SseEvent>) {
        match self.line {
            Line::Start => self.dispatch(events),
            // A field name with no colon: the whole line is the name, the value empty.
            Line::Name => {
                let field = self.field();
                self.start_value(field);
            }
            Line::ValueStart(_) | Line::Value(_) => {}
        }
        self.name.clear();
        self.line = Line::Start;
    }

    fn dispatch(&mut self, events: &mut Vec<SseEvent>) {
        if self.data_lines == 0 {
            // WHATWG: no data, no event (blank lines, or only event/id/retry/comments).
            self.event_type.clear();
            return;
        }
        let empty = self.data_bytes == 0;
        let is_endpoint = self.event_type == b"endpoint";
        let unreadable = !empty && !is_endpoint && (self.scanner.failed() || !self.scanner.done());
        events.push(SseEvent {
            event_type: (!self.event_type.is_empty()).then(|| String::from_utf8_lossy(&self.event_type).into_owned()),
            messages: std::mem::take(&mut self.messages),
            unreadable,
            empty,
            endpoint: is_endpoint.then(|| String::from_utf8_lossy(&self.endpoint).into_owned()),
        });
        self.endpoint.clear();
        self.event_type.clear();
        self.data_lines = 0;
        self.data_bytes = 0;
        self.scanner = JsonScanner::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut r = SseReader::new();
        let mut events = Vec::new();
        for c in chunks {
            r.feed(c, &mut events);
        }
        events
    }

    fn assert_split_invariant(stream: &[u8]) -> Vec<SseEvent> {
        let whole = read_all(&[stream]);
        for cut in 0..=stream.len() {
            assert_eq!(read_all(&[&stream[..cut], &stream[cut..]]), whole, "cut at {cut}");
        }
        for a in (0..stream.len()).step_by(7) {
            for b in a..=stream.len() {
                assert_eq!(read_all(&[&stream[..a], &stream[a..b], &stream[b..]]), whole, "cuts at {a},{b}");
            }
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(read_all(&bytes), whole, "byte by byte");
        whole
    }

    const MCP_STREAM: &[u8] = b"id: 1\ndata: \n\n\
event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n\
: keep-alive\n\n\
event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\r\ndata: \"result\":{\"content\":[],\"isError\":true}}\r\nretry: 100\r\n\r\n";

    #[test]
    fn reads_an_mcp_stream_however_it_is_split() {
        let events = assert_split_invariant(MCP_STREAM);
        assert_eq!(events.len(), 3);
        assert!(events[0].empty, "priming event");
        assert!(events[1].messages[0].is_notification());
        assert_eq!(events[1].event_type.as_deref(), Some("message"));
        let response = &events[2].messages[0];
        assert_eq!(response.id, Some(crate::core::jsonrpc::RequestId::Number("2".into())));
        assert_eq!(response.is_error, Some(true));
        assert!(!events[2].unreadable);
    }

    #[test]
    fn handles_cr_only_line_ends_and_no_space_after_colon() {
        let events =
            assert_split_invariant(b"data:{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32000,\"message\":\"boom\"}}\r\rdata\r\r");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].messages[0].error_code.as_deref(), Some("-32000"));
        assert!(events[1].empty);
    }

    #[test]
    fn legacy_endpoint_event_is_kept() {
        let events = assert_split_invariant(b"event: endpoint\r\ndata: /messages/?session_id=abc\r\n\r\n");
        assert_eq!(events[0].event_type.as_deref(), Some("endpoint"));
        assert_eq!(events[0].endpoint.as_deref(), Some("/messages/?session_id=abc"));
        assert!(!events[0].unreadable);
    }

    #[test]
    fn non_json_data_is_marked_unreadable() {
        let events = assert_split_invariant(b"event: message\ndata: not json\n\n");
        assert!(events[0].unreadable);
        assert!(events[0].messages.is_empty());
        assert_eq!(events[0].endpoint, None);
    }

    /// WHATWG: an event whose data buffer is empty is not dispatched (an `event:` or
    /// `id:` block without `data:`); an empty `data:` line does make an event.
    #[test]
    fn events_without_data_are_not_dispatched() {
        assert!(assert_split_invariant(b"event: ping\n\nid: 7\n\nevent: a\nid: 8\nretry: 5\n\n").is_empty());
        let events = assert_split_invariant(b"event: ping\n\ndata:\n\n");
        assert_eq!(events.len(), 1);
        assert!(events[0].empty);
        assert_eq!(events[0].event_type, None, "the type of the undispatched block does not leak into the next");
    }

    /// A byte order mark opens the stream and is not part of the first field name,
    /// however the chunks cut it.
    #[test]
    fn a_leading_byte_order_mark_is_skipped() {
        let events = assert_split_invariant(b"\xEF\xBB\xBFdata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].messages.len(), 1);
        assert!(read_all(&[b"data: 1\n\n\xEF\xBB\xBFdata: 2\n\n"]).len() == 1, "only at the start of the stream");
    }

    /// Found by the randomised cutting: an empty chunk between a CR and its LF made two
    /// line ends of one, and a blank line out of nothing.
    #[test]
    fn an_empty_chunk_between_cr_and_lf_is_nothing() {
        let whole = read_all(&[b"event: message\r\ndata: {\"id\":3,\"result\":{}}\n\n"]);
        assert_eq!(read_all(&[b"event: message\r", b"", b"\ndata: {\"id\":3,\"result\":{}}\n\n"]), whole);
        assert_eq!(whole[0].event_type.as_deref(), Some("message"));
    }

    #[test]
    fn incomplete_event_is_not_dispatched() {
        assert!(read_all(&[b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n"]).is_empty());
    }

    #[test]
    fn large_event_data_is_streamed_not_kept() {
        let big = "y".repeat(1 << 20);
        let event =
            format!("data: {{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{{\"content\":[{{\"type\":\"text\",\"text\":\"{big}\"}}]}}}}\n\n");
        let mut r = SseReader::new();
        let mut events = Vec::new();
        for chunk in event.as_bytes().chunks(16 * 1024) {
            r.feed(chunk, &mut events);
        }
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].messages[0].id.as_ref().map(|id| id.as_str()), Some("9"));
    }
}
