//! Stage 6: the response, read as it streams (never held): its status, the JSON-RPC
//! answers in a JSON body or an SSE stream, server-to-client traffic, and the session a
//! server assigns.

use super::classify::Transport;
use super::{now_secs, Exchange, Host};
use crate::core::headers;
use crate::core::json_scan::{JsonScanner, MessageSummary};
use crate::core::log_context::MAX_LOGGED_LEN;
use crate::core::metrics::Counter;
use crate::core::session::{query_param, Session, SessionOrigin, MAX_SESSION_ID_LEN};
use crate::core::span::{keys, set_session, Outcome, Value};
use crate::core::sse::{SseEvent, SseReader, BYTE_ORDER_MARK};
use crate::core::text::{bounded_printable, is_visible_ascii};

/// Longest protocol version kept from an `initialize` result.
const MAX_PROTOCOL_VERSION: usize = 64;

#[derive(Debug, Default)]
pub(super) struct ResponseState {
    reader: Reader,
    /// The HTTP status, read when the response is over and only if needed (0 before):
    /// the headers' `:status` is gone by then, the `response.code` property is not.
    pub status: u16,
    pub sse: SseCounts,
    pub published_sse: SseCounts,
    pub outcome_published: bool,
    pub finished: bool,
}

/// Counts of server-to-client traffic seen in an SSE response.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct SseCounts {
    pub events: i64,
    pub notifications: i64,
    pub requests: i64,
}

#[derive(Debug, Default)]
enum Reader {
    /// Nothing to read (no body, not MCP, or given up).
    #[default]
    None,
    /// Not yet known: decided by the first byte of the body that is not whitespace, after
    /// a byte order mark (of which `bom` bytes were seen; it may arrive in pieces). The
    /// body says what it is, so `content-type` is not read: a host call less.
    Sniff {
        bom: usize,
    },
    Json(JsonScanner),
    Sse(SseReader),
}

impl Reader {
    /// Strips what precedes the first significant byte and picks the reader it calls for:
    /// `{`/`[` a JSON-RPC message or batch (when a request was read to answer); an SSE
    /// field name or `:comment` a stream. Anything else is not MCP and is not read.
    fn sniff<'c>(&mut self, mut chunk: &'c [u8], json_expected: bool) -> &'c [u8] {
        let Reader::Sniff { bom } = self else { return chunk };
        while let (Some(&b), Some(&mark)) = (chunk.first(), BYTE_ORDER_MARK.get(*bom)) {
            if b != mark {
                break;
            }
            *bom += 1;
            chunk = chunk.get(1..).unwrap_or_default();
        }
        if *bom > 0 && *bom < BYTE_ORDER_MARK.len() && !chunk.is_empty() {
            *self = Reader::None; // bytes that begin a byte order mark and then stop
            return chunk;
        }
        let start = chunk.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(chunk.len());
        chunk = chunk.get(start..).unwrap_or_default();
        if let Some(&first) = chunk.first() {
            *self = match first {
                b'{' | b'[' if json_expected => Reader::Json(JsonScanner::new()),
                b':' => Reader::Sse(SseReader::new()),
                b if b.is_ascii_alphabetic() => Reader::Sse(SseReader::new()),
                _ => Reader::None,
            };
        }
        chunk
    }
}

impl Exchange {
    pub(super) fn read_response_headers(&mut self, end_of_stream: bool, host: &mut impl Host) {
        // Answered before the body was read (e.g. Envoy found no route, or the upstream
        // refused early): the mirrored headers are all that can name it.
        if !self.named {
            self.tag_from_mirrored_headers(host);
        }
        self.learn_session(host);
        if end_of_stream {
            self.finish_response(host);
        } else {
            self.response.reader = Reader::Sniff { bom: 0 };
        }
    }

    /// A 404 on a session the proxy saw the server assign: the server expired it.
    fn detect_expired_session(&mut self, host: &mut impl Host) {
        let sessions = &self.config.sessions;
        let expired = self.response.status == 404
            && self.identity.carried_session_header
            && self.identity.session.as_ref().is_some_and(|s| sessions.is_server_session(host, now_secs(host), &s.id));
        if expired {
            host.increment(Counter::SessionExpired);
            host.set_property(keys::SESSION_EXPIRED, "true");
            if let Some(s) = &self.identity.session {
                sessions.forget(host, now_secs(host), &s.id);
            }
            log::debug!("{} session expired (404)", self.log_prefix());
        }
    }

    pub(super) fn read_response_body(&mut self, body_size: usize, end_of_stream: bool, host: &mut impl Host) {
        let reading = body_size > 0 && !matches!(self.response.reader, Reader::None);
        if let Some(chunk) = reading.then(|| host.response_body(body_size)).flatten() {
            let mut found = Vec::new();
            let json_expected = !self.operations.is_empty();
            let chunk = self.response.reader.sniff(&chunk, json_expected);
            match &mut self.response.reader {
                Reader::Json(scanner) => {
                    scanner.feed(chunk, &mut found);
                    if scanner.failed() {
                        self.response.reader = Reader::None;
                    }
                }
                Reader::Sse(reader) => {
                    let mut events: Vec<SseEvent> = Vec::new();
                    reader.feed(chunk, &mut events);
                    for event in events {
                        self.response.sse.events += 1;
                        if let Some(endpoint) = &event.endpoint {
                            self.learn_legacy_session(endpoint, host);
                        }
                        found.extend(event.messages);
                    }
                }
                Reader::None | Reader::Sniff { .. } => {}
            }
            let mut answered = false;
            for summary in &found {
                answered |= self.match_response(summary);
            }
            // Published as they come (a reset stream never reaches end_of_stream).
            if answered || self.response.sse.events > self.response.published_sse.events {
                self.publish_response(host);
            }
        }
        if end_of_stream {
            self.finish_response(host);
        }
    }

