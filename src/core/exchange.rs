//! One HTTP request/response through the filter: the decisions, host-independent.
//!
//! The proxy-wasm layer calls the `on_*` methods from the matching callbacks and does
//! what the returned [`Action`] says; every read and write of headers, bodies, filter
//! state, stats and spans goes through the [`Host`] trait, so this whole state machine
//! runs under `cargo test` against a recording host.

use crate::core::baggage::validate_baggage;
use crate::core::config::{Config, Role};
use crate::core::headers;
use crate::core::ids::random_unit;
use crate::core::ids::{resolve_request_id, RequestIdSource};
use crate::core::json_scan::{JsonScanner, MessageSummary};
use crate::core::jsonrpc::{parse_body, Body, Message, MessageKind, Rejection};
use crate::core::log_context;
use crate::core::meta_splice::{splice, MetaWrite};
use crate::core::metrics::{method_index, Counter, ErrorClass, PassReason};
use crate::core::otlp::{keep_span, root_sampled, SpanKind, SpanRecord};
use crate::core::propagation::{plan, HeaderContext, OwnSpanContext, ParentMode};
use crate::core::session::{query_param, resolve_session, Session, SessionOrigin, MAX_SESSION_ID_LEN};
use crate::core::span::{keys, request_attributes, span_name, Attributes, Outcome, RequestFacts, Value};
use crate::core::sse::{SseEvent, SseReader};
use crate::core::text::is_visible_ascii;
use crate::core::trace_context::validate_tracestate;
use std::rc::Rc;

/// What the host should do after a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    /// Hold headers / buffer the body until the next callback.
    Pause,
}

/// Everything the exchange needs from the proxy. Implemented by the proxy-wasm layer
/// over Envoy's ABI, and by a recording fake in tests.
pub trait Host {
    /// `HTTP/1.1`, `HTTP/2`… of the downstream request.
    fn request_protocol(&self) -> Option<String>;
    /// All request headers (one host call); names are lowercase.
    fn request_headers(&self) -> Vec<(String, String)>;
    /// Sets (Some) or removes (None) a request header.
    fn set_request_header(&mut self, name: &str, value: Option<&str>);
    /// The first `size` bytes of the request body Envoy holds for this callback.
    fn request_body(&self, size: usize) -> Option<Vec<u8>>;
    fn replace_request_body(&mut self, body: &[u8]);
    fn response_header(&self, name: &str) -> Option<String>;
    fn set_response_header(&mut self, name: &str, value: &str);
    fn response_body(&self, size: usize) -> Option<Vec<u8>>;
    /// Filter state read by Envoy's tracing (`%FILTER_STATE(wasm.<key>:PLAIN)%`).
    fn set_property(&mut self, key: &str, value: &str);
    /// Filter state set by this or the other instance of the filter on this stream.
    fn property(&self, key: &str) -> Option<String>;
    fn increment(&mut self, counter: Counter) {
        self.add(counter, 1);
    }
    fn add(&mut self, counter: Counter, by: i64);
    fn increment_tool(&mut self, tool: &str);
    fn record_duration_ms(&mut self, ms: u64);
    fn now_unix_nanos(&self) -> u64;
    /// Queues a finished own span for batched export.
    fn emit_span(&mut self, span: SpanRecord);
    /// Bounded, expiring memory of sessions across requests (shared data).
    fn recall_session(&self, key: &str) -> Option<String>;
    fn remember_session(&mut self, key: &str, session_id: &str);
    fn forget_session(&mut self, key: &str);
}

/// What kind of MCP transport operation this request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// A POST carrying JSON-RPC.
    Post,
    /// A GET opening a server-to-client SSE stream (Streamable HTTP, or legacy `/sse`).
    Stream,
    /// A DELETE ending a session.
    SessionEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not MCP, or done with the request side.
    Idle,
    /// Waiting for the whole body while Envoy holds it (we may rewrite it).
    HoldBody,
    /// Copying the body as it passes (we only read it).
    ObserveBody,
    /// Gave up on the body: pass the rest through.
    Bypass,
}

/// One JSON-RPC message of the request, as a span-to-be.
#[derive(Debug, Clone)]
struct Operation {
    method: Option<String>,
    id: Option<String>,
    name: String,
    attributes: Attributes,
    own_span: Option<OwnSpanContext>,
    outcome: Option<Outcome>,
    tool: Option<String>,
}

