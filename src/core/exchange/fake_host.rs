//! A host that records what the filter asks of Envoy and answers as Envoy does.

use super::*;
use crate::core::metrics::Counter;
use crate::core::session_store::{CasMismatch, MemoryData};
use std::collections::HashMap;

#[derive(Default)]
pub struct FakeHost {
    pub request_headers: Vec<(String, String)>,
    pub request_body: Vec<u8>,
    pub response_headers: HashMap<String, String>,
    pub response_chunk: Vec<u8>,
    pub properties: HashMap<String, String>,
    pub counters: HashMap<Counter, i64>,
    pub spans: Vec<SpanRecord>,
    /// Envoy's shared data (the session memory lives there).
    pub sessions: MemoryData,
    pub durations: Vec<u64>,
    /// `response.code_details`; None: the response came from the upstream.
    pub code_details: Option<String>,
    /// Host calls made, in order, as Envoy would see them (the hot-path cost driver).
    pub calls: std::cell::RefCell<Vec<String>>,
    /// The paired instances' notes (in Envoy: VM memory, no host call).
    pub answers: UpstreamAnswers,
    /// Envoy lets a filter read the response headers only in their own callback (it
    /// forgets the map once the callback returns Continue); `respond` opens it there.
    pub response_headers_readable: bool,
}

