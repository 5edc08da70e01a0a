//! Host-call probe: on every request, makes one kind of proxy-wasm host call
//! `repeat` times, so that (CPU per request with the probe − without) / repeat is
//! what Envoy charges for one such call. Read by `bench/run_bench.py --probe`.
//!
//! Plugin configuration: `{"call": "<kind>", "repeat": <n>}`; kinds in `Call`. An
//! unknown kind or a missing configuration makes `on_configure` fail (the bench
//! would otherwise measure nothing and call it a result).

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel, MetricType};

#[derive(Clone, Copy, PartialEq)]
enum Call {
    /// No call: the probe's own callbacks, the baseline of the others.
    None,
    /// `proxy_get_current_time_nanoseconds`: a call that returns a number.
    Now,
    /// `proxy_increment_metric`: a call that passes numbers in.
    IncrementMetric,
    /// `proxy_get_header_map_value` (`content-type`): returns bytes, which the host
    /// writes into memory it allocates by calling back into the VM.
    GetHeader,
    /// `proxy_get_header_map_pairs`: all request headers, serialised.
    GetHeaderPairs,
    /// `proxy_replace_header_map_value` on a request header.
    SetHeader,
    /// `proxy_get_property` (`request.protocol`).
    GetProperty,
    /// `proxy_get_property` of filter state this filter set (`filter_state.wasm.probe`).
    GetFilterState,
    /// `proxy_set_property` with a new key each time: a new filter-state object.
    SetProperty,
    /// `proxy_get_buffer_bytes` of the whole request body (in the body callback).
    GetBody,
    /// Not a probe of one call: the least any filter must do to tag a `tools/call`
    /// span and write `params._meta`, with no parsing at all (`repeat` is ignored):
    /// drop `content-length` as the headers leave (they are not held: Istio and Envoy
    /// Gateway cannot let a filter hold them), hold the body, read it once, replace its
    /// first byte, set
    /// the filter state mcp-trace sets for such a call (same keys, so Envoy evaluates
    /// the same span tags), read the first response chunk. The bench's front M.
    McpFloor,
}

impl Call {
    fn parse(name: &str) -> Option<Call> {
        Some(match name {
            "none" => Call::None,
            "now" => Call::Now,
            "increment_metric" => Call::IncrementMetric,
            "get_header" => Call::GetHeader,
            "get_header_pairs" => Call::GetHeaderPairs,
            "set_header" => Call::SetHeader,
            "get_property" => Call::GetProperty,
            "get_filter_state" => Call::GetFilterState,
            "set_property" => Call::SetProperty,
            "get_body" => Call::GetBody,
            "mcp_floor" => Call::McpFloor,
            _ => return None,
        })
    }
}

struct ProbeRoot {
    call: Call,
    repeat: u32,
    metric: u32,
    /// `mcp_floor` holds the request headers until the body is read and sets
    /// `content-length` on them, as mcp-trace does with `hold_request_headers`.
    hold: bool,
}

impl Context for ProbeRoot {}

impl RootContext for ProbeRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let parsed: serde_json::Value = serde_json::from_slice(&config).unwrap_or_default();
        let call = parsed["call"].as_str().and_then(Call::parse);
        let repeat = parsed["repeat"].as_u64().and_then(|r| u32::try_from(r).ok());
        let (Some(call), Some(repeat)) = (call, repeat) else {
            let text = String::from_utf8_lossy(&config);
            proxy_wasm::hostcalls::log(LogLevel::Error, &format!("probe-filter: bad configuration {text:?}")).ok();
            return false;
        };
        self.call = call;
        self.repeat = repeat;
        self.hold = parsed["hold"].as_bool().unwrap_or(false);
        self.metric = hostcalls::define_metric(MetricType::Counter, "probe.calls").unwrap_or(0);
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe { call: self.call, repeat: self.repeat, metric: self.metric, hold: self.hold, response_read: false }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Probe {
    call: Call,
    repeat: u32,
    metric: u32,
    hold: bool,
    response_read: bool,
}

