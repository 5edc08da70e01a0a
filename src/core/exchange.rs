//! One HTTP request/response through the filter: the decisions, host-independent.
//!
//! The proxy-wasm layer calls the `on_*` methods from the matching callbacks and does
//! what the returned [`Action`] says; every read and write of headers, bodies, filter
//! state, stats and spans goes through the [`Host`] trait, so this whole state machine
//! runs under `cargo test` against a recording host.

use crate::core::baggage::validate_baggage;
use crate::core::config::{Config, Role};
use crate::core::headers::{self, HeaderList};
use crate::core::ids::random_unit;
use crate::core::ids::{resolve_request_id, RequestIdSource};
use crate::core::json_scan::{JsonScanner, MessageSummary};
use crate::core::jsonrpc::{parse_body, Body, Message, MessageKind, Rejection, RequestId};
use crate::core::log_context;
use crate::core::meta_splice::{splice_head, MetaWrite};
use crate::core::metrics::{method_index, Counter, ErrorClass, PassReason};
use crate::core::otlp::{keep_span, root_sampled, SpanKind, SpanRecord};
use crate::core::propagation::{plan, HeaderContext, OwnSpanContext, ParentMode};
use crate::core::session::{query_param, resolve_session, Session, SessionOrigin, MAX_SESSION_ID_LEN};
use crate::core::session_store::SharedData;
use crate::core::span::{keys, request_attributes, span_name, Attributes, Outcome, RequestFacts, Value};
use crate::core::sse::{SseEvent, SseReader, BYTE_ORDER_MARK};
use crate::core::text::is_visible_ascii;
use crate::core::trace_context::{validate_tracestate, TraceParent};
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
pub trait Host: SharedData {
    /// `HTTP/1.1`, `HTTP/2`… of the downstream request.
    fn request_protocol(&self) -> Option<String>;
    /// All request headers (one host call); names are lowercase.
    fn request_headers(&self) -> HeaderList;
    /// Sets (Some) or removes (None) a request header.
    fn set_request_header(&mut self, name: &str, value: Option<&str>);
    /// The first `size` bytes of the request body Envoy holds for this callback.
    fn request_body(&self, size: usize) -> Option<Vec<u8>>;
    /// Replaces the first `replaced` bytes of the held request body with `head`; the
    /// rest of the body stays where it is.
    fn replace_request_body_head(&mut self, replaced: usize, head: &[u8]);
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
    id: Option<RequestId<'static>>,
    name: String,
    attributes: Attributes,
    own_span: Option<OwnSpanContext>,
    outcome: Option<Outcome>,
    tool: Option<String>,
}

enum ResponseReader {
    None,
    /// Not yet known: decided by the first byte of the body that is not whitespace, after
    /// a byte order mark (of which `bom` bytes were seen; it may arrive in pieces).
    Sniff {
        bom: usize,
    },
    Json(JsonScanner),
    Sse(SseReader),
}