enum ResponseReader {
    None,
    Json(JsonScanner),
    Sse(SseReader),
}

/// Counts of server-to-client traffic seen in an SSE response.
#[derive(Debug, Clone, Copy, Default)]
struct SseCounts {
    events: i64,
    notifications: i64,
    requests: i64,
}

pub struct Exchange {
    config: Rc<Config>,
    transport: Option<Transport>,
    phase: Phase,
    request_id: Option<String>,
    session: Option<Session>,
    /// Session id the request carried in `Mcp-Session-Id` (to spot expiry on 404).
    carried_session_header: bool,
    header_context: HeaderContext,
    protocol_version_header: Option<String>,
    http_version: Option<String>,
    path: String,
    observed: Vec<u8>,
    operations: Vec<Operation>,
    batch: bool,
    response: ResponseReader,
    sse: SseCounts,
    status: u16,
    started_ns: u64,
    finished: bool,
    logged: bool,
    outcome_published: bool,
    published_sse: SseCounts,
}

impl Exchange {
    pub fn new(config: Rc<Config>) -> Exchange {
        Exchange {
            config,
            transport: None,
            phase: Phase::Idle,
            request_id: None,
            session: None,
            carried_session_header: false,
            header_context: HeaderContext::default(),
            protocol_version_header: None,
            http_version: None,
            path: String::new(),
            observed: Vec::new(),
            operations: Vec::new(),
            batch: false,
            response: ResponseReader::None,
            sse: SseCounts::default(),
            status: 0,
            started_ns: 0,
            finished: false,
            logged: false,
            outcome_published: false,
            published_sse: SseCounts::default(),
        }
    }

    fn log_prefix(&self) -> String {
        log_context::prefix(self.request_id.as_deref(), self.session.as_ref().map(|s| s.id.as_str()))
    }

    /// Stats, logs and Envoy's span tags come from the HCM instance only, so the router's
    /// upstream instance (which sees the same request again, per attempt) does not
    /// count it twice.
    fn reports(&self) -> bool {
        self.config.role != Role::Upstream
    }

    fn own_spans(&self) -> bool {
        self.config.own_spans.enabled && self.config.writes_meta()
    }