impl Context for Probe {}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> proxy_wasm::types::Action {
        if self.call == Call::GetFilterState {
            self.set_property(vec!["probe"], Some(b"probe-value-0123456789"));
        }
        for i in 0..self.repeat {
            match self.call {
                Call::None | Call::GetBody | Call::McpFloor => {}
                Call::Now => {
                    std::hint::black_box(self.get_current_time());
                }
                Call::IncrementMetric => {
                    hostcalls::increment_metric(self.metric, 1).ok();
                }
                Call::GetHeader => {
                    std::hint::black_box(self.get_http_request_header("content-type"));
                }
                Call::GetHeaderPairs => {
                    std::hint::black_box(self.get_http_request_headers());
                }
                Call::SetHeader => self.set_http_request_header("x-probe", Some("probe-value-0123456789")),
                Call::GetProperty => {
                    std::hint::black_box(self.get_property(vec!["request", "protocol"]));
                }
                Call::GetFilterState => {
                    std::hint::black_box(self.get_property(vec!["filter_state", "wasm.probe"]));
                }
                Call::SetProperty => self.set_property(vec![&format!("probe.{i}")], Some(b"probe-value-0123456789")),
            }
        }
        if self.call == Call::McpFloor {
            // Whether it is JSON (mcp-trace reads all headers in one call).
            std::hint::black_box(self.get_http_request_header("content-type"));
            if !end_of_stream && self.hold {
                // Held until the body is read: its new length goes with them.
                return proxy_wasm::types::Action::Pause;
            }
            // The body will change length: its length leaves without it.
            if !end_of_stream {
                self.set_http_request_header("content-length", None);
            }
        }
        proxy_wasm::types::Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> proxy_wasm::types::Action {
        if self.call == Call::McpFloor {
            if !end_of_stream {
                return proxy_wasm::types::Action::Pause;
            }
            let body = self.get_http_request_body(0, body_size).unwrap_or_default();
            // A one-byte head replaced by itself: the same host work as a `_meta`
            // splice, the same bytes upstream.
            if let Some(first) = body.first() {
                self.set_http_request_body(0, 1, &[*first]);
            }
            if self.hold {
                self.set_http_request_header("content-length", Some(&body.len().to_string()));
            }
            for (key, value) in FLOOR_PROPERTIES {
                self.set_property(vec![key], Some(value.as_bytes()));
            }
            return proxy_wasm::types::Action::Continue;
        }
        if self.call == Call::GetBody && end_of_stream {
            for _ in 0..self.repeat {
                std::hint::black_box(self.get_http_request_body(0, body_size));
            }
        }
        proxy_wasm::types::Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> proxy_wasm::types::Action {
        // The JSON-RPC outcome is in the response: its first bytes are read once.
        if self.call == Call::McpFloor && !self.response_read && body_size > 0 {
            self.response_read = true;
            std::hint::black_box(self.get_http_response_body(0, body_size.min(256)));
        }
        proxy_wasm::types::Action::Continue
    }
}

/// The filter state mcp-trace sets for a 1 KB `tools/call` (both instances together;
/// `network.protocol.version` Envoy tags itself, from `%CEL(request.protocol …)%`).
const FLOOR_PROPERTIES: [(&str, &str); 7] = [
    ("mcp.session.id", "bench-session-0123456789abcdef"),
    ("mcp_trace.span_name", "tools/call get_weather"),
    ("mcp.method.name", "tools/call"),
    ("gen_ai.tool.name", "get_weather"),
    ("gen_ai.operation.name", "execute_tool"),
    ("jsonrpc.request.id", "12345"),
    ("mcp.protocol.version", "2025-11-25"),
];

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(ProbeRoot { call: Call::None, repeat: 0, metric: 0, hold: false }) });
}}