/// The reader a response body needs, from its first byte that is not whitespace. The
/// body says what it is (`{`/`[` a JSON-RPC message or batch; an SSE field name or
/// comment a stream), so the `content-type` header is not read: one host call less
/// per request. Anything else is not MCP and is not read.
fn sniff_reader(first: u8, json_expected: bool) -> ResponseReader {
    match first {
        b'{' | b'[' if json_expected => ResponseReader::Json(JsonScanner::new()),
        // A field name (`data:`, `event:`, `id:`, `retry:`, or one SSE ignores) or a
        // `:comment`.
        b':' => ResponseReader::Sse(SseReader::new()),
        b if b.is_ascii_alphabetic() => ResponseReader::Sse(SseReader::new()),
        _ => ResponseReader::None,
    }
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
    had_content_length: bool,
    /// `Mcp-Method`/`Mcp-Name` (2026-07-28): used when the body itself is not read.
    mirrored_method: Option<String>,
    mirrored_name: Option<String>,
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
            had_content_length: false,
            mirrored_method: None,
            mirrored_name: None,
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

    /// Request id and session: resolved at the edge, in the HCM chain (`downstream`,
    /// `standalone`), so every later filter and the upstream instance see them.
    fn resolves_identity(&self) -> bool {
        self.config.role != Role::Upstream
    }

    /// Everything MCP (recognition, `_meta`, span tags, the response, stats, logs) is
    /// done once, by the instance closest to the upstream (`upstream`, `standalone`):
    /// one body read and one response scan per request, and Envoy's span context in view.
    fn does_mcp(&self) -> bool {
        self.config.does_mcp_work()
    }

    fn own_spans(&self) -> bool {
        self.config.own_spans.enabled && self.does_mcp()
    }

    pub fn on_request_headers(&mut self, end_of_stream: bool, host: &mut impl Host) -> Action {
        let request_headers = host.request_headers();
        let get = |name: &str| request_headers.get(name);
        let method = get(":method").unwrap_or("");
        self.path = get(":path").unwrap_or("").to_string();
        let path_only = self.path.split(['?', '#']).next().unwrap_or("");
        let on_endpoint = self
            .config
            .endpoint_paths
            .iter()
            .any(|p| path_only == p || path_only.strip_prefix(p.as_str()).is_some_and(|rest| rest.starts_with('/')));

        // A POST is MCP when it carries JSON and a sign of MCP: the endpoint path, the
        // `Accept` every MCP client must send, or an MCP header.
        let mcp_signal = || {
            on_endpoint
                || accepts_json_and_event_stream(get(headers::ACCEPT))
                || [headers::MCP_PROTOCOL_VERSION, headers::MCP_SESSION_ID, headers::MCP_METHOD].iter().any(|h| get(h).is_some())
        };
        self.transport = match method {
            "POST" if is_json(get(headers::CONTENT_TYPE)) && mcp_signal() => Some(Transport::Post),
            "GET" if on_endpoint && accepts_event_stream(get(headers::ACCEPT)) => Some(Transport::Stream),
            "DELETE" if on_endpoint => Some(Transport::SessionEnd),
            _ => None,
        };

        // Request id: every request gets one (MCP or not), resolved once at the edge.
        if self.resolves_identity() {
            let incoming = get(&self.config.request_id_header);
            if let Some((id, source)) = resolve_request_id(incoming) {
                if source == RequestIdSource::Generated || incoming != Some(id.as_str()) {
                    host.set_request_header(&self.config.request_id_header, Some(&id));
                }
                self.request_id = Some(id);
            }
        } else {
            self.request_id = get(&self.config.request_id_header).map(str::to_string);
        }

        let Some(transport) = self.transport else {
            if self.does_mcp() {
                host.increment(Counter::Passthrough(PassReason::NotMcp));
            }
            return Action::Continue;
        };
        // A coded body (gzip…) is neither read nor rewritten: pass it on as it is.
        if transport == Transport::Post && get(headers::CONTENT_ENCODING).is_some_and(|c| !c.trim().eq_ignore_ascii_case("identity")) {
            if self.does_mcp() {
                host.increment(Counter::Passthrough(PassReason::Encoded));
            }
            self.transport = None;
            return Action::Continue;
        }

        // A valid `Mcp-Session-Id`: what the server assigned, as the client carries it.
        let mcp_session_id = get(headers::MCP_SESSION_ID).filter(|s| is_visible_ascii(s, MAX_SESSION_ID_LEN));
        self.carried_session_header = mcp_session_id.is_some();
        if self.resolves_identity() {
            self.session = resolve_session(&self.config.session_sources, |name| get(name), &self.path, false);
            if let Some(known) = self.session.as_ref().filter(|s| s.origin != SessionOrigin::Header || !self.carried_session_header) {
                // A non-MCP source (query, bearer hash, X-Session-ID…) may already be
                // tied to a server-assigned session from an earlier initialize.
                if let Some(server_id) = self.config.sessions.recall(host, now_secs(host), &known.id) {
                    let client_key = Some(known.id.clone());
                    self.session = Some(Session { id: server_id, origin: SessionOrigin::Remembered, client_key });
                }
            }
            if self.session.is_none() && self.config.generate_session_id {
                self.session = resolve_session(&[], |_| None, "", true);
            }
            // Published in the header phase: the upstream instance reads it in its own,
            // and the client-side id of a recalled session in case this is a new
            // `initialize` (rare: a recalled session on the paired layout).
            if let Some(s) = &self.session {
                host.set_property(keys::MCP_SESSION_ID, &s.id);
                if let Some(key) = s.client_key.as_deref().filter(|_| !self.does_mcp()) {
                    host.set_property(keys::SESSION_CLIENT_KEY, key);
                }
            }
        } else {
            // The HCM instance resolved it; its filter state is visible here. With
            // `session_from_mcp_header` (the HCM instance's first source is
            // `Mcp-Session-Id`, whose value it never remaps) a valid header is its answer:
            // read here, it saves a filter-state read, a host call.
            self.session = if let Some(id) = mcp_session_id.filter(|_| self.config.session_from_mcp_header) {
                Some(Session::new(id.to_string(), SessionOrigin::Header))
            } else {
                host.property(keys::MCP_SESSION_ID)
                    .filter(|s| is_visible_ascii(s, MAX_SESSION_ID_LEN + 32))
                    .map(|s| Session::new(s, SessionOrigin::Edge))
            };
        }
        // Invalid trace context is dropped here, never forwarded: by the edge instance,
        // and again by the one writing `_meta` (after Envoy's router injected its own).
        let header_context = clean_trace_headers(&request_headers, host);
        if !self.does_mcp() {
            return Action::Continue;
        }
        self.started_ns = host.now_unix_nanos();
        self.header_context = header_context;
        self.mirrored_method = get(headers::MCP_METHOD).filter(|m| is_visible_ascii(m, 128)).map(str::to_string);
        self.mirrored_name = get(headers::MCP_NAME).filter(|n| !n.is_empty() && n.len() <= 1024).map(str::to_string);
        self.protocol_version_header = get(headers::MCP_PROTOCOL_VERSION).filter(|v| is_visible_ascii(v, 64)).map(str::to_string);
        self.http_version = host.request_protocol();

        match transport {
            Transport::Post => {
                if end_of_stream {
                    if self.does_mcp() {
                        host.increment(Counter::Passthrough(PassReason::Malformed));
                    }
                    self.transport = None;
                    return Action::Continue;
                }
                let declared = get(headers::CONTENT_LENGTH).and_then(|v| v.parse::<usize>().ok());
                self.had_content_length = get(headers::CONTENT_LENGTH).is_some();
                if declared.is_some_and(|len| len > self.config.max_body_bytes) {
                    self.give_up_body(host);
                    return Action::Continue;
                }
                if self.config.meta.trace_context
                    || self.config.meta.request_id_key.is_some()
                    || self.config.meta.session_id_key.is_some()
                    || self.own_spans()
                {
                    self.phase = Phase::HoldBody;
                    if self.config.hold_request_headers {
                        return Action::Pause;
                    }
                    // The headers leave now, before the body is rewritten: a length would
                    // be wrong by the size of the `_meta` write. Without one an HTTP/1.1
                    // upstream gets the body chunked; HTTP/2 frames it anyway.
                    if self.had_content_length {
                        host.set_request_header(headers::CONTENT_LENGTH, None);
                    }
                    Action::Continue
                } else {
                    self.phase = Phase::ObserveBody;
                    Action::Continue
                }
            }
            Transport::Stream | Transport::SessionEnd => {
                if self.does_mcp() {
                    let verb = if transport == Transport::Stream { "GET" } else { "DELETE" };
                    host.set_property(keys::SPAN_NAME, &format!("{verb} {path_only}"));
                }
                if transport == Transport::SessionEnd {
                    if let Some(s) = &self.session {
                        self.config.sessions.forget(host, now_secs(host), &s.id);
                    }
                }
                if self.does_mcp() {
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
                // Envoy hands out no buffer for a zero-length read: an empty body.
                let body = match body_size {
                    0 => Vec::new(),
                    _ => match host.request_body(body_size) {
                        Some(body) => body,
                        None => {
                            self.give_up_body(host);
                            return Action::Continue;
                        }
                    },
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

    /// The body is too large to read: it passes through untouched and is counted. A
    /// 2026-07-28 client mirrors the method and name into `Mcp-Method`/`Mcp-Name`; with
    /// those the span is still named and tagged.
    fn give_up_body(&mut self, host: &mut impl Host) {
        host.increment(Counter::Passthrough(PassReason::OverLimit));
        log::debug!("{} request body over max_body_bytes ({}), passed through", self.log_prefix(), self.config.max_body_bytes);
        if let Some(method) = self.mirrored_method.take() {
            let target = self.mirrored_name.take();
            let (name, mut attrs) = header_span(&method, target.as_deref());
            attrs.push((keys::SPAN_NAME, Value::Str(name)));
            for (key, value) in attrs {
                host.set_property(key, &value.as_text());
            }
        }
        // The operation still ends with a status worth tagging: keep the transport.
        self.phase = Phase::Bypass;
        self.observed = Vec::new();
    }

    /// A request with trailers ends here instead of in a body callback with
    /// `end_of_stream`: finish reading the held body.
    pub fn on_request_trailers(&mut self, host: &mut impl Host) -> Action {
        if self.phase == Phase::HoldBody {
            match host.request_body(self.config.max_body_bytes + 1) {
                Some(body) if body.len() <= self.config.max_body_bytes => {
                    self.phase = Phase::Idle;
                    self.read_request(&body, host);
                }
                _ => self.give_up_body(host),
            }
        }
        Action::Continue
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
                if self.does_mcp() {
                    host.increment(Counter::Passthrough(reason));
                    log::debug!("{} POST body is not JSON-RPC ({reason:?}), passed through", self.log_prefix());
                }
                self.transport = None;
                return;
            }
        };
        self.batch = matches!(parsed, Body::Batch(_));
        let messages = parsed.messages();
        if messages.iter().any(|m| m.method.as_deref() == Some("initialize")) {
            self.restart_recalled_session(host);
        }
        let mode = match (self.own_spans(), self.config.role) {
            (true, _) => ParentMode::OwnSpan,
            (false, Role::Upstream) => ParentMode::EnvoySpan,
            (false, _) => ParentMode::Forward,
        };
        let mut writes: Vec<MetaWrite> = Vec::with_capacity(messages.len());
        for message in messages {
            if self.does_mcp() {
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
                id: message.id.as_ref().map(RequestId::to_owned_id),
                name: span_name(message, self.config.record_resource_uri),
                attributes: request_attributes(message, &facts),
                own_span: None,
                outcome: None,
                tool: (message.method.as_deref() == Some("tools/call")).then(|| message.target.as_deref().map(str::to_string)).flatten(),
            };
            if let Some(tool) = op.tool.as_ref().filter(|_| self.does_mcp()) {
                if self.config.tool_metrics.iter().any(|t| t == tool) {
                    host.increment_tool(tool);
                }
            }
            if self.does_mcp() {
                self.log_message(message);
            }
            let mut write = MetaWrite::default();
            if self.does_mcp() && message.kind != MessageKind::Response {
                if self.config.meta.trace_context || mode == ParentMode::OwnSpan {
                    // A draw only where it can matter: a new root of an own span.
                    let sampled = mode != ParentMode::OwnSpan || root_sampled(self.config.own_spans.root_sample_ratio, random_unit());
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
        if self.does_mcp() {
            let targets: Vec<_> = messages.iter().zip(writes.iter()).map(|(m, w)| (&m.layout, w)).collect();
            let (head, skipped) = splice_head(body, &targets);
            for _ in 0..skipped {
                host.increment(Counter::SpliceSkipped);
            }
            if let Some(head) = head {
                host.replace_request_body_head(head.replaces, &head.bytes);
                // Only a length that was there, on headers still held, is corrected: a
                // chunked (or HTTP/2) request stays without one.
                if self.had_content_length && self.config.hold_request_headers {
                    let new_len = body.len() - head.replaces.min(body.len()) + head.bytes.len();
                    host.set_request_header(headers::CONTENT_LENGTH, Some(&new_len.to_string()));
                }
            }
        }
        if self.does_mcp() {
            self.tag_request(host);
        }
    }

    /// An `initialize` starts a new session: it does not continue the one its client-side
    /// id was remembered for. The request is the client-side id's again, until the server
    /// assigns the new session (which that id will then lead to).
    fn restart_recalled_session(&mut self, host: &mut impl Host) {
        let key = match &self.session {
            Some(Session { origin: SessionOrigin::Remembered, client_key, .. }) => client_key.clone(),
            // Resolved by the edge instance, which says when it recalled the session.
            Some(Session { origin: SessionOrigin::Edge, .. }) => host.property(keys::SESSION_CLIENT_KEY),
            _ => None,
        };
        if let Some(key) = key.filter(|k| is_visible_ascii(k, MAX_SESSION_ID_LEN + 32)) {
            host.set_property(keys::MCP_SESSION_ID, &key);
            self.session = Some(Session::new(key, SessionOrigin::Edge));
        }
    }

    fn log_message(&self, message: &Message) {
        if !log::log_enabled!(log::Level::Debug) {
            return;
        }
        let method = message.method.as_deref().unwrap_or("response");
        let target = message.target.as_deref().map(|t| format!(" {}", crate::core::text::bounded_printable(t, 128))).unwrap_or_default();
        let id = message
            .id
            .as_ref()
            .map(|i| i.as_str())
            .map(|i| format!(" id={}", crate::core::text::bounded_printable(i, 64)))
            .unwrap_or_default();
        if message.method.as_deref() == Some("tools/call") && self.config.log_argument_keys {
            log::debug!(
                "{} {method}{target}{id} argument_keys={}",
                self.log_prefix(),
                log_context::argument_keys(&message.argument_keys())
            );
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
            // Not as filter state: the session was published in the header phase, and
            // envoy.yaml tags the constants (network.*) and the request id (from the
            // x-request-id header) directly. Each property is a host call and an Envoy
            // filter-state object on the hot path.
            if !matches!(*key, keys::MCP_SESSION_ID | keys::REQUEST_ID | keys::NETWORK_PROTOCOL_NAME | keys::NETWORK_TRANSPORT) {
                host.set_property(key, &value.as_text());
            }
        }
        if self.batch {
            host.set_property(keys::BATCH_SIZE, &self.operations.len().to_string());
        }
    }

    pub fn on_response_headers(&mut self, end_of_stream: bool, host: &mut impl Host) -> Action {
        if self.resolves_identity() && self.config.request_id_in_response {
            if let Some(id) = &self.request_id {
                host.set_response_header(&self.config.request_id_header, id);
            }
        }
        if self.transport.is_none() || !self.does_mcp() {
            return Action::Continue;
        }
        self.status = host.response_header(":status").and_then(|s| s.parse().ok()).unwrap_or(0);
        self.learn_session(host);
        // A 404 on a session the proxy saw the server assign: the server expired it.
        let expired = self.status == 404
            && self.carried_session_header
            && self.session.as_ref().is_some_and(|s| self.config.sessions.is_server_session(host, now_secs(host), &s.id));
        if expired {
            host.increment(Counter::SessionExpired);
            host.set_property(keys::SESSION_EXPIRED, "true");
            if let Some(s) = &self.session {
                self.config.sessions.forget(host, now_secs(host), &s.id);
            }
            log::debug!("{} session expired (404)", self.log_prefix());
        }
        if !end_of_stream {
            self.response = ResponseReader::Sniff { bom: 0 };
        } else {
            self.finish_response(host);
        }
        Action::Continue
    }

    /// The server assigns the session in the `initialize` response; from then on that id
    /// is the session, and the client-side id it was resolved from maps to it.
    fn learn_session(&mut self, host: &mut impl Host) {
        let is_initialize = self.operations.iter().any(|op| op.method.as_deref() == Some("initialize"));
        if !is_initialize {
            return;
        }
        let Some(assigned) = host.response_header(headers::MCP_SESSION_ID).filter(|s| is_visible_ascii(s, MAX_SESSION_ID_LEN)) else {
            return;
        };
        // The server's id is remembered (so a later 404 can be told apart from a bad id),
        // and the client-side id the request carried now leads to it. (The upstream
        // instance cannot tell a generated id from a client's; aliasing a random one
        // costs a slot nobody will ask for.)
        let alias = self.session.as_ref().filter(|s| s.origin != SessionOrigin::Generated).map(|s| s.id.as_str());
        self.config.sessions.learn(host, now_secs(host), &assigned, alias);
        log::debug!("{} server assigned session {}", self.log_prefix(), crate::core::text::bounded_printable(&assigned, 64));
        self.session = Some(Session::new(assigned, SessionOrigin::Server));
        if let Some(s) = &self.session {
            for op in &mut self.operations {
                op.attributes.retain(|(k, _)| *k != keys::MCP_SESSION_ID);
                op.attributes.push((keys::MCP_SESSION_ID, Value::Str(s.id.clone())));
            }
            if self.does_mcp() {
                host.set_property(keys::MCP_SESSION_ID, &s.id);
            }
        }
    }

    /// Legacy HTTP+SSE: the stream's first event names the POST endpoint, whose
    /// `session_id` query parameter is the session every later POST carries.
    fn learn_legacy_session(&mut self, endpoint: &str, host: &mut impl Host) {
        if !self.does_mcp() || self.transport != Some(Transport::Stream) {
            return;
        }
        let Some(id) = query_param(endpoint, "session_id").filter(|s| is_visible_ascii(s, MAX_SESSION_ID_LEN)) else { return };
        log::debug!("{} legacy SSE stream announced session {}", self.log_prefix(), crate::core::text::bounded_printable(id, 64));
        self.session = Some(Session::new(id.to_string(), SessionOrigin::Server));
        host.set_property(keys::MCP_SESSION_ID, id);
        self.config.sessions.learn(host, now_secs(host), id, None);
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
                let mut chunk: &[u8] = &chunk;
                if let ResponseReader::Sniff { bom } = &mut self.response {
                    // An event stream may start with a byte order mark, which SSE ignores;
                    // leading whitespace means nothing to either reader.
                    while let (Some(&b), Some(&mark)) = (chunk.first(), BYTE_ORDER_MARK.get(*bom)) {
                        if b != mark {
                            break;
                        }
                        *bom += 1;
                        chunk = chunk.get(1..).unwrap_or_default();
                    }
                    let cut_short = *bom > 0 && *bom < BYTE_ORDER_MARK.len() && !chunk.is_empty();
                    let start = chunk.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(chunk.len());
                    chunk = chunk.get(start..).unwrap_or_default();
                    if cut_short {
                        self.response = ResponseReader::None; // bytes that begin a mark and then stop: not a stream
                    } else if let Some(&first) = chunk.first() {
                        self.response = sniff_reader(first, !self.operations.is_empty());
                    }
                }
                match &mut self.response {
                    ResponseReader::Json(scanner) => {
                        scanner.feed(chunk, &mut found);
                        if scanner.failed() {
                            self.response = ResponseReader::None;
                        }
                    }
                    ResponseReader::Sse(reader) => {
                        let mut events: Vec<SseEvent> = Vec::new();
                        reader.feed(chunk, &mut events);
                        for event in events {
                            self.sse.events += 1;
                            if let Some(endpoint) = &event.endpoint {
                                self.learn_legacy_session(endpoint, host);
                            }
                            found.extend(event.messages);
                        }
                    }
                    ResponseReader::None | ResponseReader::Sniff { .. } => {}
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
        // The first request with this id still waiting for its answer (a batch may repeat
        // an id); a lone request takes a lone answer whatever its id.
        let index = self.operations.iter().position(|op| op.outcome.is_none() && op.id.is_some() && op.id == summary.id).or((self
            .operations
            .len()
            == 1)
            .then_some(0));
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
        if !self.does_mcp() {
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
        if !self.does_mcp() {
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
        if self.does_mcp() && !self.operations.is_empty() {
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

/// The request's trace context, validated by the W3C rules: one `traceparent`; the
/// `tracestate` headers read as one list, and only beside a valid `traceparent`. What is
/// invalid is removed from the request (a host call only then).
fn clean_trace_headers(request_headers: &HeaderList, host: &mut impl Host) -> HeaderContext {
    let traceparents = request_headers.count(headers::TRACEPARENT);
    let traceparent = request_headers.get(headers::TRACEPARENT).filter(|_| traceparents == 1).and_then(TraceParent::parse);
    if traceparents > 0 && traceparent.is_none() {
        host.set_request_header(headers::TRACEPARENT, None);
    }
    let tracestate = request_headers.joined(headers::TRACESTATE);
    let valid_state = traceparent.and(tracestate.as_deref().and_then(validate_tracestate)).map(str::to_string);
    if tracestate.is_some() && valid_state.is_none() {
        host.set_request_header(headers::TRACESTATE, None);
    }
    if request_headers.joined(headers::BAGGAGE).is_some_and(|b| validate_baggage(&b).is_none()) {
        host.set_request_header(headers::BAGGAGE, None);
    }
    HeaderContext { traceparent, tracestate: valid_state }
}

/// Span name and attributes from the mirrored `Mcp-Method`/`Mcp-Name` headers alone.
fn header_span(method: &str, name: Option<&str>) -> (String, Attributes) {
    let text = |v: &str| Value::Str(crate::core::text::bounded_printable(v, crate::core::span::MAX_ATTRIBUTE_LEN));
    let mut attrs: Attributes = vec![(keys::MCP_METHOD_NAME, text(method))];
    let span = match (method, name) {
        ("tools/call", Some(tool)) => {
            attrs.push((keys::GEN_AI_TOOL_NAME, text(tool)));
            attrs.push((keys::GEN_AI_OPERATION_NAME, Value::Str("execute_tool".into())));
            format!("{method} {tool}")
        }
        ("prompts/get", Some(prompt)) => {
            attrs.push((keys::GEN_AI_PROMPT_NAME, text(prompt)));
            format!("{method} {prompt}")
        }
        _ => method.to_string(),
    };
    (crate::core::text::bounded_printable(&span, 2 * crate::core::span::MAX_ATTRIBUTE_LEN), attrs)
}

fn now_secs(host: &impl Host) -> u64 {
    host.now_unix_nanos() / 1_000_000_000
}

/// `application/json` or any `+json` type, parameters ignored.
fn is_json(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return false };
    let essence = ct.split(';').next().unwrap_or("").trim();
    // Bytes, not str slices: a header may carry non-ASCII (decoded lossily), and a
    // slice off a char boundary would panic.
    let bytes = essence.as_bytes();
    essence.eq_ignore_ascii_case("application/json")
        || (bytes.len() > 5 && bytes[bytes.len() - 5..].eq_ignore_ascii_case(b"+json") && bytes.starts_with(b"application/"))
}

fn accepts_event_stream(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.to_ascii_lowercase().contains("text/event-stream"))
}

/// `Accept` names both `application/json` and `text/event-stream`, as Streamable HTTP
/// requires of every client POST.
fn accepts_json_and_event_stream(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        let a = a.to_ascii_lowercase();
        a.contains("application/json") && a.contains("text/event-stream")
    })
}

#[cfg(test)]
mod tests {
    //! The whole per-request state machine against a recording host: what Envoy would
    //! be told to do, callback by callback.
    use super::*;
    use crate::core::session_store::{CasMismatch, MemoryData};
    use std::collections::HashMap;

    #[derive(Default)]
    struct FakeHost {
        request_headers: Vec<(String, String)>,
        request_body: Vec<u8>,
        response_headers: HashMap<String, String>,
        response_chunk: Vec<u8>,
        properties: HashMap<String, String>,
        counters: HashMap<Counter, i64>,
        spans: Vec<SpanRecord>,
        /// Envoy's shared data (the session memory lives there).
        sessions: MemoryData,
        durations: Vec<u64>,
        /// Host calls made, as Envoy would count them (the hot-path cost driver).
        calls: std::cell::Cell<usize>,
    }

    impl FakeHost {
        fn post(body: &str, headers: &[(&str, &str)]) -> FakeHost {
            let mut h = FakeHost {
                request_headers: vec![
                    (":method".into(), "POST".into()),
                    (":path".into(), "/mcp".into()),
                    ("content-type".into(), "application/json".into()),
                    ("content-length".into(), body.len().to_string()),
                ],
                request_body: body.as_bytes().to_vec(),
                ..Default::default()
            };
            for (k, v) in headers {
                h.request_headers.push((k.to_string(), v.to_string()));
            }
            h
        }
        fn header(&self, name: &str) -> Option<&str> {
            self.request_headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
        }
        fn count(&self, c: Counter) -> i64 {
            self.counters.get(&c).copied().unwrap_or(0)
        }
    }

    impl Host for FakeHost {
        fn request_protocol(&self) -> Option<String> {
            self.calls.set(self.calls.get() + 1);
            Some("HTTP/1.1".into())
        }
        fn request_headers(&self) -> HeaderList {
            self.calls.set(self.calls.get() + 1);
            HeaderList::from_pairs(self.request_headers.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        }
        fn set_request_header(&mut self, name: &str, value: Option<&str>) {
            self.calls.set(self.calls.get() + 1);
            self.request_headers.retain(|(k, _)| k != name);
            if let Some(v) = value {
                self.request_headers.push((name.to_string(), v.to_string()));
            }
        }
        fn request_body(&self, size: usize) -> Option<Vec<u8>> {
            self.calls.set(self.calls.get() + 1);
            // As Envoy: a zero-length read returns no buffer at all.
            (size > 0).then(|| self.request_body[..size.min(self.request_body.len())].to_vec())
        }
        fn replace_request_body_head(&mut self, replaced: usize, head: &[u8]) {
            self.calls.set(self.calls.get() + 1);
            // As Envoy does it: drain `replaced` bytes, prepend `head`.
            self.request_body.splice(..replaced.min(self.request_body.len()), head.iter().copied());
        }
        fn response_header(&self, name: &str) -> Option<String> {
            self.calls.set(self.calls.get() + 1);
            self.response_headers.get(name).cloned()
        }
        fn set_response_header(&mut self, name: &str, value: &str) {
            self.calls.set(self.calls.get() + 1);
            self.response_headers.insert(name.to_string(), value.to_string());
        }
        fn response_body(&self, size: usize) -> Option<Vec<u8>> {
            self.calls.set(self.calls.get() + 1);
            Some(self.response_chunk[..size].to_vec())
        }
        fn set_property(&mut self, key: &str, value: &str) {
            self.calls.set(self.calls.get() + 1);
            self.properties.insert(key.to_string(), value.to_string());
        }
        fn property(&self, key: &str) -> Option<String> {
            self.calls.set(self.calls.get() + 1);
            self.properties.get(key).cloned()
        }
        fn add(&mut self, counter: Counter, by: i64) {
            self.calls.set(self.calls.get() + 1);
            *self.counters.entry(counter).or_default() += by;
        }
        fn increment_tool(&mut self, _tool: &str) {}
        fn record_duration_ms(&mut self, ms: u64) {
            self.calls.set(self.calls.get() + 1);
            self.durations.push(ms);
        }
        fn now_unix_nanos(&self) -> u64 {
            self.calls.set(self.calls.get() + 1);
            1_700_000_000_000_000_000
        }
        fn emit_span(&mut self, span: SpanRecord) {
            self.spans.push(span);
        }
    }

    impl SharedData for FakeHost {
        fn get_shared(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.calls.set(self.calls.get() + 1);
            self.sessions.get_shared(key)
        }
        fn set_shared(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), CasMismatch> {
            self.calls.set(self.calls.get() + 1);
            self.sessions.set_shared(key, value, cas)
        }
    }

    /// The session memory as the filter sees it, at the fake host's clock.
    fn remembered(host: &FakeHost, key: &str) -> Option<String> {
        config("{}").sessions.recall(&host.sessions, now_secs(host), key)
    }

    fn remember_server_session(host: &mut FakeHost, session: &str) {
        let now = now_secs(host);
        config("{}").sessions.learn(&mut host.sessions, now, session, None);
    }

    fn config(json: &str) -> Rc<Config> {
        Rc::new(Config::parse(json.as_bytes()).unwrap())
    }

    /// Runs the request side; returns the exchange for the response side.
    fn request(conf: &Rc<Config>, host: &mut FakeHost) -> Exchange {
        let mut ex = Exchange::new(conf.clone());
        ex.on_request_headers(false, host);
        let len = host.request_body.len();
        if matches!(ex.phase, Phase::HoldBody | Phase::ObserveBody) || conf.role == Role::Downstream {
            assert_eq!(ex.on_request_body(len, true, host), Action::Continue);
        }
        ex
    }

    fn respond(ex: &mut Exchange, host: &mut FakeHost, status: &str, content_type: &str, chunks: &[&[u8]]) {
        host.response_headers.insert(":status".into(), status.into());
        host.response_headers.insert("content-type".into(), content_type.into());
        ex.on_response_headers(chunks.is_empty(), host);
        for (i, chunk) in chunks.iter().enumerate() {
            host.response_chunk = chunk.to_vec();
            ex.on_response_body(chunk.len(), i + 1 == chunks.len(), host);
        }
        ex.on_log(host);
    }

    const CALL: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get_weather","arguments":{"city":"Paris"}}}"#;

    /// The response reader is chosen from the body, not the content-type header.
    #[test]
    fn response_kind_is_read_from_the_body() {
        let up = config(r#"{"role":"upstream"}"#);
        let error: &[u8] = br#"{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"bad"}}"#;
        let sse: &[u8] = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"isError\":true}}\n\n";
        for (content_type, chunks, expected) in [
            ("application/json", vec![b"  \r\n".as_slice(), b"\n ", error], Some("-32602")),
            ("text/plain", vec![error], Some("-32602")),
            ("text/event-stream", vec![b"\n".as_slice(), sse], Some("tool_error")),
            ("text/event-stream", vec![b": priming\n\n".as_slice(), sse], Some("tool_error")),
            ("text/event-stream", vec![b"\xEF\xBB\xBF".as_slice(), sse], Some("tool_error")),
            ("text/event-stream", vec![b"x-custom: ignored\n".as_slice(), sse], Some("tool_error")),
            ("text/html", vec![b"<html>data: {\"id\":7,\"error\":{\"code\":1}}</html>".as_slice()], None),
        ] {
            let mut host = FakeHost::post(CALL, &[]);
            let mut ex = request(&up, &mut host);
            respond(&mut ex, &mut host, "200", content_type, &chunks);
            assert_eq!(host.properties.get("error.type").map(String::as_str), expected, "{content_type} {chunks:?}");
        }
    }

    /// A POST is MCP only with an MCP signal: a configured endpoint path, an `Accept`
    /// naming both JSON and SSE (as MCP clients must), or an MCP header. Other JSON-RPC
    /// (e.g. an Ethereum node's) passes untouched and counted.
    #[test]
    fn a_post_needs_an_mcp_signal() {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}"#;
        let conf = config("{}");
        let at = |path: &str, headers: &[(&str, &str)]| {
            let mut host = FakeHost::post(body, headers);
            host.request_headers[1].1 = path.to_string();
            request(&conf, &mut host);
            host
        };
        let plain = at("/api/rpc", &[("accept", "application/json")]);
        assert_eq!(plain.request_body, body.as_bytes(), "not touched");
        assert!(plain.properties.is_empty(), "no session, no span tags");
        assert_eq!(plain.count(Counter::Passthrough(PassReason::NotMcp)), 1);
        assert!(plain.header("x-request-id").is_some(), "every request still gets an id");
        for signal in [
            &[("accept", "application/json, text/event-stream")][..],
            &[("accept", "text/event-stream;q=0.9, application/json")],
            &[("mcp-protocol-version", "2025-11-25")],
            &[("mcp-session-id", "s-1")],
            &[("mcp-method", "eth_blockNumber")],
        ] {
            let host = at("/api/rpc", signal);
            assert_ne!(host.request_body, body.as_bytes(), "{signal:?}: MCP, _meta written");
        }
        assert_ne!(at("/mcp", &[]).request_body, body.as_bytes(), "a configured endpoint path");
        assert_ne!(at("/mcp/", &[]).request_body, body.as_bytes());
        assert_eq!(at("/mcpx", &[]).request_body, body.as_bytes());
    }

    /// A body in any coding but identity is never parsed or rewritten.
    #[test]
    fn encoded_bodies_pass_untouched() {
        let conf = config("{}");
        for coding in ["gzip", "br", "deflate, gzip"] {
            let mut host = FakeHost::post(CALL, &[("content-encoding", coding)]);
            request(&conf, &mut host);
            assert_eq!(host.request_body, CALL.as_bytes(), "{coding}");
            assert!(!host.properties.contains_key("mcp.method.name"), "{coding}");
            assert_eq!(host.count(Counter::Passthrough(PassReason::Encoded)), 1, "{coding}");
        }
        let mut host = FakeHost::post(CALL, &[("content-encoding", "identity")]);
        request(&conf, &mut host);
        assert_ne!(host.request_body, CALL.as_bytes(), "identity is no coding");
    }

    /// An HTTP/2 POST whose only DATA frame is empty and ends the stream: Envoy gives a
    /// zero-length body and no buffer to read. It is an empty body, not an oversized one.
    #[test]
    fn an_empty_body_is_malformed_not_over_the_limit() {
        for role in ["standalone", "upstream"] {
            let conf = config(&format!(r#"{{"role":"{role}"}}"#));
            let mut host = FakeHost::post("", &[]);
            host.set_request_header("content-length", None);
            let mut ex = Exchange::new(conf);
            ex.on_request_headers(false, &mut host);
            assert_eq!(ex.on_request_body(0, true, &mut host), Action::Continue);
            assert_eq!(host.count(Counter::Passthrough(PassReason::OverLimit)), 0, "{role}");
            assert_eq!(host.count(Counter::Passthrough(PassReason::Malformed)), 1, "{role}");
        }
    }

    /// JSON-RPC ids are typed: `1` and `"1"` are different requests. A repeated id is
    /// answered in order, each answer to the next request still waiting for one.
    #[test]
    fn batch_answers_match_requests_by_typed_id() {
        let up = config(r#"{"role":"upstream","own_spans":{"enabled":true}}"#);
        let outcome = |host: &FakeHost, name: &str| host.spans.iter().find(|s| s.name == name).map(|s| s.error.clone());
        let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":"1","method":"ping"}]"#;
        let mut host = FakeHost::post(batch, &[("traceparent", TP)]);
        let mut ex = request(&up, &mut host);
        let answer: &[u8] =
            br#"[{"jsonrpc":"2.0","id":"1","error":{"code":-32601,"message":"no ping"}},{"jsonrpc":"2.0","id":1,"result":{}}]"#;
        respond(&mut ex, &mut host, "200", "application/json", &[answer]);
        assert_eq!(outcome(&host, "tools/list"), Some(None), "`1` was answered with a result");
        assert_eq!(outcome(&host, "ping"), Some(Some("no ping".into())), "`\"1\"` with the error");
        assert!(!host.properties.contains_key("error.type"), "Envoy's span is the first request's");

        let batch = r#"[{"jsonrpc":"2.0","id":5,"method":"tools/list"},{"jsonrpc":"2.0","id":5,"method":"prompts/list"}]"#;
        let mut host = FakeHost::post(batch, &[("traceparent", TP)]);
        let mut ex = request(&up, &mut host);
        let answer: &[u8] = br#"[{"jsonrpc":"2.0","id":5,"result":{}},{"jsonrpc":"2.0","id":5,"error":{"code":-32000,"message":"x"}}]"#;
        respond(&mut ex, &mut host, "200", "application/json", &[answer]);
        assert_eq!(outcome(&host, "tools/list"), Some(None));
        assert_eq!(outcome(&host, "prompts/list"), Some(Some("x".into())), "the second answer is not dropped");
        assert_eq!(host.count(Counter::Error(ErrorClass::JsonRpc)), 1);
    }

    /// A byte order mark may reach the filter in pieces; the stream is still read.
    #[test]
    fn a_byte_order_mark_split_across_chunks_does_not_hide_the_answer() {
        let up = config(r#"{"role":"upstream"}"#);
        let sse: &[u8] = b"\xEF\xBB\xBFevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"isError\":true}}\n\n";
        let splits: Vec<Vec<&[u8]>> = vec![
            vec![&sse[..1], &sse[1..]],
            vec![&sse[..2], &sse[2..]],
            vec![&sse[..3], &sse[3..]],
            vec![&sse[..1], &sse[1..2], &sse[2..]],
        ];
        for chunks in splits {
            let mut host = FakeHost::post(CALL, &[]);
            let mut ex = request(&up, &mut host);
            respond(&mut ex, &mut host, "200", "text/event-stream", &chunks);
            assert_eq!(host.properties.get("error.type").map(String::as_str), Some("tool_error"), "{chunks:?}");
        }
    }

    /// The upstream instance takes the session from `Mcp-Session-Id` when told the HCM
    /// instance's first source is that header, else from the HCM's filter state.
    #[test]
    fn upstream_session_from_the_header_or_the_filter_state() {
        for (conf, headers, expected) in [
            (r#"{"role":"upstream","session_from_mcp_header":true}"#, vec![("mcp-session-id", "from-header")], "from-header"),
            (r#"{"role":"upstream","session_from_mcp_header":true}"#, vec![("x-session-id", "alias")], "from-state"),
            (r#"{"role":"upstream","session_from_mcp_header":true}"#, vec![("mcp-session-id", "bad id")], "from-state"),
            (r#"{"role":"upstream"}"#, vec![("mcp-session-id", "h")], "from-state"),
        ] {
            let up = config(conf);
            let mut host = FakeHost::post(CALL, &headers);
            host.properties.insert("mcp.session.id".into(), "from-state".into());
            let ex = request(&up, &mut host);
            assert_eq!(ex.session.as_ref().map(|s| s.id.as_str()), Some(expected), "{conf} {headers:?}");
        }
    }

    #[test]
    fn request_id_on_the_response_can_be_left_to_envoy() {
        let down = config(r#"{"role":"downstream","request_id_in_response":false}"#);
        let mut host = FakeHost::post(CALL, &[]);
        let mut ex = request(&down, &mut host);
        respond(&mut ex, &mut host, "200", "application/json", &[b"{}"]);
        assert!(!host.response_headers.contains_key("x-request-id"));
    }
    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// Istio and Envoy Gateway never set `allow_on_headers_stop_iteration`: a paused
    /// request header phase would never get its body callback and the request would hang.
    /// By default the headers go on at once, without the `content-length` the rewrite
    /// would make wrong; the body is held in the body phase and rewritten there.
    #[test]
    fn request_headers_are_never_paused_by_default() {
        for role in ["standalone", "upstream"] {
            let conf = config(&format!(r#"{{"role":"{role}"}}"#));
            let mut host = FakeHost::post(CALL, &[("traceparent", TP)]);
            let mut ex = Exchange::new(conf);
            assert_eq!(ex.on_request_headers(false, &mut host), Action::Continue, "{role}");
            assert!(host.header("content-length").is_none(), "{role}: the length of a body about to change is dropped");
            assert_eq!(ex.on_request_body(10, false, &mut host), Action::Pause, "{role}: the body is held");
            assert_eq!(ex.on_request_body(CALL.len(), true, &mut host), Action::Continue);
            let body: serde_json::Value = serde_json::from_slice(&host.request_body).unwrap();
            assert!(body["params"]["_meta"]["traceparent"].is_string(), "{role}");
            assert!(host.header("content-length").is_none(), "{role}: headers have left; no length is set late");
        }
    }

    /// W3C: `tracestate` means nothing without a valid `traceparent`, and repeated
    /// `tracestate` headers are one list. Whatever is invalid is removed before it
    /// travels on, by the instance at the edge and by the one that writes `_meta`.
    #[test]
    fn invalid_trace_headers_never_travel_on() {
        type Headers<'a> = &'a [(&'a str, &'a str)];
        let cases: [(Headers, &[&str]); 4] = [
            (&[("traceparent", "00-zz-garbage"), ("tracestate", "a=b")], &["traceparent", "tracestate"]),
            (&[("traceparent", TP), ("tracestate", "a=b"), ("tracestate", "BAD STATE")], &["tracestate"]),
            (&[("traceparent", TP), ("traceparent", TP), ("tracestate", "a=b")], &["traceparent", "tracestate"]),
            (&[("traceparent", TP), ("tracestate", "a=b"), ("tracestate", "c=d"), ("baggage", "k=v")], &[]),
        ];
        for role in ["standalone", "downstream", "upstream"] {
            let conf = config(&format!(r#"{{"role":"{role}"}}"#));
            for (headers, removed) in cases {
                let mut host = FakeHost::post(CALL, headers);
                request(&conf, &mut host);
                for name in ["traceparent", "tracestate", "baggage"] {
                    let sent = headers.iter().filter(|(k, _)| *k == name).count();
                    let left = host.request_headers.iter().filter(|(k, _)| k == name).count();
                    let expected = if removed.contains(&name) { 0 } else { sent };
                    assert_eq!(left, expected, "{role} {headers:?}: {name}");
                }
                let body: serde_json::Value = serde_json::from_slice(&host.request_body).unwrap();
                let meta = &body["params"]["_meta"];
                if role != "downstream" && removed.contains(&"tracestate") {
                    assert!(meta.get("tracestate").is_none(), "{role} {headers:?}: {meta}");
                }
            }
        }
    }

    /// Where the operator has set `allow_on_headers_stop_iteration`, the headers may be
    /// held and the length corrected instead (`hold_request_headers`).
    #[test]
    fn held_request_headers_get_the_new_length() {
        let conf = config(r#"{"hold_request_headers":true}"#);
        let mut host = FakeHost::post(CALL, &[("traceparent", TP)]);
        let mut ex = Exchange::new(conf);
        assert_eq!(ex.on_request_headers(false, &mut host), Action::Pause);
        assert_eq!(ex.on_request_body(CALL.len(), true, &mut host), Action::Continue);
        assert_eq!(host.header("content-length").unwrap(), host.request_body.len().to_string());
    }

    #[test]
    fn standalone_post_is_spliced_tagged_and_answered() {
        let conf = config("{}");
        let mut host = FakeHost::post(CALL, &[("traceparent", TP), ("x-session-id", "s-1")]);
        let mut ex = Exchange::new(conf.clone());
        assert_eq!(ex.on_request_headers(false, &mut host), Action::Continue);
        assert_eq!(ex.on_request_body(10, false, &mut host), Action::Pause, "hold the body until it is whole");
        assert_eq!(ex.on_request_body(CALL.len(), true, &mut host), Action::Continue);
        let body: serde_json::Value = serde_json::from_slice(&host.request_body).unwrap();
        let meta = &body["params"]["_meta"];
        assert_eq!(meta["traceparent"], TP, "standalone without own spans forwards the client's context");
        assert_eq!(meta["io.github.mcp-trace/session-id"], "s-1");
        let rid = host.header("x-request-id").unwrap().to_string();
        assert_eq!(meta["io.github.mcp-trace/request-id"], rid.as_str());
        assert_eq!(host.header("content-length"), None);
        assert_eq!(host.properties["mcp_trace.span_name"], "tools/call get_weather");
        assert_eq!(host.properties["gen_ai.tool.name"], "get_weather");
        assert_eq!(host.properties["jsonrpc.request.id"], "7");
        assert!(!host.properties.values().any(|v| v.contains("Paris")), "argument values never recorded");

        let sse = b"event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\r\n\r\nevent: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"isError\":true}}\r\n\r\n";
        let (a, b) = sse.split_at(50);
        respond(&mut ex, &mut host, "200", "text/event-stream", &[a, b]);
        assert_eq!(host.response_headers["x-request-id"], rid);
        assert_eq!(host.properties["error.type"], "tool_error");
        assert_eq!(host.properties["mcp.sse.events"], "2");
        assert_eq!(host.properties["mcp.sse.notifications"], "1");
        assert_eq!(host.count(Counter::Error(ErrorClass::Tool)), 1);
        assert_eq!(host.count(Counter::Request(method_index(Some("tools/call")))), 1);
        assert_eq!(host.durations.len(), 1);
    }

    #[test]
    fn content_types() {
        assert!(is_json(Some("application/json")));
        assert!(is_json(Some("Application/JSON; charset=utf-8")));
        assert!(is_json(Some("application/vnd.api+json")));
        assert!(!is_json(Some("text/plain")));
        assert!(!is_json(None));
        // Non-ASCII (a lossily decoded header byte) must not panic.
        assert!(!is_json(Some("application/\u{FFFD}abcd")));
        assert!(!is_json(Some("\u{FFFD}\u{FFFD}")));
    }

    #[test]
    fn non_mcp_requests_pass_untouched_and_are_counted() {
        let conf = config("{}");
        let mut host = FakeHost::post("hello", &[]);
        host.set_request_header("content-type", Some("text/plain"));
        let mut ex = Exchange::new(conf);
        assert_eq!(ex.on_request_headers(false, &mut host), Action::Continue);
        assert_eq!(ex.on_request_body(5, true, &mut host), Action::Continue);
        assert_eq!(host.request_body, b"hello");
        assert_eq!(host.count(Counter::Passthrough(PassReason::NotMcp)), 1);
        assert!(host.header("x-request-id").is_some(), "every request still gets an id");
        assert!(host.properties.is_empty());
    }

    #[test]
    fn malformed_and_oversized_bodies_pass_byte_identical() {
        let conf = config(r#"{"max_body_bytes":64}"#);
        let mut host = FakeHost::post(r#"{"jsonrpc":"2.0","id":1,"method":"tools/ca"#, &[]);
        request(&conf, &mut host);
        assert_eq!(host.request_body, br#"{"jsonrpc":"2.0","id":1,"method":"tools/ca"#);
        assert_eq!(host.count(Counter::Passthrough(PassReason::Malformed)), 1);

        let big = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","pad":"{}"}}}}"#, "x".repeat(100));
        let mut host = FakeHost::post(&big, &[("mcp-method", "tools/call"), ("mcp-name", "t")]);
        let mut ex = Exchange::new(conf.clone());
        assert_eq!(ex.on_request_headers(false, &mut host), Action::Continue, "declared length over the limit");
        assert_eq!(host.request_body, big.as_bytes());
        assert_eq!(host.count(Counter::Passthrough(PassReason::OverLimit)), 1);
        // Not read, but named from the 2026-07-28 mirrored headers.
        assert_eq!(host.properties["mcp_trace.span_name"], "tools/call t");
        assert_eq!(host.properties["gen_ai.tool.name"], "t");

        // No content-length (chunked): discovered while buffering.
        let mut host = FakeHost::post(&big, &[]);
        host.set_request_header("content-length", None);
        let mut ex = Exchange::new(conf);
        assert_eq!(ex.on_request_headers(false, &mut host), Action::Continue);
        assert_eq!(ex.on_request_body(big.len(), false, &mut host), Action::Continue);
        assert_eq!(host.request_body, big.as_bytes());
        assert_eq!(host.count(Counter::Passthrough(PassReason::OverLimit)), 1);
    }

    #[test]
    fn chunked_requests_and_trailers() {
        let conf = config("{}");
        let mut host = FakeHost::post(CALL, &[]);
        host.set_request_header("content-length", None);
        let mut ex = Exchange::new(conf);
        assert_eq!(ex.on_request_headers(false, &mut host), Action::Continue);
        assert_eq!(ex.on_request_body(CALL.len(), false, &mut host), Action::Pause);
        assert_eq!(ex.on_request_trailers(&mut host), Action::Continue, "trailers end the body");
        assert!(host.header("content-length").is_none(), "no length invented for a chunked body");
        let body: serde_json::Value = serde_json::from_slice(&host.request_body).unwrap();
        assert!(body["params"]["_meta"]["io.github.mcp-trace/request-id"].is_string());
        assert_eq!(host.properties["mcp_trace.span_name"], "tools/call get_weather");
    }

    #[test]
    fn initialize_learns_the_server_session_and_remembers_the_alias() {
        let conf = config("{}");
        let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}"#;
        let mut host = FakeHost::post(init, &[("x-session-id", "agent-1")]);
        let mut ex = request(&conf, &mut host);
        host.response_headers.insert("mcp-session-id".into(), "srv-42".into());
        respond(&mut ex, &mut host, "200", "application/json", &[br#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18"}}"#]);
        assert_eq!(host.properties["mcp.session.id"], "srv-42");
        assert_eq!(remembered(&host, "agent-1").as_deref(), Some("srv-42"));
        // A later request identified only by the alias lands on the server's session.
        let mut later = FakeHost::post(CALL, &[("x-session-id", "agent-1")]);
        later.sessions = host.sessions.clone();
        request(&conf, &mut later);
        assert_eq!(later.properties["mcp.session.id"], "srv-42");
    }

    /// A client-side id (here a bearer token's hash) follows the server's newest session:
    /// a second `initialize` starts a new one (its `_meta` must not name the old), and
    /// ending a session (DELETE, or a 404) forgets the ids that led to it.
    #[test]
    fn client_side_ids_follow_the_newest_server_session() {
        let conf = config("{}");
        let bearer = [("authorization", "Bearer tok")];
        let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}"#;
        let mut host = FakeHost::post(init, &bearer);
        let session_of = |host: &mut FakeHost, body: &str, headers: &[(&str, &str)], status: &str, assigned: Option<&str>| {
            host.request_headers = FakeHost::post(body, headers).request_headers;
            host.request_body = body.as_bytes().to_vec();
            host.properties.clear();
            let mut ex = request(&conf, host);
            let meta: serde_json::Value = serde_json::from_slice(&host.request_body).unwrap_or_default();
            let in_meta = meta["params"]["_meta"]["io.github.mcp-trace/session-id"].as_str().map(str::to_string);
            host.response_headers.clear();
            if let Some(id) = assigned {
                host.response_headers.insert("mcp-session-id".into(), id.into());
            }
            respond(&mut ex, host, status, "application/json", &[br#"{"jsonrpc":"2.0","id":0,"result":{}}"#]);
            (in_meta, host.properties.get("mcp.session.id").cloned())
        };
        let hash = crate::core::session::bearer_session_id("tok");
        let (meta, tag) = session_of(&mut host, init, &bearer, "200", Some("srv-1"));
        assert_eq!((meta.as_deref(), tag.as_deref()), (Some(hash.as_str()), Some("srv-1")));
        assert_eq!(session_of(&mut host, CALL, &bearer, "200", None).1.as_deref(), Some("srv-1"), "the alias leads to srv-1");
        let (meta, tag) = session_of(&mut host, init, &bearer, "200", Some("srv-2"));
        assert_eq!(meta.as_deref(), Some(hash.as_str()), "a new initialize does not continue srv-1");
        assert_eq!(tag.as_deref(), Some("srv-2"));
        assert_eq!(session_of(&mut host, CALL, &bearer, "200", None).1.as_deref(), Some("srv-2"), "the alias moved to srv-2");
        // DELETE ends srv-2: the token no longer leads there.
        let mut delete = FakeHost { sessions: host.sessions.clone(), ..Default::default() };
        delete.request_headers =
            vec![(":method".into(), "DELETE".into()), (":path".into(), "/mcp".into()), ("mcp-session-id".into(), "srv-2".into())];
        let mut ex = Exchange::new(conf.clone());
        ex.on_request_headers(true, &mut delete);
        host.sessions = delete.sessions;
        assert_eq!(session_of(&mut host, CALL, &bearer, "200", None).1, Some(hash.clone()), "DELETE forgot the alias");
        // A 404 on a known session forgets its aliases too.
        session_of(&mut host, init, &bearer, "200", Some("srv-3"));
        session_of(&mut host, CALL, &[("mcp-session-id", "srv-3"), bearer[0]], "404", None);
        assert_eq!(session_of(&mut host, CALL, &bearer, "200", None).1, Some(hash), "the 404 forgot the alias");
    }

    #[test]
    fn not_found_on_a_known_session_is_expiry() {
        let conf = config("{}");
        let mut host = FakeHost::post(CALL, &[("mcp-session-id", "srv-42")]);
        remember_server_session(&mut host, "srv-42");
        let mut ex = request(&conf, &mut host);
        respond(&mut ex, &mut host, "404", "application/json", &[b""]);
        assert_eq!(host.properties["mcp_trace.session.expired"], "true");
        assert_eq!(host.properties["error.type"], "404");
        assert_eq!(host.count(Counter::SessionExpired), 1);
        assert_eq!(remembered(&host, "srv-42"), None);
    }

    #[test]
    fn paired_instances_split_the_work() {
        // Downstream (HCM chain): identity only; the body is not even read.
        let down = config(r#"{"role":"downstream"}"#);
        let mut host = FakeHost::post(CALL, &[("traceparent", TP), ("x-session-id", "agent-1")]);
        let mut ex = Exchange::new(down.clone());
        assert_eq!(ex.on_request_headers(false, &mut host), Action::Continue, "never holds the request");
        assert_eq!(ex.on_request_body(CALL.len(), true, &mut host), Action::Continue);
        assert_eq!(host.request_body, CALL.as_bytes());
        assert_eq!(host.properties.keys().collect::<Vec<_>>(), vec!["mcp.session.id"]);
        assert!(host.counters.is_empty());
        let rid = host.header("x-request-id").unwrap().to_string();
        // Upstream (router upstream filter): Envoy injected its own span; that becomes
        // the server's parent, and this instance does the MCP work.
        let up = config(r#"{"role":"upstream"}"#);
        let envoy_span = "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01";
        host.set_request_header("traceparent", Some(envoy_span));
        let mut up_ex = Exchange::new(up);
        assert_eq!(up_ex.on_request_headers(false, &mut host), Action::Continue);
        up_ex.on_request_body(CALL.len(), true, &mut host);
        let body: serde_json::Value = serde_json::from_slice(&host.request_body).unwrap();
        assert_eq!(body["params"]["_meta"]["traceparent"], envoy_span);
        assert_eq!(body["params"]["_meta"]["io.github.mcp-trace/session-id"], "agent-1");
        assert_eq!(body["params"]["_meta"]["io.github.mcp-trace/request-id"], rid.as_str());
        assert_eq!(host.properties["mcp.method.name"], "tools/call");
        assert_eq!(host.count(Counter::Request(method_index(Some("tools/call")))), 1);
        // The response: the upstream instance reads it, the downstream one stamps the id.
        respond(
            &mut up_ex,
            &mut host,
            "200",
            "application/json",
            &[br#"{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"bad"}}"#],
        );
        assert_eq!(host.properties["error.type"], "-32602");
        host.response_headers.remove("x-request-id");
        respond(&mut ex, &mut host, "200", "application/json", &[b"{}"]);
        assert_eq!(host.response_headers["x-request-id"], rid);
        assert_eq!(host.count(Counter::Error(ErrorClass::JsonRpc)), 1, "counted once");
    }

    #[test]
    fn own_spans_follow_the_parent_sampling_but_keep_errors() {
        let up = config(r#"{"role":"upstream","own_spans":{"enabled":true}}"#);
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        for (result, kept) in [
            (&br#"{"jsonrpc":"2.0","id":7,"result":{}}"#[..], false),
            (br#"{"jsonrpc":"2.0","id":7,"error":{"code":-32603,"message":"boom"}}"#, true),
        ] {
            let mut host = FakeHost::post(CALL, &[("traceparent", unsampled)]);
            let mut ex = request(&up, &mut host);
            let body: serde_json::Value = serde_json::from_slice(&host.request_body).unwrap();
            assert!(body["params"]["_meta"]["traceparent"].as_str().unwrap().ends_with("-00"), "the flag is propagated");
            respond(&mut ex, &mut host, "200", "application/json", &[result]);
            assert_eq!(host.spans.len(), kept as usize);
            if kept {
                let span = &host.spans[0];
                assert_eq!(span.error.as_deref(), Some("boom"));
                assert!(span.attributes.iter().any(|(k, v)| *k == "error.type" && v.as_text() == "-32603"));
            }
        }
        let never = config(r#"{"role":"upstream","own_spans":{"enabled":true,"root_sample_ratio":0.0}}"#);
        let mut host = FakeHost::post(CALL, &[]);
        let mut ex = request(&never, &mut host);
        respond(&mut ex, &mut host, "200", "application/json", &[br#"{"jsonrpc":"2.0","id":7,"result":{}}"#]);
        assert!(host.spans.is_empty(), "roots follow the ratio");
    }

    /// Host calls are the filter's main per-request cost in Envoy (each crosses the
    /// VM boundary). This pins the count for the benchmark's request, a 1 KB
    /// `tools/call` answered in JSON, so a change that adds calls is a visible decision.
    #[test]
    fn host_calls_per_tools_call() {
        let pad = "x".repeat(900);
        let body =
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"get_weather","arguments":{{"city":"{pad}"}}}}}}"#);
        let answer: &[u8] = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"sunny"}],"isError":false}}"#;
        let mut counts = Vec::new();
        // As in envoy/envoy.yaml, where Envoy sets the response's x-request-id itself.
        for (role, conf) in [
            ("downstream", r#"{"role":"downstream","request_id_in_response":false}"#),
            ("upstream", r#"{"role":"upstream","session_from_mcp_header":true}"#),
            ("standalone", r#"{"role":"standalone"}"#),
        ] {
            let conf = config(conf);
            let mut host = FakeHost::post(&body, &[("mcp-session-id", "s")]);
            host.properties.insert("mcp.session.id".into(), "s".into());
            host.calls.set(0);
            let mut ex = request(&conf, &mut host);
            respond(&mut ex, &mut host, "200", "application/json", &[answer]);
            counts.push((role, host.calls.get()));
        }
        assert_eq!(counts, vec![("downstream", 4), ("upstream", 17), ("standalone", 20)], "{counts:?}");
    }

    /// Native timing of one request through each role (run with
    /// `cargo test --release -- --ignored --nocapture native_cost`; `NATIVE_COST_N=3000`
    /// makes it short enough to run under `valgrind --tool=callgrind`).
    #[test]
    #[ignore]
    fn native_cost_per_tools_call() {
        let pad = "x".repeat(900);
        let body =
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"get_weather","arguments":{{"city":"{pad}"}}}}}}"#);
        let answer: &[u8] = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"sunny"}],"isError":false}}"#;
        for role in ["downstream", "upstream"] {
            let conf = config(&format!(r#"{{"role":"{role}"}}"#));
            let template = FakeHost::post(&body, &[("mcp-session-id", "s"), ("traceparent", TP)]);
            let n: u32 = std::env::var("NATIVE_COST_N").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
            let t = std::time::Instant::now();
            for _ in 0..n {
                let mut host = FakeHost {
                    request_headers: template.request_headers.clone(),
                    request_body: template.request_body.clone(),
                    ..Default::default()
                };
                let mut ex = request(&conf, &mut host);
                respond(&mut ex, &mut host, "200", "application/json", &[answer]);
                std::hint::black_box(&host);
            }
            println!("{role}: {:.2} us per request (fake host included)", t.elapsed().as_secs_f64() * 1e6 / n as f64);
        }
    }

    #[test]
    fn get_stream_and_delete_carry_the_session() {
        let conf = config("{}");
        let mut host = FakeHost {
            request_headers: vec![
                (":method".into(), "GET".into()),
                (":path".into(), "/mcp".into()),
                ("accept".into(), "text/event-stream".into()),
                ("mcp-session-id".into(), "srv-9".into()),
            ],
            ..Default::default()
        };
        let mut ex = Exchange::new(conf.clone());
        assert_eq!(ex.on_request_headers(true, &mut host), Action::Continue);
        assert_eq!(host.properties["mcp_trace.span_name"], "GET /mcp");
        assert_eq!(host.properties["mcp.session.id"], "srv-9");
        respond(&mut ex, &mut host, "200", "text/event-stream", &[b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\n"]);
        assert_eq!(host.properties["mcp.sse.notifications"], "1");
        host.request_headers[0].1 = "DELETE".into();
        remember_server_session(&mut host, "srv-9");
        let mut ex = Exchange::new(conf);
        ex.on_request_headers(true, &mut host);
        assert_eq!(host.properties["mcp_trace.span_name"], "DELETE /mcp");
        assert_eq!(remembered(&host, "srv-9"), None, "DELETE ends it");
    }
}