    pub fn on_request_headers(&mut self, end_of_stream: bool, host: &mut impl Host) -> Action {
        self.started_ns = host.now_unix_nanos();
        let request_headers = host.request_headers();
        let get = |name: &str| request_headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let method = get(":method").unwrap_or("");
        self.path = get(":path").unwrap_or("").to_string();
        let path_only = self.path.split(['?', '#']).next().unwrap_or("");
        let on_endpoint = self
            .config
            .endpoint_paths
            .iter()
            .any(|p| path_only == p || path_only.strip_prefix(p.as_str()).is_some_and(|rest| rest.starts_with('/')));

        self.transport = match method {
            "POST" if is_json(get(headers::CONTENT_TYPE)) => Some(Transport::Post),
            "GET" if on_endpoint && accepts_event_stream(get("accept")) => Some(Transport::Stream),
            "DELETE" if on_endpoint => Some(Transport::SessionEnd),
            _ => None,
        };

        // Request id: every request gets one (MCP or not), resolved once at the edge.
        if self.config.role == Role::Upstream {
            self.request_id = get(&self.config.request_id_header).map(str::to_string);
        } else {
            let incoming = get(&self.config.request_id_header);
            if let Some((id, source)) = resolve_request_id(incoming) {
                if source == RequestIdSource::Generated || incoming != Some(id.as_str()) {
                    host.set_request_header(&self.config.request_id_header, Some(&id));
                }
                self.request_id = Some(id);
            }
        }

        let Some(transport) = self.transport else {
            if self.reports() {
                host.increment(Counter::Passthrough(PassReason::NotMcp));
            }
            return Action::Continue;
        };

        // Session.
        if self.config.role == Role::Upstream {
            // The HCM instance resolved it; its filter state is visible here.
            self.session = host
                .property(keys::MCP_SESSION_ID)
                .filter(|s| is_visible_ascii(s, MAX_SESSION_ID_LEN + 32))
                .map(|s| Session { id: s, origin: SessionOrigin::Remembered });
        } else {
            self.carried_session_header = get(headers::MCP_SESSION_ID).is_some_and(|s| is_visible_ascii(s, MAX_SESSION_ID_LEN));
            self.session = resolve_session(&self.config.session_sources, |name| get(name), &self.path, false);
            if let Some(known) = self.session.as_ref().filter(|s| s.origin != SessionOrigin::Header || !self.carried_session_header) {
                // A non-MCP source (query, bearer hash, X-Session-ID…) may already be
                // tied to a server-assigned session from an earlier initialize.
                if let Some(server_id) = host.recall_session(&known.id) {
                    self.session = Some(Session { id: server_id, origin: SessionOrigin::Remembered });
                }
            }
            if self.session.is_none() && self.config.generate_session_id {
                self.session = resolve_session(&[], |_| None, "", true);
            }
            // Published now, not with the body: the router's upstream instance reads it
            // in its own header phase.
            if let Some(s) = &self.session {
                host.set_property(keys::MCP_SESSION_ID, &s.id);
            }
            if let Some(id) = &self.request_id {
                host.set_property(keys::REQUEST_ID, id);
            }
            // Invalid trace context in headers is dropped here, never forwarded.
            if let Some(ts) = get(headers::TRACESTATE) {
                if validate_tracestate(ts).is_none() {
                    host.set_request_header(headers::TRACESTATE, None);
                }
            }
            if let Some(b) = get(headers::BAGGAGE) {
                if validate_baggage(b).is_none() {
                    host.set_request_header(headers::BAGGAGE, None);
                }
            }
        }
        self.header_context = HeaderContext::from_headers(get(headers::TRACEPARENT), get(headers::TRACESTATE));
        self.protocol_version_header = get(headers::MCP_PROTOCOL_VERSION).filter(|v| is_visible_ascii(v, 64)).map(str::to_string);
        self.http_version = host.request_protocol();

        match transport {
            Transport::Post => {
                if end_of_stream {
                    if self.reports() {
                        host.increment(Counter::Passthrough(PassReason::Malformed));
                    }
                    self.transport = None;
                    return Action::Continue;
                }
                let declared = get(headers::CONTENT_LENGTH).and_then(|v| v.parse::<usize>().ok());
                if declared.is_some_and(|len| len > self.config.max_body_bytes) {
                    if self.reports() {
                        host.increment(Counter::Passthrough(PassReason::OverLimit));
                    }
                    log::debug!("{} body of {} bytes is over max_body_bytes, passed through", self.log_prefix(), declared.unwrap_or(0));
                    self.transport = None;
                    self.phase = Phase::Bypass;
                    return Action::Continue;
                }
                if self.config.writes_meta()
                    && (self.config.meta.trace_context
                        || self.config.meta.request_id_key.is_some()
                        || self.config.meta.session_id_key.is_some()
                        || self.own_spans())
                {
                    self.phase = Phase::HoldBody;
                    Action::Pause
                } else {
                    self.phase = Phase::ObserveBody;
                    Action::Continue
                }
            }
            Transport::Stream | Transport::SessionEnd => {
                if self.reports() {
                    let verb = if transport == Transport::Stream { "GET" } else { "DELETE" };
                    host.set_property(keys::SPAN_NAME, &format!("{verb} {path_only}"));
                }
                if transport == Transport::SessionEnd {
                    if let Some(s) = &self.session {
                        host.forget_session(&s.id);
                    }
                }
                if self.reports() {
                    log::debug!("{} {method} {path_only}", self.log_prefix());
                }
                Action::Continue
            }
        }
    }