impl FakeHost {
    pub fn post(body: &str, headers: &[(&str, &str)]) -> FakeHost {
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
    pub fn header(&self, name: &str) -> Option<&str> {
        self.request_headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    fn call(&self, what: impl Into<String>) {
        self.calls.borrow_mut().push(what.into());
    }

    pub fn count(&self, c: Counter) -> i64 {
        self.counters.get(&c).copied().unwrap_or(0)
    }
}

impl Host for FakeHost {
    fn with_upstream_answers<R>(&mut self, f: impl FnOnce(&mut UpstreamAnswers) -> R) -> R {
        f(&mut self.answers)
    }
    fn request_protocol(&self) -> Option<String> {
        self.call("get_property request.protocol");
        Some("HTTP/1.1".into())
    }
    fn request_headers(&self) -> HeaderList {
        self.call("get_header_map_pairs request");
        HeaderList::from_pairs(self.request_headers.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        self.call(format!("{} request {name}", if value.is_some() { "replace_header" } else { "remove_header" }));
        self.request_headers.retain(|(k, _)| k != name);
        if let Some(v) = value {
            self.request_headers.push((name.to_string(), v.to_string()));
        }
    }
    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        self.call("get_buffer request_body");
        // As Envoy: a read that finds no bytes returns no buffer at all.
        let bytes = &self.request_body[..size.min(self.request_body.len())];
        (!bytes.is_empty()).then(|| bytes.to_vec())
    }
    fn replace_request_body_head(&mut self, replaced: usize, head: &[u8]) {
        self.call("set_buffer request_body");
        // As Envoy does it: drain `replaced` bytes, prepend `head`.
        self.request_body.splice(..replaced.min(self.request_body.len()), head.iter().copied());
    }
    fn response_header(&self, name: &str) -> Option<String> {
        self.call(format!("get_header response {name}"));
        self.response_headers.get(name).filter(|_| self.response_headers_readable).cloned()
    }
    fn response_status(&self) -> Option<u16> {
        self.call("get_property response.code");
        self.response_headers.get(":status").and_then(|s| s.parse().ok())
    }
    fn response_code_details(&self) -> Option<String> {
        self.call("get_property response.code_details");
        Some(self.code_details.clone().unwrap_or_else(|| "via_upstream".into()))
    }
    fn set_response_header(&mut self, name: &str, value: &str) {
        self.call(format!("replace_header response {name}"));
        self.response_headers.insert(name.to_string(), value.to_string());
    }
    fn response_body(&self, size: usize) -> Option<Vec<u8>> {
        self.call("get_buffer response_body");
        Some(self.response_chunk[..size].to_vec())
    }
    fn set_property(&mut self, key: &str, value: &str) {
        self.call(format!("set_property {key}"));
        self.properties.insert(key.to_string(), value.to_string());
    }
    fn property(&self, key: &str) -> Option<String> {
        self.call(format!("get_property filter_state {key}"));
        self.properties.get(key).cloned()
    }
    fn add(&mut self, counter: Counter, by: i64) {
        self.call(format!("increment_metric {counter:?}"));
        *self.counters.entry(counter).or_default() += by;
    }
    fn increment_tool(&mut self, _tool: &str) {}
    fn record_duration_ms(&mut self, ms: u64) {
        self.call("record_metric duration");
        self.durations.push(ms);
    }
    fn now_unix_nanos(&self) -> u64 {
        self.call("get_current_time");
        1_700_000_000_000_000_000
    }
    fn emit_span(&mut self, span: SpanRecord) {
        self.spans.push(span);
    }
}

impl SharedData for FakeHost {
    fn get_shared(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.call(format!("get_shared_data {key}"));
        self.sessions.get_shared(key)
    }
    fn set_shared(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), CasMismatch> {
        self.call(format!("set_shared_data {key}"));
        self.sessions.set_shared(key, value, cas)
    }
}

/// The session memory as the filter sees it, at the fake host's clock.
pub fn remembered(host: &FakeHost, key: &str) -> Option<String> {
    config("{}").sessions.recall(&host.sessions, now_secs(host), key)
}

pub fn remember_server_session(host: &mut FakeHost, session: &str) {
    let now = now_secs(host);
    config("{}").sessions.learn(&mut host.sessions, now, session, None);
}

pub fn config(json: &str) -> Rc<Config> {
    Rc::new(Config::parse(json.as_bytes()).unwrap())
}

/// Runs the request side with `host.request_body` as one chunk; leaves what went
/// upstream in `host.request_body`, and returns the exchange for the response side.
pub fn request(conf: &Rc<Config>, host: &mut FakeHost) -> Exchange {
    let mut ex = Exchange::new(conf.clone());
    let body = std::mem::take(&mut host.request_body);
    let bodyless = body.is_empty();
    ex.on_request_headers(bodyless, host);
    if !bodyless {
        host.request_body = deliver_body(&mut ex, host, &[&body], false);
    }
    ex
}

/// Delivers a request body as Envoy does and returns what went upstream. Chunks arrive
/// one by one; while the filter pauses, Envoy holds them and each callback's size is the
/// whole held body, which the filter may read and rewrite; Continue releases what is
/// held, and from then on each callback sees only its own chunk. The last chunk ends the
/// stream, or trailers do.
pub fn deliver_body(ex: &mut Exchange, host: &mut FakeHost, chunks: &[&[u8]], trailers: bool) -> Vec<u8> {
    let mut upstream = Vec::new();
    host.request_body.clear();
    for (i, chunk) in chunks.iter().enumerate() {
        let end_of_stream = i + 1 == chunks.len() && !trailers;
        host.request_body.extend_from_slice(chunk);
        let size = host.request_body.len();
        if ex.on_request_body(size, end_of_stream, host) == Action::Continue {
            upstream.append(&mut host.request_body);
        }
    }
    if trailers {
        assert_eq!(ex.on_request_trailers(host), Action::Continue, "trailers end the request");
        upstream.append(&mut host.request_body);
    }
    assert!(host.request_body.is_empty(), "the end of the request released everything held");
    upstream
}

pub fn respond(ex: &mut Exchange, host: &mut FakeHost, status: &str, content_type: &str, chunks: &[&[u8]]) {
    host.response_headers.insert(":status".into(), status.into());
    host.response_headers.insert("content-type".into(), content_type.into());
    host.response_headers_readable = true;
    ex.on_response_headers(chunks.is_empty(), host);
    host.response_headers_readable = false;
    for (i, chunk) in chunks.iter().enumerate() {
        host.response_chunk = chunk.to_vec();
        ex.on_response_body(chunk.len(), i + 1 == chunks.len(), host);
    }
    ex.on_log(host);
}

pub const CALL: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get_weather","arguments":{"city":"Paris"}}}"#;
