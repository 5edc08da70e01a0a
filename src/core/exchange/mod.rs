//! One HTTP request/response through the filter: the decisions, host-independent.
//!
//! The proxy-wasm layer calls the `on_*` methods from the matching callbacks and does what
//! the returned [`Action`] says. Every read and write of headers, bodies, filter state,
//! stats, shared data and spans goes through [`Host`], so the whole state machine runs
//! under `cargo test` against a fake host that behaves like Envoy.
//!
//! A request goes through these stages, one module each:
//! 1. `classify`: is it an MCP operation, and which (request headers only);
//! 2. `identity`: the request id and the session, and trace headers cleaned;
//! 3. `body`: hold (or copy) the request body until it is whole;
//! 4. `request`: read its JSON-RPC messages, plan the trace context, write `_meta`;
//! 5. `tags`: names and attributes where Envoy's tracing reads them (filter state);
//! 6. `response`: read the answer as it streams, learn the session;
//! 7. `report`: counters, the duration, the filter's own spans.
//!
//! What an instance does is decided once, from its role ([`Duties`]).

mod body;
mod classify;
mod identity;
mod report;
mod request;
mod response;
mod tags;

#[cfg(test)]
mod fake_host;
#[cfg(test)]
mod tests;

use crate::core::config::{Config, Duties};
use crate::core::headers::HeaderList;
use crate::core::log_context;
use crate::core::metrics::{Counter, PassReason};
use crate::core::otlp::SpanRecord;
use crate::core::session_store::SharedData;
use crate::core::upstream_answers::UpstreamAnswers;
use std::rc::Rc;

use body::BodyHold;
use classify::{RequestHead, Transport};
use identity::Identity;
use request::Operation;
use response::ResponseState;

/// What the host should do after a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    /// Hold headers / buffer the body until the next callback.
    Pause,
}

/// Everything the exchange needs from the proxy. Implemented by the proxy-wasm layer
/// over Envoy's ABI, and by a fake that behaves like Envoy in tests.
pub trait Host: SharedData {
    /// `HTTP/1.1`, `HTTP/2`… of the downstream request (read for own spans only: Envoy
    /// tags its own span with it from a format string).
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
    /// A response header: readable only in the response-headers callback.
    fn response_header(&self, name: &str) -> Option<String>;
    /// The response's status, in any callback after the response headers (the
    /// `response.code` property).
    fn response_status(&self) -> Option<u16>;
    /// Why Envoy answered as it did (`via_upstream`, `route_not_found`,
    /// `upstream_reset_before_response_started{…}`, `response_timeout`…).
    fn response_code_details(&self) -> Option<String>;
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
    /// The notes the paired instances leave each other in the VM they share
    /// ([`UpstreamAnswers`]).
    fn with_upstream_answers<R>(&mut self, f: impl FnOnce(&mut UpstreamAnswers) -> R) -> R;
}

pub struct Exchange {
    config: Rc<Config>,
    duties: Duties,
    /// The MCP operation the request headers announce; None: not MCP, pass it on.
    head: Option<RequestHead>,
    identity: Identity,
    body: BodyHold,
    /// One per JSON-RPC message of the request (a batch has several).
    operations: Vec<Operation>,
    batch: bool,
    response: ResponseState,
    /// Envoy's span has been given a name.
    named: bool,
    started_ns: u64,
    logged: bool,
}

impl Exchange {
    pub fn new(config: Rc<Config>) -> Exchange {
        Exchange {
            duties: config.role.duties(),
            config,
            head: None,
            identity: Identity::default(),
            body: BodyHold::default(),
            operations: Vec::new(),
            batch: false,
            response: ResponseState::default(),
            named: false,
            started_ns: 0,
            logged: false,
        }
    }

    fn log_prefix(&self) -> String {
        log_context::prefix(self.identity.request_id.as_deref(), self.identity.session.as_ref().map(|s| s.id.as_str()))
    }

