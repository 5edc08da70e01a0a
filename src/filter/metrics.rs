//! Metric ids, defined once at configure time so the hot path is one host call each.

use super::abi;
use crate::core::metrics::{all_counters, counter_name, tool_counter_name, Counter, DURATION_HISTOGRAM};
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
            .filter_map(|c| abi::define_metric(abi::METRIC_COUNTER, &counter_name(c)).map(|id| (c, id)))
            .collect();
        let tools =
            tools.iter().filter_map(|t| abi::define_metric(abi::METRIC_COUNTER, &tool_counter_name(t)).map(|id| (t.clone(), id))).collect();
        let duration = abi::define_metric(abi::METRIC_HISTOGRAM, DURATION_HISTOGRAM);
        Metrics { counters, tools, duration }
    }

    pub fn increment(&self, counter: Counter) {
        self.add(counter, 1);
    }

    pub fn add(&self, counter: Counter, by: i64) {
        if let Some(id) = self.counters.get(&counter) {
            abi::increment_metric(*id, by);
        }
    }

    pub fn increment_tool(&self, tool: &str) {
        if let Some(id) = self.tools.get(tool) {
            abi::increment_metric(*id, 1);
        }
    }

    pub fn record_duration_ms(&self, ms: u64) {
        if let Some(id) = self.duration {
            abi::record_metric(id, ms);
        }
    }
}