    pub fn on_request_body(&mut self, body_size: usize, end_of_stream: bool, host: &mut impl Host) -> Action {
        match self.phase {
            Phase::HoldBody => {
                if body_size > self.config.max_body_bytes {
                    self.give_up_body(host);
                    return Action::Continue;
                }
                if !end_of_stream {
                    return Action::Pause;
                }
                let Some(body) = host.request_body(body_size) else {
                    self.give_up_body(host);
                    return Action::Continue;
                };
                self.phase = Phase::Idle;
                self.read_request(&body, host);
                Action::Continue
            }
            Phase::ObserveBody => {
                if self.observed.len() + body_size > self.config.max_body_bytes {
                    self.give_up_body(host);
                    return Action::Continue;
                }
                if body_size > 0 {
                    match host.request_body(body_size) {
                        Some(chunk) if self.observed.is_empty() && end_of_stream => self.observed = chunk,
                        Some(chunk) => self.observed.extend_from_slice(&chunk),
                        None => {
                            self.give_up_body(host);
                            return Action::Continue;
                        }
                    }
                }
                if end_of_stream {
                    self.phase = Phase::Idle;
                    let body = std::mem::take(&mut self.observed);
                    self.read_request(&body, host);
                }
                Action::Continue
            }
            Phase::Idle | Phase::Bypass => Action::Continue,
        }
    }

    fn give_up_body(&mut self, host: &mut impl Host) {
        if self.reports() {
            host.increment(Counter::Passthrough(PassReason::OverLimit));
        }
        log::debug!("{} request body over max_body_bytes ({}), passed through", self.log_prefix(), self.config.max_body_bytes);
        self.phase = Phase::Bypass;
        self.transport = None;
        self.observed = Vec::new();
    }

    /// The whole request body is here: recognise it, plan the spans, splice `_meta`.
    fn read_request(&mut self, body: &[u8], host: &mut impl Host) {
        let parsed = match parse_body(body) {
            Ok(parsed) => parsed,
            Err(rejection) => {
                let reason = match rejection {
                    Rejection::Malformed => PassReason::Malformed,
                    Rejection::NotJsonRpc => PassReason::NotJsonRpc,
                };
                if self.reports() {
                    host.increment(Counter::Passthrough(reason));
                    log::debug!("{} POST body is not JSON-RPC ({reason:?}), passed through", self.log_prefix());
                }
                self.transport = None;
                return;
            }
        };
        self.batch = matches!(parsed, Body::Batch(_));
        let messages = parsed.messages();
        let mode = match (self.own_spans(), self.config.role) {
            (true, _) => ParentMode::OwnSpan,
            (false, Role::Upstream) => ParentMode::EnvoySpan,
            (false, _) => ParentMode::Forward,
        };
        let mut writes: Vec<MetaWrite> = Vec::with_capacity(messages.len());
        for message in messages {
            if self.reports() {
                host.increment(Counter::Request(method_index(message.method.as_deref())));
            }
            let facts = RequestFacts {
                request_id: self.request_id.as_deref().unwrap_or(""),
                session_id: self.session.as_ref().map(|s| s.id.as_str()),
                protocol_version_header: self.protocol_version_header.as_deref(),
                http_version: self.http_version.as_deref(),
                record_resource_uri: self.config.record_resource_uri,
            };
            let mut op = Operation {
                method: message.method.as_deref().map(str::to_string),
                id: message.id.as_deref().map(str::to_string),
                name: span_name(message, self.config.record_resource_uri),
                attributes: request_attributes(message, &facts),
                own_span: None,
                outcome: None,
                tool: (message.method.as_deref() == Some("tools/call")).then(|| message.target.as_deref().map(str::to_string)).flatten(),
            };
            if let Some(tool) = op.tool.as_ref().filter(|_| self.reports()) {
                if self.config.tool_metrics.iter().any(|t| t == tool) {
                    host.increment_tool(tool);
                }
            }
            if self.reports() {
                self.log_message(message);
            }
            let mut write = MetaWrite::default();
            if self.config.writes_meta() && message.kind != MessageKind::Response {
                if self.config.meta.trace_context || mode == ParentMode::OwnSpan {
                    let sampled = root_sampled(self.config.own_spans.root_sample_ratio, random_unit());
                    let p = plan(mode, &self.header_context, &message.meta_context, sampled);
                    write = p.meta;
                    op.own_span = p.own_span;
                }
                if let (Some(key), Some(id)) = (&self.config.meta.request_id_key, &self.request_id) {
                    write.set(key, id.clone());
                }
                if let (Some(key), Some(s)) = (&self.config.meta.session_id_key, &self.session) {
                    write.set(key, s.id.clone());
                }
            }
            writes.push(write);
            self.operations.push(op);
        }
        if self.config.writes_meta() {
            let targets: Vec<_> = messages.iter().zip(writes.iter()).map(|(m, w)| (&m.layout, w)).collect();
            let (new_body, skipped) = splice(body, &targets);
            for _ in 0..skipped {
                host.increment(Counter::SpliceSkipped);
            }
            if let Some(new_body) = new_body {
                host.replace_request_body(&new_body);
                host.set_request_header(headers::CONTENT_LENGTH, Some(&new_body.len().to_string()));
            }
        }
        if self.reports() {
            self.tag_request(host);
        }
    }