    /// Matches a message from the response to the operation it answers, or counts it as
    /// server-to-client traffic. True when it answered the first operation (the one
    /// Envoy's span is named after).
    fn match_response(&mut self, summary: &MessageSummary) -> bool {
        if summary.is_notification() {
            self.response.sse.notifications += 1;
            return false;
        }
        if summary.is_request() {
            self.response.sse.requests += 1;
            return false;
        }
        if !summary.is_response() {
            return false;
        }
        // The first request with this id still waiting for its answer (a batch may repeat
        // an id); a lone request takes a lone answer whatever its id.
        let waiting = |op: &super::request::Operation| op.outcome.is_none() && op.id.is_some() && op.id == summary.id;
        let index = self.operations.iter().position(waiting).or((self.operations.len() == 1).then_some(0));
        let Some(op) = index.and_then(|i| self.operations.get_mut(i)) else { return false };
        if op.outcome.is_some() {
            return false;
        }
        op.outcome = Some(Outcome::from_response(summary));
        // (Only an own span has attributes to update.)
        let initialize = op.method.as_deref() == Some("initialize") && op.own_span.is_some();
        if let Some(version) = summary.protocol_version.as_deref().filter(|_| initialize) {
            op.attributes.retain(|(k, _)| *k != keys::MCP_PROTOCOL_VERSION);
            op.attributes.push((keys::MCP_PROTOCOL_VERSION, Value::Str(bounded_printable(version, MAX_PROTOCOL_VERSION).into_owned())));
        }
        index == Some(0)
    }

    /// The server assigns the session in the `initialize` response; from then on that id
    /// is the session, and the client-side id the request carried leads to it.
    fn learn_session(&mut self, host: &mut impl Host) {
        if !self.operations.iter().any(|op| op.method.as_deref() == Some("initialize")) {
            return;
        }
        let Some(assigned) = host.response_header(headers::MCP_SESSION_ID).filter(|s| is_visible_ascii(s, MAX_SESSION_ID_LEN)) else {
            return;
        };
        // The server's id is remembered (so a later 404 can be told apart from a bad id),
        // and the client-side id the request carried now leads to it. (The upstream
        // instance cannot tell a generated id from a client's; aliasing a random one
        // costs a slot nobody will ask for.)
        let alias = self.identity.session.as_ref().filter(|s| s.origin != SessionOrigin::Generated).map(|s| s.id.as_str());
        self.config.sessions.learn(host, now_secs(host), &assigned, alias);
        log::debug!("{} server assigned session {}", self.log_prefix(), bounded_printable(&assigned, MAX_LOGGED_LEN));
        for op in self.operations.iter_mut().filter(|op| op.own_span.is_some()) {
            set_session(&mut op.attributes, &assigned);
        }
        host.set_property(keys::MCP_SESSION_ID, &assigned);
        self.identity.session = Some(Session::new(assigned, SessionOrigin::Server));
    }

    /// Legacy HTTP+SSE: the stream's first event names the POST endpoint, whose
    /// `session_id` query parameter is the session every later POST carries.
    fn learn_legacy_session(&mut self, endpoint: &str, host: &mut impl Host) {
        if self.head.as_ref().map(|h| h.transport) != Some(Transport::Stream) {
            return;
        }
        let Some(id) = query_param(endpoint, "session_id").filter(|s| is_visible_ascii(s, MAX_SESSION_ID_LEN)) else { return };
        log::debug!("{} legacy SSE stream announced session {}", self.log_prefix(), bounded_printable(id, MAX_LOGGED_LEN));
        host.set_property(keys::MCP_SESSION_ID, id);
        self.config.sessions.learn(host, now_secs(host), id, None);
        self.identity.session = Some(Session::new(id.to_string(), SessionOrigin::Server));
    }

    /// The response is over (or the stream is): operations that got no answer take the
    /// HTTP status's outcome; the outcome goes on Envoy's span.
    pub(super) fn finish_response(&mut self, host: &mut impl Host) {
        if self.response.finished {
            return;
        }
        self.response.finished = true;
        self.response.reader = Reader::None;
        // The HTTP status says something only where JSON-RPC did not answer, or answered
        // with an error (a 404 with an error body is how a server says the session
        // expired): on a successful answer it is not read, a host call saved.
        let answered = !self.operations.is_empty() && self.operations.iter().all(|op| op.outcome.as_ref().is_some_and(|o| !o.is_error()));
        if !answered {
            self.response.status = host.response_status().unwrap_or(0);
            self.detect_expired_session(host);
            let http_outcome = Outcome::from_http_status(self.response.status);
            if http_outcome.is_error() {
                for op in self.operations.iter_mut().filter(|op| op.outcome.is_none()) {
                    op.outcome = Some(http_outcome.clone());
                }
            }
        }
        self.count_outcomes(host);
        self.publish_response(host);
    }
}
