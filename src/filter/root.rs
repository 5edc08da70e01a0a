//! The root context: configuration, metric definitions, and the own-span export tick.

use super::export;
use super::http::Http;
use super::metrics::Metrics;
use super::sessions::SessionMemory;
use crate::core::config::Config;
use crate::core::metrics::Counter;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel};
use std::rc::Rc;
use std::time::Duration;

/// What every HTTP context of this VM shares.
pub struct Shared {
    pub config: Rc<Config>,
    pub metrics: Metrics,
    pub sessions: SessionMemory,
}

#[derive(Default)]
pub struct Root {
    shared: Option<Rc<Shared>>,
}

impl Context for Root {
    fn on_http_call_response(&mut self, _token_id: u32, _num_headers: usize, _body_size: usize, _num_trailers: usize) {
        let Some(shared) = &self.shared else { return };
        let status = hostcalls::get_map_value(proxy_wasm::types::MapType::HttpCallResponseHeaders, ":status").ok().flatten();
        if !matches!(status.as_deref(), Some(s) if s.starts_with('2')) {
            shared.metrics.increment(Counter::ExportFailures);
            log::warn!(
                "own-span export to cluster {:?} answered {}",
                shared.config.own_spans.cluster,
                status.as_deref().unwrap_or("no status (timeout or reset)")
            );
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        // Follow Envoy's log level so disabled levels cost nothing (no format, no call).
        if let Ok(level) = hostcalls::get_log_level() {
            proxy_wasm::set_log_level(level);
        }
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX).ok().flatten().unwrap_or_default();
        let config = match Config::parse(&bytes) {
            Ok(config) => config,
            Err(e) => {
                // Refuse the filter: Envoy rejects the configuration with this line logged.
                let _ = hostcalls::log(LogLevel::Error, &format!("mcp-trace: {e}"));
                return false;
            }
        };
        if config.own_spans.enabled {
            if let Err(status) = hostcalls::set_tick_period(Duration::from_millis(config.own_spans.flush_interval_ms)) {
                let _ = hostcalls::log(LogLevel::Error, &format!("mcp-trace: cannot start the own-span export tick ({status:?})"));
                return false;
            }
        }
        let metrics = Metrics::define(&config.tool_metrics);
        let sessions = SessionMemory { max_entries: config.sessions.max_entries, ttl_seconds: config.sessions.ttl_seconds };
        log::info!(
            "mcp-trace: configured (role {:?}, max_body_bytes {}, own spans {})",
            config.role,
            config.max_body_bytes,
            if config.own_spans.enabled { "on" } else { "off" }
        );
        self.shared = Some(Rc::new(Shared { config: Rc::new(config), metrics, sessions }));
        true
    }

    fn on_tick(&mut self) {
        let Some(shared) = &self.shared else { return };
        // Drain several batches when the queue is deep, but bound work per tick.
        for _ in 0..8 {
            match export::flush(&shared.config.own_spans) {
                Ok(0) => break,
                Ok(n) => {
                    for _ in 0..n {
                        shared.metrics.increment(Counter::SpansExported);
                    }
                }
                Err(_) => {
                    shared.metrics.increment(Counter::ExportFailures);
                    break;
                }
            }
            if export::queued() == 0 {
                break;
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Unconfigured (should not happen: Envoy does not run a refused filter): pass.
        let shared = self.shared.clone()?;
        Some(Box::new(Http::new(shared)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