    fn log_message(&self, message: &Message) {
        if !log::log_enabled!(log::Level::Debug) {
            return;
        }
        let method = message.method.as_deref().unwrap_or("response");
        let target = message.target.as_deref().map(|t| format!(" {}", crate::core::text::bounded_printable(t, 128))).unwrap_or_default();
        let id = message.id.as_deref().map(|i| format!(" id={}", crate::core::text::bounded_printable(i, 64))).unwrap_or_default();
        if message.method.as_deref() == Some("tools/call") && self.config.log_argument_keys {
            log::debug!("{} {method}{target}{id} argument_keys={}", self.log_prefix(), log_context::argument_keys(&message.argument_keys));
        } else {
            log::debug!("{} {method}{target}{id}", self.log_prefix());
        }
    }

    /// Request-side filter state for Envoy's span: name and attributes of the first
    /// message (a batch also gets its size).
    fn tag_request(&self, host: &mut impl Host) {
        let Some(first) = self.operations.first() else { return };
        host.set_property(keys::SPAN_NAME, &first.name);
        for (key, value) in &first.attributes {
            host.set_property(key, &value.as_text());
        }
        if self.batch {
            host.set_property(keys::BATCH_SIZE, &self.operations.len().to_string());
        }
    }

    pub fn on_response_headers(&mut self, end_of_stream: bool, host: &mut impl Host) -> Action {
        self.status = host.response_header(":status").and_then(|s| s.parse().ok()).unwrap_or(0);
        if self.config.role != Role::Upstream {
            if let Some(id) = &self.request_id {
                host.set_response_header(&self.config.request_id_header, id);
            }
        }
        if self.transport.is_none() || (self.config.role == Role::Upstream && !self.own_spans()) {
            return Action::Continue;
        }
        self.learn_session(host);
        let known_session = self.carried_session_header && self.session.as_ref().is_some_and(|s| host.recall_session(&s.id).is_some());
        if self.status == 404 && known_session && self.reports() {
            host.increment(Counter::SessionExpired);
            if self.reports() {
                host.set_property(keys::SESSION_EXPIRED, "true");
            }
            if let Some(s) = &self.session {
                host.forget_session(&s.id);
            }
            log::debug!("{} session expired (404)", self.log_prefix());
        }
        let content_type = host.response_header(headers::CONTENT_TYPE).unwrap_or_default();
        if !end_of_stream {
            if content_type.starts_with("text/event-stream") {
                self.response = ResponseReader::Sse(SseReader::new());
            } else if is_json(Some(&content_type)) && !self.operations.is_empty() {
                self.response = ResponseReader::Json(JsonScanner::new());
            }
        } else {
            self.finish_response(host);
        }
        Action::Continue
    }

    /// The server assigns the session in the `initialize` response; from then on that id
    /// is the session, and the client-side id it was resolved from maps to it.
    fn learn_session(&mut self, host: &mut impl Host) {
        let is_initialize = self.operations.iter().any(|op| op.method.as_deref() == Some("initialize"));
        if !is_initialize || self.config.role == Role::Upstream {
            return;
        }
        let Some(assigned) = host.response_header(headers::MCP_SESSION_ID).filter(|s| is_visible_ascii(s, MAX_SESSION_ID_LEN)) else {
            return;
        };
        // Known sessions map to themselves (so a later 404 can be told apart from a
        // bad id); a client-side id maps to the server's.
        host.remember_session(&assigned, &assigned);
        if let Some(previous) = &self.session {
            if previous.origin != SessionOrigin::Generated && previous.id != assigned {
                host.remember_session(&previous.id, &assigned);
            }
        }
        log::debug!("{} server assigned session {}", self.log_prefix(), crate::core::text::bounded_printable(&assigned, 64));
        self.session = Some(Session { id: assigned, origin: SessionOrigin::Server });
        if let Some(s) = &self.session {
            for op in &mut self.operations {
                op.attributes.retain(|(k, _)| *k != keys::MCP_SESSION_ID);
                op.attributes.push((keys::MCP_SESSION_ID, Value::Str(s.id.clone())));
            }
            if self.reports() {
                host.set_property(keys::MCP_SESSION_ID, &s.id);
            }
        }
    }

