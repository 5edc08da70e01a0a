//! The root context: configuration, metric definitions, and the own-span export tick.

use super::abi;
use super::export;
use super::http::Http;
use super::metrics::Metrics;
use crate::core::config::{Config, OwnSpanMode};
use crate::core::metrics::Counter;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::rc::Rc;

/// Export requests per tick at most: a deep queue drains over several ticks.
const MAX_BATCHES_PER_TICK: usize = 8;

/// What every HTTP context of this VM shares.
pub struct Shared {
    pub config: Rc<Config>,
    pub metrics: Metrics,
}

#[derive(Default)]
pub struct Root {
    shared: Option<Rc<Shared>>,
    /// Failed exports so far; logged at the 1st, 2nd, 4th, 8th… so a collector that is
    /// down for good does not flood Envoy's log (the counter has every one).
    export_failures: u64,
}

impl Root {
    fn export_failed(&mut self, why: &str) {
        let Some(shared) = &self.shared else { return };
        shared.metrics.increment(Counter::ExportFailures);
        self.export_failures += 1;
        if self.export_failures.is_power_of_two() {
            log::warn!(
                "mcp-trace: own-span export to cluster {:?} failed: {why} ({} failures so far, counted in own_spans.export_failures)",
                shared.config.own_spans.cluster,
                self.export_failures
            );
        }
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, _token_id: u32, _num_headers: usize, _body_size: usize, _num_trailers: usize) {
        let status = abi::get_header(abi::MAP_HTTP_CALL_RESPONSE_HEADERS, ":status");
        if !matches!(status.as_deref(), Some(s) if s.starts_with('2')) {
            self.export_failed(&format!("the collector answered {}", status.as_deref().unwrap_or("nothing (timeout or reset)")));
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        super::follow_host_log_level();
        let bytes = abi::get_buffer(abi::BUFFER_PLUGIN_CONFIGURATION, 0, usize::MAX).unwrap_or_default();
        let config = match Config::parse(&bytes) {
            Ok(config) => config,
            Err(e) => {
                // Refusing here makes Envoy reject the filter, with this line in its log.
                abi::log(abi::LOG_ERROR, &format!("mcp-trace: {e}"));
                return false;
            }
        };
        if config.own_spans.mode != OwnSpanMode::Off {
            if let Err(status) = abi::set_tick_period_ms(config.own_spans.flush_interval_ms.min(u32::MAX as u64) as u32) {
                abi::log(abi::LOG_ERROR, &format!("mcp-trace: cannot start the own-span export tick (status {status})"));
                return false;
            }
        }
        let metrics = Metrics::define(&config.tool_metrics);
        log::info!(
            "mcp-trace: configured (role {:?}, max_body_bytes {}, own spans {:?})",
            config.role,
            config.max_body_bytes,
            config.own_spans.mode
        );
        self.shared = Some(Rc::new(Shared { config: Rc::new(config), metrics }));
        true
    }

    fn on_tick(&mut self) {
        let Some(shared) = self.shared.clone() else { return };
        // Several batches when the queue is deep, but bounded work per tick.
        for _ in 0..MAX_BATCHES_PER_TICK {
            match export::flush(&shared.config.own_spans) {
                Ok(0) => break,
                Ok(n) => shared.metrics.add(Counter::SpansExported, n as i64),
                Err((lost, status)) => {
                    shared.metrics.add(Counter::SpansDropped, lost as i64);
                    self.export_failed(&format!("Envoy refused the call ({status}; is the cluster defined?), {lost} spans lost"));
                    break;
                }
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Envoy runs no stream through a root whose configure failed. Should one come
        // anyway, it passes untouched: the SDK panics (and the VM dies) on None.
        Some(Box::new(Http::new(self.shared.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
