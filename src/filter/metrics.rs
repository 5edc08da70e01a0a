//! Metric ids, defined once at configure time so the hot path is one host call each.

use crate::core::metrics::{all_counters, counter_name, tool_counter_name, Counter, DURATION_HISTOGRAM};
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use std::collections::HashMap;

#[derive(Default)]
pub struct Metrics {
    counters: HashMap<Counter, u32>,
    tools: HashMap<String, u32>,
    duration: Option<u32>,
}

impl Metrics {
    pub fn define(tools: &[String]) -> Metrics {
        let counters = all_counters()
            .into_iter()
            .filter_map(|c| hostcalls::define_metric(MetricType::Counter, &counter_name(c)).ok().map(|id| (c, id)))
            .collect();
        let tools = tools
            .iter()
            .filter_map(|t| hostcalls::define_metric(MetricType::Counter, &tool_counter_name(t)).ok().map(|id| (t.clone(), id)))
            .collect();
        let duration = hostcalls::define_metric(MetricType::Histogram, DURATION_HISTOGRAM).ok();
        Metrics { counters, tools, duration }
    }

    pub fn increment(&self, counter: Counter) {
        if let Some(id) = self.counters.get(&counter) {
            let _ = hostcalls::increment_metric(*id, 1);
        }
    }

    pub fn increment_tool(&self, tool: &str) {
        if let Some(id) = self.tools.get(tool) {
            let _ = hostcalls::increment_metric(*id, 1);
        }
    }

    pub fn record_duration_ms(&self, ms: u64) {
        if let Some(id) = self.duration {
            let _ = hostcalls::record_metric(id, ms);
        }
    }
}