    /// Legacy HTTP+SSE: the stream's first event names the POST endpoint, whose
    /// `session_id` query parameter is the session every later POST carries.
    fn learn_legacy_session(&mut self, endpoint: &str, host: &mut impl Host) {
        if !self.reports() || self.transport != Some(Transport::Stream) {
            return;
        }
        let Some(id) = query_param(endpoint, "session_id").filter(|s| is_visible_ascii(s, MAX_SESSION_ID_LEN)) else { return };
        log::debug!("{} legacy SSE stream announced session {}", self.log_prefix(), crate::core::text::bounded_printable(id, 64));
        self.session = Some(Session { id: id.to_string(), origin: SessionOrigin::Server });
        host.set_property(keys::MCP_SESSION_ID, id);
        host.remember_session(id, id);
    }

    pub fn on_response_body(&mut self, body_size: usize, end_of_stream: bool, host: &mut impl Host) -> Action {
        if matches!(self.response, ResponseReader::None) {
            if end_of_stream {
                self.finish_response(host);
            }
            return Action::Continue;
        }
        if body_size > 0 {
            if let Some(chunk) = host.response_body(body_size) {
                let mut found = Vec::new();
                match &mut self.response {
                    ResponseReader::Json(scanner) => {
                        scanner.feed(&chunk, &mut found);
                        if scanner.failed() {
                            self.response = ResponseReader::None;
                        }
                    }
                    ResponseReader::Sse(reader) => {
                        let mut events: Vec<SseEvent> = Vec::new();
                        reader.feed(&chunk, &mut events);
                        for event in events {
                            self.sse.events += 1;
                            if let Some(endpoint) = &event.endpoint {
                                self.learn_legacy_session(endpoint, host);
                            }
                            found.extend(event.messages);
                        }
                    }
                    ResponseReader::None => {}
                }
                let mut answered = false;
                for summary in &found {
                    answered |= self.match_response(summary);
                }
                // Published as they come (a reset stream never reaches end_of_stream).
                if answered || self.sse.events > self.published_sse.events {
                    self.publish_response(host);
                }
            }
        }
        if end_of_stream {
            self.finish_response(host);
        }
        Action::Continue
    }

    /// Matches a message from the response stream to the operation it answers, or counts
    /// it as server-to-client traffic.
    /// Returns true when this message answered the first operation (the one Envoy's span
    /// is named after).
    fn match_response(&mut self, summary: &MessageSummary) -> bool {
        if summary.is_notification() {
            self.sse.notifications += 1;
            return false;
        }
        if summary.is_request() {
            self.sse.requests += 1;
            return false;
        }
        if !summary.is_response() {
            return false;
        }
        let index =
            self.operations.iter().position(|op| op.id.is_some() && op.id == summary.id).or((self.operations.len() == 1).then_some(0));
        let Some(op) = index.and_then(|i| self.operations.get_mut(i)) else { return false };
        if op.outcome.is_some() {
            return false;
        }
        op.outcome = Some(Outcome::from_response(summary));
        if let Some(version) = summary.protocol_version.as_deref() {
            if op.method.as_deref() == Some("initialize") {
                op.attributes.retain(|(k, _)| *k != keys::MCP_PROTOCOL_VERSION);
                op.attributes.push((keys::MCP_PROTOCOL_VERSION, Value::Str(crate::core::text::bounded_printable(version, 64))));
            }
        }
        index == Some(0)
    }

