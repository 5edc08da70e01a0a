//! The root context: configuration, metric definitions, and the own-span export tick.

use super::abi;
use super::export;
use super::http::Http;
use super::metrics::Metrics;
use crate::core::config::Config;
use crate::core::metrics::Counter;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::rc::Rc;

/// What every HTTP context of this VM shares.
pub struct Shared {
    pub config: Rc<Config>,
    pub metrics: Metrics,
}

#[derive(Default)]
pub struct Root {
    shared: Option<Rc<Shared>>,
}

impl Context for Root {
    fn on_http_call_response(&mut self, _token_id: u32, _num_headers: usize, _body_size: usize, _num_trailers: usize) {
        let Some(shared) = &self.shared else { return };
        let status = abi::get_header(abi::MAP_HTTP_CALL_RESPONSE_HEADERS, ":status");
        if !matches!(status.as_deref(), Some(s) if s.starts_with('2')) {
            shared.metrics.increment(Counter::ExportFailures);
            log::warn!(
                "mcp-trace: own-span export to cluster {:?} answered {}",
                shared.config.own_spans.cluster,
                status.as_deref().unwrap_or("nothing (timeout or reset)")
            );
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
        if config.own_spans.enabled {
            if let Err(status) = abi::set_tick_period_ms(config.own_spans.flush_interval_ms.min(u32::MAX as u64) as u32) {
                abi::log(abi::LOG_ERROR, &format!("mcp-trace: cannot start the own-span export tick (status {status})"));
                return false;
            }
        }
        let metrics = Metrics::define(&config.tool_metrics);
        log::info!(
            "mcp-trace: configured (role {:?}, max_body_bytes {}, own spans {})",
            config.role,
            config.max_body_bytes,
            if config.own_spans.enabled { "on" } else { "off" }
        );
        self.shared = Some(Rc::new(Shared { config: Rc::new(config), metrics }));
        true
    }

    fn on_tick(&mut self) {
        let Some(shared) = &self.shared else { return };
        // Several batches when the queue is deep, but bounded work per tick.
        for _ in 0..8 {
            match export::flush(&shared.config.own_spans) {
                Ok(0) => break,
                Ok(n) => shared.metrics.add(Counter::SpansExported, n as i64),
                Err(lost) => {
                    shared.metrics.increment(Counter::ExportFailures);
                    shared.metrics.add(Counter::SpansDropped, lost as i64);
                    break;
                }
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Envoy never runs a filter whose configure failed; without config, no context.
        let shared = self.shared.clone()?;
        Some(Box::new(Http::new(shared)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
