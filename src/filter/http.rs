//! The HTTP context: forwards each callback to the core [`Exchange`] and implements its
//! [`Host`] over proxy-wasm host calls.

use super::export;
use super::root::Shared;
use crate::core::exchange::{Action as CoreAction, Exchange, Host};
use crate::core::metrics::Counter;
use crate::core::otlp::SpanRecord;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use std::rc::Rc;
use std::time::UNIX_EPOCH;

pub struct Http {
    shared: Rc<Shared>,
    exchange: Exchange,
}

impl Http {
    pub fn new(shared: Rc<Shared>) -> Http {
        let exchange = Exchange::new(shared.config.clone());
        Http { shared, exchange }
    }
}

fn action(a: CoreAction) -> Action {
    match a {
        CoreAction::Continue => Action::Continue,
        CoreAction::Pause => Action::Pause,
    }
}

/// The host side of the exchange. Kept separate from `Http` so the exchange can be
/// borrowed mutably alongside it.
struct EnvoyHost<'a> {
    shared: &'a Shared,
}

impl Host for EnvoyHost<'_> {
    fn request_protocol(&self) -> Option<String> {
        let bytes = hostcalls::get_property(vec!["request", "protocol"]).ok().flatten()?;
        String::from_utf8(bytes).ok()
    }

    fn request_headers(&self) -> Vec<(String, String)> {
        hostcalls::get_map(MapType::HttpRequestHeaders).unwrap_or_default()
    }

    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        if let Err(status) = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value) {
            log::debug!("mcp-trace: could not set request header {name} ({status:?})");
        }
    }

    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size).ok().flatten()
    }

    fn replace_request_body(&mut self, body: &[u8]) {
        // Replace the whole buffered body: start 0, size = everything Envoy holds.
        if let Err(status) = hostcalls::set_buffer(BufferType::HttpRequestBody, 0, usize::MAX, body) {
            log::debug!("mcp-trace: could not replace the request body ({status:?})");
        }
    }

    fn response_header(&self, name: &str) -> Option<String> {
        hostcalls::get_map_value(MapType::HttpResponseHeaders, name).ok().flatten()
    }

    fn set_response_header(&mut self, name: &str, value: &str) {
        if let Err(status) = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value)) {
            log::debug!("mcp-trace: could not set response header {name} ({status:?})");
        }
    }

    fn response_body(&self, size: usize) -> Option<Vec<u8>> {
        hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size).ok().flatten()
    }

    fn set_property(&mut self, key: &str, value: &str) {
        // One dotted key: Envoy stores it as filter state `wasm.<key>`.
        if let Err(status) = hostcalls::set_property(vec![key], Some(value.as_bytes())) {
            log::debug!("mcp-trace: could not set property {key} ({status:?})");
        }
    }

    fn increment(&mut self, counter: Counter) {
        self.shared.metrics.increment(counter);
    }

    fn increment_tool(&mut self, tool: &str) {
        self.shared.metrics.increment_tool(tool);
    }

    fn record_duration_ms(&mut self, ms: u64) {
        self.shared.metrics.record_duration_ms(ms);
    }

    fn now_unix_nanos(&self) -> u64 {
        hostcalls::get_current_time().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos() as u64)
    }

    fn emit_span(&mut self, span: SpanRecord) {
        if !export::enqueue(span, self.shared.config.own_spans.max_queue_spans) {
            self.shared.metrics.increment(Counter::SpansDropped);
        }
    }

    fn recall_session(&self, key: &str) -> Option<String> {
        self.shared.sessions.recall(key)
    }

    fn remember_session(&mut self, key: &str, session_id: &str) {
        self.shared.sessions.remember(key, session_id);
    }

    fn forget_session(&mut self, key: &str) {
        self.shared.sessions.forget(key);
    }
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let mut host = EnvoyHost { shared: &self.shared };
        action(self.exchange.on_request_headers(end_of_stream, &mut host))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let mut host = EnvoyHost { shared: &self.shared };
        action(self.exchange.on_request_body(body_size, end_of_stream, &mut host))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let mut host = EnvoyHost { shared: &self.shared };
        action(self.exchange.on_response_headers(end_of_stream, &mut host))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let mut host = EnvoyHost { shared: &self.shared };
        action(self.exchange.on_response_body(body_size, end_of_stream, &mut host))
    }

    fn on_log(&mut self) {
        let mut host = EnvoyHost { shared: &self.shared };
        self.exchange.on_log(&mut host);
    }
}