    /// Puts the first operation's outcome and the SSE counts on Envoy's span. Called as
    /// soon as the answer is seen, not only at the end of the stream: a client that got
    /// its answer may reset the stream before the end, and filter state set after that
    /// (in `on_log`) no longer reaches the span.
    fn publish_response(&mut self, host: &mut impl Host) {
        if !self.reports() {
            return;
        }
        if !self.outcome_published {
            let first = self.operations.first().and_then(|op| op.outcome.clone());
            let outcome = first.or_else(|| self.finished.then(|| Outcome::from_http_status(self.status)));
            if let Some(outcome) = outcome {
                for (key, value) in outcome.attributes() {
                    host.set_property(key, &value.as_text());
                }
                self.outcome_published = true;
            }
        }
        if self.sse.events > self.published_sse.events {
            host.set_property(keys::SSE_EVENTS, &self.sse.events.to_string());
        }
        if self.sse.notifications > self.published_sse.notifications {
            host.set_property(keys::SSE_NOTIFICATIONS, &self.sse.notifications.to_string());
        }
        if self.sse.requests > self.published_sse.requests {
            host.set_property(keys::SSE_REQUESTS, &self.sse.requests.to_string());
        }
        self.published_sse = self.sse;
    }

    fn finish_response(&mut self, host: &mut impl Host) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.response = ResponseReader::None;
        let http_outcome = Outcome::from_http_status(self.status);
        for op in &mut self.operations {
            if op.outcome.is_none() && http_outcome.is_error() {
                op.outcome = Some(http_outcome.clone());
            }
        }
        if !self.reports() {
            return;
        }
        if self.sse.events > 0 {
            host.add(Counter::SseEvents, self.sse.events);
        }
        for op in &self.operations {
            if let Some(outcome) = op.outcome.as_ref().filter(|o| o.is_error()) {
                let class = match outcome.error_type.as_deref() {
                    Some(crate::core::span::TOOL_ERROR) => ErrorClass::Tool,
                    _ if outcome.status_code.is_some() => ErrorClass::JsonRpc,
                    _ => ErrorClass::Http,
                };
                host.increment(Counter::Error(class));
                log::debug!("{} {} failed: error.type={}", self.log_prefix(), op.name, outcome.error_type.as_deref().unwrap_or(""));
            }
        }
        self.publish_response(host);
    }

    /// The stream is over (Envoy's access-log point): record the duration and export
    /// own spans.
    pub fn on_log(&mut self, host: &mut impl Host) {
        if self.transport.is_none() || self.logged {
            return;
        }
        self.logged = true;
        self.finish_response(host);
        let now = host.now_unix_nanos();
        if self.reports() && !self.operations.is_empty() {
            host.record_duration_ms(now.saturating_sub(self.started_ns) / 1_000_000);
        }
        if !self.own_spans() {
            return;
        }
        let batch_size = self.batch.then_some(self.operations.len() as i64);
        for op in std::mem::take(&mut self.operations) {
            let Some(ctx) = op.own_span else { continue };
            let outcome = op.outcome.unwrap_or_default();
            if !keep_span(ctx.parent_sampled, ctx.flags & 1 == 1, outcome.is_error()) {
                continue;
            }
            let mut attributes = op.attributes;
            attributes.extend(outcome.attributes());
            if self.sse.events > 0 {
                attributes.push((keys::SSE_EVENTS, Value::Int(self.sse.events)));
                attributes.push((keys::SSE_NOTIFICATIONS, Value::Int(self.sse.notifications)));
                attributes.push((keys::SSE_REQUESTS, Value::Int(self.sse.requests)));
            }
            if let Some(size) = batch_size {
                attributes.push((keys::BATCH_SIZE, Value::Int(size)));
            }
            let error = outcome.is_error().then(|| outcome.message.clone().or(outcome.error_type.clone()).unwrap_or_default());
            host.emit_span(SpanRecord {
                trace_id: ctx.trace_id,
                span_id: ctx.span_id,
                parent_span_id: ctx.parent_span_id,
                name: op.name,
                kind: SpanKind::Client,
                start_unix_nano: self.started_ns,
                end_unix_nano: now,
                attributes,
                links: ctx.link.into_iter().collect(),
                error,
            });
        }
    }
}

/// `application/json` or any `+json` type, parameters ignored.
fn is_json(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return false };
    let essence = ct.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || (essence.len() > 5 && essence[essence.len() - 5..].eq_ignore_ascii_case("+json") && essence.starts_with("application/"))
}

fn accepts_event_stream(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.to_ascii_lowercase().contains("text/event-stream"))
}
