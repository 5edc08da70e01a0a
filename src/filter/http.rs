//! The HTTP context: forwards each callback to the core [`Exchange`] and implements its
//! [`Host`] over the proxy-wasm ABI.

use super::abi;
use super::export;
use super::root::Shared;
use crate::core::exchange::{Action as CoreAction, Exchange, Host};
use crate::core::headers::HeaderList;
use crate::core::metrics::Counter;
use crate::core::otlp::SpanRecord;
use crate::core::session_store::{CasMismatch, SharedData};
use crate::core::upstream_answers::UpstreamAnswers;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::cell::RefCell;
use std::rc::Rc;

pub struct Http {
    /// None without a configuration: every callback continues.
    work: Option<(Rc<Shared>, Exchange)>,
}

impl Http {
    pub fn new(shared: Option<Rc<Shared>>) -> Http {
        Http {
            work: shared.map(|shared| {
                let exchange = Exchange::new(shared.config.clone());
                (shared, exchange)
            }),
        }
    }

    /// `step` on the exchange, or `unconfigured` when there is none.
    fn with_exchange<R>(&mut self, unconfigured: R, step: impl FnOnce(&mut Exchange, &mut EnvoyHost) -> R) -> R {
        match &mut self.work {
            Some((shared, exchange)) => step(exchange, &mut EnvoyHost { shared }),
            None => unconfigured,
        }
    }
}

fn action(a: CoreAction) -> Action {
    match a {
        CoreAction::Continue => Action::Continue,
        CoreAction::Pause => Action::Pause,
    }
}

thread_local! {
    /// One per VM (the VM is single-threaded), shared by every instance loaded in it:
    /// the paired downstream and upstream instances of `envoy/envoy.yaml`.
    static UPSTREAM_ANSWERS: RefCell<UpstreamAnswers> = RefCell::new(UpstreamAnswers::default());
}

/// The host side of the exchange. Separate from `Http` so the exchange can be
/// borrowed mutably beside it.
struct EnvoyHost<'a> {
    shared: &'a Shared,
}

impl Host for EnvoyHost<'_> {
    fn request_protocol(&self) -> Option<String> {
        abi::get_property(&["request", "protocol"]).map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    fn request_headers(&self) -> HeaderList {
        abi::get_header_list(abi::MAP_REQUEST_HEADERS)
    }

    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        if let Err(status) = abi::set_header(abi::MAP_REQUEST_HEADERS, name, value) {
            log::debug!("mcp-trace: request header {name} not set (status {status})");
        }
    }

    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        abi::get_buffer(abi::BUFFER_REQUEST_BODY, 0, size)
    }

    fn replace_request_body_head(&mut self, replaced: usize, head: &[u8]) {
        // Envoy, for start 0: drains `replaced` bytes of the held body, then prepends
        // `head`. The rest of the body is not copied back out of the VM.
        if let Err(status) = abi::set_buffer(abi::BUFFER_REQUEST_BODY, 0, replaced, head) {
            log::debug!("mcp-trace: request body not replaced (status {status})");
        }
    }

    fn response_header(&self, name: &str) -> Option<String> {
        abi::get_header(abi::MAP_RESPONSE_HEADERS, name)
    }

    fn response_status(&self) -> Option<u16> {
        // An integer property comes back as 8 little-endian bytes.
        let bytes: [u8; 8] = abi::get_property(&["response", "code"])?.try_into().ok()?;
        u16::try_from(i64::from_le_bytes(bytes)).ok()
    }

    fn response_code_details(&self) -> Option<String> {
        abi::get_property(&["response", "code_details"]).map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    fn set_response_header(&mut self, name: &str, value: &str) {
        if let Err(status) = abi::set_header(abi::MAP_RESPONSE_HEADERS, name, Some(value)) {
            log::debug!("mcp-trace: response header {name} not set (status {status})");
        }
    }

    fn response_body(&self, size: usize) -> Option<Vec<u8>> {
        abi::get_buffer(abi::BUFFER_RESPONSE_BODY, 0, size)
    }

    fn set_property(&mut self, key: &str, value: &str) {
        if let Err(status) = abi::set_property(key, value.as_bytes()) {
            log::debug!("mcp-trace: property {key} not set (status {status})");
        }
    }

    fn property(&self, key: &str) -> Option<String> {
        let name = format!("wasm.{key}");
        abi::get_property(&["filter_state", &name]).map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    fn add(&mut self, counter: Counter, by: i64) {
        self.shared.metrics.add(counter, by);
    }

    fn increment_tool(&mut self, tool: &str) {
        self.shared.metrics.increment_tool(tool);
    }

    fn record_duration_ms(&mut self, ms: u64) {
        self.shared.metrics.record_duration_ms(ms);
    }

    fn now_unix_nanos(&self) -> u64 {
        abi::now_nanos()
    }

    fn with_upstream_answers<R>(&mut self, f: impl FnOnce(&mut UpstreamAnswers) -> R) -> R {
        UPSTREAM_ANSWERS.with(|answers| f(&mut answers.borrow_mut()))
    }

    fn emit_span(&mut self, span: SpanRecord) {
        if !export::enqueue(span, self.shared.config.own_spans.max_queue_spans) {
            self.shared.metrics.increment(Counter::SpansDropped);
        }
    }
}

impl SharedData for EnvoyHost<'_> {
    fn get_shared(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        abi::get_shared_data(key)
    }

    fn set_shared(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), CasMismatch> {
        abi::set_shared_data(key, value, cas).map_err(|_| CasMismatch)
    }
}

impl Context for Http {
    /// The router's upstream filter chain gets `on_done` but never `on_log`.
    fn on_done(&mut self) -> bool {
        self.with_exchange((), |exchange, host| exchange.on_log(host));
        true
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.with_exchange(Action::Continue, |exchange, host| action(exchange.on_request_headers(end_of_stream, host)))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.with_exchange(Action::Continue, |exchange, host| action(exchange.on_request_body(body_size, end_of_stream, host)))
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.with_exchange(Action::Continue, |exchange, host| action(exchange.on_request_trailers(host)))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.with_exchange(Action::Continue, |exchange, host| action(exchange.on_response_headers(end_of_stream, host)))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.with_exchange(Action::Continue, |exchange, host| action(exchange.on_response_body(body_size, end_of_stream, host)))
    }

    fn on_log(&mut self) {
        self.with_exchange((), |exchange, host| exchange.on_log(host));
    }
}