    pub fn on_request_headers(&mut self, end_of_stream: bool, host: &mut impl Host) -> Action {
        let headers = host.request_headers();
        let head = classify::classify(&headers, &self.config);
        if self.duties.identity {
            self.identity.resolve_request_id(&headers, &self.config, host);
        } else {
            self.identity.take_request_id(&headers, &self.config);
        }
        let head = match head {
            Ok(head) => head,
            Err(reason) => {
                if self.duties.mcp {
                    host.increment(Counter::Passthrough(reason));
                }
                return Action::Continue;
            }
        };
        if self.duties.identity {
            self.identity.resolve_session(&headers, &head, &self.config, host);
        } else {
            self.identity.take_session(&headers, &self.config, host);
        }
        // Invalid trace context never travels on: cleaned by the edge instance, and again
        // by the one writing `_meta` (after Envoy's router injected its own).
        self.identity.trace = identity::clean_trace_headers(&headers, host);
        let transport = head.transport;
        self.head = Some(head);
        if !self.duties.mcp {
            return Action::Continue;
        }
        self.started_ns = host.now_unix_nanos();
        match transport {
            Transport::Post => self.begin_post(end_of_stream, &headers, host),
            Transport::Stream | Transport::SessionEnd => {
                self.tag_transport_operation(host);
                Action::Continue
            }
        }
    }

    /// A POST: hold its body until whole when `_meta` may be written, else copy it as it
    /// passes; an empty or oversized one is not read.
    fn begin_post(&mut self, end_of_stream: bool, headers: &HeaderList, host: &mut impl Host) -> Action {
        if end_of_stream {
            host.increment(Counter::Passthrough(PassReason::Malformed));
            self.head = None;
            return Action::Continue;
        }
        let declared = headers.get(crate::core::headers::CONTENT_LENGTH);
        if declared.and_then(|v| v.parse::<usize>().ok()).is_some_and(|len| len > self.config.max_body_bytes) {
            self.give_up_body(host);
            return Action::Continue;
        }
        if !self.config.writes_meta() {
            self.body = BodyHold::Observing(Vec::new());
            return Action::Continue;
        }
        self.body = BodyHold::Holding;
        if self.config.hold_request_headers {
            return Action::Pause;
        }
        // The headers leave now, before the body is rewritten: a length would be wrong by
        // the size of the `_meta` write. Without one an HTTP/1.1 upstream gets the body
        // chunked; HTTP/2 frames it anyway.
        if declared.is_some() {
            host.set_request_header(crate::core::headers::CONTENT_LENGTH, None);
        }
        Action::Continue
    }

    pub fn on_request_body(&mut self, body_size: usize, end_of_stream: bool, host: &mut impl Host) -> Action {
        match self.body.on_body(body_size, end_of_stream, self.config.max_body_bytes, host) {
            body::Step::Wait => Action::Pause,
            body::Step::Pass => Action::Continue,
            body::Step::Whole(bytes) => {
                self.read_request(&bytes, host);
                Action::Continue
            }
            body::Step::TooLarge => {
                self.give_up_body(host);
                Action::Continue
            }
        }
    }

    /// A request with trailers ends here instead of in a body callback with
    /// `end_of_stream`: finish reading the held body.
    pub fn on_request_trailers(&mut self, host: &mut impl Host) -> Action {
        match self.body.on_trailers(self.config.max_body_bytes, host) {
            Some(body::Step::Whole(bytes)) => self.read_request(&bytes, host),
            Some(body::Step::TooLarge) => self.give_up_body(host),
            _ => {}
        }
        Action::Continue
    }

    pub fn on_response_headers(&mut self, end_of_stream: bool, host: &mut impl Host) -> Action {
        if self.duties.notes_answers && self.head.is_some() {
            if let Some(id) = &self.identity.request_id {
                host.with_upstream_answers(|answers| answers.note(id));
            }
        }
        if self.duties.identity && self.config.request_id_in_response {
            if let Some(id) = &self.identity.request_id {
                host.set_response_header(&self.config.request_id_header, id);
            }
        }
        if self.head.is_some() && self.duties.mcp {
            self.read_response_headers(end_of_stream, host);
        }
        if self.head.is_some() && self.duties.local_replies {
            self.tag_local_reply(host);
        }
        Action::Continue
    }

    pub fn on_response_body(&mut self, body_size: usize, end_of_stream: bool, host: &mut impl Host) -> Action {
        if self.head.is_some() && self.duties.mcp {
            self.read_response_body(body_size, end_of_stream, host);
        }
        Action::Continue
    }

    /// The stream is over (Envoy's access-log point, or `on_done` in the router's
    /// upstream chain, which gets no `on_log`).
    pub fn on_log(&mut self, host: &mut impl Host) {
        if self.duties.local_replies && self.head.is_some() {
            if let Some(id) = &self.identity.request_id {
                host.with_upstream_answers(|answers| answers.forget(id));
            }
        }
        if self.head.is_none() || !self.duties.mcp || self.logged {
            return;
        }
        self.logged = true;
        self.report(host);
    }
}

fn now_secs(host: &impl Host) -> u64 {
    host.now_unix_nanos() / 1_000_000_000
}
